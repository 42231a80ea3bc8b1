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
    let mut open = RollbackUnlessCommitted {
        client,
        committed: false,
    };
    let begin = async { Ok::<_, StoreError>(client.batch_execute(BEGIN_AS_GROWN).await?) };
    let ((), value) = futures_util::future::try_join(begin, work).await?;
    client.batch_execute("COMMIT").await?;
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
