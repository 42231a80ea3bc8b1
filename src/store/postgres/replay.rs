//! SQL of the live stream's replay on PostgreSQL: events and attempts after a cursor, by id.

use bytes::Bytes;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::deliveries::count;
use super::inspect::{summary_from_row, SUMMARY_COLUMNS};
use crate::domain::{AttemptId, ChannelId, DeliveryId, DeliveryState, EventId, Target};
use crate::store::columns::parse_error_kind;
use crate::store::replay_sql::{attempts_sql, ended, events_sql};
use crate::store::{AttemptRecord, Replay, ReplayFrom, StoreError, StoredAttempt, StoredEvent};

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
        events.push(StoredEvent {
            summary: summary_from_row(&row)?,
            payload: Bytes::from(row.try_get::<_, Vec<u8>>(6)?),
        });
    }
    let rows = tx
        .query(&attempts_sql("$1", "$2"), &[&from.attempt.0, &limit])
        .await?;
    let attempts = rows
        .iter()
        .map(attempt_from_row)
        .collect::<Result<_, _>>()?;
    Ok(Replay { events, attempts })
}

fn attempt_from_row(row: &Row) -> Result<StoredAttempt, StoreError> {
    let target: String = row.try_get(4)?;
    let state: String = row.try_get(5)?;
    let state = DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending);
    let error: Option<String> = row.try_get(11)?;
    let status: Option<i64> = row.try_get(10)?;
    Ok(StoredAttempt {
        id: AttemptId(row.try_get(0)?),
        delivery: DeliveryId(row.try_get(1)?),
        event: EventId(row.try_get(2)?),
        channel: row
            .try_get::<_, Option<String>>(3)?
            .map(ChannelId::from_raw),
        target: Target::from_stored(&target).unwrap_or(Target::Primary),
        record: AttemptRecord {
            number: count(row.try_get(6)?),
            started_at: row.try_get(7)?,
            duration_ms: row.try_get(8)?,
            url: row.try_get::<_, Option<String>>(9)?.unwrap_or_default(),
            status: status.and_then(|s| u16::try_from(s).ok()),
            error: error.as_deref().and_then(parse_error_kind),
            response_excerpt: row.try_get(12)?,
            retry_after_ms: row.try_get(13)?,
        },
        ended: ended(state, row.try_get::<_, Option<bool>>(14)?.unwrap_or(false)),
    })
}
