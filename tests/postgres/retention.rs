//! Retention against a concurrent requeue: a delivery put back in the queue (as
//! `POST /admin/deliveries/retry` does) after the purge read its candidates must not be
//! deleted with them. The race is made deterministic by holding the requeue's transaction
//! open until the purge waits for its row lock, then committing it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard::domain::{ChannelId, EventKind};
use switchboard::store::{EventBody, NewEvent, Outcome, PostgresStore, Settled, Settlement, Store};
use tokio_postgres::NoTls;

/// A WhatsApp event received long ago, for a channel no configuration knows.
fn old_event() -> NewEvent {
    NewEvent {
        kind: EventKind::Whatsapp,
        channel: Some(ChannelId::from_raw("ch_retention")),
        partner: None,
        phone_number_id: None,
        waba: None,
        body: EventBody::Bytes(Bytes::from_static(b"{}")),
        received_at: 0,
        trace: None,
    }
}

#[tokio::test]
async fn a_delivery_requeued_while_the_purge_runs_is_kept() {
    let url = crate::postgres::postgres_database();
    let store = Arc::new(PostgresStore::open(&url, "retention-test").await.unwrap());
    // An old event whose only delivery failed: a candidate for the purge.
    let saved = store.save_events(vec![old_event()], None).await.unwrap();
    let (event, delivery) = (saved[0].event, saved[0].delivery.unwrap());
    let now = switchboard::clock::now_ms();
    let claimed = store
        .claim_due(now, 10, usize::MAX, now + 60_000)
        .await
        .unwrap();
    let failed = Outcome {
        delivery,
        channel: claimed[0].channel.clone(),
        lease: claimed[0].lease,
        attempt: None,
        settlement: Settlement::GaveUp {
            error: "HTTP 500".into(),
        },
    };
    assert!(matches!(
        store.settle(failed).await.unwrap(),
        Settled::Recorded { .. }
    ));

    // A requeue begins, and holds its row lock until told to commit...
    let (mut requeue, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let requeue = requeue.transaction().await.unwrap();
    requeue
        .execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, leased_until = NULL,
                    window_start = $1, window_attempts = attempts, updated_at = $1
             WHERE id = $2",
            &[&now, &delivery.0],
        )
        .await
        .unwrap();
    // ...while the purge runs: it has read its candidates once it waits for that lock.
    let purging = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.purge_finished(now, 100).await })
    };
    let (watcher, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the purge never waited for the requeued row"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    requeue.commit().await.unwrap();

    let purged = purging.await.unwrap().unwrap();
    assert_eq!(purged, 0, "nothing was finished any more");
    let kept = store
        .event(event)
        .await
        .unwrap()
        .expect("the event is kept");
    let (record, _) = &kept.deliveries[0];
    assert_eq!(record.id, delivery);
    assert_eq!(record.state, switchboard::domain::DeliveryState::Pending);
}
