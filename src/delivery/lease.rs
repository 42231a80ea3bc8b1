//! Lease renewal: a delivery held in memory (waiting for its destination, or in flight)
//! keeps its lease for as long as this node holds it, so no other node claims it meanwhile.
//!
//! Leases are short-lived claims written with the delivery (`lease_until`); without renewal,
//! a delivery that waits in memory longer than the lease, e.g. behind a saturated
//! destination, would come due again and a second node would send it too.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::domain::DeliveryId;

/// The deliveries this node holds in memory, whose leases it renews.
#[derive(Default)]
pub struct Held(Mutex<HashSet<DeliveryId>>);

impl Held {
    /// From now until [`Held::release`], `id`'s lease is renewed.
    pub fn hold(&self, id: DeliveryId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
    }

    /// `id` left memory (settled, deferred, or its task ended).
    pub fn release(&self, id: DeliveryId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// The deliveries held now.
    pub fn snapshot(&self) -> Vec<DeliveryId> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.iter().copied().collect()
    }
}
