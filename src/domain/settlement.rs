//! What a settled attempt does to its delivery: the one statement of the rule that both
//! storage backends write, each in its own batched way.
//!
//! The delivery engine decides the [`Settlement`] (delivered, retry at a time, gave up,
//! dropped, deferred); [`Settlement::effect`] turns it into the delivery row's new columns
//! and the deliveries it creates. The stores only persist that effect: no backend decides a
//! state, a due time or which extras to create.

use super::{DeliveryState, DestinationId, DestinationName, Target};

/// What happens to a delivery after an attempt (or instead of one).
#[derive(Debug, Clone)]
pub enum Settlement {
    /// 200: done; create one extra delivery per name (leased until `claim_until` if set).
    Delivered {
        /// The extra destinations to clone to (multi webhook enabled at the 200).
        extras: Vec<DestinationName>,
        /// Lease for the extras when they are handed over in memory.
        claim_until: Option<i64>,
    },
    /// Failed; try again at `at`.
    Retry {
        /// When, ms since the epoch.
        at: i64,
        /// Why the attempt failed.
        error: String,
    },
    /// Failed for the last time: the maximum age is reached.
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
    /// No destination is configured: nothing was sent.
    Dropped {
        /// Why there is no route.
        reason: String,
    },
    /// Not attempted (its destination is saturated, or paused); due again at `at`, no
    /// attempt counted.
    Deferred {
        /// When, ms since the epoch.
        at: i64,
        /// The paused destination it waits behind, so resuming it can wake the delivery
        /// (after a restart too); `None` behind a saturated one.
        behind: Option<DestinationId>,
    },
}

/// The new columns of a settled delivery row (its lease is cleared in every case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange<'a> {
    /// An attempt's end (or a drop): the state, the attempts to add, when it is next due
    /// and the error it keeps.
    Settled {
        /// The new state.
        state: DeliveryState,
        /// Added to the row's attempt count: 1 when an attempt was made.
        attempts_added: i64,
        /// When it is due again (for a finished delivery: when it finished).
        next_attempt_at: i64,
        /// The error or reason shown with it (`last_error`).
        last_error: Option<&'a str>,
    },
    /// Put off without an attempt: due again at `next_attempt_at`, parked behind a paused
    /// destination when one is named; state and attempt count unchanged.
    Deferred {
        /// When it is due again.
        next_attempt_at: i64,
        /// The paused destination it waits for.
        parked_behind: Option<&'a DestinationId>,
    },
}

/// Everything a settle writes besides the attempt row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect<'a> {
    /// The delivery row's new columns.
    pub row: RowChange<'a>,
    /// Deliveries to create for the same event (the extra destinations after a 200).
    pub creates: Vec<Target>,
    /// Their lease, when they are handed over to this node in memory.
    pub claim_until: Option<i64>,
    /// Whether the delivery leaves `pending`: if it is ordered, the next one of its channel
    /// becomes due in the same transaction.
    pub ends_head: bool,
}

impl Settlement {
    /// What settling under this outcome writes, at `now`; `attempted` says whether an
    /// attempt was made (it is then counted).
    pub fn effect(&self, attempted: bool, now: i64) -> Effect<'_> {
        let attempts_added = i64::from(attempted);
        let settled = |state, next_attempt_at, last_error| RowChange::Settled {
            state,
            attempts_added,
            next_attempt_at,
            last_error,
        };
        let row = match self {
            Self::Delivered { .. } => settled(DeliveryState::Delivered, now, None),
            Self::Retry { at, error } => settled(DeliveryState::Pending, *at, Some(error)),
            Self::GaveUp { error } => settled(DeliveryState::Failed, now, Some(error)),
            Self::Dropped { reason } => settled(DeliveryState::Dropped, now, Some(reason)),
            Self::Deferred { at, behind } => RowChange::Deferred {
                next_attempt_at: *at,
                parked_behind: behind.as_ref(),
            },
        };
        let ends_head =
            matches!(&row, RowChange::Settled { state, .. } if *state != DeliveryState::Pending);
        let (creates, claim_until) = match self {
            Self::Delivered {
                extras,
                claim_until,
            } => (
                extras.iter().cloned().map(Target::Extra).collect(),
                *claim_until,
            ),
            _ => (Vec::new(), None),
        };
        Effect {
            row,
            creates,
            claim_until,
            ends_head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn name(raw: &str) -> DestinationName {
        DestinationName::parse(raw).unwrap()
    }

    #[test]
    fn a_200_finishes_the_delivery_and_creates_its_extras_leased_as_asked() {
        let settlement = Settlement::Delivered {
            extras: vec![name("crm"), name("audit")],
            claim_until: Some(5_000),
        };
        let effect = settlement.effect(true, NOW);
        assert_eq!(
            effect.row,
            RowChange::Settled {
                state: DeliveryState::Delivered,
                attempts_added: 1,
                next_attempt_at: NOW,
                last_error: None,
            }
        );
        assert_eq!(
            effect.creates,
            vec![Target::Extra(name("crm")), Target::Extra(name("audit"))]
        );
        assert_eq!(effect.claim_until, Some(5_000));
        assert!(effect.ends_head);
    }

    #[test]
    fn a_retry_stays_pending_due_at_its_time_and_keeps_the_head() {
        let settlement = Settlement::Retry {
            at: 9_000,
            error: "HTTP 500".into(),
        };
        let effect = settlement.effect(true, NOW);
        assert_eq!(
            effect.row,
            RowChange::Settled {
                state: DeliveryState::Pending,
                attempts_added: 1,
                next_attempt_at: 9_000,
                last_error: Some("HTTP 500"),
            }
        );
        assert!(effect.creates.is_empty());
        assert!(!effect.ends_head);
    }

    #[test]
    fn giving_up_and_dropping_end_the_delivery_with_their_reason() {
        let gave_up = Settlement::GaveUp {
            error: "timeout".into(),
        };
        let effect = gave_up.effect(true, NOW);
        assert!(matches!(
            effect.row,
            RowChange::Settled {
                state: DeliveryState::Failed,
                last_error: Some("timeout"),
                next_attempt_at: NOW,
                ..
            }
        ));
        assert!(effect.ends_head);
        let dropped = Settlement::Dropped {
            reason: "no webhook".into(),
        };
        let effect = dropped.effect(false, NOW);
        assert_eq!(
            effect.row,
            RowChange::Settled {
                state: DeliveryState::Dropped,
                attempts_added: 0,
                next_attempt_at: NOW,
                last_error: Some("no webhook"),
            }
        );
        assert!(effect.ends_head);
    }

    #[test]
    fn a_deferral_counts_nothing_and_names_the_paused_destination() {
        let behind = DestinationId::of("https://example.com/hook").unwrap();
        let settlement = Settlement::Deferred {
            at: 7_000,
            behind: Some(behind.clone()),
        };
        let effect = settlement.effect(false, NOW);
        assert_eq!(
            effect.row,
            RowChange::Deferred {
                next_attempt_at: 7_000,
                parked_behind: Some(&behind),
            }
        );
        assert!(!effect.ends_head);
        assert!(effect.creates.is_empty());
    }
}
