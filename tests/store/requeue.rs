//! Putting finished deliveries back in the queue: one, all of a state, or those of a time
//! window (recovery), with a new age window.

use switchboard::domain::{ChannelId, DeliveryId, DeliveryState, DestinationId};
use switchboard::store::{DeliveryFilter, RecoverFilter, Settlement, Store, StoreError};

use crate::support::*;

/// Claims every due delivery and settles each as `settlement` after one attempt to `url`.
async fn settle_all(store: &dyn Store, url: &str, settlement: Settlement) -> Vec<DeliveryId> {
    let mut ids = Vec::new();
    for due in claim_all(store).await {
        let sent = attempt(url, 1, 500);
        settle_recorded(store, outcome(&due, Some(sent), settlement.clone())).await;
        ids.push(due.id);
    }
    ids.sort();
    ids
}

/// The deliveries in `state`.
async fn in_state(store: &dyn Store, state: DeliveryState) -> Vec<DeliveryId> {
    let filter = DeliveryFilter {
        state: Some(state),
        channel: None,
        after: None,
        limit: 100,
    };
    store
        .deliveries(filter)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

fn gave_up() -> Settlement {
    Settlement::GaveUp {
        error: "HTTP 500".into(),
    }
}

conformance!(
    a_failed_or_dropped_delivery_is_retried_and_others_are_refused,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 10_000;
        save(store, vec![whatsapp(&id, 1, at), whatsapp(&id, 2, at)]).await;
        let mut due = claim_all(store).await;
        due.sort_by_key(|d| d.id);
        settle_recorded(
            store,
            outcome(
                &due[0],
                Some(attempt("https://a.example.com", 1, 500)),
                gave_up(),
            ),
        )
        .await;
        let dropped = Settlement::Dropped {
            reason: "no route".into(),
        };
        settle_recorded(store, outcome(&due[1], None, dropped)).await;

        let t = now();
        store.retry_delivery(due[0].id, t).await.unwrap();
        store.retry_delivery(due[1].id, t).await.unwrap();
        let again = claim_all(store).await;
        assert_eq!(again.len(), 2);
        let failed = again.iter().find(|d| d.id == due[0].id).unwrap();
        assert_eq!(failed.window_start, t, "a new age window");
        assert_eq!(
            (failed.attempts, failed.window_attempts),
            (1, 1),
            "earlier attempts kept"
        );

        match store.retry_delivery(due[0].id, now()).await {
            Err(StoreError::Conflict(message)) => assert_eq!(
                message,
                format!(
                    "Delivery {} is pending: only failed or dropped deliveries can be retried",
                    due[0].id
                )
            ),
            other => panic!("expected a conflict, got {other:?}"),
        }
        crate::provisioning::assert_not_found(
            store.retry_delivery(DeliveryId(999_999), now()).await,
            "delivery",
            "999999",
        );
    }
);

conformance!(
    deliveries_of_a_state_are_retried_by_channel_or_partner,
    |db: Db| async move {
        let store = &*db.store;
        let first = provisioned(store).await;
        store
            .create_channel(new_channel(waba(1), 2), Vec::new())
            .await
            .unwrap();
        let second = new_channel(waba(1), 2).id;
        let partner_event = switchboard::store::NewEvent::partner(
            partner(1).id,
            switchboard::domain::PartnerEventType::builtin("channel_created"),
            serde_json::json!({}),
            now(),
        );
        save(
            store,
            vec![
                whatsapp(&first, 1, now()),
                whatsapp(&second, 2, now()),
                partner_event,
            ],
        )
        .await;
        let failed = settle_all(store, "https://a.example.com", gave_up()).await;
        assert_eq!(failed.len(), 3);
        let t = now();
        let none = store
            .retry_deliveries(DeliveryState::Dropped, None, None, t)
            .await
            .unwrap();
        assert_eq!(none, 0, "none is dropped");
        let by_channel = store
            .retry_deliveries(DeliveryState::Failed, Some(first.clone()), None, t)
            .await
            .unwrap();
        assert_eq!(by_channel, 1);
        let by_partner = store
            .retry_deliveries(DeliveryState::Failed, None, Some(partner(1).id), t)
            .await
            .unwrap();
        assert_eq!(by_partner, 1, "the partner event's delivery");
        let nobody = store
            .retry_deliveries(
                DeliveryState::Failed,
                Some(ChannelId::from_raw("ghost")),
                None,
                t,
            )
            .await
            .unwrap();
        assert_eq!(nobody, 0);
        assert_eq!(in_state(store, DeliveryState::Failed).await.len(), 1);
        let all = store
            .retry_deliveries(DeliveryState::Failed, None, None, t)
            .await
            .unwrap();
        assert_eq!(all, 1);
        assert_eq!(claim_all(store).await.len(), 3, "all three queued again");
    }
);

conformance!(
    recovery_counts_on_a_dry_run_and_requeues_the_window,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        store
            .create_channel(new_channel(waba(1), 2), Vec::new())
            .await
            .unwrap();
        let second = new_channel(waba(1), 2).id;
        let base = now() - 100_000;
        // In the window: two of channel 1 (one to each URL), one of channel 2; one before it.
        save(store, vec![whatsapp(&id, 1, base + 10)]).await;
        settle_all(store, "https://down.example.com/h", gave_up()).await;
        save(store, vec![whatsapp(&id, 2, base + 20)]).await;
        settle_all(store, "https://up.example.com/h", gave_up()).await;
        save(store, vec![whatsapp(&second, 3, base + 30)]).await;
        let dropped = Settlement::Dropped {
            reason: "no route".into(),
        };
        for due in claim_all(store).await {
            settle_recorded(store, outcome(&due, None, dropped.clone())).await;
        }
        save(store, vec![whatsapp(&id, 4, base - 10)]).await;
        settle_all(store, "https://down.example.com/h", gave_up()).await;
        // Pending deliveries are never matched.
        save(store, vec![whatsapp(&id, 5, base + 40)]).await;

        let window = |states: Vec<DeliveryState>, dry_run| RecoverFilter {
            since: base,
            until: base + 1_000,
            channel: None,
            destination: None,
            states,
            dry_run,
        };
        let all_states = vec![
            DeliveryState::Failed,
            DeliveryState::Dropped,
            DeliveryState::Pending,
        ];
        let t = now();
        let dry = store
            .recover_deliveries(window(all_states.clone(), true), t)
            .await
            .unwrap();
        assert_eq!((dry.matched, dry.requeued), (3, 0));
        assert_eq!(
            in_state(store, DeliveryState::Failed).await.len(),
            3,
            "a dry run changes nothing"
        );
        let failed_only = store
            .recover_deliveries(window(vec![DeliveryState::Failed], true), t)
            .await
            .unwrap();
        assert_eq!(failed_only.matched, 2);
        // Pending and repeated states match nothing and crowd out nothing.
        let padded = vec![DeliveryState::Pending; 3]
            .into_iter()
            .chain([DeliveryState::Failed]);
        let padded = store
            .recover_deliveries(window(padded.collect(), true), t)
            .await
            .unwrap();
        assert_eq!(padded.matched, 2);
        let of_second = RecoverFilter {
            channel: Some(second.clone()),
            ..window(all_states.clone(), true)
        };
        assert_eq!(
            store
                .recover_deliveries(of_second, t)
                .await
                .unwrap()
                .matched,
            1
        );
        let down = DestinationId::of("https://down.example.com/other-query?x=1").unwrap();
        let wrong_path = RecoverFilter {
            destination: Some(down),
            ..window(all_states.clone(), true)
        };
        assert_eq!(
            store
                .recover_deliveries(wrong_path, t)
                .await
                .unwrap()
                .matched,
            0
        );
        let down = DestinationId::of("https://down.example.com/h?token=1").unwrap();
        let to_down = RecoverFilter {
            destination: Some(down),
            ..window(all_states.clone(), false)
        };
        let recovered = store.recover_deliveries(to_down, t).await.unwrap();
        assert_eq!((recovered.matched, recovered.requeued), (1, 1));
        let rest = store
            .recover_deliveries(window(all_states, false), t)
            .await
            .unwrap();
        assert_eq!((rest.matched, rest.requeued), (2, 2));
        let queued = claim_all(store).await;
        assert_eq!(
            queued.len(),
            4,
            "three recovered, and the one that was pending"
        );
        assert!(queued
            .iter()
            .filter(|d| d.attempts > 0)
            .all(|d| d.window_start == t));
        assert_eq!(
            in_state(store, DeliveryState::Failed).await.len(),
            1,
            "the one before the window"
        );
    }
);
