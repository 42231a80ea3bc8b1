//! The delivery engine: claims due deliveries, runs each as a task under per-destination
//! limits, and persists every outcome before acting on it.
//!
//! Hot path: ingest hands fresh deliveries over in memory, already leased in the same
//! transaction that stored them, so a healthy delivery costs no database read, only the
//! group-committed outcome write. Everything else (retries, deliveries beyond the
//! in-memory capacity, a restart's backlog) waits in the store until `dispatch_once`
//! claims it. Memory is bounded by `capacity` permits, one per delivery held in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::attempt::{AttemptResult, Attempter, ClientError};
use super::backoff::RetryPolicy;
use super::lease::Held;
use super::route::{self, Resolution};
use crate::domain::{redact_query, AddressPolicy, DeliveryId, DeliveryTarget, Target};
use crate::metrics::{AttemptOutcome, FinalState, Metrics};
use crate::store::{AttemptRecord, DueDelivery, Outcome, Settlement, Store, StoreError};

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
}

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
            lease: Duration::from_secs(300),
        }
    }
}

/// A running delivery engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    attempter: Attempter,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
    capacity: Arc<Semaphore>,
    /// One permit a byte of [`EngineSettings::memory`].
    memory: Arc<Semaphore>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    held: Held,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// Per-destination concurrency: `slots` in flight, `waiting` queued in memory, and the ids
/// of the deliveries `parked` in the store while it was full, to wake when it has room.
struct Gate {
    slots: Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    parked: Mutex<VecDeque<DeliveryId>>,
    /// A wake-up write is under way: one at a time per destination.
    waking: std::sync::atomic::AtomicBool,
}

/// Recording an outcome is tried this often (about a minute in all) before the delivery is
/// left to its lease: the attempt happened, and a 200 that is not recorded would be sent
/// again and missing from the attempt log.
const SETTLE_TRIES: u32 = 16;
const SETTLE_RETRY_FIRST: Duration = Duration::from_millis(100);
const SETTLE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Whether a failed write may succeed when tried again (the database was busy, locked or
/// briefly unreachable); not when the store is closing.
fn retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(_) | StoreError::Abandoned)
}

/// A delivery parked behind a saturated destination is due again after this at the latest,
/// even if no wake-up comes (another node's saturation, a restart, a full parking list).
const PARKED_AT_MOST: Duration = Duration::from_secs(60);

/// Parked ids remembered per destination (8 bytes each); beyond, a delivery waits out
/// [`PARKED_AT_MOST`].
const MAX_PARKED: usize = 100_000;

/// Memory reserved for deliveries about to be handed over: a count and bytes, split per
/// delivery as each is handed over.
pub struct Reservation {
    count: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
}

/// What one delivery held in memory owns of the engine's limits, counted in the metrics
/// while it lives; dropped when the delivery leaves memory.
struct MemoryShare {
    _count: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
    metrics: Arc<Metrics>,
}

impl MemoryShare {
    fn new(
        count: OwnedSemaphorePermit,
        bytes: Option<OwnedSemaphorePermit>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.held_in_memory(1, Self::size(&bytes));
        Self {
            _count: count,
            bytes,
            metrics,
        }
    }

    fn size(bytes: &Option<OwnedSemaphorePermit>) -> i64 {
        bytes.as_ref().map_or(0, |p| p.num_permits() as i64)
    }
}

impl Drop for MemoryShare {
    fn drop(&mut self) {
        self.metrics.held_in_memory(-1, -Self::size(&self.bytes));
    }
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
                store,
                settings,
                metrics,
                gates: Mutex::new(HashMap::new()),
                held: Held::default(),
                tracker: TaskTracker::new(),
                shutdown,
            }),
        };
        let poller = engine.clone();
        engine
            .inner
            .tracker
            .spawn(async move { poller.poll().await });
        let renewer = engine.clone();
        engine
            .inner
            .tracker
            .spawn(async move { renewer.renew_leases().await });
        Ok(engine)
    }

    /// Every third of a lease, pushes the leases of the deliveries held in memory forward.
    async fn renew_leases(&self) {
        let every = self.inner.settings.lease / 3;
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let held = self.inner.held.snapshot();
            if held.is_empty() {
                continue;
            }
            let until = self.lease_until();
            if let Err(error) = self.inner.store.renew_leases(held, until).await {
                tracing::warn!(%error, "cannot renew the leases of deliveries held in memory");
            }
        }
    }

    /// Reserves memory for `count` fresh deliveries of `bytes` in all (their
    /// [`crate::store::memory_cost`]), if there is room for both.
    pub fn reserve(&self, count: usize, bytes: usize) -> Option<Reservation> {
        let count = u32::try_from(count).ok()?;
        let bytes = u32::try_from(bytes).ok()?;
        if count == 0 || self.inner.shutdown.is_cancelled() {
            return None;
        }
        let count = Arc::clone(&self.inner.capacity)
            .try_acquire_many_owned(count)
            .ok()?;
        let bytes = match bytes {
            0 => None,
            bytes => Some(
                Arc::clone(&self.inner.memory)
                    .try_acquire_many_owned(bytes)
                    .ok()?,
            ),
        };
        Some(Reservation { count, bytes })
    }

    /// Until when a delivery claimed now belongs to this node (ms since the epoch).
    pub fn lease_until(&self) -> i64 {
        crate::clock::now_ms() + self.inner.settings.lease.as_millis() as i64
    }

    /// Runs `job` now, holding its share of `reservation` (its count, and its memory cost
    /// in bytes, topped up from the budget if the reservation was an estimate too small).
    ///
    /// A job that does not fit after all is put back in the store, due now, for the poller
    /// to claim when there is room.
    pub fn hand_over(&self, job: DueDelivery, reservation: &mut Reservation) {
        let Some(count) = reservation.count.split(1) else {
            tracing::error!(delivery = %job.id, "hand-over without a reserved permit");
            return self.put_back(job);
        };
        match self.take_bytes(reservation, job.memory_cost()) {
            Some(bytes) => {
                let share = MemoryShare::new(count, bytes, Arc::clone(&self.inner.metrics));
                self.spawn(job, share)
            }
            None => self.put_back(job),
        }
    }

    /// `cost` bytes out of `reservation`, or as much as it has plus the rest from the budget.
    fn take_bytes(
        &self,
        reservation: &mut Reservation,
        cost: usize,
    ) -> Option<Option<OwnedSemaphorePermit>> {
        let cost = u32::try_from(cost).ok()?;
        if cost == 0 {
            return Some(None);
        }
        let reserved = reservation.bytes.as_ref().map_or(0, |p| p.num_permits());
        let from_reservation = (cost as usize).min(reserved) as u32;
        let mut taken = match from_reservation {
            0 => None,
            n => reservation.bytes.as_mut().and_then(|p| p.split(n as usize)),
        };
        let missing = cost - from_reservation;
        if missing > 0 {
            let extra = Arc::clone(&self.inner.memory)
                .try_acquire_many_owned(missing)
                .ok()?;
            match taken.as_mut() {
                Some(taken) => taken.merge(extra),
                None => taken = Some(extra),
            }
        }
        Some(taken)
    }

    /// Gives a leased job back to the store, due now (a job this node cannot hold).
    fn put_back(&self, job: DueDelivery) {
        let engine = self.clone();
        self.inner.tracker.spawn(async move {
            let at = crate::clock::now_ms();
            if let Err(error) = engine.settle(&job, None, Settlement::Deferred { at }).await {
                tracing::warn!(delivery = %job.id, %error, "cannot put a delivery back; its lease will run out");
            }
        });
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
        let Some(mut reservation) = self.reserve(free, free_bytes) else {
            return Ok(0);
        };
        let now = crate::clock::now_ms();
        let jobs = self
            .inner
            .store
            .claim_due(now, free, free_bytes, self.lease_until())
            .await?;
        let started = jobs.len();
        for job in jobs {
            self.hand_over(job, &mut reservation);
        }
        Ok(started)
    }

    /// Waits for in-flight attempts to finish and record their outcome (after `shutdown`).
    pub async fn stopped(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    async fn poll(&self) {
        let interval = self.inner.settings.poll_interval;
        loop {
            match self.dispatch_once().await {
                Ok(started) if started > 0 => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot claim due deliveries"),
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    fn spawn(&self, job: DueDelivery, permit: MemoryShare) {
        let engine = self.clone();
        let span = tracing::debug_span!(
            "delivery",
            delivery = %job.id,
            event = %job.event,
            target = %job.target.to_stored(),
            attempt = job.attempts + 1,
        );
        let id = job.id;
        self.inner.held.hold(id);
        self.inner.tracker.spawn(
            async move {
                if let Err(error) = engine.run(job).await {
                    tracing::warn!(%error, "delivery outcome not recorded; it will be retried");
                }
                engine.inner.held.release(id);
                drop(permit);
            }
            .instrument(span),
        );
    }

    /// One delivery: route, attempt under its destination's limit, settle, fan out.
    async fn run(&self, job: DueDelivery) -> Result<(), StoreError> {
        let store = self.inner.store.as_ref();
        let target = match route::resolve(store, &job).await? {
            Resolution::Drop(reason) => {
                tracing::debug!(%reason, "dropped: no route");
                self.settle(&job, None, Settlement::Dropped { reason })
                    .await?;
                self.inner
                    .metrics
                    .delivery_finished(&job.target, FinalState::Dropped);
                return Ok(());
            }
            Resolution::Send(target) => target,
        };
        let gate = self.gate(&target);
        let Some(slot) = self.enter(&gate).await else {
            if !self.inner.shutdown.is_cancelled() {
                self.park(&gate, &job).await?;
            }
            return Ok(());
        };
        let started_at = crate::clock::now_ms();
        let clock = Instant::now();
        let result = self
            .inner
            .attempter
            .send(&target, job.payload.clone())
            .await;
        let took = clock.elapsed();
        drop(slot);
        self.wake_parked(&gate);
        let attempt = AttemptRecord {
            number: job.attempts + 1,
            started_at,
            duration_ms: took.as_millis() as i64,
            url: target.webhook.url.as_str().to_owned(),
            status: match &result {
                AttemptResult::Answered { status, .. } => Some(*status),
                AttemptResult::Failed { .. } => None,
            },
            error: match &result {
                AttemptResult::Failed { kind, .. } => Some(*kind),
                AttemptResult::Answered { .. } => None,
            },
            response_excerpt: match &result {
                AttemptResult::Answered { excerpt, .. } if !excerpt.is_empty() => {
                    Some(excerpt.clone())
                }
                _ => None,
            },
        };
        self.finish(job, attempt, result, took).await
    }

    /// Settles an attempt: delivered (then clones to extras), retry, or give up.
    async fn finish(
        &self,
        job: DueDelivery,
        attempt: AttemptRecord,
        result: AttemptResult,
        took: Duration,
    ) -> Result<(), StoreError> {
        let metrics = &self.inner.metrics;
        let error = match result {
            AttemptResult::Answered { status: 200, .. } => {
                metrics.attempt(&job.target, AttemptOutcome::Delivered, took);
                return self.delivered(job, attempt).await;
            }
            AttemptResult::Answered { status, .. } => {
                metrics.attempt(&job.target, AttemptOutcome::HttpError, took);
                format!("HTTP {status}")
            }
            AttemptResult::Failed { kind, detail } => {
                metrics.attempt(&job.target, AttemptOutcome::Error(kind), took);
                format!("{}: {detail}", kind.as_str())
            }
        };
        let now = crate::clock::now_ms();
        let failures = job.attempts + 1 - job.window_attempts.min(job.attempts);
        let age = Duration::from_millis((now - job.window_start).max(0) as u64);
        let settlement = match self
            .inner
            .settings
            .retry
            .next_delay(failures, age, fastrand::f64())
        {
            Some(delay) => Settlement::Retry {
                at: now + delay.as_millis() as i64,
                error,
            },
            None => Settlement::GaveUp { error },
        };
        match &settlement {
            Settlement::Retry { at, error } => {
                tracing::warn!(url = %redact_query(&attempt.url), %error, retry_at = %crate::clock::rfc3339(*at), "attempt failed; will retry");
            }
            Settlement::GaveUp { error } => {
                tracing::warn!(url = %redact_query(&attempt.url), %error, "attempt failed; maximum age reached, delivery failed");
            }
            _ => {}
        }
        let gave_up = matches!(settlement, Settlement::GaveUp { .. });
        self.settle(&job, Some(attempt), settlement).await?;
        if gave_up {
            metrics.delivery_finished(&job.target, FinalState::Failed);
        }
        Ok(())
    }

    /// Records the 200 and creates the extra deliveries in one transaction, then starts
    /// them from memory when there is room.
    async fn delivered(&self, job: DueDelivery, attempt: AttemptRecord) -> Result<(), StoreError> {
        let extras = route::extras_after_primary(self.inner.store.as_ref(), &job).await?;
        let mut reservation = self.reserve(extras.len(), extras.len() * job.memory_cost());
        let claim_until = reservation.as_ref().map(|_| self.lease_until());
        let settlement = Settlement::Delivered {
            extras,
            claim_until,
        };
        let created = self.settle(&job, Some(attempt), settlement).await?;
        self.inner
            .metrics
            .delivery_finished(&job.target, FinalState::Delivered);
        tracing::debug!(extras = created.len(), "delivered");
        if let Some(reservation) = reservation.as_mut() {
            for (id, target) in created {
                let extra = DueDelivery {
                    id,
                    target,
                    attempts: 0,
                    window_start: crate::clock::now_ms(),
                    window_attempts: 0,
                    ..job.clone()
                };
                self.hand_over(extra, reservation);
            }
        }
        Ok(())
    }

    async fn settle(
        &self,
        job: &DueDelivery,
        attempt: Option<AttemptRecord>,
        settlement: Settlement,
    ) -> Result<Vec<(crate::domain::DeliveryId, Target)>, StoreError> {
        let outcome = Outcome {
            delivery: job.id,
            attempt,
            settlement,
        };
        let mut pause = SETTLE_RETRY_FIRST;
        let mut tries = 1;
        loop {
            match self.inner.store.settle(outcome.clone()).await {
                Err(error) if tries < SETTLE_TRIES && retryable(&error) => {
                    tracing::warn!(%error, tries, "cannot record the outcome yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.inner.shutdown.cancelled() => return Err(error),
                    }
                    pause = (pause * 2).min(SETTLE_RETRY_MAX);
                    tries += 1;
                }
                settled => return settled,
            }
        }
    }

    /// The destination is full: the delivery leaves memory for the store, due again when the
    /// destination has room (see [`Engine::wake_parked`]) or after [`PARKED_AT_MOST`], so a
    /// waiting backlog costs one write per delivery, not one every second or two.
    async fn park(&self, gate: &Gate, job: &DueDelivery) -> Result<(), StoreError> {
        let at = crate::clock::now_ms() + PARKED_AT_MOST.as_millis() as i64;
        tracing::debug!("destination saturated; parked in the store");
        self.inner.metrics.delivery_deferred();
        self.settle(job, None, Settlement::Deferred { at }).await?;
        let mut parked = gate.parked.lock().unwrap_or_else(|p| p.into_inner());
        if parked.len() < MAX_PARKED {
            parked.push_back(job.id);
        }
        Ok(())
    }

    /// After an attempt freed a slot: when at most half of the destination's waiting room is
    /// taken, makes as many parked deliveries due as fit in the rest (oldest parked first).
    fn wake_parked(&self, gate: &Arc<Gate>) {
        use std::sync::atomic::Ordering;
        let limit = self.inner.settings.per_destination_waiting;
        let waiting = gate.waiting.load(Ordering::Acquire);
        if waiting > limit / 2 || gate.waking.swap(true, Ordering::AcqRel) {
            return;
        }
        let woken: Vec<DeliveryId> = {
            let mut parked = gate.parked.lock().unwrap_or_else(|p| p.into_inner());
            let room = limit.saturating_sub(waiting).max(1).min(parked.len());
            parked.drain(..room).collect()
        };
        if woken.is_empty() {
            gate.waking.store(false, Ordering::Release);
            return;
        }
        let (engine, gate) = (self.clone(), Arc::clone(gate));
        self.inner.tracker.spawn(async move {
            let now = crate::clock::now_ms();
            if let Err(error) = engine.inner.store.wake_deliveries(woken, now).await {
                tracing::warn!(%error, "cannot wake parked deliveries; they come due later");
            }
            gate.waking.store(false, Ordering::Release);
        });
    }

    fn gate(&self, target: &DeliveryTarget) -> Arc<Gate> {
        let key = destination_key(target.webhook.url.as_str());
        let mut gates = self.inner.gates.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(gates.entry(key).or_insert_with(|| {
            Arc::new(Gate {
                slots: Semaphore::new(self.inner.settings.per_destination),
                waiting: std::sync::atomic::AtomicUsize::new(0),
                parked: Mutex::new(VecDeque::new()),
                waking: std::sync::atomic::AtomicBool::new(false),
            })
        }))
    }

    /// A slot at the destination; `None` when too many wait for it already (the delivery
    /// then waits in the store) or the engine is stopping.
    async fn enter<'a>(&self, gate: &'a Gate) -> Option<SemaphorePermit<'a>> {
        use std::sync::atomic::Ordering;
        if let Ok(slot) = gate.slots.try_acquire() {
            return Some(slot);
        }
        if gate.waiting.fetch_add(1, Ordering::AcqRel)
            >= self.inner.settings.per_destination_waiting
        {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let slot = tokio::select! {
            slot = gate.slots.acquire() => slot.ok(),
            () = self.inner.shutdown.cancelled() => None,
        };
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        slot
    }
}

/// Scheme, host and port: what "one destination" means for concurrency limits.
///
/// Read off the validated URL's text (no parse on the hot path): everything before the path,
/// query or fragment, lowercased since host names are case-insensitive.
fn destination_key(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    url[..end].to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::destination_key;

    #[test]
    fn destinations_are_scheme_host_and_port() {
        assert_eq!(
            destination_key("https://Example.com/a?b#c"),
            "https://example.com"
        );
        assert_eq!(
            destination_key("http://127.0.0.1:8080/hook"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            destination_key("https://example.com?x=1"),
            "https://example.com"
        );
        assert_eq!(
            destination_key("https://[::1]:9000/x"),
            "https://[::1]:9000"
        );
        assert_eq!(
            destination_key("https://example.com"),
            "https://example.com"
        );
    }
}
