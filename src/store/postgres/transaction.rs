//! The hot path's transactions on PostgreSQL (batches of writes, claims, renewals): opened
//! in one message with the plan settings, pipelined with their statements, and rolled back
//! if they fail or are dropped before their `COMMIT` is answered.

use std::future::Future;

use deadpool_postgres::{Client, GenericClient};
use futures_util::FutureExt;

use crate::store::StoreError;

/// Opens the transactions of the hot path (batches of writes, claims, renewals), in one
/// message pipelined with their statements: those find rows by their keys or in an index's
/// order, never by scanning a table or a bitmap of an index.
///
/// A connection plans a prepared statement a few times, then keeps one generic plan for
/// its life, planned for the table's size then. A server started on a new database plans
/// its settles while `deliveries` has a few dozen rows, when reading them all is cheapest,
/// and kept doing so as the table grew: each settle read every row (or every leased row
/// version, through a bitmap of `deliveries_leased_by`) until autovacuum's first `ANALYZE`
/// made it plan again, a minute or more later. In the headline on PostgreSQL that was most
/// of PostgreSQL's time (about 150 to 270 µs per row settled). Claims likewise kept a
/// bitmap scan of `deliveries_due`, which visits every dead entry due, again at each poll;
/// an index scan in order stops at its limit and marks the dead entries it passes.
const BEGIN_AS_GROWN: &str =
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off";

/// Runs `work` on `client` in a transaction planned as for grown tables and commits it.
///
/// Its `BEGIN` goes with the work's statements instead of a round trip before them (which
/// `Client::transaction` waits for): a round trip more per batch cost 11 to 19 % of the
/// headline on PostgreSQL. tokio-postgres sends a request when its future is first polled,
/// and `try_join` polls the `BEGIN` first. If the work fails, or this future is dropped
/// before the `COMMIT` is answered, a `ROLLBACK` is sent (as `tokio_postgres::Transaction`
/// does when dropped), so the connection goes back to the pool outside any transaction.
pub(super) async fn committed<T>(
    client: &Client,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    in_transaction(client, work, Commit::AfterWork).await
}

/// Runs `statements` on `client` in a transaction planned as for grown tables, its `BEGIN`,
/// the statements and its `COMMIT` all sent before any answer is awaited: one round trip
/// (a batch of common writes waited for two before, the `COMMIT` after the statements).
///
/// `statements` must send every statement of the transaction when first polled and none
/// after awaiting an answer (prepared beforehand, no statement depending on another's
/// result): what it sent later would arrive after the `COMMIT`, outside the transaction. If
/// a statement fails, the server answers the `COMMIT` with a rollback and the failure is
/// returned; the guard's `ROLLBACK` then finds no transaction, which the server only warns of.
pub(super) async fn committed_in_one_round<T>(
    client: &Client,
    statements: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    in_transaction(client, statements, Commit::WithWork).await
}

/// When a transaction's `COMMIT` is sent.
enum Commit {
    /// Once the work is done (it may await answers between its statements).
    AfterWork,
    /// With the work's statements, all sent at its first poll.
    WithWork,
}

/// `BEGIN` (planned as for grown tables) pipelined with `work`, and `COMMIT` as `commit`
/// says; rolled back by the guard unless the commit was answered.
async fn in_transaction<T>(
    client: &Client,
    work: impl Future<Output = Result<T, StoreError>>,
    commit: Commit,
) -> Result<T, StoreError> {
    let mut open = RollbackUnlessCommitted {
        client,
        committed: false,
    };
    let begin = async { Ok::<_, StoreError>(client.batch_execute(BEGIN_AS_GROWN).await?) };
    let send_commit = async { Ok::<_, StoreError>(client.batch_execute("COMMIT").await?) };
    let value = match commit {
        Commit::AfterWork => {
            let ((), value) = futures_util::future::try_join(begin, work).await?;
            send_commit.await?;
            value
        }
        Commit::WithWork => {
            let ((), value, ()) = futures_util::future::try_join3(begin, work, send_commit).await?;
            value
        }
    };
    open.committed = true;
    Ok(value)
}

/// Sends `ROLLBACK` on `client` when dropped before its transaction was committed.
struct RollbackUnlessCommitted<'a> {
    client: &'a Client,
    committed: bool,
}

impl Drop for RollbackUnlessCommitted<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // One poll sends it; its answer is not awaited, and the connection's next user
            // is answered after it.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}
