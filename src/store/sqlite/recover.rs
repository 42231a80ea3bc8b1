//! SQL of recovery over a time window (`Store::recover_deliveries`): the deliveries of the
//! events that arrived in the window, narrowed by channel, destination and state, counted
//! or re-queued in one statement; and the destinations of attempt URLs that filter needs.

use rusqlite::{params, Connection};

use super::deliveries::REQUEUE;
use crate::domain::{ChannelId, DeliveryState, DestinationId};
use crate::store::urls::destination_of;
use crate::store::{RecoverFilter, StoreError};

/// The deliveries a filter matches (parameters `?2` to `?8`, see [`bind`]; `?1` is
/// the requeue's time); never pending ones, which are queued already, nor those whose
/// payload was purged, which cannot be sent again. A delivery matches a destination when one of its
/// attempts went to a URL of it.
const MATCHING: &str = "SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id
     WHERE e.received_at >= ?2 AND e.received_at < ?3
       AND d.state IN (?4, ?5, ?6) AND d.state <> 'pending' AND e.payload_purged_at IS NULL
       AND (?7 IS NULL OR d.channel_id = ?7)
       AND (?8 IS NULL OR EXISTS (SELECT 1 FROM attempts a JOIN attempt_urls u ON u.id = a.url_id
                                  WHERE a.delivery_id = d.id AND u.destination = ?8))";

/// How many deliveries `filter` matches.
pub fn count(conn: &Connection, filter: &RecoverFilter) -> Result<u64, StoreError> {
    let sql = format!("SELECT count(*) FROM ({MATCHING})");
    let (states, channel, destination) = bind(filter);
    let count: i64 = conn.prepare_cached(&sql)?.query_row(
        params![
            0_i64,
            filter.since,
            filter.until,
            states[0],
            states[1],
            states[2],
            channel,
            destination
        ],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Re-queues the deliveries `filter` matches, as a replay does (due `now`, a new age
/// window); returns how many. One statement, so it is one step of the writer's transaction.
pub fn requeue(conn: &Connection, filter: &RecoverFilter, now: i64) -> Result<u64, StoreError> {
    let sql = format!("UPDATE deliveries SET {REQUEUE} WHERE id IN ({MATCHING})");
    let (states, channel, destination) = bind(filter);
    let changed = conn.prepare_cached(&sql)?.execute(params![
        now,
        filter.since,
        filter.until,
        states[0],
        states[1],
        states[2],
        channel,
        destination
    ])?;
    if changed > 0 {
        super::ordering::hold_behind_heads(conn, None)?;
    }
    Ok(changed as u64)
}

/// The filter's states as three parameters (repeated to fill the three, or `pending`, which
/// matches nothing, when none is named), its channel and its destination. Pending and
/// repeated states are left out first, so the three non-pending states always fit (as on
/// PostgreSQL, which binds the whole list).
fn bind(filter: &RecoverFilter) -> ([&'static str; 3], Option<&str>, Option<&str>) {
    let mut named: Vec<&'static str> = Vec::with_capacity(3);
    for state in &filter.states {
        if *state != DeliveryState::Pending && !named.contains(&state.as_str()) {
            named.push(state.as_str());
        }
    }
    let first = named
        .first()
        .copied()
        .unwrap_or(DeliveryState::Pending.as_str());
    let state = |i: usize| named.get(i).copied().unwrap_or(first);
    (
        [state(0), state(1), state(2)],
        filter.channel.as_ref().map(ChannelId::as_str),
        filter.destination.as_ref().map(DestinationId::as_str),
    )
}

/// Fills the destination of attempt URLs stored before it was recorded (one row per
/// distinct URL, so few); run once at open. Text that is not a URL keeps none.
pub fn backfill_destinations(conn: &Connection) -> Result<u64, StoreError> {
    let missing = {
        let mut select =
            conn.prepare("SELECT id, url FROM attempt_urls WHERE destination IS NULL")?;
        let rows = select.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut update = conn.prepare(
        "UPDATE attempt_urls SET destination = ?1 WHERE id = ?2 AND destination IS NULL",
    )?;
    let mut filled = 0;
    for (id, url) in missing {
        if let Some(destination) = destination_of(&url) {
            filled += update.execute(params![destination, id])? as u64;
        }
    }
    Ok(filled)
}
