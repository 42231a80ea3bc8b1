//! Idempotency keys of stored events: what makes a re-run of a group commit harmless.
//!
//! When a batch's `COMMIT` fails, the batch may or may not have committed (the connection
//! died after the server committed but before its answer arrived). Its writes are then run
//! again alone, and each event they store carries the key it carried the first time: an
//! event already stored is found by its key (`ON CONFLICT DO NOTHING`, then a read) instead
//! of being stored, and its delivery created, a second time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreError;

/// One event's key: this store's random prefix and a counter, unique across nodes and runs
/// (two stores share a prefix with a probability of 2⁻⁶⁴).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKey([u8; 16]);

impl EventKey {
    /// The key as stored (`events.idempotency_key`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Hands out event keys: a random prefix drawn when the store opens, then a counter, so
/// keys cost no system call each and sort in insert order within a node (cheap to index).
pub struct EventKeys {
    prefix: [u8; 8],
    next: AtomicU64,
}

impl EventKeys {
    /// A generator with a fresh random prefix.
    pub fn new() -> Result<Self, StoreError> {
        let mut prefix = [0u8; 8];
        getrandom::fill(&mut prefix)
            .map_err(|e| StoreError::Open(format!("no random source for event keys: {e}")))?;
        Ok(Self {
            prefix,
            next: AtomicU64::new(0),
        })
    }

    /// `count` new keys.
    pub fn take(&self, count: usize) -> Vec<EventKey> {
        let first = self.next.fetch_add(count as u64, Ordering::Relaxed);
        (first..first + count as u64)
            .map(|n| {
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&self.prefix);
                key[8..].copy_from_slice(&n.to_be_bytes());
                EventKey(key)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::EventKeys;

    #[test]
    fn keys_are_distinct_within_and_across_generators() {
        let (first, second) = (EventKeys::new().unwrap(), EventKeys::new().unwrap());
        let mut keys = first.take(3);
        keys.extend(first.take(2));
        keys.extend(second.take(3));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
