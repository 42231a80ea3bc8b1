//! Webhook configuration (phone number, WABA, multi webhook, partner) and the routing read
//! right after each change: every answer is read once before the change, so a cache that
//! kept it would show the old configuration.

use std::sync::Arc;
use switchboard::domain::{
    MultiWebhook, MultiWebhookChange, MultiWebhookError, Route, WabaWebhook,
};

use switchboard::store::{RouteReason, StoreError};

use crate::support::*;

/// The routing of `id` now (read through the cache, if the backend has one).
async fn routing(
    store: &dyn switchboard::store::Store,
    id: &switchboard::domain::ChannelId,
) -> std::sync::Arc<switchboard::store::Routing> {
    store.routing(id).await.unwrap().expect("routing")
}

conformance!(
    a_phone_webhook_is_set_and_removed_and_routed_at_once,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        assert_eq!(routing(store, &id).await.route, Route::None);
        let phone = hook("https://phone.example.com/a");
        store
            .set_phone_webhook(&id, Some(phone.clone()))
            .await
            .unwrap();
        assert_eq!(routing(store, &id).await.route, Route::Phone(phone.clone()));
        assert_eq!(
            store.channel(&id).await.unwrap().unwrap().webhook,
            Some(phone)
        );
        let other = hook("https://phone.example.com/b");
        store
            .set_phone_webhook(&id, Some(other.clone()))
            .await
            .unwrap();
        assert_eq!(routing(store, &id).await.route, Route::Phone(other));
        store.set_phone_webhook(&id, None).await.unwrap();
        assert_eq!(routing(store, &id).await.route, Route::None);
        assert_eq!(store.channel(&id).await.unwrap().unwrap().webhook, None);
    }
);

conformance!(
    a_waba_webhook_serves_numbers_without_their_own_and_override_all_removes_theirs,
    |db: Db| async move {
        let store = &*db.store;
        let first = provisioned(store).await;
        let second = new_channel(waba(1), 2).id;
        store
            .create_channel(new_channel(waba(1), 2), Vec::new())
            .await
            .unwrap();
        let phone = hook("https://phone.example.com/1");
        store
            .set_phone_webhook(&first, Some(phone.clone()))
            .await
            .unwrap();
        assert_eq!(routing(store, &second).await.route, Route::None);

        let shared = hook("https://waba.example.com/w");
        let kept = WabaWebhook {
            webhook: shared.clone(),
            override_all: false,
        };
        store
            .set_waba_webhook(waba(1), Some(kept.clone()))
            .await
            .unwrap();
        assert_eq!(
            routing(store, &first).await.route,
            Route::Phone(phone.clone())
        );
        assert_eq!(
            routing(store, &second).await.route,
            Route::Waba(shared.clone())
        );
        let view = store.waba_webhook(waba(1)).await.unwrap();
        assert_eq!(view.webhook, Some(kept));
        let waba_route = store.waba_route(waba(1)).await.unwrap().unwrap();
        assert_eq!(waba_route.webhook, Some(shared.clone()));

        let all = WabaWebhook {
            webhook: shared.clone(),
            override_all: true,
        };
        store
            .set_waba_webhook(waba(1), Some(all.clone()))
            .await
            .unwrap();
        assert_eq!(
            routing(store, &first).await.route,
            Route::Waba(shared.clone())
        );
        assert_eq!(store.channel(&first).await.unwrap().unwrap().webhook, None);
        assert_eq!(
            store.waba_webhook(waba(1)).await.unwrap().webhook,
            Some(all)
        );

        store.set_waba_webhook(waba(1), None).await.unwrap();
        assert_eq!(routing(store, &first).await.route, Route::None);
        assert_eq!(routing(store, &second).await.route, Route::None);
        assert_eq!(store.waba_webhook(waba(1)).await.unwrap().webhook, None);
        assert!(store
            .waba_route(waba(1))
            .await
            .unwrap()
            .unwrap()
            .webhook
            .is_none());
    }
);

conformance!(
    multi_webhook_changes_apply_in_order_and_routing_sees_each,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let a = destination("a", "https://a.example.com/x");
        let b = destination("b", "https://b.example.com/x");
        let enable = MultiWebhookChange::Enable(vec![a.clone()]);
        let on = store.change_multi_webhook(&id, enable, 3).await.unwrap();
        assert_eq!(
            on,
            MultiWebhook {
                enabled: true,
                destinations: vec![a.clone()]
            }
        );
        assert_eq!(routing(store, &id).await.multi_webhook, on);

        let appended = store
            .change_multi_webhook(&id, MultiWebhookChange::Append(vec![b.clone()]), 3)
            .await
            .unwrap();
        assert_eq!(appended.destinations, vec![a.clone(), b.clone()]);
        assert_eq!(routing(store, &id).await.multi_webhook, appended);

        let moved = url("https://moved.example.com/x");
        let update = MultiWebhookChange::Update {
            name: name("a"),
            url: Some(moved.clone()),
            headers: Some(headers(&[("Authorization", "Bearer t")])),
        };
        let updated = store.change_multi_webhook(&id, update, 3).await.unwrap();
        assert_eq!(updated.destinations[0].url, moved);
        assert_eq!(
            updated.destinations[0].headers,
            headers(&[("Authorization", "Bearer t")])
        );
        assert_eq!(routing(store, &id).await.multi_webhook, updated);

        let deleted = store
            .change_multi_webhook(&id, MultiWebhookChange::Delete(name("b")), 3)
            .await
            .unwrap();
        assert_eq!(deleted.destinations.len(), 1);
        assert_eq!(routing(store, &id).await.multi_webhook, deleted);

        let off = store
            .change_multi_webhook(&id, MultiWebhookChange::Disable, 3)
            .await
            .unwrap();
        assert!(!off.enabled);
        assert_eq!(
            off.destinations, deleted.destinations,
            "kept while disabled"
        );
        assert_eq!(routing(store, &id).await.multi_webhook, off);
        assert_eq!(
            store.channel(&id).await.unwrap().unwrap().multi_webhook,
            off
        );
    }
);

conformance!(
    a_refused_multi_webhook_change_writes_nothing,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let a = || destination("a", "https://a.example.com/x");
        let b = || destination("b", "https://b.example.com/x");
        let channel = &id;
        let refused = |change: MultiWebhookChange, max: usize| async move {
            match store.change_multi_webhook(channel, change, max).await {
                Err(StoreError::MultiWebhook(error)) => error,
                other => panic!("expected a rule error, got {other:?}"),
            }
        };
        let append = MultiWebhookChange::Append(vec![a()]);
        assert_eq!(refused(append, 3).await, MultiWebhookError::Disabled);
        let too_many = MultiWebhookChange::Enable(vec![a(), b()]);
        assert_eq!(refused(too_many, 1).await, MultiWebhookError::TooMany(1));
        assert_eq!(
            store.channel(&id).await.unwrap().unwrap().multi_webhook,
            MultiWebhook::default()
        );

        let on = store
            .change_multi_webhook(&id, MultiWebhookChange::Enable(vec![a()]), 3)
            .await
            .unwrap();
        let before = routing(store, &id).await.multi_webhook.clone();
        assert_eq!(before, on);
        let cases = [
            (
                MultiWebhookChange::Enable(vec![]),
                MultiWebhookError::AlreadyEnabled,
            ),
            (
                MultiWebhookChange::Append(vec![b(), b()]),
                MultiWebhookError::NamesNotUnique,
            ),
            (
                MultiWebhookChange::Append(vec![a()]),
                MultiWebhookError::AlreadyExists("a".into()),
            ),
            (
                MultiWebhookChange::Append(vec![b(), destination("c", "https://c.example.com")]),
                MultiWebhookError::TooMany(2),
            ),
            (
                MultiWebhookChange::Delete(name("A")),
                MultiWebhookError::NotFound("A".into()),
            ),
            (
                MultiWebhookChange::Update {
                    name: name("z"),
                    url: None,
                    headers: None,
                },
                MultiWebhookError::NotFound("z".into()),
            ),
        ];
        for (change, error) in cases {
            let max = if error == MultiWebhookError::TooMany(2) {
                2
            } else {
                3
            };
            assert_eq!(refused(change, max).await, error);
            assert_eq!(store.channel(&id).await.unwrap().unwrap().multi_webhook, on);
            assert_eq!(routing(store, &id).await.multi_webhook, on);
        }
        assert_eq!(
            refused(MultiWebhookChange::Delete(name("A")), 3)
                .await
                .to_string(),
            "Destination with name A not found"
        );
    }
);

conformance!(
    a_signing_secret_and_ordering_are_seen_at_once,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        assert_eq!(routing(store, &id).await.signing_secret, None);
        store
            .set_signing_secret(&id, "s3cret".into())
            .await
            .unwrap();
        assert_eq!(
            routing(store, &id).await.signing_secret.as_deref(),
            Some("s3cret")
        );
        store
            .set_signing_secret(&id, "rotated".into())
            .await
            .unwrap();
        assert_eq!(
            routing(store, &id).await.signing_secret.as_deref(),
            Some("rotated")
        );
        store.set_ordered(&id, true, now()).await.unwrap();
        assert!(store.channel(&id).await.unwrap().unwrap().ordered);
        store.set_ordered(&id, false, now()).await.unwrap();
        assert!(!store.channel(&id).await.unwrap().unwrap().ordered);
    }
);

conformance!(
    partner_webhook_headers_and_secret_are_stored,
    |db: Db| async move {
        let store = &*db.store;
        provisioned(store).await;
        let id = partner(1).id;
        let target = url("https://partner.example.com/events");
        let record = store
            .set_partner_webhook_url(&id, Some(target.clone()))
            .await
            .unwrap();
        assert_eq!(record.webhook_url, Some(target.clone()));
        let sent = headers(&[("X-Partner", "1")]);
        let record = store
            .set_partner_webhook_headers(&id, sent.clone())
            .await
            .unwrap();
        assert_eq!(
            (record.webhook_url.clone(), record.webhook_headers.clone()),
            (Some(target), sent.clone())
        );
        assert_eq!(record.webhook().expect("webhook").headers, sent);
        store
            .set_partner_signing_secret(&id, "ps".into())
            .await
            .unwrap();
        let read = store.partner(&id).await.unwrap().unwrap();
        assert_eq!(read.signing_secret.as_deref(), Some("ps"));
        let by_key = store.partner_by_key(&key("key-p1")).await.unwrap().unwrap();
        assert_eq!(by_key.webhook_headers, sent);
        let removed = store.set_partner_webhook_url(&id, None).await.unwrap();
        assert_eq!(removed.webhook_url, None);
        assert_eq!(
            removed.webhook_headers, sent,
            "headers are kept without a URL"
        );
        assert!(removed.webhook().is_none());
    }
);

conformance!(a_waba_signing_secret_is_stored, |db: Db| async move {
    let store = &*db.store;
    provisioned(store).await;
    store
        .set_waba_signing_secret(waba(1), "ws".into())
        .await
        .unwrap();
    let route = store.waba_route(waba(1)).await.unwrap().unwrap();
    assert_eq!(route.signing_secret.as_deref(), Some("ws"));
    store
        .set_waba_signing_secret(waba(1), "ws2".into())
        .await
        .unwrap();
    let route = store.waba_route(waba(1)).await.unwrap().unwrap();
    assert_eq!(route.signing_secret.as_deref(), Some("ws2"));
});

conformance!(
    configured_routes_name_every_configuration_that_sends,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        assert!(store.configured_routes().await.unwrap().is_empty());
        store
            .set_phone_webhook(&id, Some(hook("https://phone.example.com/p")))
            .await
            .unwrap();
        let shared = WabaWebhook {
            webhook: hook("https://waba.example.com/w"),
            override_all: false,
        };
        store.set_waba_webhook(waba(1), Some(shared)).await.unwrap();
        let extras = vec![destination("x", "https://x.example.com/e")];
        store
            .change_multi_webhook(&id, MultiWebhookChange::Enable(extras), 3)
            .await
            .unwrap();
        store
            .set_partner_webhook_url(&partner(1).id, Some(url("https://partner.example.com/p")))
            .await
            .unwrap();
        let mut routes: Vec<_> = store
            .configured_routes()
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.reason,
                    r.url,
                    r.channel.map(|c| c.to_string()),
                    r.owner,
                    r.partner,
                    r.waba,
                )
            })
            .collect();
        routes.sort_by(|a, b| a.1.cmp(&b.1));
        let p1 = Some(partner(1).id);
        let c1 = Some(id.to_string());
        assert_eq!(
            routes,
            vec![
                (
                    RouteReason::PartnerWebhook,
                    "https://partner.example.com/p".into(),
                    None,
                    p1.clone(),
                    p1.clone(),
                    None
                ),
                (
                    RouteReason::PhoneNumberWebhook,
                    "https://phone.example.com/p".into(),
                    c1.clone(),
                    p1.clone(),
                    None,
                    Some(waba(1))
                ),
                (
                    RouteReason::WabaWebhook,
                    "https://waba.example.com/w".into(),
                    c1.clone(),
                    p1.clone(),
                    None,
                    Some(waba(1))
                ),
                (
                    RouteReason::ExtraDestination("x".into()),
                    "https://x.example.com/e".into(),
                    c1,
                    p1,
                    None,
                    Some(waba(1))
                ),
            ]
        );
        // A disabled multi webhook sends nothing.
        store
            .change_multi_webhook(&id, MultiWebhookChange::Disable, 3)
            .await
            .unwrap();
        let reasons: Vec<_> = store
            .configured_routes()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.reason)
            .collect();
        assert_eq!(reasons.len(), 3);
        assert!(!reasons
            .iter()
            .any(|r| matches!(r, RouteReason::ExtraDestination(_))));
    }
);

conformance!(
    a_change_made_through_another_store_reaches_this_ones_routing,
    |db: Db| async move {
        let store = Arc::clone(&db.store);
        let id = provisioned(&*store).await;
        // On PostgreSQL another node writes; on SQLite the one store is the only writer.
        let other = match db.backend {
            Backend::Postgres => db.another_node("conformance-b").await,
            Backend::Sqlite => Arc::clone(&store),
        };
        for n in 0..3 {
            assert!(
                routing(&*store, &id).await.route
                    != Route::Phone(hook(&format!("https://n{n}.example.com")))
            );
            let webhook = hook(&format!("https://n{n}.example.com"));
            other
                .set_phone_webhook(&id, Some(webhook.clone()))
                .await
                .unwrap();
            eventually("the other store's change is routed", || {
                let (store, id, webhook) = (Arc::clone(&store), id.clone(), webhook.clone());
                async move { routing(&*store, &id).await.route == Route::Phone(webhook) }
            })
            .await;
        }
    }
);
