//! Maintenance: retention. Events whose deliveries are all finished are deleted, with their
//! deliveries and attempts, once they are older than `--retention-days`, so the database
//! does not grow without bound; their payloads, most of the bytes, are emptied sooner, after
//! `--payload-retention-hours`. Both run at start and then periodically, in small batches
//! (each one job of the writer, or one short transaction) so they never hold the writer for
//! long: other writes queue between two batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Events deleted per transaction.
const BATCH: usize = 1_000;
/// Events whose payloads one batch of the payload purge looks at.
pub const PAYLOAD_BATCH: usize = 1_000;
/// Time between two purges of old events.
const INTERVAL: Duration = Duration::from_secs(3_600);
/// Time between two payload purges: they follow a cursor, so a pass with nothing to do
/// costs one indexed read, and frequent passes keep each one short.
const PAYLOAD_INTERVAL: Duration = Duration::from_secs(60);

/// How long finished events and their payloads are kept (`None`: forever).
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// Events, with their deliveries and attempts (`--retention-days`).
    pub events: Option<Duration>,
    /// Payloads (`--payload-retention-hours`).
    pub payloads: Option<Duration>,
}

/// Purges now, then payloads every minute and events every hour, until `shutdown`.
pub async fn purge_periodically(
    store: Arc<dyn Store>,
    retention: Retention,
    shutdown: CancellationToken,
) {
    let mut events_purged_at: Option<Instant> = None;
    loop {
        if let Some(payloads) = retention.payloads {
            purge_payloads_once(store.as_ref(), payloads, &shutdown).await;
        }
        if let Some(events) = retention.events {
            if events_purged_at.is_none_or(|at| at.elapsed() >= INTERVAL) {
                purge_once(store.as_ref(), events, &shutdown).await;
                events_purged_at = Some(Instant::now());
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PAYLOAD_INTERVAL) => {}
        }
    }
}

/// The time (ms since the epoch) before which what is kept for `retention` is due.
fn bound(retention: Duration) -> i64 {
    crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)
}

/// Deletes every finished event older than `retention`, batch by batch; returns how many.
pub async fn purge_once(
    store: &dyn Store,
    retention: Duration,
    shutdown: &CancellationToken,
) -> u64 {
    let before = bound(retention);
    let deleted = in_batches(shutdown, "retention: cannot delete old events", || async {
        let count = store.purge_finished(before, BATCH).await?;
        Ok((count > 0).then_some(count))
    })
    .await;
    if deleted > 0 {
        tracing::info!(deleted, "retention: old finished events deleted");
    }
    deleted
}

/// Empties the payloads of every finished event older than `retention`, batch by batch
/// from where the last pass stopped; returns how many.
pub async fn purge_payloads_once(
    store: &dyn Store,
    retention: Duration,
    shutdown: &CancellationToken,
) -> u64 {
    let before = bound(retention);
    let purged = in_batches(
        shutdown,
        "payload retention: cannot purge old payloads",
        || async {
            let now = crate::clock::now_ms();
            let batch = store.purge_payloads(before, PAYLOAD_BATCH, now).await?;
            Ok((batch.examined > 0).then_some(batch.purged))
        },
    )
    .await;
    if purged > 0 {
        tracing::info!(
            purged,
            "payload retention: payloads of old finished events purged"
        );
    }
    purged
}

/// Runs `batch` until it says there is nothing left (`None`), fails (logged with `failure`)
/// or the service stops; returns the sum of what the batches counted.
async fn in_batches<F, Fut>(shutdown: &CancellationToken, failure: &str, mut batch: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<u64>, crate::store::StoreError>>,
{
    let mut total = 0;
    while !shutdown.is_cancelled() {
        match batch().await {
            Ok(Some(count)) => total += count,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "{failure}");
                break;
            }
        }
    }
    total
}
