//! SQL of the live stream's replay on SQLite: events and attempts after a cursor, by id.

use bytes::Bytes;
use rusqlite::{params, Connection, Row};

use super::events::{summary_from_row, SUMMARY_COLUMNS};
use crate::domain::{AttemptId, ChannelId, DeliveryId, DeliveryState, EventId, Target};
use crate::store::columns::parse_error_kind;
use crate::store::replay_sql::{attempts_sql, ended, events_sql};
use crate::store::{AttemptRecord, Replay, ReplayFrom, StoreError, StoredAttempt, StoredEvent};

/// The events and attempts after `from`, at most `limit` of each, oldest first.
pub fn replay(conn: &Connection, from: ReplayFrom, limit: usize) -> Result<Replay, StoreError> {
    let limit = limit as i64;
    let mut statement = conn.prepare_cached(&events_sql(SUMMARY_COLUMNS, "?1", "?2"))?;
    let events = statement
        .query_map(params![from.event.0, limit], |row| {
            Ok(StoredEvent {
                summary: summary_from_row(row)?,
                payload: Bytes::from(row.get::<_, Vec<u8>>(6)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut statement = conn.prepare_cached(&attempts_sql("?1", "?2"))?;
    let attempts = statement
        .query_map(params![from.attempt.0, limit], attempt_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Replay { events, attempts })
}

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<StoredAttempt> {
    let target: String = row.get(4)?;
    let state: String = row.get(5)?;
    let state = DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending);
    let error: Option<String> = row.get(11)?;
    Ok(StoredAttempt {
        id: AttemptId(row.get(0)?),
        delivery: DeliveryId(row.get(1)?),
        event: EventId(row.get(2)?),
        channel: row.get::<_, Option<String>>(3)?.map(ChannelId::from_raw),
        target: Target::from_stored(&target).unwrap_or(Target::Primary),
        record: AttemptRecord {
            number: row.get(6)?,
            started_at: row.get(7)?,
            duration_ms: row.get(8)?,
            url: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
            status: row.get(10)?,
            error: error.as_deref().and_then(parse_error_kind),
            response_excerpt: row.get(12)?,
            retry_after_ms: row.get(13)?,
        },
        ended: ended(state, row.get(14)?),
    })
}
