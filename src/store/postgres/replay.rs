//! SQL of the live stream's replay on PostgreSQL: events and attempts after a cursor, by id.

use deadpool_postgres::Transaction;

use crate::store::payload;

use crate::store::decode::{event_summary, stored_attempt, SUMMARY_COLUMNS};
use crate::store::replay_sql::{attempts_sql, events_sql};
use crate::store::{Replay, ReplayFrom, StoreError, StoredEvent};

/// The events and attempts after `from`, at most `limit` of each, oldest first.
///
/// Ids are taken in transaction order, not commit order: an id below the cursor may commit
/// after a higher one was told, and such a row is not replayed (docs/ARCHITECTURE.md).
pub async fn replay(
    tx: &Transaction<'_>,
    from: ReplayFrom,
    limit: usize,
) -> Result<Replay, StoreError> {
    let limit = limit as i64;
    let rows = tx
        .query(
            &events_sql(SUMMARY_COLUMNS, "$1", "$2"),
            &[&from.event.0, &limit],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let summary = event_summary(&row)?;
        let id = summary.id;
        events.push(StoredEvent {
            payload: payload::unpack(row.try_get(6)?, || format!("event {id}"))?,
            summary,
        });
    }
    let rows = tx
        .query(&attempts_sql("$1", "$2"), &[&from.attempt.0, &limit])
        .await?;
    let attempts = rows.iter().map(stored_attempt).collect::<Result<_, _>>()?;
    Ok(Replay { events, attempts })
}
