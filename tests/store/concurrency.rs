//! Many callers at once: writes that share a transaction (SQLite's group-committing writer,
//! PostgreSQL's batches and pooled transactions) fail alone, and consumers claiming side by
//! side (on PostgreSQL, several nodes) never get the same delivery.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchboard::domain::{
    ChannelId, DeliveryId, EventKind, MultiWebhook, MultiWebhookChange, MultiWebhookError,
};
use switchboard::store::{EventFilter, Settled, Settlement, Store, StoreError};
use tokio::task::JoinSet;

use crate::support::*;

/// What one of the concurrent writes returned.
enum Written {
    Saved(bool),
    Partner(bool),
    DuplicatePartner(Result<(), StoreError>),
    TakenNumber(Result<(), StoreError>),
    Refused(Result<MultiWebhook, StoreError>),
}

/// Spawns 40 event saves and 10 new partners, and among them three writes that break a
/// rule: a duplicate partner, a channel with a taken number, a multi-webhook change while
/// it is disabled.
fn spawn_writes(store: &Arc<dyn Store>, channel: &ChannelId) -> JoinSet<Written> {
    let mut writes = JoinSet::new();
    for n in 0..40 {
        let (one, target) = (Arc::clone(store), channel.clone());
        writes.spawn(async move {
            let event = whatsapp(&target, n, now());
            Written::Saved(one.save_events(vec![event], None).await.is_ok())
        });
        if n % 4 == 0 {
            let one = Arc::clone(store);
            let (new, hash) = (partner(100 + n as u32), key(&format!("k{n}")));
            writes.spawn(
                async move { Written::Partner(one.create_partner(new, hash).await.is_ok()) },
            );
        }
        if n != 20 {
            continue;
        }
        let one = Arc::clone(store);
        writes.spawn(async move {
            Written::DuplicatePartner(one.create_partner(partner(1), key("another")).await)
        });
        let one = Arc::clone(store);
        writes.spawn(async move {
            let mut taken = new_channel(waba(1), 2);
            taken.phone_number = new_channel(waba(1), 1).phone_number;
            Written::TakenNumber(one.create_channel(taken, Vec::new()).await)
        });
        let (one, channel) = (Arc::clone(store), channel.clone());
        writes.spawn(async move {
            let append =
                MultiWebhookChange::Append(vec![destination("a", "https://a.example.com")]);
            Written::Refused(one.change_multi_webhook(&channel, append, 3).await)
        });
    }
    writes
}

conformance!(
    one_bad_write_inside_a_batch_fails_alone,
    |db: Db| async move {
        let store = Arc::clone(&db.store);
        let channel = provisioned(&*store).await;
        let mut writes = spawn_writes(&store, &channel);
        let (mut saved, mut partners) = (0, 0);
        while let Some(written) = writes.join_next().await {
            match written.expect("write task") {
                Written::Saved(ok) => saved += usize::from(ok),
                Written::Partner(ok) => partners += usize::from(ok),
                // Its exact error is the provisioning tests' concern.
                Written::DuplicatePartner(result) => {
                    assert!(result.is_err(), "a duplicate partner")
                }
                Written::TakenNumber(result) => match result {
                    Err(StoreError::Conflict(message)) => {
                        assert_eq!(
                            message,
                            "A channel with phone_number +49151000001 already exists"
                        )
                    }
                    other => panic!("a taken number is a conflict: {other:?}"),
                },
                Written::Refused(result) => assert!(
                    matches!(
                        result,
                        Err(StoreError::MultiWebhook(MultiWebhookError::Disabled))
                    ),
                    "{result:?}"
                ),
            }
        }
        assert_eq!((saved, partners), (40, 10), "every good write committed");
        let filter = EventFilter {
            kind: Some(EventKind::Whatsapp),
            after: None,
            limit: 100,
        };
        assert_eq!(
            store.events(filter).await.unwrap().len(),
            40,
            "each stored once"
        );
        for n in (0..40).step_by(4) {
            assert!(store.partner(&partner(100 + n).id).await.unwrap().is_some());
        }
        let kept = store.partner(&partner(1).id).await.unwrap().unwrap();
        assert!(store
            .partner_by_key(&key("another"))
            .await
            .unwrap()
            .is_none());
        assert_eq!(kept.partner, partner(1));
        assert!(store
            .channel(&new_channel(waba(1), 2).id)
            .await
            .unwrap()
            .is_none());
        let unchanged = store
            .channel(&channel)
            .await
            .unwrap()
            .unwrap()
            .multi_webhook;
        assert_eq!(unchanged, MultiWebhook::default());
        assert_eq!(
            claim_all(&*store).await.len(),
            40,
            "a delivery for each stored event"
        );
    }
);

/// The stores that claim side by side: one store shared by four callers on SQLite (one
/// process owns the file), four nodes on PostgreSQL.
async fn consumers(db: &Db) -> Vec<Arc<dyn Store>> {
    match db.backend {
        Backend::Sqlite => (0..4).map(|_| Arc::clone(&db.store)).collect(),
        Backend::Postgres => {
            let mut all = vec![Arc::clone(&db.store)];
            for node in ["conformance-b", "conformance-c", "conformance-d"] {
                all.push(db.another_node(node).await);
            }
            all
        }
    }
}

/// Claims small batches until none is left, settling each delivery as delivered through
/// the store that claimed it; returns what it claimed.
async fn consume(store: Arc<dyn Store>) -> Vec<DeliveryId> {
    let mut claimed = Vec::new();
    loop {
        let t = now();
        let due = store
            .claim_due(t, 7, usize::MAX, t + 600_000)
            .await
            .expect("claim");
        if due.is_empty() {
            return claimed;
        }
        for one in due {
            let delivered = Settlement::Delivered {
                extras: Vec::new(),
                claim_until: None,
            };
            let settled = store
                .settle(outcome(&one, None, delivered))
                .await
                .expect("settle");
            assert!(
                matches!(settled, Settled::Recorded { .. }),
                "held by its claimer"
            );
            claimed.push(one.id);
        }
    }
}

conformance!(
    several_consumers_never_claim_the_same_delivery,
    |db: Db| async move {
        let store = Arc::clone(&db.store);
        let channel = provisioned(&*store).await;
        for batch in 0..6 {
            let events = (0..50)
                .map(|n| whatsapp(&channel, batch * 50 + n, now()))
                .collect();
            save(&*store, events).await;
        }
        let mut consuming = JoinSet::new();
        for consumer in consumers(&db).await {
            consuming.spawn(consume(consumer));
        }
        let mut all = Vec::new();
        while let Some(claimed) = consuming.join_next().await {
            all.extend(claimed.expect("consumer"));
        }
        let distinct: BTreeSet<_> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a delivery claimed twice");
        assert_eq!(all.len(), 300, "every delivery claimed once");
        assert!(claim_all(&*store).await.is_empty());
    }
);

conformance!(
    settles_and_saves_at_once_each_apply_alone,
    |db: Db| async move {
        // Many settles and saves queued together share a transaction (and on PostgreSQL a
        // multi-row statement per kind): each must still apply under its own lease, the
        // stale ones writing nothing, and each save get its own event and delivery.
        let store = Arc::clone(&db.store);
        let channel = provisioned(&*store).await;
        save(
            &*store,
            (0..30).map(|n| whatsapp(&channel, n, now())).collect(),
        )
        .await;
        let claimed = claim_all(&*store).await;
        assert_eq!(claimed.len(), 30);
        let mut writes = JoinSet::new();
        for (n, due) in claimed.iter().enumerate() {
            let (one, mut due) = (Arc::clone(&store), due.clone());
            let stale = n % 3 == 0;
            if stale {
                due.lease = switchboard::store::LeaseToken(due.lease.0 + 1);
            }
            let retry_at = now() + 600_000;
            let settlement = match n % 2 {
                0 => Settlement::Delivered {
                    extras: Vec::new(),
                    claim_until: None,
                },
                _ => Settlement::Retry {
                    at: retry_at,
                    error: "HTTP 503".into(),
                },
            };
            let status = if n % 2 == 0 { 200 } else { 503 };
            let sent = attempt("https://phone.example.com/h", 1, status);
            writes.spawn(async move {
                let settled = one.settle(outcome(&due, Some(sent), settlement)).await;
                (due.id, stale, settled.expect("settle"))
            });
        }
        let mut saves = JoinSet::new();
        for n in 100..110 {
            let (one, channel) = (Arc::clone(&store), channel.clone());
            saves.spawn(async move {
                one.save_events(vec![whatsapp(&channel, n, now())], None)
                    .await
                    .expect("save")
            });
        }
        let mut outcomes = Vec::new();
        while let Some(written) = writes.join_next().await {
            outcomes.push(written.expect("settle task"));
        }
        let mut saved = BTreeSet::new();
        while let Some(written) = saves.join_next().await {
            let events = written.expect("save task");
            assert_eq!(events.len(), 1);
            assert!(events[0].delivery.is_some(), "a first delivery");
            saved.insert(events[0].event);
        }
        assert_eq!(saved.len(), 10, "ten distinct events");

        let mut attempt_ids = BTreeSet::new();
        for (id, stale, settled) in outcomes {
            let due = claimed.iter().find(|d| d.id == id).expect("claimed");
            let event = store.event(due.event).await.unwrap().expect("event");
            let (record, attempts) = event
                .deliveries
                .iter()
                .find(|(d, _)| d.id == id)
                .expect("delivery");
            match settled {
                Settled::LeaseLost => {
                    assert!(stale, "delivery {id:?} lost a lease it held");
                    assert_eq!(record.attempts, 0, "nothing written under a stale lease");
                    assert!(attempts.is_empty());
                    assert_eq!(record.state, switchboard::domain::DeliveryState::Pending);
                }
                Settled::Recorded { extras, attempt } => {
                    assert!(!stale, "delivery {id:?} settled under a stale lease");
                    assert!(extras.is_empty());
                    let attempt = attempt.expect("the attempt's id");
                    assert!(attempt_ids.insert(attempt), "one attempt id per settle");
                    assert_eq!(record.attempts, 1);
                    assert_eq!(attempts.len(), 1);
                    let n = claimed.iter().position(|d| d.id == id).unwrap_or(0);
                    let (state, status) = match n % 2 {
                        0 => (switchboard::domain::DeliveryState::Delivered, 200),
                        _ => (switchboard::domain::DeliveryState::Pending, 503),
                    };
                    assert_eq!(record.state, state);
                    assert_eq!(attempts[0].status, Some(status));
                    let error = (n % 2 == 1).then_some("HTTP 503");
                    assert_eq!(record.last_error.as_deref(), error);
                }
            }
        }
        assert_eq!(attempt_ids.len(), 20, "20 held leases settled");
    }
);
