//! The single SQLite writer: group commit.
//!
//! Every write is a job sent to one thread that owns the only writing connection. The thread
//! takes every job already queued, runs them all in one transaction, commits, and only then
//! answers each caller. Under load many acknowledgements share one fsync; when idle, a lone
//! write commits at once.
//!
//! A failing job must undo only its own changes. Savepoints would do that, but SQLite then
//! copies every page a job touches first into its savepoint's journal (several 4 KB pages per
//! event: most of the writer's memory traffic). Jobs fail rarely, so the batch runs without
//! them; when one fails, the transaction is rolled back and the batch run again with a
//! savepoint around each job. So a job may run twice: it must only write to the database.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{StoreError, WriteCounters, WriteStats};

/// How many jobs one transaction takes at most, to bound the latency of the first.
const MAX_BATCH: usize = 512;

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
/// One write: runs on the writer's connection (again, if its batch is run again), keeps
/// its result, and answers its caller once the transaction is over.
trait Job: Send {
    /// Runs the write; whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Forgets the result of a run that was rolled back.
    fn forget(&mut self);
    /// Answers the caller with the result of the last run, given how the transaction ended.
    fn answer(self: Box<Self>, committed: Result<(), CommitFailed>);
}

/// A caller's write, its last result, and where the answer goes.
struct Write<T, F> {
    work: F,
    result: Option<Result<T, StoreError>>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn forget(&mut self) {
        self.result = None;
    }

    fn answer(self: Box<Self>, committed: Result<(), CommitFailed>) {
        let outcome = match (committed, self.result) {
            // The job's own error says more (e.g. the full disk) than a commit of a
            // transaction SQLite already rolled back.
            (Err(_), Some(Err(own))) if own.is_unavailable() => Err(own),
            (Err(failed), _) => Err(failed.into()),
            (Ok(()), Some(result)) => result,
            // Its savepoint could not open: nothing of it was written.
            (Ok(()), None) => Err(StoreError::Abandoned),
        };
        let _ = self.answer.send(outcome);
    }
}

/// A handle to the writer thread; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    stats: Arc<WriteCounters>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
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
    /// `work` may run twice (see the module doc), so it must only write to the database.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Write {
            work,
            result: None,
            answer,
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Abandoned)?
    }
}

/// The writer thread: batch, run, commit, answer; until every handle is gone.
fn run(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>, counters: &WriteCounters) {
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

/// Runs `batch` in one transaction (again with a savepoint per job if one failed), tells
/// `count` whether it committed and how many writes it carried, then answers every job
/// (counted first, so a caller that reads the write stats after its answer sees its write,
/// as on PostgreSQL).
///
/// When the transaction cannot begin, every job is answered with the error; nothing of it
/// was written.
fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>, count: impl FnOnce(bool, usize)) {
    let writes = batch.len();
    let committed = run_batch(conn, &mut batch);
    count(committed.is_ok(), writes);
    for job in batch {
        job.answer(committed.clone());
    }
}

/// Runs every job in one transaction and commits: first without savepoints; if a job
/// fails, rolls back and runs them all again, each in its own savepoint.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), CommitFailed> {
    begin(conn)?;
    if batch.iter_mut().all(|job| job.run(conn)) {
        return commit(conn);
    }
    let _ = conn.execute_batch("ROLLBACK");
    batch.iter_mut().for_each(|job| job.forget());
    begin(conn)?;
    for job in batch.iter_mut() {
        run_in_savepoint(conn, job.as_mut());
    }
    commit(conn)
}

fn begin(conn: &Connection) -> Result<(), CommitFailed> {
    run_cached(conn, "BEGIN IMMEDIATE")
        .map_err(|error| failed(&error, "cannot begin a transaction"))
}

fn commit(conn: &Connection) -> Result<(), CommitFailed> {
    run_cached(conn, "COMMIT").map_err(|error| {
        let _ = conn.execute_batch("ROLLBACK");
        failed(&error, "cannot commit")
    })
}

/// Logs why the transaction failed, as the error its jobs are told.
fn failed(error: &rusqlite::Error, what: &str) -> CommitFailed {
    let unavailable = super::connection::unavailable(error);
    match unavailable {
        true => tracing::debug!(%error, "sqlite writer {what}"),
        false => tracing::error!(%error, "sqlite writer {what}"),
    }
    CommitFailed {
        unavailable,
        message: error.to_string(),
    }
}

/// Runs one job so that its failure undoes only its own changes. A savepoint that cannot be
/// opened or closed (SQLite rolled the whole transaction back, e.g. on a full disk) is
/// logged; the commit then fails and tells every job.
fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) {
    if let Err(error) = run_cached(conn, "SAVEPOINT job") {
        tracing::error!(%error, "sqlite writer cannot open a savepoint");
        return;
    }
    let undone = match job.run(conn) {
        true => Ok(()),
        false => run_cached(conn, "ROLLBACK TO job"),
    };
    if let Err(error) = undone.and_then(|()| run_cached(conn, "RELEASE job")) {
        tracing::error!(%error, "sqlite writer cannot close a savepoint");
    }
}

/// Runs a parameterless statement from the connection's statement cache (these run for
/// every write, so they are parsed once, not each time).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
