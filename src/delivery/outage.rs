//! Outages of the database, as this node sees them: one state for the whole node, so an
//! outage is logged once when it begins (warn, with its cause) and once when it ends (info,
//! with how long it lasted), and the engine pauses meanwhile.
//!
//! Any store call of the engine, of ingest or of `/ready` that fails as
//! [`StoreError::Unavailable`] begins an outage. Only the poller's probe ends it
//! (`Engine::probe_store`: a real write, then the renewal of every lease held in memory), so
//! a call that happens to succeed during an outage (a read, while a full SQLite disk still
//! refuses writes) cannot make the state flap. While it lasts no new attempt starts (what
//! was sent could not be recorded), nothing is claimed, and the settles of attempts already
//! made wait to be written when the database is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::StoreError;

/// The longest wait of one engine write (a claim, a renewal, a settle) before it counts as an
/// outage: far above their usual milliseconds, so a slow moment of a loaded machine is not
/// taken for one.
pub const ENGINE_WAIT: Duration = Duration::from_secs(10);

/// The first wait between two probes of an unavailable store; it doubles up to
/// [`PROBE_MAX`].
pub const PROBE_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two probes: how late the engine may resume after the database
/// is back.
pub const PROBE_MAX: Duration = Duration::from_secs(2);

/// Whether the database is available, shared by the engine, ingest and `/ready`.
pub struct Outage {
    /// When the current outage began (`None`: the database is available). Guards the
    /// transitions, so each is logged once.
    since: Mutex<Option<Instant>>,
    /// `true` while the database is available; paused tasks wait for it.
    up: watch::Sender<bool>,
    /// `switchboard_store_up` and the outage count.
    metrics: Arc<Metrics>,
}

impl Outage {
    /// An available database, reported into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            since: Mutex::new(None),
            up: watch::Sender::new(true),
            metrics,
        }
    }

    /// A store call failed: when it failed because the database is unavailable, the outage
    /// begins (logged if it was not already on). Returns whether it was that.
    pub fn failed(&self, error: &StoreError) -> bool {
        if !error.is_unavailable() {
            return false;
        }
        let mut since = self.lock();
        if since.is_none() {
            *since = Some(Instant::now());
            self.up.send_replace(false);
            self.metrics.store_up(false);
            tracing::warn!(
                cause = %crate::error_chain(error),
                "the database is unavailable: ingest answers 503, deliveries pause until it is back"
            );
        }
        true
    }

    /// The probe succeeded: the outage, if one was on, ends (logged with its length).
    pub fn recovered(&self) {
        let mut since = self.lock();
        if let Some(began) = since.take() {
            self.up.send_replace(true);
            self.metrics.store_up(true);
            let down_ms = began.elapsed().as_millis() as u64;
            tracing::info!(
                down_ms,
                "the database is available again; deliveries resume"
            );
        }
    }

    /// Whether the database is available (no outage on).
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Waits until the database is available (at once if it is); `false` when `stop` or
    /// `lost` was cancelled first.
    pub async fn until_up(&self, stop: &CancellationToken, lost: &CancellationToken) -> bool {
        if self.is_up() {
            return true;
        }
        let mut up = self.up.subscribe();
        tokio::select! {
            seen = up.wait_for(|up| *up) => seen.is_ok(),
            () = stop.cancelled() => false,
            () = lost.cancelled() => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The wait before the probe after one that waited `previous`: doubled, at most
/// [`PROBE_MAX`].
pub fn next_probe_wait(previous: Duration) -> Duration {
    (previous * 2).min(PROBE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> StoreError {
        StoreError::unavailable("connection refused")
    }

    #[tokio::test]
    async fn an_outage_begins_once_and_only_recovery_ends_it() {
        let metrics = Arc::new(Metrics::default());
        let outage = Outage::new(Arc::clone(&metrics));
        assert!(!outage.failed(&StoreError::Conflict("x".into())));
        assert!(outage.is_up());
        assert!(outage.failed(&unavailable()));
        assert!(outage.failed(&unavailable()));
        assert!(!outage.is_up());
        let never = CancellationToken::new();
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!outage.until_up(&stop, &never).await);
        outage.recovered();
        assert!(outage.until_up(&never, &never).await);
        let text = metrics.render(None, Default::default(), None);
        assert!(text.contains("switchboard_store_up 1"));
        assert!(text.contains("switchboard_store_outages_total 1"));
    }

    #[tokio::test]
    async fn a_paused_task_resumes_when_the_store_is_back() {
        let outage = Arc::new(Outage::new(Arc::default()));
        outage.failed(&unavailable());
        let waiting = Arc::clone(&outage);
        let task = tokio::spawn(async move {
            let never = CancellationToken::new();
            waiting.until_up(&never, &never).await
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        outage.recovered();
        assert!(task.await.unwrap());
    }

    #[test]
    fn probes_back_off_to_their_bound() {
        assert_eq!(next_probe_wait(PROBE_FIRST), Duration::from_millis(200));
        assert_eq!(next_probe_wait(PROBE_MAX), PROBE_MAX);
    }
}
