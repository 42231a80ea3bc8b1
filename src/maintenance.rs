//! Maintenance: retention. Events whose deliveries are all finished are deleted, with their
//! deliveries and attempts, once they are older than `--retention-days`, so the database
//! does not grow without bound. Runs at start and then every hour, in small batches so it
//! never holds the writer for long.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Events deleted per transaction.
const BATCH: usize = 1_000;
/// Time between two purges.
const INTERVAL: Duration = Duration::from_secs(3_600);

/// Purges now and then every hour until `shutdown`.
pub async fn purge_periodically(
    store: Arc<dyn Store>,
    retention: Duration,
    shutdown: CancellationToken,
) {
    loop {
        purge_once(store.as_ref(), retention, &shutdown).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

/// Deletes every finished event older than `retention`, batch by batch; returns how many.
pub async fn purge_once(
    store: &dyn Store,
    retention: Duration,
    shutdown: &CancellationToken,
) -> u64 {
    let before = crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
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
