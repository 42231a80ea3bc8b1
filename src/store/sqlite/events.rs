//! SQL of the read side (an event with its deliveries and attempts, paged lists, the queue
//! depth) and of retention (events, and payloads sooner).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{ChannelId, DeliveryId, DeliveryState, EventId, EventKind};
use crate::store::columns::trace_of_column;
use crate::store::decode::{
    attempt_record, delivery_record, event_summary, ATTEMPT_COLUMNS, DELIVERY_COLUMNS,
    SUMMARY_COLUMNS,
};
use crate::store::payload;
use crate::store::retention::{batch_end, PayloadPurge, PAYLOAD_CURSOR};
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, EventFilter, EventRecord, EventSummary,
    StoreError,
};

/// Events by ascending id, filtered; unroutable ones through their partial index.
pub fn events(conn: &Connection, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
    let condition = match filter.kind {
        // A literal, so SQLite can use the partial index `events_unroutable`.
        Some(EventKind::Unroutable) => "kind = 'unroutable'",
        Some(EventKind::Whatsapp) => "kind = 'whatsapp'",
        Some(EventKind::Partner) => "kind = 'partner'",
        Some(EventKind::Waba) => "kind = 'waba'",
        None => "1",
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM events WHERE {condition} AND id > ?1 ORDER BY id LIMIT ?2"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    collect(
        &mut statement,
        params![filter.after.map_or(0, |id| id.0), filter.limit as i64],
        |row| event_summary(row),
    )
}

/// Every row `statement` yields for `params`, decoded by `decode` (the shared decoders,
/// whose errors name a corrupt row).
pub fn collect<T, P: rusqlite::Params>(
    statement: &mut rusqlite::Statement<'_>,
    params: P,
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = statement.query(params)?;
    let mut decoded = Vec::new();
    while let Some(row) = rows.next()? {
        decoded.push(decode(row)?);
    }
    Ok(decoded)
}

/// An event, its deliveries and their attempts.
pub fn event(conn: &Connection, id: EventId) -> Result<Option<EventRecord>, StoreError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, payload, payload_purged_at, trace_context FROM events WHERE id = ?1"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let found = collect(&mut statement, [id.0], |row| {
        let payload = payload::unpack(row.get(6)?, || format!("event {}", id.0))?;
        let trace = trace_of_column(row.get(8)?);
        Ok((event_summary(row)?, payload, row.get(7)?, trace))
    })?;
    let Some((summary, payload, payload_purged_at, trace)) = found.into_iter().next() else {
        return Ok(None);
    };
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?1 ORDER BY id");
    let mut statement = conn.prepare(&sql)?;
    let deliveries = collect(&mut statement, [id.0], |row| delivery_record(row))?;
    let mut with_attempts = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let attempts = attempts_of(conn, delivery.id)?;
        with_attempts.push((delivery, attempts));
    }
    Ok(Some(EventRecord {
        summary,
        payload,
        payload_purged_at,
        trace,
        deliveries: with_attempts,
    }))
}

fn attempts_of(conn: &Connection, delivery: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT a.id, {ATTEMPT_COLUMNS}
         FROM attempts a LEFT JOIN attempt_urls u ON u.id = a.url_id
         WHERE a.delivery_id = ?1 ORDER BY a.id"
    ))?;
    collect(&mut statement, [delivery.0], |row| {
        let id = row.get::<_, i64>(0)?;
        attempt_record(row, 1, || format!("attempt {id}"))
    })
}

/// Deliveries by ascending id, filtered.
pub fn deliveries(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    // With a state, `state = ?1` as a plain term lets SQLite walk `deliveries_state`
    // (state, id) from the cursor: a page of failed deliveries among a million delivered
    // ones reads one page of the index, where `(?1 IS NULL OR state = ?1)` walked the table.
    let state_term = if filter.state.is_some() {
        "state = ?1"
    } else {
        "?1 IS NULL"
    };
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE {state_term} AND (?2 IS NULL OR channel_id = ?2) AND id > ?3
         ORDER BY id LIMIT ?4"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    collect(
        &mut statement,
        params![
            filter.state.map(DeliveryState::as_str),
            filter.channel.as_ref().map(ChannelId::as_str),
            filter.after.map_or(0, |id| id.0),
            filter.limit as i64,
        ],
        |row| delivery_record(row),
    )
}

/// Deletes finished events older than `before`, with their deliveries and attempts.
///
/// Each delete re-checks, in its own statement, that the event still has no pending
/// delivery, so a delivery requeued after the candidates were read is never deleted. (The
/// single writer already runs this whole job without any other write in between; the
/// re-check keeps the rule in the statements themselves, as on PostgreSQL.)
pub fn purge_finished(conn: &Connection, before: i64, limit: usize) -> Result<u64, StoreError> {
    let ids: Vec<i64> = {
        let mut select = conn.prepare_cached(
            "SELECT e.id FROM events e
             WHERE e.received_at < ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.event_id = e.id AND d.state = 'pending')
             ORDER BY e.id LIMIT ?2",
        )?;
        let rows = select.query_map(params![before, limit as i64], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    const FINISHED: &str =
        "NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.event_id = ?1 AND p.state = 'pending')";
    let mut deleted = 0;
    for id in &ids {
        conn.prepare_cached(&format!(
            "DELETE FROM attempts
             WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?1) AND {FINISHED}"
        ))?
        .execute([id])?;
        conn.prepare_cached(&format!(
            "DELETE FROM deliveries WHERE event_id = ?1 AND {FINISHED}"
        ))?
        .execute([id])?;
        deleted += conn
            .prepare_cached(
                "DELETE FROM events
                 WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
            )?
            .execute([id])?;
    }
    Ok(deleted as u64)
}

/// Empties the payloads of finished events received before `before`, up to `limit` events
/// past the purge's cursor (store/retention.rs), and moves the cursor. One job of the
/// writer: about ten milliseconds for a batch of a thousand.
pub fn purge_payloads(
    conn: &Connection,
    before: i64,
    limit: usize,
    now: i64,
) -> Result<PayloadPurge, StoreError> {
    let cursor: i64 = conn
        .prepare_cached("SELECT value FROM maintenance WHERE name = ?1")?
        .query_row([PAYLOAD_CURSOR], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let next: Vec<(i64, i64)> = {
        let mut select = conn.prepare_cached(
            "SELECT id, received_at FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = select.query_map(params![cursor, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let Some((through, examined)) = batch_end(&next, before) else {
        return Ok(PayloadPurge::default());
    };
    let purged = conn
        .prepare_cached(&rewrite_without_payloads(conn)?)?
        .execute(params![cursor, through, now])?;
    conn.prepare_cached(
        "INSERT INTO maintenance (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![PAYLOAD_CURSOR, through])?;
    Ok(PayloadPurge {
        examined,
        purged: purged as u64,
    })
}

/// The statement that rewrites the finished, unpurged events with ids in `(?1, ?2]` with an
/// empty payload, purged at `?3`.
///
/// It is a `REPLACE` of each row, not an `UPDATE`: SQLite shrinks an updated row in its page
/// but never merges pages that only updates emptied, and new events are appended after
/// them, so the freed bytes would stay unused. A row replaced is deleted first, which merges
/// the emptied pages and puts the spare ones on the free list, where new rows reuse them.
/// The columns are read from the schema, so a column a later migration adds is copied too.
fn rewrite_without_payloads(conn: &Connection) -> Result<String, StoreError> {
    let mut info = conn.prepare_cached("SELECT name FROM pragma_table_info('events')")?;
    let columns: Vec<String> = info
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let values: Vec<&str> = columns
        .iter()
        .map(|column| match column.as_str() {
            "payload" => "X''",
            "payload_purged_at" => "?3",
            other => other,
        })
        .collect();
    Ok(format!(
        "REPLACE INTO events ({}) SELECT {} FROM events
         WHERE id > ?1 AND id <= ?2 AND payload_purged_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM deliveries d
                           WHERE d.event_id = events.id AND d.state = 'pending')",
        columns.join(", "),
        values.join(", ")
    ))
}
