//! The single SQLite writer: group commit.
//!
//! Every write is a job sent to one thread that owns the only writing connection. The thread
//! takes every job already queued, runs each inside its own savepoint (a failing job rolls
//! back alone), commits them all in one transaction, and only then answers each caller. Under
//! load many acknowledgements share one fsync; when idle, a lone write commits at once.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{StoreError, WriteCounters, WriteStats};

/// How many jobs one transaction takes at most, to bound the latency of the first.
const MAX_BATCH: usize = 512;

/// Told whether the transaction that ran a job committed.
type Reply = Box<dyn FnOnce(Result<(), CommitFailed>) + Send>;

/// Why a group transaction did not commit, told to each of its jobs.
#[derive(Clone)]
struct CommitFailed {
    /// The database cannot write now (full, read-only, I/O error, busy): see
    /// [`StoreError::Unavailable`].
    unavailable: bool,
    /// The driver's error.
    message: String,
}

impl From<CommitFailed> for StoreError {
    fn from(failed: CommitFailed) -> Self {
        match failed.unavailable {
            true => StoreError::unavailable(failed.message),
            false => StoreError::Database(failed.message.into()),
        }
    }
}
/// One write: runs on the writer's connection, says whether it succeeded, and how to answer.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// A handle to the writer thread; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<WriteCounters>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let stats = Arc::new(WriteCounters::default());
        let counters = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, &counters))
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs, stats })
    }

    /// The write path's counters so far.
    pub fn stats(&self) -> WriteStats {
        self.stats.stats()
    }

    /// Runs `work` in the next group transaction; returns once that transaction committed.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = work(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let outcome = match (committed, result) {
                    // The job's own error says more (e.g. the full disk) than a commit
                    // of a transaction SQLite already rolled back.
                    (Err(_), Err(own)) if own.is_unavailable() => Err(own),
                    (Err(failed), _) => Err(failed.into()),
                    (Ok(()), result) => result,
                };
                let _ = answer.send(outcome);
            });
            (ok, reply)
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Abandoned)?
    }
}

/// The writer thread: batch, run, commit, answer; until every handle is gone.
fn run(conn: Connection, queue: mpsc::Receiver<Job>, counters: &WriteCounters) {
    while let Ok(first) = queue.recv() {
        let started = Instant::now();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch, |committed, writes| match committed {
            true => counters.committed(writes, started),
            false => counters.busy_since(started),
        });
    }
}

/// Runs `batch` in one transaction, each job in its own savepoint, tells `count` whether
/// it committed and how many writes it carried, then answers every job (counted first, so a
/// caller that reads the write stats after its answer sees its write, as on PostgreSQL).
///
/// A job that cannot run (the transaction or its savepoint did not open) is dropped, which
/// its caller sees as [`StoreError::Abandoned`]; nothing of it was written.
fn commit_batch(conn: &Connection, batch: Vec<Job>, count: impl FnOnce(bool, usize)) {
    let writes = batch.len();
    if let Err(error) = run_cached(conn, "BEGIN IMMEDIATE") {
        tracing::error!(%error, jobs = writes, "sqlite writer cannot begin a transaction");
        count(false, writes);
        return;
    }
    let replies: Vec<Reply> = batch
        .into_iter()
        .filter_map(|job| run_in_savepoint(conn, job))
        .collect();
    let committed = run_cached(conn, "COMMIT").map_err(|error| {
        let unavailable = super::connection::unavailable(&error);
        match unavailable {
            true => tracing::debug!(%error, "sqlite writer cannot commit"),
            false => tracing::error!(%error, "sqlite writer cannot commit"),
        }
        let _ = conn.execute_batch("ROLLBACK");
        CommitFailed {
            unavailable,
            message: error.to_string(),
        }
    });
    count(committed.is_ok(), writes);
    for reply in replies {
        reply(committed.clone());
    }
}

/// Runs one job so that its failure undoes only its own changes.
fn run_in_savepoint(conn: &Connection, job: Job) -> Option<Reply> {
    if let Err(error) = run_cached(conn, "SAVEPOINT job") {
        tracing::error!(%error, "sqlite writer cannot open a savepoint");
        return None;
    }
    let (ok, reply) = job(conn);
    let undone = if ok {
        Ok(())
    } else {
        run_cached(conn, "ROLLBACK TO job")
    };
    if let Err(error) = undone.and_then(|()| run_cached(conn, "RELEASE job")) {
        tracing::error!(%error, "sqlite writer cannot close a savepoint");
    }
    Some(reply)
}

/// Runs a parameterless statement from the connection's statement cache (these run for
/// every write, so they are parsed once, not each time).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
