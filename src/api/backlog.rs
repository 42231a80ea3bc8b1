//! The backlog (pending deliveries grouped by channel or partner and target) that
//! `/metrics`, the destinations API and the console's overview show, read from the store
//! once for all of them and kept while reading it again would be expensive.
//!
//! Grouping the pending deliveries visits every one of them: about a second for a backlog
//! of a million on this machine, which the console's overview (polled every 2 s) and a
//! Prometheus scrape would otherwise pay at each call. A read that took more than
//! [`CACHE_ABOVE`] is reused for ten times as long as it took (a 1 s read: 10 s), so at most
//! a tenth of one core goes to it however often it is asked for; a cheaper read (any
//! backlog of a few thousand) is made again at every call, so small installations and the
//! tests see the exact figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::store::{PendingGroup, Store, StoreError};

/// Reads quicker than this are not kept.
const CACHE_ABOVE: Duration = Duration::from_millis(50);

/// How many times its own duration a slow read is kept.
const KEEP_FACTOR: u32 = 10;

/// The last backlog read, shared by every caller.
#[derive(Default)]
pub struct BacklogCache {
    last: Mutex<Option<Read>>,
}

struct Read {
    groups: Arc<Vec<PendingGroup>>,
    at: Instant,
    took: Duration,
}

impl BacklogCache {
    /// The pending groups, read now or kept from a recent slow read. Callers that arrive
    /// while a read runs wait for it instead of starting their own.
    pub async fn groups(&self, store: &dyn Store) -> Result<Arc<Vec<PendingGroup>>, StoreError> {
        let mut last = self.last.lock().await;
        if let Some(read) = last.as_ref() {
            if read.took > CACHE_ABOVE && read.at.elapsed() < read.took * KEEP_FACTOR {
                return Ok(Arc::clone(&read.groups));
            }
        }
        let started = Instant::now();
        let groups = Arc::new(store.pending_groups().await?);
        *last = Some(Read {
            groups: Arc::clone(&groups),
            at: Instant::now(),
            took: started.elapsed(),
        });
        Ok(groups)
    }
}

/// The number of pending deliveries (the queue depth) of a backlog read.
pub fn depth(groups: &[PendingGroup]) -> u64 {
    groups.iter().map(|g| g.count).sum()
}
