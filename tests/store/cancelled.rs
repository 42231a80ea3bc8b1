//! On PostgreSQL, a hot-path transaction whose future is dropped midway (a claim abandoned
//! by its caller) is rolled back before its connection serves anyone else: the pool hands
//! out connections without checking for an open transaction, so one left open would hold
//! its row locks (hiding those deliveries from every claim) and run its next user's
//! statements inside it.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use crate::support::*;

const EVENTS: usize = 20;
/// Polls before a claim is dropped: one sends its `BEGIN` and statement (the pool has an
/// idle connection), the later ones catch it at other points of its round trips.
const POLLS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_claim_dropped_midway_leaves_no_transaction_open() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let store = &*db.store;
    let channel = provisioned(store).await;
    let at = now();
    let events = (0..EVENTS).map(|n| whatsapp(&channel, n, at)).collect();
    store.save_events(events, None).await.expect("save");

    for polls in 1..=POLLS {
        // Leased for 1 ms at most: a claim that committed before it was dropped leaves
        // leases that are over by the final claim below.
        let mut claim = Box::pin(store.claim_due(at, 1000, usize::MAX, at + 1));
        for _ in 0..polls {
            std::future::poll_fn(|cx| {
                let _ = claim.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
            tokio::task::yield_now().await;
        }
        drop(claim);
        assert_eq!(
            transactions_left_open(&db).await,
            0,
            "a claim dropped after {polls} polls left its transaction open"
        );
    }

    let later = at + 10_000;
    let claimed = store
        .claim_due(later, 1000, usize::MAX, later + 60_000)
        .await
        .expect("claim");
    assert_eq!(
        claimed.len(),
        EVENTS,
        "every delivery is claimable again: none is locked by a transaction left open"
    );
}

/// The store's connections left inside a transaction: none once a dropped claim's backend
/// has finished its statement and read the `ROLLBACK` queued after it (asked again for half
/// a second, as that can take a moment); without the rollback, one stays idle in it.
async fn transactions_left_open(db: &Db) -> i64 {
    let others = "FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let busy = format!(
        "SELECT count(*) {others} AND (state = 'active' OR state LIKE 'idle in transaction%')"
    );
    for _ in 0..100 {
        if db.count(&busy).await == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.count(&format!(
        "SELECT count(*) {others} AND state LIKE 'idle in transaction%'"
    ))
    .await
}
