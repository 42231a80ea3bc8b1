//! Group commit for the hot writes on PostgreSQL: storing events and settling attempts.
//!
//! One transaction per event would make every ingest and every settle pay a `BEGIN`, a
//! `COMMIT` and its WAL flush. Instead, concurrent calls queue here and one task runs all
//! that is queued in one transaction, then answers each caller after the commit (as the
//! SQLite writer does). If any write of a batch fails, the batch is rolled back and each of
//! its writes is run again in its own transaction, so one bad write fails alone.
//!
//! A failed `COMMIT` is ambiguous: the connection may have died after the server committed
//! and before its answer arrived. Re-running the writes alone is then safe because each is
//! idempotent: an event carries the same idempotency key in the re-run, so one already
//! stored is found, not stored (nor its delivery created) twice; a settle is conditioned on
//! its lease, and one that finds its own lease already settled writes nothing again and
//! returns the extras it created that are still leased (`settle::settled_before`), so they
//! are started from memory rather than left waiting out their lease.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::idempotency::EventKey;
use super::{bulk, deliveries, settle};
use crate::store::{NewEvent, Outcome, SavedEvent, Settled, StoreError, WriteCounters};

/// Writes one transaction takes at most, to bound the latency of the first.
const MAX_BATCH: usize = 256;

/// Batches in flight at once, each on its own connection: a batch spends most of its time
/// waiting for round trips to the server, so a few run side by side.
const RUNNERS: usize = 4;

/// A hot write.
#[derive(Clone)]
pub enum Write {
    /// `save_events(events, claim_until)`, each event with its payload packed for storage
    /// and its idempotency key (the same in a re-run).
    Save(
        Vec<NewEvent>,
        Vec<Option<Vec<u8>>>,
        Vec<EventKey>,
        Option<i64>,
    ),
    /// `settle(outcome)`, its attempt's URL named by its `attempt_urls` id.
    Settle(Outcome, Option<i64>),
}

/// What a hot write returns.
pub enum Written {
    /// The stored events.
    Saved(Vec<SavedEvent>),
    /// What a settle did.
    Settled(Settled),
}

type Reply = oneshot::Sender<Result<Written, StoreError>>;

/// The queue of hot writes; its task stops when the last handle is dropped.
pub struct Batcher {
    queue: mpsc::UnboundedSender<(Write, Reply)>,
}

impl Batcher {
    /// Starts the batching task on `pool`; leases it takes are `node`'s.
    pub fn start(pool: Pool, node: String, counters: Arc<WriteCounters>) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..RUNNERS {
            let (pool, node, jobs) = (pool.clone(), node.clone(), Arc::clone(&jobs));
            tokio::spawn(run(pool, node, jobs, Arc::clone(&counters)));
        }
        Self { queue }
    }

    /// Queues `write`; returns once the transaction that ran it committed.
    pub async fn write(&self, write: Write) -> Result<Written, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((write, reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Abandoned)?
    }
}

/// Takes everything queued (up to [`MAX_BATCH`]) while holding the queue, so runners do
/// not split a burst into slivers; `None` once every handle is gone. A write whose caller
/// stopped waiting (its bound ran out while the database hung) is not run: the caller was
/// told it failed, and an event answered 503 is better not stored behind its sender's back.
async fn next_batch(
    jobs: &Mutex<mpsc::UnboundedReceiver<(Write, Reply)>>,
) -> Option<Vec<(Write, Reply)>> {
    let mut jobs = jobs.lock().await;
    let mut batch = Vec::new();
    while batch.is_empty() {
        let first = jobs.recv().await?;
        batch.extend(Some(first).filter(|(_, reply)| !reply.is_closed()));
    }
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) if job.1.is_closed() => {}
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn run(
    pool: Pool,
    node: String,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<(Write, Reply)>>>,
    counters: Arc<WriteCounters>,
) {
    while let Some(batch) = next_batch(&jobs).await {
        let started = Instant::now();
        let writes: Vec<Write> = batch.iter().map(|(write, _)| write.clone()).collect();
        match in_one_transaction(&pool, &node, &writes).await {
            Ok(results) => {
                counters.committed(batch.len(), started);
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                match error.is_unavailable() {
                    true => {
                        tracing::debug!(%error, writes = batch.len(), "group commit failed, the database is unavailable; running its writes again, each alone")
                    }
                    false => {
                        tracing::warn!(%error, writes = batch.len(), "group commit failed; running its writes again, each alone")
                    }
                }
                // The failed transaction's time is the writer's too; each write run
                // again alone is timed from its own start.
                counters.busy_since(started);
                run_alone(&pool, &node, batch, &counters).await;
            }
        }
    }
}

/// Runs each write of a failed batch again in its own transaction (a bad write fails alone;
/// an ambiguous commit is resolved by the writes' idempotency). Once one fails because the
/// database is unavailable, the rest are answered so at once instead of each waiting for
/// its own connection to fail (seconds each while the server hangs); their callers try
/// again when it is back.
async fn run_alone(pool: &Pool, node: &str, batch: Vec<(Write, Reply)>, counters: &WriteCounters) {
    let mut down: Option<String> = None;
    for (write, reply) in batch {
        if reply.is_closed() {
            continue;
        }
        if let Some(cause) = &down {
            let _ = reply.send(Err(StoreError::unavailable(cause.clone())));
            continue;
        }
        let started = Instant::now();
        let alone = in_one_transaction(pool, node, std::slice::from_ref(&write))
            .await
            .map(|mut results| results.remove(0));
        match &alone {
            Ok(_) => counters.committed(1, started),
            Err(error) if error.is_unavailable() => {
                counters.busy_since(started);
                down = Some(crate::error_chain(error));
            }
            Err(_) => counters.busy_since(started),
        }
        let _ = reply.send(alone);
    }
}

/// Runs `writes` in one transaction; all or nothing.
///
/// The common writes take one multi-row statement per kind (`bulk`), and the statements
/// of all of them are issued together, not one after the other: tokio-postgres pipelines
/// the statements of concurrent requests on one connection (each is sent without waiting
/// for the answers to those before it), and the server runs them in the order they arrive.
/// So a batch costs about one round trip per step of its longest write instead of one per
/// statement. Each write's own statements still run in order; writes of one batch are
/// independent (any order of them is one their callers could have seen), and the first
/// failure aborts the transaction, which fails the batch as before.
async fn in_one_transaction(
    pool: &Pool,
    node: &str,
    writes: &[Write],
) -> Result<Vec<Written>, StoreError> {
    let client = pool.get().await?;
    bulk::run_all(&client, node, writes).await
}

/// One hot write's statements, in `tx`.
pub(super) async fn run_write(
    tx: &impl GenericClient,
    node: &str,
    write: &Write,
) -> Result<Written, StoreError> {
    Ok(match write {
        Write::Save(events, packed, keys, claim_until) => {
            let claim = claim_until.map(|until| (until, node));
            Written::Saved(deliveries::save_events(tx, events, packed, keys, claim).await?)
        }
        Write::Settle(outcome, url_id) => {
            Written::Settled(settle::settle(tx, outcome, node, *url_id).await?)
        }
    })
}
