//! The read side (an event with its deliveries and attempts, paged lists, the pending
//! groups, the stream's replay) and retention.

use switchboard::domain::{AttemptId, DeliveryState, EventId, EventKind, Target};
use switchboard::store::{DeliveryFilter, EventFilter, ReplayFrom, Settlement, Store};

use crate::support::*;

/// The ids of the events `filter` lists.
async fn event_ids(store: &dyn Store, filter: EventFilter) -> Vec<EventId> {
    store
        .events(filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

conformance!(
    events_and_deliveries_are_listed_by_filter_and_page,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        store
            .create_channel(new_channel(waba(1), 2), Vec::new())
            .await
            .unwrap();
        let second = new_channel(waba(1), 2).id;
        let at = now() - 1_000;
        let saved = save(
            store,
            vec![
                whatsapp(&id, 1, at),
                unroutable(2, at),
                whatsapp(&second, 3, at),
                unroutable(4, at),
            ],
        )
        .await;
        let ids: Vec<_> = saved.iter().map(|s| s.event).collect();
        let all = EventFilter {
            kind: None,
            after: None,
            limit: 100,
        };
        assert_eq!(event_ids(store, all.clone()).await, ids);
        let unroutable = EventFilter {
            kind: Some(EventKind::Unroutable),
            ..all.clone()
        };
        assert_eq!(event_ids(store, unroutable.clone()).await, [ids[1], ids[3]]);
        let page = EventFilter {
            after: Some(ids[1]),
            limit: 1,
            ..unroutable
        };
        assert_eq!(event_ids(store, page).await, [ids[3]]);
        let whatsapp_page = EventFilter {
            kind: Some(EventKind::Whatsapp),
            after: None,
            limit: 1,
        };
        assert_eq!(event_ids(store, whatsapp_page).await, [ids[0]]);
        let listed = store
            .events(EventFilter {
                after: Some(ids[0]),
                limit: 1,
                kind: None,
            })
            .await
            .unwrap();
        let summary = &listed[0];
        assert_eq!(
            (summary.id, summary.kind, summary.received_at),
            (ids[1], EventKind::Unroutable, at)
        );
        assert_eq!(summary.phone_number_id.as_deref(), Some("9992"));
        assert_eq!(
            (summary.channel.clone(), summary.partner.clone()),
            (None, None)
        );

        let mut due = claim_all(store).await;
        due.sort_by_key(|d| d.id);
        let gave_up = Settlement::GaveUp {
            error: "HTTP 500".into(),
        };
        settle_recorded(store, outcome(&due[0], None, gave_up)).await;
        let deliveries = |state, channel, after, limit| {
            let filter = DeliveryFilter {
                state,
                channel,
                after,
                limit,
            };
            async move {
                let listed = store.deliveries(filter).await.unwrap();
                listed.into_iter().map(|d| d.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            deliveries(None, None, None, 10).await,
            [due[0].id, due[1].id]
        );
        assert_eq!(
            deliveries(Some(DeliveryState::Failed), None, None, 10).await,
            [due[0].id]
        );
        assert_eq!(
            deliveries(Some(DeliveryState::Pending), None, None, 10).await,
            [due[1].id]
        );
        assert_eq!(
            deliveries(None, Some(second.clone()), None, 10).await,
            [due[1].id]
        );
        assert_eq!(
            deliveries(None, None, Some(due[0].id), 10).await,
            [due[1].id]
        );
        assert_eq!(deliveries(None, None, None, 1).await, [due[0].id]);
        let failed = store
            .deliveries(DeliveryFilter {
                state: Some(DeliveryState::Failed),
                channel: None,
                after: None,
                limit: 1,
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (failed.event, failed.channel.clone(), failed.target),
            (ids[0], Some(id), Target::Primary)
        );
        assert_eq!(failed.last_error.as_deref(), Some("HTTP 500"));

        let event = store.event(ids[2]).await.unwrap().expect("event");
        assert_eq!(event.summary.channel, Some(second));
        assert_eq!(event.payload, saved[2].payload);
        assert_eq!(event.deliveries.len(), 1);
        assert!(store.event(EventId(999_999)).await.unwrap().is_none());
        let unroutable = store.event(ids[1]).await.unwrap().unwrap();
        assert!(unroutable.deliveries.is_empty());
    }
);

conformance!(
    pending_deliveries_are_grouped_by_channel_and_target,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 5_000;
        let partner_event = switchboard::store::NewEvent::partner(
            partner(1).id,
            switchboard::domain::PartnerEventType::builtin("channel_created"),
            serde_json::json!({}),
            at - 1_000,
        );
        save(
            store,
            vec![
                whatsapp(&id, 1, at),
                whatsapp(&id, 2, at + 10),
                partner_event,
                unroutable(3, at),
            ],
        )
        .await;
        let mut groups = store.pending_groups().await.unwrap();
        groups.sort_by(|a, b| a.target.cmp(&b.target));
        assert_eq!(groups.len(), 2);
        let (partner_group, primary) = (&groups[0], &groups[1]);
        assert_eq!(
            (partner_group.target.as_str(), partner_group.count),
            ("partner", 1)
        );
        assert_eq!(partner_group.partner, Some(partner(1).id));
        assert_eq!(partner_group.oldest, at - 1_000);
        assert_eq!(
            (primary.target.as_str(), primary.count, primary.oldest),
            ("primary", 2, at)
        );
        assert_eq!(primary.channel, Some(id));
        assert!(primary.next_attempt_at <= now());
        for due in claim_all(store).await {
            let delivered = Settlement::Delivered {
                extras: Vec::new(),
                claim_until: None,
            };
            settle_recorded(store, outcome(&due, None, delivered)).await;
        }
        assert!(
            store.pending_groups().await.unwrap().is_empty(),
            "nothing pending"
        );
    }
);

conformance!(
    retention_purges_only_finished_events_older_than_the_bound,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let old = now() - 10 * 86_400_000;
        let bound = now() - 86_400_000;
        // Four old events: three finished (one with an extra and attempts), one pending.
        let saved = save(
            store,
            vec![
                whatsapp(&id, 1, old),
                whatsapp(&id, 2, old + 1),
                whatsapp(&id, 3, old + 2),
                unroutable(4, old + 3),
            ],
        )
        .await;
        let mut due = claim_all(store).await;
        due.sort_by_key(|d| d.id);
        let delivered = Settlement::Delivered {
            extras: vec![name("x")],
            claim_until: None,
        };
        settle_recorded(
            store,
            outcome(
                &due[0],
                Some(attempt("https://a.example.com", 1, 200)),
                delivered,
            ),
        )
        .await;
        let extra = claim_all(store).await.remove(0);
        let gave_up = Settlement::GaveUp {
            error: "HTTP 500".into(),
        };
        settle_recorded(
            store,
            outcome(
                &extra,
                Some(attempt("https://x.example.com", 1, 500)),
                gave_up.clone(),
            ),
        )
        .await;
        settle_recorded(
            store,
            outcome(
                &due[1],
                Some(attempt("https://a.example.com", 1, 500)),
                gave_up,
            ),
        )
        .await;
        // due[2] stays pending.
        let recent = save(store, vec![unroutable(5, now())]).await;

        assert_eq!(
            store.purge_finished(old, 100).await.unwrap(),
            0,
            "none older than the bound"
        );
        assert_eq!(
            store.purge_finished(bound, 2).await.unwrap(),
            2,
            "the limit is respected"
        );
        assert!(
            store.event(saved[0].event).await.unwrap().is_none(),
            "oldest first"
        );
        assert!(store.event(saved[1].event).await.unwrap().is_none());
        assert!(store.event(saved[3].event).await.unwrap().is_some());
        assert_eq!(store.purge_finished(bound, 100).await.unwrap(), 1);
        assert!(store.event(saved[3].event).await.unwrap().is_none());
        assert!(
            store.event(saved[2].event).await.unwrap().is_some(),
            "a pending event is kept"
        );
        assert!(
            store.event(recent[0].event).await.unwrap().is_some(),
            "a recent event is kept"
        );
        // Their deliveries and attempts went with them.
        let left = store
            .deliveries(DeliveryFilter {
                state: None,
                channel: None,
                after: None,
                limit: 100,
            })
            .await
            .unwrap();
        assert_eq!(left.iter().map(|d| d.id).collect::<Vec<_>>(), [due[2].id]);
        let replay = store
            .replay(
                ReplayFrom {
                    event: EventId(0),
                    attempt: AttemptId(0),
                },
                100,
            )
            .await
            .unwrap();
        assert!(
            replay.attempts.is_empty(),
            "no attempt is left: {:?}",
            replay.attempts
        );
        for (table, column, parent) in [
            ("attempts", "delivery_id", "deliveries"),
            ("deliveries", "event_id", "events"),
        ] {
            assert_eq!(
                db.dangling(table, column, parent).await,
                0,
                "no {table} row is left without its {parent} row"
            );
        }
        assert_eq!(
            store.purge_finished(now() + 1_000, 100).await.unwrap(),
            1,
            "the recent one, once old"
        );
    }
);

conformance!(
    replay_returns_events_and_attempts_after_the_cursor,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let saved = save(store, (0..3).map(|n| whatsapp(&id, n, now())).collect()).await;
        let mut due = claim_all(store).await;
        due.sort_by_key(|d| d.id);
        let t = now();
        let retry = Settlement::Retry {
            at: t,
            error: "HTTP 500".into(),
        };
        let first = settle_recorded(
            store,
            outcome(
                &due[0],
                Some(attempt("https://a.example.com/h", 1, 500)),
                retry,
            ),
        )
        .await;
        let again = claim_all(store)
            .await
            .into_iter()
            .find(|d| d.id == due[0].id)
            .unwrap();
        let delivered = Settlement::Delivered {
            extras: Vec::new(),
            claim_until: None,
        };
        let second = settle_recorded(
            store,
            outcome(
                &again,
                Some(attempt("https://a.example.com/h", 2, 200)),
                delivered,
            ),
        )
        .await;
        let gave_up = Settlement::GaveUp {
            error: "HTTP 400".into(),
        };
        settle_recorded(
            store,
            outcome(
                &due[1],
                Some(attempt("https://a.example.com/h", 1, 400)),
                gave_up,
            ),
        )
        .await;
        let attempt_id = |s: switchboard::store::Settled| match s {
            switchboard::store::Settled::Recorded { attempt, .. } => attempt.expect("attempt id"),
            other => panic!("{other:?}"),
        };
        let (first, second) = (attempt_id(first), attempt_id(second));
        assert!(first < second);

        let start = ReplayFrom {
            event: EventId(0),
            attempt: AttemptId(0),
        };
        let replay = store.replay(start, 100).await.unwrap();
        let events: Vec<_> = replay.events.iter().map(|e| e.summary.id).collect();
        assert_eq!(events, saved.iter().map(|s| s.event).collect::<Vec<_>>());
        assert_eq!(replay.events[1].payload, saved[1].payload);
        assert_eq!(replay.attempts.len(), 3);
        let (a, b, c) = (
            &replay.attempts[0],
            &replay.attempts[1],
            &replay.attempts[2],
        );
        assert_eq!(
            (a.id, a.delivery, a.event),
            (first, due[0].id, saved[0].event)
        );
        assert_eq!(
            (a.record.status, a.ended),
            (Some(500), None),
            "not its delivery's end"
        );
        assert_eq!(
            (b.id, b.record.number, b.ended),
            (second, 2, Some(DeliveryState::Delivered))
        );
        assert_eq!(
            (c.delivery, c.ended),
            (due[1].id, Some(DeliveryState::Failed))
        );
        assert_eq!(
            (c.channel.clone(), c.target.clone()),
            (Some(id), Target::Primary)
        );
        assert_eq!(c.record.url, "https://a.example.com/h");

        let after = ReplayFrom {
            event: saved[1].event,
            attempt: first,
        };
        let replay = store.replay(after, 1).await.unwrap();
        assert_eq!(
            replay
                .events
                .iter()
                .map(|e| e.summary.id)
                .collect::<Vec<_>>(),
            [saved[2].event]
        );
        assert_eq!(
            replay.attempts.iter().map(|a| a.id).collect::<Vec<_>>(),
            [second],
            "at most the limit"
        );
    }
);
