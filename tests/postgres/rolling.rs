//! Upgrades while nodes run: a newer version's migration applied to the database while a
//! node serves and delivers, then a node that does not know that migration started beside
//! it (an old and a new version side by side during a rolling restart). Nothing of what
//! the nodes acknowledge is lost, no request fails, and both keep delivering.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio_postgres::NoTls;

use crate::cli::start_binary;
use crate::helpers::ADMIN_TOKEN;
use crate::load::{channel_events_url, wait_until_delivered};
use crate::receiver::{Behavior, TestReceiver};

/// What a later release's migration looks like: additive only (new nullable or defaulted
/// columns, a new table, a new index), applied under the migrations' advisory lock and
/// recorded under a version this binary does not know.
const FUTURE_MIGRATION: &str = "
    SELECT pg_advisory_xact_lock(7301);
    ALTER TABLE deliveries ADD COLUMN future_note TEXT;
    ALTER TABLE events ADD COLUMN future_flag BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE channels ADD COLUMN future_label TEXT;
    CREATE TABLE future_things (id BIGINT PRIMARY KEY, note TEXT);
    CREATE INDEX deliveries_future_note ON deliveries (future_note) WHERE future_note IS NOT NULL;
    INSERT INTO schema_migrations (version, applied_at) VALUES (1000, 0);";

/// Posts one message; `Some(status)` of the answer.
async fn post(client: &reqwest::Client, url: &str, id: &str) -> Option<StatusCode> {
    let body = json!({"messages": [{"id": id, "type": "text", "text": {"body": "é"}}]});
    let response = client
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .ok()?;
    Some(response.status())
}

#[tokio::test]
async fn a_migration_applied_while_nodes_run_loses_nothing_and_an_older_node_runs_beside_it() {
    let database = crate::postgres::postgres_database();
    let receiver = TestReceiver::with_default(Behavior::Status(200)).await;
    let client = reqwest::Client::new();
    let (mut running, base) = start_binary(&database, &["--node-id", "old-1"], |_| {});
    let url = channel_events_url(&base, &receiver.url).await;
    let events = url.trim_start_matches(base.as_str()).to_owned();

    // A sender posting through the running node the whole time.
    let acknowledged = Arc::new(Mutex::new(HashSet::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (client, url) = (client.clone(), format!("{base}{events}"));
        let (acknowledged, refused, stop) = (acknowledged.clone(), refused.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("wamid.rolling.{n}");
                match post(&client, &url, &id).await {
                    Some(StatusCode::ACCEPTED) => drop(acknowledged.lock().unwrap().insert(id)),
                    other => refused.lock().unwrap().push(format!("{id}: {other:?}")),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let warmed = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 50 && Instant::now() < warmed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The newer release's migration, while the node writes and delivers.
    let (db, connection) = tokio_postgres::connect(&database, NoTls).await.unwrap();
    tokio::spawn(connection);
    db.batch_execute(&format!("BEGIN; {FUTURE_MIGRATION} COMMIT;"))
        .await
        .unwrap();

    // A node of the version before it (this binary: it knows none of migration 1000)
    // starts on the migrated database and serves beside the running one.
    let (mut beside, beside_base) = start_binary(&database, &["--node-id", "old-2"], |_| {});
    for n in 0..50 {
        let id = format!("wamid.beside.{n}");
        let url = format!("{beside_base}{events}");
        assert_eq!(post(&client, &url, &id).await, Some(StatusCode::ACCEPTED));
        acknowledged.lock().unwrap().insert(id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.unwrap();

    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "requests failed during the migration: {refused:?}"
    );
    let owed = acknowledged.lock().unwrap().clone();
    wait_until_delivered(&receiver, &owed, 60).await;
    // The event view (which reads every column it knows) still answers on both nodes.
    for node in [&base, &beside_base] {
        let response = client
            .get(format!("{node}/admin/events?limit=5"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    for node in [&mut running, &mut beside] {
        let _ = node.kill();
        let _ = node.wait();
    }
}
