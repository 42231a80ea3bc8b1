//! Leases as they cross the `Store` boundary: which claim a node holds a delivery under, and
//! what a settle did with it.
//!
//! A lease is a delivery's `leased_until` plus its owner (`leased_by`, PostgreSQL) and its
//! generation (`lease_token`), set anew at each claim and when a delivery is stored already
//! leased. A settle or a renewal names the lease it holds; the store applies it only if that
//! is still the delivery's lease, so a node whose lease expired (and was claimed again,
//! by another node or by its own poller) can no longer change the delivery.

use crate::domain::{AttemptId, DeliveryId, Target};

/// The generation of a delivery's lease: it changes at each claim, so a node can tell its
/// own claim from any later one, its own included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub i64);

impl LeaseToken {
    /// The lease of a delivery stored already leased (ingest's and the extras' hand-over):
    /// the first generation of a new row.
    pub const FIRST: LeaseToken = LeaseToken(1);
}

/// A delivery this node holds in memory, and the lease it holds it under; what a renewal
/// extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    /// The delivery.
    pub delivery: DeliveryId,
    /// The lease this node holds it under.
    pub lease: LeaseToken,
}

/// A delivery a settle created (an extra destination's clone after a 200), with its lease
/// when it was created leased to this node (to be started from memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedDelivery {
    /// The new delivery.
    pub id: DeliveryId,
    /// Where it goes.
    pub target: Target,
    /// Its lease, when it is this node's; `None` when it waits for a claim in the store.
    pub lease: Option<LeaseToken>,
}

/// What a settle did: recorded, or refused because the lease is not this node's any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The attempt and the new state are stored; `extras` were created with it.
    Recorded {
        /// The deliveries created in the same transaction (extras after a 200).
        extras: Vec<CreatedDelivery>,
        /// The id of the attempt row written, when the outcome had an attempt (the live
        /// stream's cursor counts attempts by it). A re-run that finds its own settle
        /// already applied reads it back (the delivery's latest attempt, which no one else
        /// could add while this lease held it).
        attempt: Option<AttemptId>,
    },
    /// The delivery's lease is no longer the one settled under (it expired and was claimed
    /// again): nothing was written, the delivery belongs to its new holder.
    LeaseLost,
}
