//! Deliveries that leave memory to wait in the store: behind a saturated destination
//! (parked, and woken when it has room), behind a paused one (until its next probe or its
//! resume); and every settle, retried while the database is briefly failing, and kept
//! until it is back while it is unavailable (an outage).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::feed::tell_settled;
use super::super::gate::Gate;
use super::super::outage::ENGINE_WAIT;
use super::super::pause::Paused;
use super::Engine;
use crate::store::{
    within, AttemptRecord, CreatedDelivery, DueDelivery, Outcome, Settled, Settlement, StoreError,
};

impl Engine {
    /// Writes an outcome under the delivery's lease; `None` when the lease turned out lost
    /// (nothing was written: another node owns the delivery now), else the extras created.
    pub(super) async fn settle(
        &self,
        job: &DueDelivery,
        attempt: Option<AttemptRecord>,
        settlement: Settlement,
        lost: &CancellationToken,
    ) -> Result<Option<Vec<CreatedDelivery>>, StoreError> {
        let outcome = Outcome {
            delivery: job.id,
            channel: job.channel.clone(),
            lease: job.lease,
            attempt,
            settlement,
        };
        match self.settle_retrying(&outcome).await? {
            Settled::Recorded { extras, attempt } => {
                tell_settled(&self.inner.feed, job, &outcome, attempt);
                Ok(Some(extras))
            }
            Settled::LeaseLost => {
                // Counted once per lease: whichever of this settle and a renewal takes the
                // delivery out of the held set (under its lock) counts it.
                lost.cancel();
                if self.inner.held.release(job.id, job.lease) {
                    self.inner.metrics.leases_lost(1);
                }
                tracing::warn!(
                    "lease lost: another node owns this delivery now; its outcome is not recorded"
                );
                Ok(None)
            }
        }
    }

    /// A delivery for a paused destination, outside its probe: back to the store, due after
    /// the next probe (the pause's resume wakes it sooner), nothing attempted.
    pub(super) async fn wait_out_pause(
        &self,
        paused: &Paused,
        job: &DueDelivery,
        lost: &CancellationToken,
    ) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        let interval = self.inner.settings.probe_interval.as_millis() as i64;
        let at = paused.next_probe().max(now) + interval;
        let behind = Some(paused.pause.id.clone());
        let waits = Settlement::Deferred { at, behind };
        self.settle(job, None, waits, lost).await?;
        Ok(())
    }

    /// `store.settle`, tried again while it fails for a reason that may pass: the attempt
    /// happened, and an outcome that is not recorded would be sent again (and a 200 would be
    /// missing from the attempt log). While the database is unavailable it waits for the
    /// outage to end, however long, without counting tries (the outcome is written when the
    /// database is back); other failures are tried again with backoff about a minute.
    pub(super) async fn settle_retrying(&self, outcome: &Outcome) -> Result<Settled, StoreError> {
        let mut pause = SETTLE_RETRY_FIRST;
        let mut tries = 1;
        let store = self.inner.store.as_ref();
        loop {
            match self.when_stored(|| store.settle(outcome.clone())).await {
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

    /// Runs the store call `call` (bounded by [`ENGINE_WAIT`]) until it does not fail for an
    /// unavailable database: each such failure reports the outage and waits for its end.
    /// Gives that failure back only when the service stops meanwhile.
    pub(super) async fn when_stored<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let never = CancellationToken::new();
        loop {
            match within(ENGINE_WAIT, call()).await {
                Err(error) if self.inner.outage.failed(&error) => {
                    if !self
                        .inner
                        .outage
                        .until_up(&self.inner.shutdown, &never)
                        .await
                    {
                        return Err(error);
                    }
                }
                done => return done,
            }
        }
    }

    /// The destination is full: the delivery leaves memory for the store, due again when the
    /// destination has room (see [`Engine::wake_parked`]) or after [`PARKED_AT_MOST`], so a
    /// waiting backlog costs one write per delivery, not one every second or two.
    pub(super) async fn park(
        &self,
        gate: &Gate,
        job: &DueDelivery,
        lost: &CancellationToken,
    ) -> Result<(), StoreError> {
        let at = crate::clock::now_ms() + PARKED_AT_MOST.as_millis() as i64;
        tracing::debug!("destination saturated; parked in the store");
        self.inner.metrics.delivery_deferred();
        if self
            .settle(job, None, Settlement::Deferred { at, behind: None }, lost)
            .await?
            .is_some()
        {
            gate.park(job.id);
        }
        Ok(())
    }

    /// After an attempt freed a slot: when at most half of the destination's waiting room is
    /// taken, makes as many parked deliveries due as fit in the rest (oldest parked first),
    /// one wake-up write at a time per destination.
    pub(super) fn wake_parked(&self, gate: &Arc<Gate>) {
        let Some(woken) = gate.to_wake() else {
            return;
        };
        let (engine, gate) = (self.clone(), Arc::clone(gate));
        self.inner.tracker.spawn(async move {
            let now = crate::clock::now_ms();
            if let Err(error) = engine.inner.store.wake_deliveries(woken, now, 0).await {
                tracing::warn!(%error, "cannot wake parked deliveries; they come due later");
            }
            gate.woken();
        });
    }
}

/// Recording an outcome is tried this often (about a minute in all) before the delivery is
/// left to its lease.
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
