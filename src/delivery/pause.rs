//! Paused destinations: a receiver that has answered nothing but failures for
//! `--pause-after-s` (or that an operator paused) gets no attempts but one probe every
//! `--probe-interval-s`; its deliveries wait in the store, and do not age meanwhile. The
//! first 200 to a probe (or an operator's resume) makes it healthy again, and what waited is
//! woken, oldest parked first, to drain under the usual per-destination limits.
//!
//! The list of paused destinations is the store's (`destination_pauses`), so every node and
//! every restart sees the same; each node keeps it in memory, re-read every second. A
//! delivery waiting behind a pause names it in the store (`parked_behind`), so a resume wakes
//! it whichever node parked it, and after a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::DestinationId;
use crate::store::{DestinationPause, Store, StoreError};

/// One paused destination on this node.
pub struct Paused {
    /// The stored pause.
    pub pause: DestinationPause,
    /// When the next probe may be made (ms since the epoch).
    next_probe: AtomicI64,
}

impl Paused {
    /// Claims the probe if it is due: one attempt per interval goes through.
    pub fn take_probe(&self, now: i64, interval: Duration) -> bool {
        let due = self.next_probe.load(Ordering::Acquire);
        due <= now
            && self
                .next_probe
                .compare_exchange(
                    due,
                    now + interval.as_millis() as i64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// When deliveries parked now should come due again at the latest: the next probe time.
    pub fn next_probe(&self) -> i64 {
        self.next_probe.load(Ordering::Acquire)
    }
}

/// The paused destinations, as this node knows them.
#[derive(Default)]
pub struct Pauses {
    paused: RwLock<HashMap<DestinationId, Arc<Paused>>>,
}

impl Pauses {
    /// The pause of `id`, if it is paused.
    pub fn get(&self, id: &DestinationId) -> Option<Arc<Paused>> {
        let paused = self.paused.read().unwrap_or_else(|p| p.into_inner());
        paused.get(id).cloned()
    }

    /// Every destination paused, as this node knows them.
    pub fn all(&self) -> Vec<Arc<Paused>> {
        let paused = self.paused.read().unwrap_or_else(|p| p.into_inner());
        paused.values().cloned().collect()
    }

    /// Whether `id` is paused.
    pub fn is_paused(&self, id: &DestinationId) -> bool {
        self.get(id).is_some()
    }

    /// Pauses `pause.id` in the store and here; `false` when it was paused already.
    pub async fn pause(
        &self,
        store: &dyn Store,
        pause: DestinationPause,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        let paused = store.pause_destination(pause.clone()).await?;
        self.insert(pause, interval);
        Ok(paused)
    }

    /// Resumes `id` in the store and here, and wakes what this node parked behind it;
    /// the pause, or `None` when it was not paused.
    pub async fn resume(
        &self,
        store: &dyn Store,
        id: &DestinationId,
    ) -> Result<Option<DestinationPause>, StoreError> {
        let resumed = store.resume_destination(id).await?;
        {
            let mut paused = self.paused.write().unwrap_or_else(|p| p.into_inner());
            paused.remove(id);
        }
        if let Some(pause) = &resumed {
            wake(store, pause).await?;
        }
        Ok(resumed)
    }

    /// Brings this node's list in line with the store's (pauses and resumes made by other
    /// nodes or the admin API), waking what it parked behind a pause lifted elsewhere.
    pub async fn refresh(&self, store: &dyn Store, interval: Duration) -> Result<(), StoreError> {
        let stored = store.paused_destinations().await?;
        let lifted: Vec<Arc<Paused>> = {
            let mut paused = self.paused.write().unwrap_or_else(|p| p.into_inner());
            let keep: std::collections::HashSet<&DestinationId> =
                stored.iter().map(|p| &p.id).collect();
            let gone: Vec<DestinationId> = paused
                .keys()
                .filter(|id| !keep.contains(id))
                .cloned()
                .collect();
            gone.iter().filter_map(|id| paused.remove(id)).collect()
        };
        for pause in stored {
            self.insert(pause, interval);
        }
        for removed in lifted {
            wake(store, &removed.pause).await?;
        }
        Ok(())
    }

    fn insert(&self, pause: DestinationPause, interval: Duration) {
        let mut paused = self.paused.write().unwrap_or_else(|p| p.into_inner());
        paused.entry(pause.id.clone()).or_insert_with(|| {
            let first_probe = pause.paused_at + interval.as_millis() as i64;
            Arc::new(Paused {
                pause,
                next_probe: AtomicI64::new(first_probe),
            })
        });
    }
}

/// Makes the deliveries parked behind a lifted pause due now (whichever node parked
/// them, before a restart too), their age windows moved by the time the pause lasted.
async fn wake(store: &dyn Store, lifted: &DestinationPause) -> Result<(), StoreError> {
    let now = crate::clock::now_ms();
    let paused_for = (now - lifted.paused_at).max(0);
    store.wake_paused(&lifted.id, now, paused_for).await?;
    Ok(())
}
