//! SQL of the live stream's replay on SQLite: events and attempts after a cursor, by id.

use rusqlite::{params, Connection};

use super::events::collect;
use crate::store::decode::{event_summary, stored_attempt, SUMMARY_COLUMNS};
use crate::store::payload;
use crate::store::replay_sql::{attempts_sql, events_sql};
use crate::store::{Replay, ReplayFrom, StoreError, StoredEvent};

/// The events and attempts after `from`, at most `limit` of each, oldest first.
pub fn replay(conn: &Connection, from: ReplayFrom, limit: usize) -> Result<Replay, StoreError> {
    let limit = limit as i64;
    let mut statement = conn.prepare_cached(&events_sql(SUMMARY_COLUMNS, "?1", "?2"))?;
    let events = collect(&mut statement, params![from.event.0, limit], |row| {
        let summary = event_summary(row)?;
        let id = summary.id;
        Ok(StoredEvent {
            payload: payload::unpack(row.get(6)?, || format!("event {id}"))?,
            summary,
        })
    })?;
    let mut statement = conn.prepare_cached(&attempts_sql("?1", "?2"))?;
    let attempts = collect(&mut statement, params![from.attempt.0, limit], |row| {
        stored_attempt(row)
    })?;
    Ok(Replay { events, attempts })
}
