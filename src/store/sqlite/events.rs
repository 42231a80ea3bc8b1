//! SQL of the read side (an event with its deliveries and attempts, paged lists, the queue
//! depth) and of retention.

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{ChannelId, DeliveryId, DeliveryState, EventId, EventKind, PartnerId, Target};
use crate::store::columns::parse_error_kind;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, EventFilter, EventRecord, EventSummary,
    StoreError,
};

/// The columns [`summary_from_row`] reads, in its order.
pub const SUMMARY_COLUMNS: &str = "id, kind, channel_id, partner_id, phone_number_id, received_at";

/// An event's summary from the first columns of a row selecting [`SUMMARY_COLUMNS`].
pub fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<EventSummary> {
    let kind: String = row.get(1)?;
    Ok(EventSummary {
        id: EventId(row.get(0)?),
        kind: EventKind::parse(&kind).unwrap_or(EventKind::Unroutable),
        channel: row.get::<_, Option<String>>(2)?.map(ChannelId::from_raw),
        partner: row.get::<_, Option<String>>(3)?.map(PartnerId::from_raw),
        phone_number_id: row.get(4)?,
        received_at: row.get(5)?,
    })
}

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
    let rows = statement.query_map(
        params![filter.after.map_or(0, |id| id.0), filter.limit as i64],
        summary_from_row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
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
        "SELECT a.number, a.started_at, a.duration_ms, coalesce(u.url, a.url), a.status,
                a.error, a.response_excerpt, a.retry_after_ms
         FROM attempts a LEFT JOIN attempt_urls u ON u.id = a.url_id
         WHERE a.delivery_id = ?1 ORDER BY a.id",
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
            retry_after_ms: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
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
