//! The delivery engine: claims due deliveries, runs each as a task under per-destination
//! limits, and persists every outcome before acting on it.
//!
//! Hot path: ingest hands fresh deliveries over in memory, already leased in the same
//! transaction that stored them, so a healthy delivery costs no database read, only the
//! group-committed outcome write. Everything else (retries, deliveries beyond the
//! in-memory capacity, a restart's backlog) waits in the store until `dispatch_once`
//! claims it. Memory is bounded by `capacity` permits, one per delivery held in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

mod memory;
mod span;
mod waiting;

use memory::MemoryShare;

use super::attempt::{AttemptResult, Attempter, ClientError};
use super::backoff::RetryPolicy;
use super::feed::Feed;
use super::gate::{Admission, Gates};
use super::health::Health;
use super::lease::{self, Held};
use super::lifecycle;
use super::outage::{self, Outage, ENGINE_WAIT, PROBE_FIRST};
use super::pause::Pauses;
use super::route::{self, Resolution};
use crate::domain::{redact_query, AddressPolicy};
use crate::metrics::{AttemptOutcome, FinalState, Metrics};
use crate::store::{
    within, AttemptRecord, CreatedDelivery, DueDelivery, HeldLease, Settlement, Store, StoreError,
    ANSWER_WITHIN,
};

/// Tuning of the engine; the defaults suit one node.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Hard limit of one attempt.
    pub timeout: Duration,
    /// Which addresses deliveries may reach (`--dev` adds loopback).
    pub addresses: AddressPolicy,
    /// Deliveries held in memory at most.
    pub capacity: usize,
    /// Bytes of the engine's memory budget: what the deliveries held in memory may take
    /// ([`crate::store::memory_cost`] each); the rest wait in the store.
    pub memory: usize,
    /// Concurrent attempts per destination (scheme, host and port).
    pub per_destination: usize,
    /// Deliveries waiting in memory per destination before the rest wait in the store.
    pub per_destination_waiting: usize,
    /// How often the store is asked for due deliveries.
    pub poll_interval: Duration,
    /// How long a claimed delivery belongs to this node.
    pub lease: Duration,
    /// Pause a destination that answered nothing but failures this long (`None`: never).
    pub pause_after: Option<Duration>,
    /// One probe attempt per paused destination this often.
    pub probe_interval: Duration,
}

/// How long a claimed delivery belongs to its node without renewal, unless configured
/// (`--delivery-lease-s`): the longest a dead node's deliveries wait for another node.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl EngineSettings {
    /// Defaults around the configured retry policy and timeout.
    pub fn new(retry: RetryPolicy, timeout: Duration, addresses: AddressPolicy) -> Self {
        Self {
            retry,
            timeout,
            addresses,
            capacity: 20_000,
            memory: 64 * 1024 * 1024,
            per_destination: 512,
            per_destination_waiting: 2_000,
            poll_interval: Duration::from_millis(50),
            lease: DEFAULT_LEASE,
            pause_after: Some(Duration::from_secs(432_000)),
            probe_interval: Duration::from_secs(300),
        }
    }
}

/// A running delivery engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The engine's state, shared by the poller, the renewer and every delivery task.
struct Inner {
    /// Where deliveries are claimed from and outcomes written to.
    store: Arc<dyn Store>,
    /// Makes the HTTP attempts.
    attempter: Attempter,
    /// Limits, retry policy, lease length.
    settings: EngineSettings,
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// One permit per delivery held in memory (`settings.capacity`).
    capacity: Arc<Semaphore>,
    /// One permit per byte of `settings.memory`.
    memory: Arc<Semaphore>,
    /// Per-destination limits of attempts in flight and deliveries waiting.
    gates: Gates,
    /// The deliveries held in memory and their leases (renewed, or dropped when lost).
    held: Held,
    /// Every task the engine started (poller, renewer, deliveries), awaited at stop.
    tracker: TaskTracker,
    /// Cancelled when the service stops.
    shutdown: CancellationToken,
    /// Every destination's recent answers, graded.
    health: Arc<Health>,
    /// The paused destinations.
    pauses: Arc<Pauses>,
    /// What happens now, told to the live stream's readers (nothing is built while none
    /// listens).
    feed: Arc<Feed>,
    /// Whether the database is available; while it is not, nothing is claimed or attempted.
    outage: Arc<Outage>,
    /// Deliveries that were waiting for their destination when the service stopped: their
    /// leases are handed back at the end of the stop ([`Engine::hand_back`]).
    unsent_at_stop: std::sync::Mutex<Vec<HeldLease>>,
}

impl Engine {
    /// Starts the engine and its poller; it stops when `shutdown` is cancelled.
    pub fn start(
        store: Arc<dyn Store>,
        settings: EngineSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, ClientError> {
        let engine = Self {
            inner: Arc::new(Inner {
                attempter: Attempter::new(settings.timeout, settings.addresses)?,
                capacity: Arc::new(Semaphore::new(settings.capacity)),
                memory: Arc::new(Semaphore::new(settings.memory)),
                gates: Gates::new(settings.per_destination, settings.per_destination_waiting),
                store,
                settings,
                held: Held::default(),
                tracker: TaskTracker::new(),
                shutdown,
                health: Arc::default(),
                pauses: Arc::default(),
                feed: Arc::default(),
                outage: Arc::new(Outage::new(Arc::clone(&metrics))),
                metrics,
                unsent_at_stop: std::sync::Mutex::default(),
            }),
        };
        let poller = engine.clone();
        engine
            .inner
            .tracker
            .spawn(async move { poller.poll().await });
        let refresher = engine.clone();
        engine
            .inner
            .tracker
            .spawn(async move { refresher.refresh_pauses().await });
        let renewer = Arc::clone(&engine.inner);
        engine.inner.tracker.spawn(async move {
            let inner = renewer.as_ref();
            let lease = inner.settings.lease;
            let (store, metrics) = (inner.store.as_ref(), inner.metrics.as_ref());
            let stop = (inner.outage.as_ref(), &inner.shutdown);
            lease::renew_periodically(store, &inner.held, lease, metrics, stop).await;
        });
        Ok(engine)
    }

    /// Until when a delivery claimed now belongs to this node (ms since the epoch).
    pub fn lease_until(&self) -> i64 {
        crate::clock::now_ms() + self.inner.settings.lease.as_millis() as i64
    }

    /// Claims the deliveries that are due and starts them; returns how many it started.
    ///
    /// The poller calls it on a timer; tests may call it to drive the engine.
    pub async fn dispatch_once(&self) -> Result<usize, StoreError> {
        let free = self.inner.capacity.available_permits().min(1024);
        let free_bytes = self.inner.memory.available_permits().min(u32::MAX as usize);
        if free_bytes < crate::store::memory_cost(0) {
            return Ok(0);
        }
        // Only the count is reserved across the claim: holding every free byte meanwhile
        // would make ingest find no room and store its fresh events for the poller (a 50 ms
        // detour, measured as the delivery p99). Each claimed job takes its bytes at hand-over;
        // one that no longer fits (ingest took the room meanwhile) is put back.
        let Some(mut reservation) = self.reserve(free, 0) else {
            return Ok(0);
        };
        let now = crate::clock::now_ms();
        let claim = self
            .inner
            .store
            .claim_due(now, free, free_bytes, self.lease_until());
        let jobs = within(ENGINE_WAIT, claim).await?;
        let started = jobs.len();
        for job in jobs {
            self.hand_over(job, &mut reservation);
        }
        Ok(started)
    }

    /// What the destination lifecycle needs of the engine.
    fn lifecycle(&self) -> lifecycle::Lifecycle<'_> {
        lifecycle::Lifecycle {
            store: self.inner.store.as_ref(),
            metrics: &self.inner.metrics,
            pauses: &self.inner.pauses,
            feed: &self.inner.feed,
            pause_after: self.inner.settings.pause_after,
            probe_interval: self.inner.settings.probe_interval,
        }
    }

    /// The live feed, for ingest to tell accepted events and the API to stream.
    pub fn feed(&self) -> Arc<Feed> {
        Arc::clone(&self.inner.feed)
    }

    /// Whether the database is available, for ingest and `/ready` to report what they find
    /// and the API to answer by.
    pub fn outage(&self) -> Arc<Outage> {
        Arc::clone(&self.inner.outage)
    }

    /// The paused destinations, for the admin API to pause and resume.
    pub fn pauses(&self) -> Arc<Pauses> {
        Arc::clone(&self.inner.pauses)
    }

    /// Re-reads the paused destinations every second (other nodes pause and resume too).
    async fn refresh_pauses(&self) {
        let (store, interval) = (
            self.inner.store.as_ref(),
            self.inner.settings.probe_interval,
        );
        loop {
            if let Err(error) = self.inner.pauses.refresh(store, interval).await {
                if !self.inner.outage.failed(&error) {
                    tracing::warn!(%error, "cannot read the paused destinations");
                }
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The health of the destinations this engine attempted, for the admin API and metrics.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.inner.health)
    }

    /// Waits for in-flight attempts to finish and record their outcome (after `shutdown`).
    pub async fn stopped(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Hands back the leases of the deliveries that were still waiting for their destination
    /// when the service stopped (called after [`Engine::stopped`]): they become due at once,
    /// so another node (or a successor under a new `--node-id`) takes them now rather than
    /// after their lease. A renewal until now is that hand-back (leased rows are claimable
    /// once `next_attempt_at` has passed); one claimed meanwhile by another node is left alone.
    pub async fn hand_back(&self) {
        let unsent = std::mem::take(
            &mut *self
                .inner
                .unsent_at_stop
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if unsent.is_empty() || !self.inner.outage.is_up() {
            return;
        }
        let count = unsent.len();
        let store = self.inner.store.as_ref();
        let now = crate::clock::now_ms();
        match within(ANSWER_WITHIN, store.renew_leases(unsent, now)).await {
            Ok(_) => tracing::info!(
                deliveries = count,
                "handed back the deliveries waiting in memory: other nodes may take them now"
            ),
            Err(error) => tracing::warn!(
                %error,
                "cannot hand back the deliveries waiting in memory; they are taken once their lease runs out"
            ),
        }
    }

    /// Claims due work every poll interval (at once again while it finds some); while the
    /// database is unavailable, probes it instead, with a growing wait, until it is back.
    async fn poll(&self) {
        let interval = self.inner.settings.poll_interval;
        let outage = self.inner.outage.as_ref();
        let mut probe_wait = PROBE_FIRST;
        loop {
            let wait = if outage.is_up() {
                probe_wait = PROBE_FIRST;
                match self.dispatch_once().await {
                    Ok(started) if started > 0 => continue,
                    Ok(_) => interval,
                    Err(error) if outage.failed(&error) => PROBE_FIRST,
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim due deliveries");
                        interval
                    }
                }
            } else {
                match self.probe_store().await {
                    Ok(()) => {
                        outage.recovered();
                        continue;
                    }
                    Err(error) => {
                        tracing::debug!(error = %crate::error_chain(&error), "the database is still unavailable");
                        let wait = probe_wait;
                        probe_wait = outage::next_probe_wait(probe_wait);
                        wait
                    }
                }
            };
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether the database is back: one real write (`ping`), then the leases of every
    /// delivery held in memory renewed (they may have run out meanwhile), before anything
    /// held is attempted or anything new claimed, so this node's own poller cannot claim
    /// again what it holds; those another node took meanwhile are dropped from memory.
    async fn probe_store(&self) -> Result<(), StoreError> {
        let inner = self.inner.as_ref();
        let store = inner.store.as_ref();
        within(ANSWER_WITHIN, store.ping()).await?;
        let renewal = lease::renew_once(store, &inner.held, inner.settings.lease, &inner.metrics);
        within(ENGINE_WAIT, renewal).await
    }

    /// Waits while the database is unavailable (at once when it is available): nothing is
    /// sent that could not be recorded. `false` if the service stops or the delivery's lease
    /// is found lost first (it is then left to the store, unsent).
    async fn until_store_up(&self, lost: &CancellationToken) -> bool {
        self.inner.outage.until_up(&self.inner.shutdown, lost).await
    }

    fn spawn(&self, job: DueDelivery, permit: MemoryShare) {
        let engine = self.clone();
        // No parent: a delivery handed over by ingest must not keep the request's span
        // open until it settles.
        let span = tracing::debug_span!(
            parent: None,
            "delivery",
            delivery = %job.id,
            event = %job.event,
            target = %job.target.to_stored(),
            attempt = job.attempts + 1,
            lease = job.lease.0,
        );
        let (id, lease) = (job.id, job.lease);
        let lost = self.inner.held.hold(id, lease);
        self.inner.tracker.spawn(
            async move {
                if let Err(error) = engine.run(job, &lost).await {
                    tracing::warn!(%error, "delivery outcome not recorded; it will be retried");
                }
                engine.inner.held.release(id, lease);
                drop(permit);
            }
            .instrument(span),
        );
    }

    /// One delivery: route, attempt under its destination's limit, settle, fan out. `lost`
    /// is cancelled if its lease is found lost meanwhile.
    async fn run(&self, job: DueDelivery, lost: &CancellationToken) -> Result<(), StoreError> {
        if !self.until_store_up(lost).await {
            return Ok(());
        }
        let store = self.inner.store.as_ref();
        let target = match route::resolve(store, &job).await? {
            Resolution::Drop(reason) => {
                tracing::debug!(%reason, "dropped: no route");
                let dropped = Settlement::Dropped { reason };
                if self.settle(&job, None, dropped, lost).await?.is_some() {
                    let metrics = &self.inner.metrics;
                    metrics.delivery_finished(&job.target, FinalState::Dropped);
                }
                return Ok(());
            }
            Resolution::Send(target) => target,
        };
        let url = target.webhook.url.as_str();
        let destination = self.inner.health.id_of(url);
        let paused = destination
            .as_ref()
            .and_then(|id| self.inner.pauses.get(id));
        if let Some(paused) = &paused {
            let interval = self.inner.settings.probe_interval;
            if !paused.take_probe(crate::clock::now_ms(), interval) {
                return self.wait_out_pause(paused, &job, lost).await;
            }
            tracing::info!("probing a paused destination");
        }
        let gate = self.inner.gates.gate(url);
        let slot = match gate.enter(&self.inner.shutdown, lost).await {
            Admission::Slot(slot) => slot,
            Admission::Full => {
                self.park(&gate, &job, lost).await?;
                return Ok(());
            }
            Admission::Stopping => {
                let unsent = HeldLease {
                    delivery: job.id,
                    lease: job.lease,
                };
                self.inner
                    .unsent_at_stop
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(unsent);
                return Ok(());
            }
            Admission::LeaseLost => {
                tracing::debug!("lease lost while waiting for the destination; dropped unsent");
                return Ok(());
            }
        };
        // The database may have gone while the delivery waited for its slot.
        if !self.until_store_up(lost).await {
            return Ok(());
        }
        let attempt_span = span::attempt_span(&job, destination.as_ref());
        let trace = crate::telemetry::propagate(&attempt_span, job.trace.as_ref());
        let started_at = crate::clock::now_ms();
        let clock = Instant::now();
        let result = self
            .inner
            .attempter
            .send(&target, job.payload.clone(), trace)
            .instrument(attempt_span.clone())
            .await;
        let took = clock.elapsed();
        span::record_attempt(&attempt_span, &result, took);
        drop(slot);
        let delivered = matches!(result, AttemptResult::Answered { status: 200, .. });
        self.wake_parked(&gate);
        if let Some(id) = destination {
            let health = &self.inner.health;
            let recorded = health.record((&id, url), took, delivered, started_at);
            let seen = lifecycle::Attempted {
                probing: paused.is_some(),
                delivered,
                recorded,
            };
            lifecycle::after_attempt(self.lifecycle(), (&id, url), seen).await;
        }
        let attempt = result.record(job.attempts + 1, url, started_at, took);
        self.finish(job, attempt, result, took, lost, paused.is_some())
            .instrument(attempt_span)
            .await
    }

    /// Settles an attempt: delivered (then clones to extras), retry, or give up.
    async fn finish(
        &self,
        job: DueDelivery,
        attempt: AttemptRecord,
        result: AttemptResult,
        took: Duration,
        lost: &CancellationToken,
        probing: bool,
    ) -> Result<(), StoreError> {
        let metrics = &self.inner.metrics;
        let (error, asked) = match result {
            AttemptResult::Answered { status: 200, .. } => {
                metrics.attempt(&job.target, AttemptOutcome::Delivered, took);
                return self.delivered(job, attempt, lost).await;
            }
            AttemptResult::Answered {
                status,
                retry_after,
                ..
            } => {
                metrics.attempt(&job.target, AttemptOutcome::HttpError, took);
                (format!("HTTP {status}"), retry_after)
            }
            AttemptResult::Failed { kind, detail } => {
                metrics.attempt(&job.target, AttemptOutcome::Error(kind), took);
                (format!("{}: {detail}", kind.as_str()), None)
            }
        };
        let now = crate::clock::now_ms();
        let failures = job.attempts + 1 - job.window_attempts.min(job.attempts);
        // Time the database was down is not the receiver's: it does not age the delivery.
        let age = Duration::from_millis((now - job.window_start).max(0) as u64)
            .saturating_sub(self.inner.outage.downtime_since(job.window_start));
        let settlement = match self.inner.settings.retry.next_delay_after_asked(
            failures,
            age,
            fastrand::f64(),
            asked,
        ) {
            Some(delay) => Settlement::Retry {
                at: now + delay.as_millis() as i64,
                error,
            },
            // A paused destination's deliveries do not age out: a failed probe waits for
            // the next one.
            None if probing => Settlement::Retry {
                at: now + self.inner.settings.probe_interval.as_millis() as i64,
                error,
            },
            None => Settlement::GaveUp { error },
        };
        match &settlement {
            Settlement::Retry { at, error } => {
                tracing::warn!(url = %redact_query(&attempt.url), %error, retry_after_ms = attempt.retry_after_ms, retry_at = %crate::clock::rfc3339(*at), "attempt failed; will retry");
            }
            Settlement::GaveUp { error } => {
                tracing::warn!(url = %redact_query(&attempt.url), %error, "attempt failed; maximum age reached, delivery failed");
            }
            _ => {}
        }
        let gave_up = matches!(settlement, Settlement::GaveUp { .. });
        let recorded = self.settle(&job, Some(attempt), settlement, lost).await?;
        if gave_up && recorded.is_some() {
            metrics.delivery_finished(&job.target, FinalState::Failed);
        }
        Ok(())
    }

    /// Records the 200 and creates the extra deliveries in one transaction, then starts
    /// them from memory when there is room.
    async fn delivered(
        &self,
        job: DueDelivery,
        attempt: AttemptRecord,
        lost: &CancellationToken,
    ) -> Result<(), StoreError> {
        let store = self.inner.store.as_ref();
        let extras = self
            .when_stored(|| route::extras_after_primary(store, &job))
            .await?;
        let mut reservation = self.reserve(extras.len(), extras.len() * job.memory_cost());
        let claim_until = reservation.as_ref().map(|_| self.lease_until());
        let settlement = Settlement::Delivered {
            extras,
            claim_until,
        };
        let Some(created) = self.settle(&job, Some(attempt), settlement, lost).await? else {
            return Ok(());
        };
        self.inner
            .metrics
            .delivery_finished(&job.target, FinalState::Delivered);
        tracing::debug!(extras = created.len(), "delivered");
        let Some(reservation) = reservation.as_mut() else {
            return Ok(());
        };
        for CreatedDelivery { id, target, lease } in created {
            let Some(lease) = lease else { continue };
            let extra = DueDelivery {
                id,
                target,
                attempts: 0,
                window_start: crate::clock::now_ms(),
                window_attempts: 0,
                lease,
                ..job.clone()
            };
            self.hand_over(extra, reservation);
        }
        Ok(())
    }
}
