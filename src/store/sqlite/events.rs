//! SQL of event lists and retention.

use rusqlite::{params, Connection, Row};

use crate::domain::{ChannelId, EventId, EventKind, PartnerId};
use crate::store::{EventFilter, EventSummary, StoreError};

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

/// Deletes finished events older than `before`, with their deliveries and attempts.
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
    for id in &ids {
        conn.prepare_cached(
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?1)",
        )?
        .execute([id])?;
        conn.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM events WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(ids.len() as u64)
}
