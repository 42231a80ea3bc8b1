//! The engine's memory: what a delivery held in memory owns of the count and byte limits,
//! reserved before it is stored (ingest) or claimed (the poller), and handed over with it.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::metrics::Metrics;
use crate::store::{DueDelivery, Settlement};

/// Memory reserved for deliveries about to be handed over: a count and bytes, split per
/// delivery as each is handed over.
pub struct Reservation {
    count: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
}

/// What one delivery held in memory owns of the engine's limits, counted in the metrics
/// while it lives; dropped when the delivery leaves memory.
pub(super) struct MemoryShare {
    _count: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
    metrics: Arc<Metrics>,
}

impl MemoryShare {
    pub(super) fn new(
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
    pub(super) fn take_bytes(
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
    pub(super) fn put_back(&self, job: DueDelivery) {
        let engine = self.clone();
        self.inner.tracker.spawn(async move {
            let at = crate::clock::now_ms();
            let deferred = Settlement::Deferred { at, behind: None };
            let unwatched = CancellationToken::new();
            if let Err(error) = engine.settle(&job, None, deferred, &unwatched).await {
                tracing::warn!(delivery = %job.id, %error, "cannot put a delivery back; its lease will run out");
            }
        });
    }
}
