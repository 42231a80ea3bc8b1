//! Settling an attempt: every `Settlement`, a lease lost meanwhile, and a settle run again.

use switchboard::domain::{
    AttemptErrorKind, DeliveryState, DestinationId, MultiWebhookChange, Target,
};
use switchboard::store::{
    AttemptRecord, DeliveryRecord, DueDelivery, LeaseToken, Settled, Settlement, Store,
};

use crate::support::*;

/// The delivery `id` as stored, with its attempts.
async fn stored(store: &dyn Store, due: &DueDelivery) -> (DeliveryRecord, Vec<AttemptRecord>) {
    let event = store.event(due.event).await.unwrap().expect("event");
    event
        .deliveries
        .into_iter()
        .find(|(d, _)| d.id == due.id)
        .expect("delivery")
}

/// One channel, one event, its primary delivery claimed.
async fn claimed_one(store: &dyn Store) -> DueDelivery {
    let id = provisioned(store).await;
    save(store, vec![whatsapp(&id, 1, now())]).await;
    claim_all(store).await.pop().expect("claimed")
}

conformance!(
    delivered_records_the_attempt_and_creates_leased_extras,
    |db: Db| async move {
        let store = &*db.store;
        let due = claimed_one(store).await;
        let sent = attempt("https://phone.example.com/h", 1, 200);
        let until = now() + 60_000;
        let delivered = Settlement::Delivered {
            extras: vec![name("a"), name("b")],
            claim_until: Some(until),
        };
        let settled = settle_recorded(store, outcome(&due, Some(sent.clone()), delivered)).await;
        let Settled::Recorded { extras, attempt } = settled else {
            unreachable!()
        };
        assert!(attempt.is_some(), "the attempt's id");
        let targets: Vec<_> = extras.iter().map(|e| e.target.clone()).collect();
        assert_eq!(
            targets,
            [Target::Extra(name("a")), Target::Extra(name("b"))]
        );
        assert!(extras.iter().all(|e| e.lease == Some(LeaseToken::FIRST)));

        let (record, attempts) = stored(store, &due).await;
        assert_eq!(record.state, DeliveryState::Delivered);
        assert_eq!(record.attempts, 1);
        assert_eq!(record.last_error, None);
        assert_eq!(attempts, vec![sent], "the attempt as recorded");

        let event = store.event(due.event).await.unwrap().unwrap();
        assert_eq!(event.deliveries.len(), 3);
        for (extra, created) in event.deliveries[1..].iter().zip(&extras) {
            assert_eq!((extra.0.id, &extra.0.target), (created.id, &created.target));
            assert_eq!(extra.0.state, DeliveryState::Pending);
            assert_eq!(
                extra.0.channel, due.channel,
                "an extra belongs to the channel"
            );
        }
        assert!(
            claim_all(store).await.is_empty(),
            "the extras are leased to this node"
        );
        let after = until + 1;
        let claimed = store
            .claim_due(after, 10, usize::MAX, after + 60_000)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(
            claimed.iter().all(|d| d.payload == due.payload),
            "the same bytes"
        );
    }
);

conformance!(
    delivered_without_claim_until_leaves_extras_to_the_poller,
    |db: Db| async move {
        let store = &*db.store;
        let due = claimed_one(store).await;
        let delivered = Settlement::Delivered {
            extras: vec![name("x")],
            claim_until: None,
        };
        let settled = settle_recorded(store, outcome(&due, None, delivered)).await;
        let Settled::Recorded { extras, attempt } = settled else {
            unreachable!()
        };
        assert_eq!(attempt, None, "no attempt, no attempt id");
        assert_eq!(extras.len(), 1);
        assert_eq!(extras[0].lease, None);
        let claimed = claim_all(store).await;
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, extras[0].id);
        assert_eq!(claimed[0].target, Target::Extra(name("x")));
        let (record, attempts) = stored(store, &due).await;
        assert_eq!(
            (record.state, record.attempts, attempts.len()),
            (DeliveryState::Delivered, 0, 0)
        );
    }
);

conformance!(
    retry_keeps_it_pending_until_its_time_with_the_error,
    |db: Db| async move {
        let store = &*db.store;
        let due = claimed_one(store).await;
        let at = now() + 600_000;
        let failed = AttemptRecord {
            status: None,
            error: Some(AttemptErrorKind::Timeout),
            response_excerpt: None,
            retry_after_ms: Some(5_000),
            ..attempt("https://phone.example.com/h", 1, 0)
        };
        let retry = Settlement::Retry {
            at,
            error: "timeout".into(),
        };
        settle_recorded(store, outcome(&due, Some(failed.clone()), retry)).await;
        let (record, attempts) = stored(store, &due).await;
        assert_eq!(record.state, DeliveryState::Pending);
        assert_eq!((record.attempts, record.next_attempt_at), (1, at));
        assert_eq!(record.last_error.as_deref(), Some("timeout"));
        assert_eq!(attempts, vec![failed]);
        assert!(claim_all(store).await.is_empty(), "not before its time");
        let again = store
            .claim_due(at, 10, usize::MAX, at + 60_000)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
    }
);

conformance!(gave_up_fails_it_with_the_error, |db: Db| async move {
    let store = &*db.store;
    let due = claimed_one(store).await;
    let last = attempt("https://phone.example.com/h", 9, 503);
    let gave_up = Settlement::GaveUp {
        error: "HTTP 503".into(),
    };
    settle_recorded(store, outcome(&due, Some(last), gave_up)).await;
    let (record, attempts) = stored(store, &due).await;
    assert_eq!(record.state, DeliveryState::Failed);
    assert_eq!(record.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(
        (record.attempts, attempts.len(), attempts[0].number),
        (1, 1, 9)
    );
    assert!(claim_all(store).await.is_empty());
});

conformance!(dropped_records_no_attempt, |db: Db| async move {
    let store = &*db.store;
    let due = claimed_one(store).await;
    let dropped = Settlement::Dropped {
        reason: "no webhook configured".into(),
    };
    settle_recorded(store, outcome(&due, None, dropped)).await;
    let (record, attempts) = stored(store, &due).await;
    assert_eq!(record.state, DeliveryState::Dropped);
    assert_eq!(record.last_error.as_deref(), Some("no webhook configured"));
    assert_eq!((record.attempts, attempts.len()), (0, 0));
});

conformance!(
    deferred_counts_no_attempt_and_waits_behind_its_destination,
    |db: Db| async move {
        let store = &*db.store;
        let due = claimed_one(store).await;
        let at = now() + 600_000;
        let behind = DestinationId::of("https://slow.example.com/h").unwrap();
        let deferred = Settlement::Deferred {
            at,
            behind: Some(behind.clone()),
        };
        settle_recorded(store, outcome(&due, None, deferred)).await;
        let (record, attempts) = stored(store, &due).await;
        assert_eq!(record.state, DeliveryState::Pending);
        assert_eq!(
            (record.attempts, record.next_attempt_at, attempts.len()),
            (0, at, 0)
        );
        assert!(claim_all(store).await.is_empty());
        let t = now();
        assert_eq!(
            store.wake_paused(&behind, t, 0).await.unwrap(),
            1,
            "woken by its destination"
        );
        let claimed = claim_all(store).await;
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempts, 0);
    }
);

conformance!(
    a_settle_under_a_lost_lease_writes_nothing,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        store
            .change_multi_webhook(
                &id,
                MultiWebhookChange::Enable(vec![destination("a", "https://a.example.com")]),
                3,
            )
            .await
            .unwrap();
        save(store, vec![whatsapp(&id, 1, now())]).await;
        let t = now();
        let first = store
            .claim_due(t, 1, usize::MAX, t + 1_000)
            .await
            .unwrap()
            .remove(0);
        let late = t + 2_000;
        let second = store
            .claim_due(late, 1, usize::MAX, late + 60_000)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(first.id, second.id);
        for settlement in [
            Settlement::Delivered {
                extras: vec![name("a")],
                claim_until: None,
            },
            Settlement::Retry {
                at: t,
                error: "x".into(),
            },
            Settlement::GaveUp { error: "x".into() },
            Settlement::Dropped { reason: "x".into() },
            Settlement::Deferred {
                at: t,
                behind: None,
            },
        ] {
            let sent = attempt("https://a.example.com", 1, 200);
            let settled = store
                .settle(outcome(&first, Some(sent), settlement))
                .await
                .unwrap();
            assert_eq!(settled, Settled::LeaseLost);
        }
        let (record, attempts) = stored(store, &first).await;
        assert_eq!(
            (record.state, record.attempts, attempts.len()),
            (DeliveryState::Pending, 0, 0)
        );
        let event = store.event(first.event).await.unwrap().unwrap();
        assert_eq!(event.deliveries.len(), 1, "no extras");
        let unknown = switchboard::store::Outcome {
            delivery: switchboard::domain::DeliveryId(999_999),
            ..outcome(&first, None, Settlement::GaveUp { error: "x".into() })
        };
        assert_eq!(
            store.settle(unknown).await.unwrap(),
            Settled::LeaseLost,
            "no such delivery"
        );
        // The new holder's settle stands.
        let gave_up = Settlement::GaveUp {
            error: "HTTP 500".into(),
        };
        settle_recorded(store, outcome(&second, None, gave_up)).await;
        assert_eq!(stored(store, &second).await.0.state, DeliveryState::Failed);
    }
);

conformance!(
    a_settle_run_again_returns_the_same_and_records_nothing_new,
    |db: Db| async move {
        let store = &*db.store;
        let due = claimed_one(store).await;
        let until = now() + 60_000;
        let delivered = outcome(
            &due,
            Some(attempt("https://phone.example.com/h", 1, 200)),
            Settlement::Delivered {
                extras: vec![name("a"), name("b")],
                claim_until: Some(until),
            },
        );
        let first = settle_recorded(store, delivered.clone()).await;
        let again = settle_recorded(store, delivered).await;
        assert_eq!(again, first, "the same extras, leases and attempt id");
        let event = store.event(due.event).await.unwrap().unwrap();
        assert_eq!(event.deliveries.len(), 3, "no extras twice");
        assert_eq!(event.deliveries[0].1.len(), 1, "one attempt");

        // The same for a settle without extras.
        let id = due.channel.clone().unwrap();
        save(store, vec![whatsapp(&id, 2, now())]).await;
        let t = now();
        let other = store
            .claim_due(t, 10, usize::MAX, t + 60_000)
            .await
            .unwrap();
        let other = other
            .iter()
            .find(|d| d.target == Target::Primary)
            .expect("the new one");
        let retry = outcome(
            other,
            Some(attempt("https://phone.example.com/h", 1, 500)),
            Settlement::Retry {
                at: t + 60_000,
                error: "HTTP 500".into(),
            },
        );
        let first = settle_recorded(store, retry.clone()).await;
        assert_eq!(settle_recorded(store, retry).await, first);
        assert_eq!(stored(store, other).await.1.len(), 1);
    }
);
