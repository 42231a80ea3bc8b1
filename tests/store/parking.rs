//! Deliveries that wait: parked behind a full destination (woken), behind a paused one
//! (paused, resumed, woken), and behind their channel's head (ordered delivery).

use switchboard::domain::{DeliveryId, DestinationId};
use switchboard::store::{DestinationPause, PauseReason, Settlement, Store, HELD_UNTIL};

use crate::support::*;

/// Defers every due delivery to `at`, behind `behind`; returns their ids and window starts.
async fn park_all(
    store: &dyn Store,
    at: i64,
    behind: Option<DestinationId>,
) -> Vec<(DeliveryId, i64)> {
    let mut parked = Vec::new();
    for due in claim_all(store).await {
        let deferred = Settlement::Deferred {
            at,
            behind: behind.clone(),
        };
        settle_recorded(store, outcome(&due, None, deferred)).await;
        parked.push((due.id, due.window_start));
    }
    parked.sort();
    parked
}

conformance!(
    woken_deliveries_are_due_now_with_their_age_window_moved,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 1_000;
        save(store, (0..3).map(|n| whatsapp(&id, n, at)).collect()).await;
        let far = now() + 3_600_000;
        let parked = park_all(store, far, None).await;
        assert!(claim_all(store).await.is_empty(), "parked");
        // One of them is claimed (by a later poll) meanwhile: not woken.
        let leased = store
            .claim_due(far, 1, usize::MAX, far + 60_000)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        let ids: Vec<_> = parked.iter().map(|p| p.0).collect();
        let woken = store
            .wake_deliveries(ids.clone(), now(), 500)
            .await
            .unwrap();
        assert_eq!(woken, 2, "the pending, unleased ones");
        let due = claim_all(store).await;
        assert_eq!(due.len(), 2);
        assert!(
            due.iter().all(|d| d.window_start == at + 500),
            "window moved by age_shift"
        );
        assert!(due.iter().all(|d| d.id != leased[0].id));
        assert_eq!(
            store.wake_deliveries(ids, now(), 0).await.unwrap(),
            0,
            "nothing parked"
        );
    }
);

conformance!(
    a_paused_destination_is_listed_resumed_and_wakes_what_waits_behind_it,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let slow = DestinationId::of("https://slow.example.com/h").unwrap();
        let pause = DestinationPause {
            id: slow.clone(),
            url: "https://slow.example.com/h".into(),
            reason: PauseReason::Failing,
            paused_at: 1_000,
        };
        assert!(store.paused_destinations().await.unwrap().is_empty());
        assert!(store.pause_destination(pause.clone()).await.unwrap());
        let again = DestinationPause {
            reason: PauseReason::Manual,
            ..pause.clone()
        };
        assert!(
            !store.pause_destination(again).await.unwrap(),
            "paused already"
        );
        let listed = store.paused_destinations().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((&listed[0].id, &listed[0].url), (&slow, &pause.url));
        assert_eq!(
            (listed[0].reason, listed[0].paused_at),
            (PauseReason::Failing, 1_000)
        );

        let at = now() - 1_000;
        save(store, (0..2).map(|n| whatsapp(&id, n, at)).collect()).await;
        park_all(store, HELD_UNTIL - 1, Some(slow.clone())).await;
        let other = DestinationId::of("https://other.example.com/h").unwrap();
        assert_eq!(store.wake_paused(&other, now(), 0).await.unwrap(), 0);

        let resumed = store
            .resume_destination(&slow)
            .await
            .unwrap()
            .expect("was paused");
        assert_eq!(
            (resumed.id, resumed.reason),
            (slow.clone(), PauseReason::Failing)
        );
        assert!(store.resume_destination(&slow).await.unwrap().is_none());
        assert!(store.paused_destinations().await.unwrap().is_empty());
        assert_eq!(store.wake_paused(&slow, now(), 250).await.unwrap(), 2);
        let due = claim_all(store).await;
        assert_eq!(due.len(), 2);
        assert!(
            due.iter().all(|d| d.window_start == at + 250),
            "a pause does not age them"
        );
        assert_eq!(
            store.wake_paused(&slow, now(), 0).await.unwrap(),
            0,
            "woken once"
        );
    }
);

conformance!(
    an_ordered_channel_has_one_delivery_in_flight_in_order,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        // One pending before the switch, two after: all ordered, by id.
        let mut ids = vec![save(store, vec![whatsapp(&id, 0, now())]).await[0]
            .delivery
            .unwrap()];
        store.set_ordered(&id, true, now()).await.unwrap();
        store.set_ordered(&id, true, now()).await.unwrap();
        for n in 1..3 {
            let saved = store
                .save_events(vec![whatsapp(&id, n, now())], Some(now() + 60_000))
                .await
                .unwrap();
            assert_eq!(
                saved[0].lease, None,
                "an ordered delivery is never leased at save"
            );
            ids.push(saved[0].delivery.unwrap());
        }
        let head = claim_all(store).await;
        assert_eq!(
            head.iter().map(|d| d.id).collect::<Vec<_>>(),
            [ids[0]],
            "only the head"
        );
        assert!(claim_all(store).await.is_empty(), "one in flight");
        // A retry keeps it the head.
        let t = now();
        let retry = Settlement::Retry {
            at: t,
            error: "HTTP 500".into(),
        };
        settle_recorded(store, outcome(&head[0], None, retry)).await;
        let head = claim_all(store).await;
        assert_eq!(head.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[0]]);
        let delivered = Settlement::Delivered {
            extras: Vec::new(),
            claim_until: None,
        };
        settle_recorded(store, outcome(&head[0], None, delivered.clone())).await;
        let next = claim_all(store).await;
        assert_eq!(
            next.iter().map(|d| d.id).collect::<Vec<_>>(),
            [ids[1]],
            "the next one is due"
        );
        // Switched off: the held one is released, due now.
        store.set_ordered(&id, false, now()).await.unwrap();
        let released = claim_all(store).await;
        assert_eq!(released.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[2]]);
        settle_recorded(store, outcome(&next[0], None, delivered)).await;
    }
);
