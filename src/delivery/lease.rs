//! Lease renewal: a delivery held in memory (waiting for its destination, or in flight)
//! keeps its lease for as long as this node holds it, so no other node claims it meanwhile;
//! and a lease this node turns out to have lost is dropped from memory at once.
//!
//! Leases are short-lived claims written with the delivery (`lease_until`); without renewal,
//! a delivery that waits in memory longer than the lease, e.g. behind a saturated
//! destination, would come due again and a second node would send it too. A renewal can
//! still fail to reach the database for longer than a lease (a stalled connection, a paused
//! process); then another node may claim the delivery, and the next renewal reports it
//! lost: a delivery still waiting for its destination's slot is abandoned unsent (its new
//! holder sends it), one in flight finishes, but its outcome is refused by the store (the
//! settle is conditioned on the lease) and the new holder's stands.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::outage::{Outage, ENGINE_WAIT};
use crate::domain::DeliveryId;
use crate::metrics::Metrics;
use crate::store::{within, HeldLease, LeaseToken, Store, StoreError};

/// The deliveries this node holds in memory, whose leases it renews.
#[derive(Default)]
pub struct Held(Mutex<HashMap<DeliveryId, Holding>>);

/// One delivery held: under which lease, and how to tell its task the lease is lost.
struct Holding {
    lease: LeaseToken,
    lost: CancellationToken,
}

impl Held {
    /// From now until [`Held::release`], `id`'s lease is renewed; the token is cancelled if
    /// the lease is found lost. Holding it again under a newer lease (this node claimed it
    /// again after its lease expired) replaces the older one.
    pub fn hold(&self, id: DeliveryId, lease: LeaseToken) -> CancellationToken {
        let lost = CancellationToken::new();
        let holding = Holding {
            lease,
            lost: lost.clone(),
        };
        self.lock().insert(id, holding);
        lost
    }

    /// `id` left memory under `lease` (settled, deferred, or its task ended); returns
    /// whether it was still held under that lease (`false`: a renewal dropped it already).
    pub fn release(&self, id: DeliveryId, lease: LeaseToken) -> bool {
        let mut held = self.lock();
        if held.get(&id).is_some_and(|h| h.lease == lease) {
            held.remove(&id);
            return true;
        }
        false
    }

    /// The deliveries held now, with their leases.
    pub fn snapshot(&self) -> Vec<HeldLease> {
        let held = self.lock();
        held.iter()
            .map(|(id, holding)| HeldLease {
                delivery: *id,
                lease: holding.lease,
            })
            .collect()
    }

    /// Drops the deliveries of `lost` still held under the leases in `renewed` (the
    /// snapshot the renewal was made of) from memory and tells their tasks; returns how
    /// many it dropped.
    pub fn lose(&self, renewed: &[HeldLease], lost: &[DeliveryId]) -> usize {
        let mut held = self.lock();
        let mut dropped = 0;
        for one in renewed.iter().filter(|h| lost.contains(&h.delivery)) {
            if held
                .get(&one.delivery)
                .is_some_and(|h| h.lease == one.lease)
            {
                if let Some(holding) = held.remove(&one.delivery) {
                    holding.lost.cancel();
                    dropped += 1;
                }
            }
        }
        dropped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeliveryId, Holding>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every third of `lease`, pushes the leases of the deliveries held in memory forward, and
/// drops those it could not renew; until `shutdown`. While the database is unavailable
/// (`outage`) it does not try: the engine's probe renews them when it is back.
pub async fn renew_periodically(
    store: &dyn Store,
    held: &Held,
    lease: Duration,
    metrics: &Metrics,
    (outage, shutdown): (&Outage, &CancellationToken),
) {
    let every = lease / 3;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if !outage.is_up() {
            continue;
        }
        let renewal = renew_once(store, held, lease, metrics);
        if let Err(error) = within(ENGINE_WAIT, renewal).await {
            if !outage.failed(&error) {
                tracing::warn!(%error, "cannot renew the leases of deliveries held in memory");
            }
        }
    }
}

/// Pushes the leases of the deliveries held in memory forward by `lease` from now, and
/// drops from memory those found lost (another node claimed them).
pub async fn renew_once(
    store: &dyn Store,
    held: &Held,
    lease: Duration,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let snapshot = held.snapshot();
    if snapshot.is_empty() {
        return Ok(());
    }
    let until = crate::clock::now_ms() + lease.as_millis() as i64;
    let lost = store.renew_leases(snapshot.clone(), until).await?;
    if lost.is_empty() {
        return Ok(());
    }
    let dropped = held.lose(&snapshot, &lost);
    if dropped > 0 {
        metrics.leases_lost(dropped as u64);
        tracing::warn!(
            dropped,
            deliveries = ?lost,
            "leases lost at renewal: another node owns these deliveries now; dropped from memory"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lease_is_dropped_and_its_task_told() {
        let held = Held::default();
        let (a, b) = (DeliveryId(1), DeliveryId(2));
        let lost_a = held.hold(a, LeaseToken(1));
        let lost_b = held.hold(b, LeaseToken(1));
        let snapshot = held.snapshot();
        assert_eq!(held.lose(&snapshot, &[a]), 1);
        assert!(lost_a.is_cancelled() && !lost_b.is_cancelled());
        assert_eq!(
            held.snapshot(),
            vec![HeldLease {
                delivery: b,
                lease: LeaseToken(1)
            }]
        );
    }

    #[test]
    fn a_newer_hold_of_the_same_delivery_survives_the_older_ones() {
        let held = Held::default();
        let id = DeliveryId(7);
        let _old = held.hold(id, LeaseToken(1));
        let stale = held.snapshot();
        let newer = held.hold(id, LeaseToken(2));
        // A renewal made of the older lease reports it lost: the newer hold stays.
        assert_eq!(held.lose(&stale, &[id]), 0);
        held.release(id, LeaseToken(1));
        assert!(!newer.is_cancelled());
        assert_eq!(held.snapshot().len(), 1);
        held.release(id, LeaseToken(2));
        assert!(held.snapshot().is_empty());
    }
}
