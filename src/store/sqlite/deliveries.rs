//! SQL of events, deliveries and attempts. Each function runs inside the caller's
//! transaction (the writer's group commit, or a reader's snapshot).
//!
//! A lease is a pushed-forward `next_attempt_at` plus a `leased_until` marker: leased rows
//! are not due, so the due index never scans in-flight work, and a crashed node's leases
//! simply come due again (or are released at start by a single-node store).

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::events::{summary_from_row, SUMMARY_COLUMNS};
use super::now_ms;
use crate::domain::{
    AttemptErrorKind, ChannelId, DeliveryId, DeliveryState, EventId, PartnerId, Target,
};
use crate::store::columns::parse_error_kind;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DueDelivery, EventBody, EventRecord, NewEvent,
    Outcome, SavedEvent, Settlement, StoreError,
};

/// Inserts events and their first deliveries (primary for WhatsApp events with a channel,
/// partner for partner events); renders partner event bodies once their id is known.
pub fn save_events(
    conn: &Connection,
    events: &[NewEvent],
    claim_until: Option<i64>,
) -> Result<Vec<SavedEvent>, StoreError> {
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut saved = Vec::with_capacity(events.len());
    for event in events {
        let known = match &event.body {
            EventBody::Bytes(bytes) => bytes.clone(),
            EventBody::Partner(_) => Bytes::new(),
        };
        insert_event.execute(params![
            event.kind.as_str(),
            event.channel.as_ref().map(ChannelId::as_str),
            event.partner.as_ref().map(PartnerId::as_str),
            event.phone_number_id,
            known.as_ref(),
            event.received_at,
        ])?;
        let id = EventId(conn.last_insert_rowid());
        let payload = match &event.body {
            EventBody::Bytes(_) => known,
            EventBody::Partner(partner_event) => {
                let rendered = partner_event.render(id);
                conn.prepare_cached("UPDATE events SET payload = ?1 WHERE id = ?2")?
                    .execute(params![rendered.as_ref(), id.0])?;
                rendered
            }
        };
        let delivery = match event.first_target() {
            Some(target) => Some(insert_delivery(
                conn,
                id,
                (event.channel.as_ref(), event.partner.as_ref()),
                &target,
                event.received_at,
                claim_until,
            )?),
            None => None,
        };
        saved.push(SavedEvent {
            event: id,
            delivery,
            payload,
        });
    }
    Ok(saved)
}

fn insert_delivery(
    conn: &Connection,
    event: EventId,
    (channel, partner): (Option<&ChannelId>, Option<&PartnerId>),
    target: &Target,
    window_start: i64,
    claim_until: Option<i64>,
) -> Result<DeliveryId, StoreError> {
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO deliveries (event_id, channel_id, partner_id, target, state, next_attempt_at,
                                 leased_until, window_start, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        event.0,
        channel.map(ChannelId::as_str),
        partner.map(PartnerId::as_str),
        target.to_stored(),
        claim_until.unwrap_or(now),
        claim_until,
        window_start,
        now,
    ])?;
    Ok(DeliveryId(conn.last_insert_rowid()))
}

/// Leases due deliveries (see the module doc) and returns them with their payloads.
pub fn claim_due(
    conn: &Connection,
    now: i64,
    (limit, max_bytes): (usize, usize),
    lease_until: i64,
) -> Result<Vec<DueDelivery>, StoreError> {
    let due = {
        let mut select = conn.prepare_cached(
            "SELECT d.id, d.event_id, d.channel_id, d.target, d.attempts, d.window_start,
                    d.window_attempts, e.payload, d.partner_id
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?1
             ORDER BY d.next_attempt_at LIMIT ?2",
        )?;
        let rows = select.query_map(params![now, limit as i64], due_from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut lease = conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?1, leased_until = ?1 WHERE id = ?2",
    )?;
    let mut claimed = Vec::with_capacity(due.len());
    let mut bytes = 0;
    for row in due {
        let delivery = match row {
            Due::Readable(delivery) => delivery,
            Due::Unreadable(id, target) => {
                fail_unreadable(conn, id, &target)?;
                continue;
            }
        };
        bytes += delivery.memory_cost();
        if bytes > max_bytes {
            break;
        }
        lease.execute(params![lease_until, delivery.id.0])?;
        claimed.push(delivery);
    }
    Ok(claimed)
}

/// A due row, or the id and target of one whose target this version cannot read.
enum Due {
    Readable(DueDelivery),
    Unreadable(DeliveryId, String),
}

/// A delivery whose target cannot be read (written by another version, or damaged) can
/// never be attempted: it is failed with the reason, so it does not sit at the head of the
/// queue and take a claim's place every poll.
fn fail_unreadable(conn: &Connection, id: DeliveryId, target: &str) -> Result<(), StoreError> {
    tracing::warn!(delivery = %id, target, "delivery with an unreadable target marked failed");
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'failed', leased_until = NULL, last_error = ?1,
                               updated_at = ?2
         WHERE id = ?3",
    )?
    .execute(params![
        format!("unreadable target {target:?}: this version cannot deliver it"),
        now_ms(),
        id.0
    ])?;
    Ok(())
}

fn due_from_row(row: &Row<'_>) -> rusqlite::Result<Due> {
    let target: String = row.get(3)?;
    let Some(parsed) = Target::from_stored(&target) else {
        return Ok(Due::Unreadable(DeliveryId(row.get(0)?), target));
    };
    let target = parsed;
    let payload: Vec<u8> = row.get(7)?;
    Ok(Due::Readable(DueDelivery {
        id: DeliveryId(row.get(0)?),
        event: EventId(row.get(1)?),
        channel: row.get::<_, Option<String>>(2)?.map(ChannelId::from_raw),
        partner: row.get::<_, Option<String>>(8)?.map(PartnerId::from_raw),
        target,
        attempts: row.get(4)?,
        window_start: row.get(5)?,
        window_attempts: row.get(6)?,
        payload: Bytes::from(payload),
    }))
}

/// Makes every leased delivery due now.
pub fn release_leases(conn: &Connection) -> Result<u64, StoreError> {
    let released = conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?1, leased_until = NULL
         WHERE state = 'pending' AND leased_until IS NOT NULL",
        [now_ms()],
    )?;
    Ok(released as u64)
}

/// Pushes the leases of `held` forward to `until`; settled ones (no lease) stay settled.
pub fn renew_leases(conn: &Connection, held: &[DeliveryId], until: i64) -> Result<u64, StoreError> {
    let mut renew = conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?1, leased_until = ?1
         WHERE id = ?2 AND state = 'pending' AND leased_until IS NOT NULL",
    )?;
    let mut renewed = 0;
    for id in held {
        renewed += renew.execute(params![until, id.0])? as u64;
    }
    Ok(renewed)
}

/// Makes parked deliveries due now (see `Store::wake_deliveries`).
pub fn wake_deliveries(
    conn: &Connection,
    parked: &[DeliveryId],
    now: i64,
) -> Result<u64, StoreError> {
    let mut wake = conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?1
         WHERE id = ?2 AND state = 'pending' AND leased_until IS NULL AND next_attempt_at > ?1",
    )?;
    let mut woken = 0;
    for id in parked {
        woken += wake.execute(params![now, id.0])? as u64;
    }
    Ok(woken)
}

/// Records an attempt and its settlement; returns the extra deliveries created.
pub fn settle(
    conn: &Connection,
    outcome: &Outcome,
) -> Result<Vec<(DeliveryId, Target)>, StoreError> {
    let id = outcome.delivery.0;
    let now = now_ms();
    let counted = i64::from(outcome.attempt.is_some());
    if let Some(attempt) = &outcome.attempt {
        insert_attempt(conn, outcome.delivery, attempt)?;
    }
    let update = |state: DeliveryState, next: i64, error: Option<&str>| {
        conn.prepare_cached(
            "UPDATE deliveries SET state = ?1, attempts = attempts + ?2, next_attempt_at = ?3,
                    leased_until = NULL, last_error = ?4, updated_at = ?5
             WHERE id = ?6",
        )?
        .execute(params![state.as_str(), counted, next, error, now, id])
    };
    match &outcome.settlement {
        Settlement::Delivered {
            extras,
            claim_until,
        } => {
            update(DeliveryState::Delivered, now, None)?;
            if extras.is_empty() {
                return Ok(Vec::new());
            }
            let (event, channel): (i64, Option<String>) = conn.query_row(
                "SELECT event_id, channel_id FROM deliveries WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let channel = channel.map(ChannelId::from_raw);
            let mut created = Vec::with_capacity(extras.len());
            for name in extras {
                let target = Target::Extra(name.clone());
                let extra = insert_delivery(
                    conn,
                    EventId(event),
                    (channel.as_ref(), None),
                    &target,
                    now,
                    *claim_until,
                )?;
                created.push((extra, target));
            }
            return Ok(created);
        }
        Settlement::Retry { at, error } => update(DeliveryState::Pending, *at, Some(error))?,
        Settlement::GaveUp { error } => update(DeliveryState::Failed, now, Some(error))?,
        Settlement::Dropped { reason } => update(DeliveryState::Dropped, now, Some(reason))?,
        Settlement::Deferred { at } => conn
            .prepare_cached(
                "UPDATE deliveries SET next_attempt_at = ?1, leased_until = NULL WHERE id = ?2",
            )?
            .execute(params![at, id])?,
    };
    Ok(Vec::new())
}

fn insert_attempt(
    conn: &Connection,
    delivery: DeliveryId,
    attempt: &AttemptRecord,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, url, status, error,
                               response_excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        delivery.0,
        attempt.number,
        attempt.started_at,
        attempt.duration_ms,
        attempt.url,
        attempt.status,
        attempt.error.map(AttemptErrorKind::as_str),
        attempt.response_excerpt,
    ])?;
    Ok(())
}

/// The columns a replay resets: due now, new age window, lease cleared.
const REQUEUE: &str = "state = 'pending', next_attempt_at = ?1, leased_until = NULL, \
     window_start = ?1, window_attempts = attempts, updated_at = ?1";

/// Re-queues every failed (or dropped) delivery, optionally of one channel or partner.
pub fn retry_deliveries(
    conn: &Connection,
    state: DeliveryState,
    channel: Option<&ChannelId>,
    partner: Option<&PartnerId>,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE state = ?2 AND (?3 IS NULL OR channel_id = ?3) AND (?4 IS NULL OR partner_id = ?4)"
    );
    let changed = conn.execute(
        &sql,
        params![
            now,
            state.as_str(),
            channel.map(ChannelId::as_str),
            partner.map(PartnerId::as_str),
        ],
    )?;
    Ok(changed as u64)
}

/// Re-queues a failed or dropped delivery with a fresh age window.
pub fn retry_delivery(conn: &Connection, id: DeliveryId, now: i64) -> Result<(), StoreError> {
    let sql =
        format!("UPDATE deliveries SET {REQUEUE} WHERE id = ?2 AND state IN ('failed', 'dropped')");
    let changed = conn.execute(&sql, params![now, id.0])?;
    if changed == 1 {
        return Ok(());
    }
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM deliveries WHERE id = ?1",
            [id.0],
            |row| row.get(0),
        )
        .optional()?;
    match state {
        None => Err(StoreError::NotFound {
            what: "delivery",
            id: id.to_string(),
        }),
        Some(state) => Err(StoreError::Conflict(format!(
            "Delivery {id} is {state}: only failed or dropped deliveries can be retried"
        ))),
    }
}

const DELIVERY_COLUMNS: &str = "id, event_id, channel_id, target, state, attempts, \
     next_attempt_at, last_error, updated_at, partner_id";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let target: String = row.get(3)?;
    let state: String = row.get(4)?;
    Ok(DeliveryRecord {
        id: DeliveryId(row.get(0)?),
        event: EventId(row.get(1)?),
        channel: row.get::<_, Option<String>>(2)?.map(ChannelId::from_raw),
        partner: row.get::<_, Option<String>>(9)?.map(PartnerId::from_raw),
        target: Target::from_stored(&target).unwrap_or(Target::Primary),
        state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending),
        attempts: row.get(5)?,
        next_attempt_at: row.get(6)?,
        last_error: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

/// An event, its deliveries and their attempts.
pub fn event(conn: &Connection, id: EventId) -> Result<Option<EventRecord>, StoreError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, payload FROM events WHERE id = ?1");
    let row = conn
        .query_row(&sql, [id.0], |row| {
            Ok((summary_from_row(row)?, row.get::<_, Vec<u8>>(6)?))
        })
        .optional()?;
    let Some((summary, payload)) = row else {
        return Ok(None);
    };
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?1 ORDER BY id");
    let mut statement = conn.prepare(&sql)?;
    let deliveries = statement
        .query_map([id.0], delivery_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut with_attempts = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let attempts = attempts_of(conn, delivery.id)?;
        with_attempts.push((delivery, attempts));
    }
    Ok(Some(EventRecord {
        summary,
        payload: Bytes::from(payload),
        deliveries: with_attempts,
    }))
}

fn attempts_of(conn: &Connection, delivery: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT number, started_at, duration_ms, url, status, error, response_excerpt
         FROM attempts WHERE delivery_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([delivery.0], |row| {
        let error: Option<String> = row.get(5)?;
        Ok(AttemptRecord {
            number: row.get(0)?,
            started_at: row.get(1)?,
            duration_ms: row.get(2)?,
            url: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
            status: row.get(4)?,
            error: error.as_deref().and_then(parse_error_kind),
            response_excerpt: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deliveries by ascending id, filtered.
pub fn deliveries(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR channel_id = ?2) AND id > ?3
         ORDER BY id LIMIT ?4"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        params![
            filter.state.map(DeliveryState::as_str),
            filter.channel.as_ref().map(ChannelId::as_str),
            filter.after.map_or(0, |id| id.0),
            filter.limit as i64,
        ],
        delivery_from_row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many deliveries are in `state`.
pub fn count_by_state(conn: &Connection, state: DeliveryState) -> Result<u64, StoreError> {
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE state = ?1",
        [state.as_str()],
        |row| row.get(0),
    )?;
    Ok(count as u64)
}
