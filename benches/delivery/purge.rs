//! The payload purge's cost, measured on the database a headline run left behind (its
//! events delivered, the server stopped): every payload purged in the maintenance loop's
//! batches, each batch timed (a batch is one job of the SQLite writer, so its time is the
//! longest any other write waits behind the purge), and the bytes the database then uses.

#[allow(unused_imports)]
use super::*;

use std::path::Path;

use switchboard::store::{SqliteStore, Store};

/// What purging every payload of a run cost, and what it freed.
pub(crate) struct PurgeCost {
    /// Payloads purged.
    pub(crate) purged: u64,
    /// Wall time of the whole purge.
    pub(crate) seconds: f64,
    /// Batch times, ascending.
    pub(crate) batches: Vec<Duration>,
    /// Bytes of pages in use (not on the free list) before and after.
    pub(crate) in_use: [u64; 2],
}

impl PurgeCost {
    /// The batch time at quantile `q` (0 to 1), in ms.
    pub(crate) fn batch_ms(&self, q: f64) -> f64 {
        let last = self.batches.len().saturating_sub(1);
        let index = ((last as f64) * q).round() as usize;
        self.batches
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// Purges every payload of the SQLite database at `database`, as the maintenance loop does.
pub(crate) fn measure(runtime: &Handle, database: &Path) -> BenchResult<PurgeCost> {
    let before = pages_in_use(database)?;
    let store = runtime.block_on(SqliteStore::open(database))?;
    let now = switchboard::clock::now_ms();
    let (mut batches, mut purged) = (Vec::new(), 0);
    let start = Instant::now();
    loop {
        let began = Instant::now();
        let batch = runtime.block_on(store.purge_payloads(
            i64::MAX,
            switchboard::maintenance::PAYLOAD_BATCH,
            now,
        ))?;
        if batch.examined == 0 {
            break;
        }
        batches.push(began.elapsed());
        purged += batch.purged;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(store);
    batches.sort();
    Ok(PurgeCost {
        purged,
        seconds,
        batches,
        in_use: [before, pages_in_use(database)?],
    })
}

/// Bytes of the database's pages that hold data (the file's pages less its free list, WAL
/// included): what new rows cannot reuse.
fn pages_in_use(database: &Path) -> BenchResult<u64> {
    let conn = rusqlite::Connection::open(database)?;
    let pragma = |name: &str| -> BenchResult<u64> {
        let value: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    Ok((pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?)
}
