//! SQL of recovery over a time window on PostgreSQL (`Store::recover_deliveries`); the rules
//! are the SQLite backend's (see its `recover` module), except that the re-queue locks the
//! matching rows in id order first, as the bulk replay and retention lock them, so it cannot
//! deadlock with the purge.

use deadpool_postgres::Transaction;

use super::deliveries::REQUEUE;
use super::Param;
use crate::domain::{ChannelId, DestinationId};
use crate::store::urls::destination_of;
use crate::store::{RecoverFilter, StoreError};

/// The condition on `deliveries d` joined with `events e` that a filter matches, with its
/// five parameters (see [`bind`]) numbered from `$first`; never pending deliveries, which
/// are queued already, nor those whose payload was purged, which cannot be sent again. A delivery matches a destination when one of its attempts went to a
/// URL of it.
fn matching(first: usize) -> String {
    let (since, until, states, channel, destination) =
        (first, first + 1, first + 2, first + 3, first + 4);
    format!(
        "e.received_at >= ${since} AND e.received_at < ${until}
         AND d.state = ANY(${states}::text[]) AND d.state <> 'pending'
         AND e.payload_purged_at IS NULL
         AND (${channel}::text IS NULL OR d.channel_id = ${channel})
         AND (${destination}::text IS NULL
              OR EXISTS (SELECT 1 FROM attempts a JOIN attempt_urls u ON u.id = a.url_id
                         WHERE a.delivery_id = d.id AND u.destination = ${destination}))"
    )
}

/// How many deliveries `filter` matches.
pub async fn count(tx: &Transaction<'_>, filter: &RecoverFilter) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE {}",
        matching(1)
    );
    let (states, channel, destination) = bind(filter);
    let params: [&Param<'_>; 5] = [
        &filter.since,
        &filter.until,
        &states,
        &channel,
        &destination,
    ];
    let row = tx.query_one(&sql, &params).await?;
    Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
}

/// Re-queues the deliveries `filter` matches, as a replay does (due `now`, a new age
/// window); returns how many. One statement: the matching rows are locked in id order (as
/// retention locks them), then the state is checked again on the locked rows.
pub async fn requeue(
    tx: &Transaction<'_>,
    filter: &RecoverFilter,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE id IN (SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id
                      WHERE {}
                      ORDER BY d.id FOR UPDATE OF d)
           AND state = ANY($4::text[]) AND state <> 'pending'",
        matching(2)
    );
    let (states, channel, destination) = bind(filter);
    let params: [&Param<'_>; 6] = [
        &now,
        &filter.since,
        &filter.until,
        &states,
        &channel,
        &destination,
    ];
    let requeued = tx.execute(&sql, &params).await?;
    if requeued > 0 {
        super::ordering::hold_behind_heads(tx, None).await?;
    }
    Ok(requeued)
}

/// The filter's states, channel and destination as parameters.
fn bind(filter: &RecoverFilter) -> (Vec<&'static str>, Option<&str>, Option<&str>) {
    (
        filter.states.iter().map(|s| s.as_str()).collect(),
        filter.channel.as_ref().map(ChannelId::as_str),
        filter.destination.as_ref().map(DestinationId::as_str),
    )
}

/// Fills the destination of attempt URLs stored before it was recorded (one row per
/// distinct URL, so few); run at open (by every node: the update is idempotent). Text that
/// is not a URL keeps none.
pub async fn backfill_destinations(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let missing = tx
        .query(
            "SELECT id, url FROM attempt_urls WHERE destination IS NULL",
            &[],
        )
        .await?;
    let update = tx
        .prepare("UPDATE attempt_urls SET destination = $1 WHERE id = $2 AND destination IS NULL")
        .await?;
    let mut filled = 0;
    for row in missing {
        let (id, url): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        if let Some(destination) = destination_of(&url) {
            filled += tx.execute(&update, &[&destination, &id]).await?;
        }
    }
    Ok(filled)
}
