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
            () = tokio::time::sleep(PAYLOAD_INTERVAL.min(INTERVAL)) => {}
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
    let mut deleted = 0;
    while !shutdown.is_cancelled() {
        match store.purge_finished(before, BATCH).await {
            Ok(0) => break,
            Ok(count) => deleted += count,
            Err(error) => {
                tracing::warn!(%error, "retention: cannot delete old events");
                break;
            }
        }
    }
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
    let mut purged = 0;
    while !shutdown.is_cancelled() {
        let now = crate::clock::now_ms();
        match store.purge_payloads(before, PAYLOAD_BATCH, now).await {
            Ok(batch) if batch.examined == 0 => break,
            Ok(batch) => purged += batch.purged,
            Err(error) => {
                tracing::warn!(%error, "payload retention: cannot purge old payloads");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::info!(
            purged,
            "payload retention: payloads of old finished events purged"
        );
    }
    purged
}
