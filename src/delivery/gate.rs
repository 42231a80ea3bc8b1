//! Per-destination gates: how many attempts may be in flight to one destination (scheme,
//! host and port) and how many deliveries may wait in memory for it, so one slow receiver
//! costs its own share of the engine only.
//!
//! A delivery waiting for a slot leaves the queue when its lease is lost (another node owns
//! it now) or the engine stops, without being sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::domain::DeliveryId;

/// The gates of every destination seen so far.
pub struct Gates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Attempts in flight per destination.
    slots: usize,
    /// Deliveries waiting in memory per destination.
    waiting: usize,
}

/// One destination's gate: `slots` in flight, `waiting` queued in memory, and the ids of
/// the deliveries `parked` in the store while it was full, to wake when it has room.
pub struct Gate {
    slots: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    parked: Mutex<VecDeque<DeliveryId>>,
    /// A wake-up write is under way: one at a time per destination.
    waking: AtomicBool,
}

/// Parked ids remembered per destination (8 bytes each); beyond, a parked delivery waits
/// out its due time.
const MAX_PARKED: usize = 100_000;

/// Whether a delivery may make its attempt now.
pub enum Admission<'a> {
    /// Yes: hold this slot for the attempt.
    Slot(SemaphorePermit<'a>),
    /// Too many wait for this destination already: the delivery waits in the store.
    Full,
    /// The engine is stopping.
    Stopping,
    /// The delivery's lease was lost while it waited: another node owns it now.
    LeaseLost,
}

impl Gates {
    /// Gates allowing `slots` attempts in flight and `waiting` more in memory per
    /// destination.
    pub fn new(slots: usize, waiting: usize) -> Self {
        Self {
            gates: Mutex::new(HashMap::new()),
            slots,
            waiting,
        }
    }

    /// The gate of `url`'s destination.
    pub fn gate(&self, url: &str) -> Arc<Gate> {
        let key = destination_key(url);
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(gates.entry(key).or_insert_with(|| {
            Arc::new(Gate {
                slots: Semaphore::new(self.slots),
                waiting: AtomicUsize::new(0),
                max_waiting: self.waiting,
                parked: Mutex::new(VecDeque::new()),
                waking: AtomicBool::new(false),
            })
        }))
    }
}

impl Gate {
    /// Waits for a slot, unless too many wait already, the engine stops (`shutdown`), or
    /// the delivery's lease is lost (`lost`), before or while it waits.
    pub async fn enter(
        &self,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> Admission<'_> {
        if lost.is_cancelled() {
            return Admission::LeaseLost;
        }
        if shutdown.is_cancelled() {
            return Admission::Stopping;
        }
        if let Ok(slot) = self.slots.try_acquire() {
            return Admission::Slot(slot);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Admission::Full;
        }
        let admission = tokio::select! {
            slot = self.slots.acquire() => match slot {
                Ok(slot) if !lost.is_cancelled() => Admission::Slot(slot),
                Ok(_) => Admission::LeaseLost,
                Err(_) => Admission::Stopping,
            },
            () = shutdown.cancelled() => Admission::Stopping,
            () = lost.cancelled() => Admission::LeaseLost,
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        admission
    }
}

impl Gate {
    /// Remembers a delivery parked in the store because this destination was full.
    pub fn park(&self, id: DeliveryId) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if parked.len() < MAX_PARKED {
            parked.push_back(id);
        }
    }

    /// The parked deliveries to make due now: when at most half of the waiting room is
    /// taken, as many as fit in the rest, oldest first; `None` when none should be woken or
    /// a wake-up is under way (then [`Gate::woken`] must follow the write).
    pub fn to_wake(&self) -> Option<Vec<DeliveryId>> {
        let waiting = self.waiting.load(Ordering::Acquire);
        if waiting > self.max_waiting / 2 || self.waking.swap(true, Ordering::AcqRel) {
            return None;
        }
        let woken: Vec<DeliveryId> = {
            let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            let room = self
                .max_waiting
                .saturating_sub(waiting)
                .max(1)
                .min(parked.len());
            parked.drain(..room).collect()
        };
        if woken.is_empty() {
            self.woken();
            return None;
        }
        Some(woken)
    }

    /// The wake-up write is done: the next freed slot may wake more.
    pub fn woken(&self) {
        self.waking.store(false, Ordering::Release);
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
    use super::*;

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

    #[tokio::test]
    async fn a_waiting_delivery_leaves_when_its_lease_is_lost() {
        let gates = Gates::new(1, 10);
        let gate = gates.gate("http://127.0.0.1:1/a");
        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        let Admission::Slot(_busy) = gate.enter(&shutdown, &CancellationToken::new()).await else {
            panic!("the first delivery gets the slot");
        };
        let waiting = gate.enter(&shutdown, &lost);
        lost.cancel();
        assert!(matches!(waiting.await, Admission::LeaseLost));
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }
}
