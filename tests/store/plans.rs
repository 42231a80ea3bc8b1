//! On PostgreSQL, the hot path's statements find rows by key or in an index's order, however
//! young the table: a connection keeps the plan it made when `deliveries` had a few rows,
//! and a sequential scan kept while the table grows costs a read of every row per statement.

use std::sync::Arc;
use std::time::Duration;

use switchboard::store::{Settlement, Store};
use tokio::task::JoinSet;

use crate::support::*;

/// Rounds of concurrent saves, claims and settles (multi-row statements among them).
const ROUNDS: usize = 8;
const PER_ROUND: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_hot_path_never_scans_deliveries_whole() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let store = Arc::clone(&db.store);
    let channel = provisioned(&*store).await;
    for round in 0..ROUNDS {
        let mut saves = JoinSet::new();
        for n in 0..PER_ROUND {
            let (one, channel) = (Arc::clone(&store), channel.clone());
            saves.spawn(async move {
                let event = whatsapp(&channel, round * PER_ROUND + n, now());
                one.save_events(vec![event], None).await.expect("save")
            });
        }
        while let Some(saved) = saves.join_next().await {
            saved.expect("save task");
        }
        let mut settles = JoinSet::new();
        for due in claim_all(&*store).await {
            let one: Arc<dyn Store> = Arc::clone(&store);
            settles.spawn(async move {
                let delivered = Settlement::Delivered {
                    extras: Vec::new(),
                    claim_until: None,
                };
                let sent = attempt("https://phone.example.com/h", 1, 200);
                one.settle(outcome(&due, Some(sent), delivered))
                    .await
                    .expect("settle")
            });
        }
        while let Some(settled) = settles.join_next().await {
            settled.expect("settle task");
        }
    }
    // A backend reports its table counters within 10 s of going idle (PGSTAT_IDLE_INTERVAL).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let scans = |column: &str| {
        format!("SELECT {column} FROM pg_stat_user_tables WHERE relname = 'deliveries'")
    };
    let updated = db.count(&scans("n_tup_upd")).await;
    assert!(
        updated >= (ROUNDS * PER_ROUND) as i64,
        "the counters are reported: {updated} updates"
    );
    // Opening the store scans the empty table (its indexes are built, its node's old
    // leases released): those read no row.
    let read = db.count(&scans("seq_tup_read")).await;
    assert_eq!(
        read, 0,
        "rows of deliveries read by sequential scans over {ROUNDS} rounds"
    );
}
