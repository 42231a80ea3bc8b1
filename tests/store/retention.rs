//! The payload retention (`purge_payloads`): the payloads of old finished events are emptied
//! while their metadata, deliveries and attempts stay; pending and young events keep theirs;
//! the purge follows a cursor; and a purged event is never put back in the queue.

use switchboard::domain::{DeliveryState, EventId};
use switchboard::store::{
    DeliveryFilter, PayloadPurge, RecoverFilter, Settlement, Store, StoreError,
};

use crate::support::*;

/// The failed deliveries, by id.
async fn failed(store: &dyn Store) -> Vec<switchboard::domain::DeliveryId> {
    let filter = DeliveryFilter {
        state: Some(DeliveryState::Failed),
        channel: None,
        after: None,
        limit: 100,
    };
    let mut ids: Vec<_> = store
        .deliveries(filter)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids
}

/// Whether the event's payload was purged, checking the view is consistent about it.
async fn purged(store: &dyn Store, event: EventId) -> bool {
    let record = store
        .event(event)
        .await
        .unwrap()
        .expect("the event is kept");
    assert_eq!(
        record.payload.is_empty(),
        record.payload_purged_at.is_some(),
        "an empty payload is a purged one, and only that: {record:?}"
    );
    record.payload_purged_at.is_some()
}

conformance!(
    payloads_of_old_finished_events_are_purged_and_their_deliveries_never_requeued,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let old = now() - 10 * 86_400_000;
        let bound = now() - 86_400_000;
        // Old: one delivered, two failed, one pending, one unroutable; then one recent.
        let saved = save(
            store,
            vec![
                whatsapp(&id, 1, old),
                whatsapp(&id, 2, old + 1),
                whatsapp(&id, 3, old + 2),
                whatsapp(&id, 4, old + 3),
                unroutable(5, old + 4),
                whatsapp(&id, 6, now()),
            ],
        )
        .await;
        let mut due = claim_all(store).await;
        due.sort_by_key(|d| d.id);
        let delivered = Settlement::Delivered {
            extras: vec![],
            claim_until: None,
        };
        let gave_up = Settlement::GaveUp {
            error: "HTTP 500".into(),
        };
        let sent = |status| Some(attempt("https://a.example.com", 1, status));
        settle_recorded(store, outcome(&due[0], sent(200), delivered)).await;
        settle_recorded(store, outcome(&due[1], sent(500), gave_up.clone())).await;
        settle_recorded(store, outcome(&due[2], sent(500), gave_up.clone())).await;
        // due[3] stays pending; due[4] is the recent event's.
        let t = now();

        assert_eq!(
            store.purge_payloads(old, 100, t).await.unwrap(),
            PayloadPurge::default(),
            "nothing older than the bound"
        );
        let first = store.purge_payloads(bound, 2, t).await.unwrap();
        assert_eq!((first.examined, first.purged), (2, 2), "the limit holds");
        assert!(purged(store, saved[0].event).await);
        assert!(purged(store, saved[1].event).await);
        assert!(!purged(store, saved[2].event).await, "beyond the batch");
        let rest = store.purge_payloads(bound, 100, t).await.unwrap();
        assert_eq!(
            (rest.examined, rest.purged),
            (3, 2),
            "the cursor moved on: the rest of the old events, all but the pending one purged"
        );
        assert!(purged(store, saved[2].event).await);
        assert!(
            !purged(store, saved[3].event).await,
            "a pending event keeps it"
        );
        assert!(purged(store, saved[4].event).await, "unroutable events too");
        assert!(
            !purged(store, saved[5].event).await,
            "a recent event keeps it"
        );
        assert_eq!(
            store.purge_payloads(bound, 100, t).await.unwrap(),
            PayloadPurge::default(),
            "a pass after the cursor reached the young events reads nothing again"
        );

        // Metadata, deliveries and attempts stay.
        let record = store.event(saved[1].event).await.unwrap().unwrap();
        assert_eq!(record.payload_purged_at, Some(t));
        assert_eq!(record.summary.channel.as_ref(), Some(&id));
        assert_eq!(record.deliveries.len(), 1);
        assert_eq!(record.deliveries[0].0.state, DeliveryState::Failed);
        assert_eq!(record.deliveries[0].1.len(), 1, "its attempt is kept");

        // A purged event's deliveries are never put back in the queue.
        match store.retry_delivery(due[1].id, now()).await {
            Err(StoreError::Conflict(message)) => assert_eq!(
                message,
                format!(
                    "Delivery {} cannot be retried: its payload was purged \
                     (--payload-retention-hours)",
                    due[1].id
                )
            ),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            store
                .retry_deliveries(DeliveryState::Failed, None, None, now())
                .await
                .unwrap(),
            0,
            "a bulk retry skips them"
        );
        let window = RecoverFilter {
            since: old - 1,
            until: now() + 1,
            channel: None,
            destination: None,
            states: vec![DeliveryState::Failed, DeliveryState::Dropped],
            dry_run: false,
        };
        let recovered = store.recover_deliveries(window, now()).await.unwrap();
        assert_eq!((recovered.matched, recovered.requeued), (0, 0));
        assert_eq!(failed(store).await, [due[1].id, due[2].id], "still failed");
        assert!(
            claim_all(store).await.is_empty(),
            "nothing new is due: the pending one is still leased"
        );

        // Event retention still deletes them later, payload purged or not.
        assert_eq!(store.purge_finished(bound, 100).await.unwrap(), 4);
        assert!(store.event(saved[0].event).await.unwrap().is_none());
    }
);

conformance!(
    a_failed_delivery_whose_payload_is_kept_is_still_retried,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let saved = save(store, vec![whatsapp(&id, 1, now() - 1_000)]).await;
        let due = claim_all(store).await.remove(0);
        let gave_up = Settlement::GaveUp {
            error: "HTTP 500".into(),
        };
        settle_recorded(
            store,
            outcome(
                &due,
                Some(attempt("https://a.example.com", 1, 500)),
                gave_up,
            ),
        )
        .await;
        // A bound before the event: nothing purged.
        let purge = store
            .purge_payloads(now() - 60_000, 100, now())
            .await
            .unwrap();
        assert_eq!(purge.purged, 0);
        store.retry_delivery(due.id, now()).await.unwrap();
        let again = claim_all(store).await;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].payload.as_ref(), b"{\"n\":1}");
        assert!(!purged(store, saved[0].event).await);
    }
);

/// Pages of the SQLite file that hold data, and those on its free list.
fn pages(path: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let pragma = |name: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .unwrap()
    };
    let free = pragma("freelist_count");
    (pragma("page_count") - free, free)
}

/// A body of about 1 KB that does not compress away (like a real payload's ids and text).
fn bulky(n: usize) -> switchboard::store::NewEvent {
    let mut event = unroutable(n, now() - 10_000);
    let mut random = fastrand::Rng::with_seed(n as u64);
    let noise: String = (0..1_000).map(|_| random.alphanumeric()).collect();
    event.body =
        switchboard::store::EventBody::Bytes(format!("{{\"n\":{n},\"x\":\"{noise}\"}}").into());
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_purge_frees_pages_that_new_events_reuse() {
    let db = Db::sqlite().await;
    let (store, path) = (&*db.store, db.sqlite_path().unwrap());
    for chunk in 0..4 {
        save(store, (0..500).map(|n| bulky(chunk * 500 + n)).collect()).await;
    }
    let (used, free) = pages(&path);
    assert_eq!(free, 0, "nothing freed yet");
    let mut purged = 0;
    loop {
        let batch = store.purge_payloads(now(), 1_000, now()).await.unwrap();
        if batch.examined == 0 {
            break;
        }
        purged += batch.purged;
    }
    assert_eq!(purged, 2_000);
    let (used_after, freed) = pages(&path);
    assert!(
        freed * 2 > used,
        "most pages are free again: {freed} of {used} (in use now {used_after})"
    );
    // New events go into the freed pages before the file grows.
    save(store, (0..500).map(|n| bulky(10_000 + n)).collect()).await;
    let (_, free_now) = pages(&path);
    assert!(
        free_now < freed,
        "new rows reused freed pages: {free_now} of {freed} left"
    );
}
