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
//!
//! Nor does an outage age a delivery: the outages this node saw (the last
//! [`OUTAGES_KEPT`], in memory) are taken off the age a failed attempt is judged by
//! ([`Outage::downtime_since`]), so a delivery does not reach `--retry-max-age-s` sooner
//! because the database was down. (A restarted node forgets the outages before it.)

use std::collections::VecDeque;
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

/// How many past outages are remembered for [`Outage::downtime_since`].
pub const OUTAGES_KEPT: usize = 256;

/// Whether the database is available, shared by the engine, ingest and `/ready`.
pub struct Outage {
    /// The current outage, if one is on, and the past ones. Guards the transitions, so each
    /// is logged once.
    state: Mutex<State>,
    /// `true` while the database is available; paused tasks wait for it.
    up: watch::Sender<bool>,
    /// `switchboard_store_up` and the outage count.
    metrics: Arc<Metrics>,
}

/// The outages seen.
#[derive(Default)]
struct State {
    /// When the current outage began (`None`: the database is available), as an instant
    /// (for its length) and in ms since the epoch (for the past list).
    since: Option<(Instant, i64)>,
    /// The last [`OUTAGES_KEPT`] outages that ended: (began, ended) in ms since the epoch,
    /// oldest first.
    past: VecDeque<(i64, i64)>,
}

impl State {
    /// How much of the outages began at or ended after `from` (ms since the epoch) lies
    /// after it, the current one counted up to `now`.
    fn downtime_since(&self, from: i64, now: i64) -> Duration {
        let current = self.since.map(|(_, began)| (began, now));
        let ms: i64 = self
            .past
            .iter()
            .copied()
            .chain(current)
            .map(|(began, ended)| (ended - began.max(from)).max(0))
            .sum();
        Duration::from_millis(ms as u64)
    }
}

impl Outage {
    /// An available database, reported into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::default(),
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
        let mut state = self.lock();
        if state.since.is_none() {
            state.since = Some((Instant::now(), crate::clock::now_ms()));
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
        let mut state = self.lock();
        if let Some((began, began_ms)) = state.since.take() {
            if state.past.len() == OUTAGES_KEPT {
                state.past.pop_front();
            }
            state.past.push_back((began_ms, crate::clock::now_ms()));
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

    /// How long the database was unavailable (as this node saw it) since `from` (ms since
    /// the epoch): time a delivery received then could not have been attempted, so it does
    /// not count towards its age.
    pub fn downtime_since(&self, from: i64) -> Duration {
        self.lock().downtime_since(from, crate::clock::now_ms())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let text = metrics
            .encode(crate::metrics::Format::OpenMetrics, Default::default())
            .expect("encodes");
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
    fn only_the_downtime_after_a_deliverys_start_counts() {
        let state = State {
            since: Some((Instant::now(), 900)),
            past: VecDeque::from([(100, 200), (300, 500)]),
        };
        // Before every outage: all of them, the current one up to now.
        assert_eq!(state.downtime_since(0, 1_000), Duration::from_millis(400));
        // Inside the second one: its rest, and the current one.
        assert_eq!(state.downtime_since(400, 1_000), Duration::from_millis(200));
        // After them all.
        assert_eq!(State::default().downtime_since(600, 1_000), Duration::ZERO);
    }

    #[test]
    fn probes_back_off_to_their_bound() {
        assert_eq!(next_probe_wait(PROBE_FIRST), Duration::from_millis(200));
        assert_eq!(next_probe_wait(PROBE_MAX), PROBE_MAX);
    }
}
