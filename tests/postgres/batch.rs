//! The PostgreSQL store's group commit: writes that arrive together share a transaction, and
//! one failing write fails alone (the batch is rolled back and each write run again alone).

use bytes::Bytes;
use switchboard::domain::{DeliveryId, EventKind};
use switchboard::store::{
    AttemptRecord, EventBody, NewEvent, Outcome, PostgresStore, Settlement, Store,
};

fn unroutable(n: usize) -> NewEvent {
    NewEvent {
        kind: EventKind::Unroutable,
        channel: None,
        partner: None,
        phone_number_id: Some(format!("999{n}")),
        body: EventBody::Bytes(Bytes::from(format!("{{\"n\":{n}}}"))),
        received_at: 0,
    }
}

/// A settle whose attempt row would point at a delivery that does not exist (a foreign-key
/// violation inside the batch).
fn broken_settle() -> Outcome {
    Outcome {
        delivery: DeliveryId(i64::MAX),
        attempt: Some(AttemptRecord {
            number: 1,
            started_at: 0,
            duration_ms: 1,
            url: "http://127.0.0.1:9/".into(),
            status: Some(200),
            error: None,
            response_excerpt: None,
        }),
        settlement: Settlement::Delivered {
            extras: Vec::new(),
            claim_until: None,
        },
    }
}

#[tokio::test]
async fn a_failing_write_fails_alone_and_its_batch_mates_commit() {
    let url = crate::postgres::postgres_database();
    let store = std::sync::Arc::new(PostgresStore::open(&url, "batch-test").await.unwrap());
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..30 {
        let store = std::sync::Arc::clone(&store);
        writes.spawn(async move { store.save_events(vec![unroutable(n)], None).await.is_ok() });
    }
    let broken = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move { store.settle(broken_settle()).await })
    };
    let mut saved = 0;
    while let Some(ok) = writes.join_next().await {
        saved += usize::from(ok.unwrap());
    }
    assert_eq!(saved, 30, "every good write committed");
    assert!(broken.await.unwrap().is_err(), "the broken write failed");
    let listed = store
        .events(switchboard::store::EventFilter {
            kind: Some(EventKind::Unroutable),
            after: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 30, "each good write is stored once");
    let stats = store.write_stats();
    assert!(stats.writes >= 30 && stats.commits >= 1, "{stats:?}");
}
