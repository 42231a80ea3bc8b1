//! Storing events and claiming their deliveries: leases at save, claim limits and order, and
//! what releasing and renewing a lease does.

use bytes::Bytes;
use switchboard::domain::{EventKind, PartnerEventType, Target};
use switchboard::store::{
    memory_cost, EventBody, HeldLease, LeaseToken, NewEvent, Settlement, DELIVERY_MEMORY_OVERHEAD,
};

use crate::support::*;

conformance!(
    saved_events_get_their_first_delivery_by_kind,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 5_000;
        let partner_event = NewEvent::partner(
            partner(1).id,
            PartnerEventType::builtin("channel_created"),
            serde_json::json!({"x": 1}),
            at,
        );
        let waba_event = NewEvent {
            kind: EventKind::Waba,
            channel: None,
            partner: None,
            phone_number_id: None,
            waba: Some(waba(1)),
            body: EventBody::Bytes(Bytes::from_static(b"{\"waba\":1}")),
            received_at: at,
            trace: None,
        };
        let events = vec![
            whatsapp(&id, 1, at),
            unroutable(2, at),
            partner_event,
            waba_event,
        ];
        assert!(save(store, Vec::new()).await.is_empty(), "nothing to store");
        let saved = save(store, events).await;
        assert_eq!(saved.len(), 4, "one answer per event, in order");
        assert!(
            saved.iter().all(|s| s.lease.is_none()),
            "unleased without claim_until"
        );
        assert!(saved[0].event < saved[1].event && saved[1].event < saved[2].event);
        assert!(saved[0].delivery.is_some());
        assert!(
            saved[1].delivery.is_none(),
            "an unroutable event gets no delivery"
        );
        assert_eq!(saved[0].payload, Bytes::from_static(b"{\"n\":1}"));
        let rendered: serde_json::Value = serde_json::from_slice(&saved[2].payload).unwrap();
        assert_eq!(rendered["id"], saved[2].event.0, "rendered with its id");

        let mut due = claim_all(store).await;
        due.sort_by_key(|d| d.id);
        let targets: Vec<_> = due.iter().map(|d| d.target.clone()).collect();
        assert_eq!(
            targets,
            [Target::Primary, Target::Partner, Target::Waba(waba(1))]
        );
        let primary = &due[0];
        assert_eq!(
            (primary.id, primary.event),
            (saved[0].delivery.unwrap(), saved[0].event)
        );
        assert_eq!(primary.channel, Some(id));
        assert_eq!(primary.payload, saved[0].payload);
        assert_eq!((primary.attempts, primary.window_attempts), (0, 0));
        assert_eq!(primary.window_start, at, "the age window starts at arrival");
        assert_eq!(due[1].partner, Some(partner(1).id));
        assert_eq!(due[1].payload, saved[2].payload);
        let stored = store.event(saved[2].event).await.unwrap().unwrap();
        assert_eq!(
            stored.payload, saved[2].payload,
            "the rendered body is stored"
        );
    }
);

conformance!(
    events_saved_with_claim_until_are_leased_to_this_node,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let until = now() + 60_000;
        let saved = store
            .save_events(vec![whatsapp(&id, 1, now())], Some(until))
            .await
            .unwrap();
        assert_eq!(saved[0].lease, Some(LeaseToken::FIRST));
        assert!(
            claim_all(store).await.is_empty(),
            "not claimable while leased"
        );
        // Once the lease ran out, a claim takes it under a new lease.
        let later = until + 1;
        let due = store
            .claim_due(later, 10, usize::MAX, later + 60_000)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(Some(due[0].id), saved[0].delivery);
        assert_ne!(due[0].lease, LeaseToken::FIRST, "a claim sets a new lease");
    }
);

conformance!(
    claims_respect_the_limit_and_the_memory_budget,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let events: Vec<_> = (0..5).map(|n| whatsapp(&id, n, now())).collect();
        save(store, events).await;
        let cost = memory_cost(b"{\"n\":0}".len());
        assert_eq!(cost, 7 + DELIVERY_MEMORY_OVERHEAD);
        let t = now();
        let none = store.claim_due(t, 10, cost - 1, t + 60_000).await.unwrap();
        assert!(none.is_empty(), "one delivery does not fit");
        let two = store
            .claim_due(t, 10, 2 * cost + cost / 2, t + 60_000)
            .await
            .unwrap();
        assert_eq!(two.len(), 2, "as many as fit in the budget");
        let limited = store.claim_due(t, 2, usize::MAX, t + 60_000).await.unwrap();
        assert_eq!(limited.len(), 2, "at most the limit");
        let rest = claim_all(store).await;
        assert_eq!(rest.len(), 1);
        assert!(
            claim_all(store).await.is_empty(),
            "nothing is claimed twice"
        );
    }
);

conformance!(claims_take_the_oldest_due_first, |db: Db| async move {
    let store = &*db.store;
    let id = provisioned(store).await;
    save(store, (0..3).map(|n| whatsapp(&id, n, now())).collect()).await;
    let mut due = claim_all(store).await;
    due.sort_by_key(|d| d.id);
    // Due again at distinct times, in the reverse order of their ids.
    let base = now() + 600_000;
    for (i, one) in due.iter().enumerate() {
        let at = base + 100 * (3 - i as i64);
        let retry = Settlement::Retry {
            at,
            error: "HTTP 500".into(),
        };
        settle_recorded(
            store,
            outcome(one, Some(attempt("https://a.example.com", 1, 500)), retry),
        )
        .await;
    }
    assert!(claim_all(store).await.is_empty(), "none is due yet");
    let when = base + 1_000;
    let first = store
        .claim_due(when, 1, usize::MAX, when + 60_000)
        .await
        .unwrap();
    assert_eq!(first[0].id, due[2].id, "the earliest due first");
    let next = store
        .claim_due(when, 5, usize::MAX, when + 60_000)
        .await
        .unwrap();
    let order: Vec<_> = next.iter().map(|d| d.id).collect();
    assert_eq!(order, [due[1].id, due[0].id]);
    assert_eq!(next[0].attempts, 1, "the attempt made is counted");
});

conformance!(
    released_leases_are_due_again_and_only_this_nodes,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        save(store, (0..3).map(|n| whatsapp(&id, n, now())).collect()).await;
        let t = now();
        let mine = store
            .claim_due(t, 2, usize::MAX, t + 600_000)
            .await
            .unwrap();
        assert_eq!(mine.len(), 2);
        let other = match db.backend {
            // Another node's lease: left alone by this node's release.
            Backend::Postgres => {
                let node = db.another_node("conformance-b").await;
                let theirs = claim_all(&*node).await;
                assert_eq!(theirs.len(), 1);
                Some((node, theirs))
            }
            Backend::Sqlite => None,
        };
        assert_eq!(store.release_leases().await.unwrap(), 2);
        let again = claim_all(store).await;
        let mut ids: Vec<_> = again.iter().map(|d| d.id).collect();
        ids.sort();
        let mut wanted: Vec<_> = mine.iter().map(|d| d.id).collect();
        wanted.sort();
        assert!(
            wanted.iter().all(|id| ids.contains(id)),
            "this node's released deliveries are due again: {ids:?}"
        );
        if db.backend == Backend::Postgres {
            assert_eq!(ids, wanted, "another node's lease is left alone");
        }
        if let Some((node, theirs)) = other {
            let settled = node
                .settle(outcome(
                    &theirs[0],
                    None,
                    Settlement::Dropped {
                        reason: "none".into(),
                    },
                ))
                .await
                .unwrap();
            assert!(
                matches!(settled, switchboard::store::Settled::Recorded { .. }),
                "still theirs"
            );
        }
        let held = again.len() as u64;
        assert_eq!(
            store.release_leases().await.unwrap(),
            held,
            "the ones claimed again"
        );
    }
);

conformance!(
    renewed_leases_hold_and_lost_ones_are_returned,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        save(store, (0..3).map(|n| whatsapp(&id, n, now())).collect()).await;
        let t = now();
        let mut held = store.claim_due(t, 10, usize::MAX, t + 1_000).await.unwrap();
        held.sort_by_key(|d| d.id);
        // Every lease ran out and a claim took the deliveries again: the first leases are lost.
        let late = t + 2_000;
        let mut retaken = store
            .claim_due(late, 10, usize::MAX, late + 60_000)
            .await
            .unwrap();
        retaken.sort_by_key(|d| d.id);
        assert_eq!(retaken.len(), 3, "expired leases are claimable");
        let lease = |d: &switchboard::store::DueDelivery| HeldLease {
            delivery: d.id,
            lease: d.lease,
        };
        let mut gone = store
            .renew_leases(held.iter().map(lease).collect(), late + 60_000)
            .await
            .unwrap();
        gone.sort();
        let all: Vec<_> = held.iter().map(|d| d.id).collect();
        assert_eq!(gone, all, "each lost lease is returned");
        // The new holder renews and settles as it pleases.
        let delivered = Settlement::Delivered {
            extras: Vec::new(),
            claim_until: None,
        };
        settle_recorded(store, outcome(&retaken[2], None, delivered)).await;
        let until = late + 120_000;
        let gone = store
            .renew_leases(retaken.iter().map(lease).collect(), until)
            .await
            .unwrap();
        assert!(
            gone.is_empty(),
            "renewed, or settled meanwhile under the same lease: {gone:?}"
        );
        // Renewed: not claimable before the new end, claimable after.
        let before = until - 1_000;
        assert!(store
            .claim_due(before, 10, usize::MAX, until)
            .await
            .unwrap()
            .is_empty());
        let after = store
            .claim_due(until + 1, 10, usize::MAX, until + 60_000)
            .await
            .unwrap();
        let ids: Vec<_> = after
            .iter()
            .map(|d| d.id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            ids,
            vec![retaken[0].id, retaken[1].id],
            "the settled one is not renewed"
        );
    }
);

conformance!(
    an_events_trace_context_is_stored_and_claimed_with_its_deliveries,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 1_000;
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = switchboard::domain::TraceContext::parse(
            traceparent.as_bytes(),
            Some(b"congo=t61rcWkgMzE".as_slice()),
        );
        assert!(trace.is_some());
        let traced = NewEvent {
            trace: trace.clone(),
            ..whatsapp(&id, 1, at)
        };
        let saved = save(store, vec![traced, whatsapp(&id, 2, at)]).await;
        let claimed = claim_all(store).await;
        assert_eq!(claimed.len(), 2);
        for due in &claimed {
            let expected = (due.event == saved[0].event)
                .then(|| trace.clone())
                .flatten();
            assert_eq!(due.trace, expected, "event {:?}", due.event);
        }
        let record = store.event(saved[0].event).await.unwrap().unwrap();
        assert_eq!(record.trace, trace);
        let plain = store.event(saved[1].event).await.unwrap().unwrap();
        assert_eq!(plain.trace, None, "nothing stored without a trace context");
    }
);
