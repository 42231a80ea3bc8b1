//! The PostgreSQL store's group commit: writes that arrive together share a transaction, and
//! one failing write fails alone (the batch is rolled back and each write run again alone).

use bytes::Bytes;
use switchboard::domain::EventKind;
use switchboard::store::{EventBody, NewEvent, PostgresStore, Store};

fn unroutable(n: usize) -> NewEvent {
    NewEvent {
        kind: EventKind::Unroutable,
        channel: None,
        partner: None,
        phone_number_id: Some(format!("999{n}")),
        waba: None,
        body: EventBody::Bytes(Bytes::from(format!("{{\"n\":{n}}}"))),
        received_at: 0,
        trace: None,
    }
}

/// An event PostgreSQL refuses inside the batch: text columns cannot hold a NUL byte.
fn broken_event() -> NewEvent {
    NewEvent {
        phone_number_id: Some("999\u{0}".into()),
        waba: None,
        ..unroutable(999)
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
        tokio::spawn(async move { store.save_events(vec![broken_event()], None).await })
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
