//! Partners, WABAs and channels: what is stored, how it is found, and the exact errors the
//! API maps to HTTP (`api/error.rs`).

use switchboard::domain::{ChannelId, PartnerEventType, PartnerId, Route};
use switchboard::store::{NewEvent, StoreError};

use crate::support::*;

/// `Conflict(message)` with exactly `message`.
#[track_caller]
fn assert_conflict(result: Result<(), StoreError>, message: &str) {
    match result {
        Err(StoreError::Conflict(got)) => assert_eq!(got, message),
        other => panic!("expected Conflict({message:?}), got {other:?}"),
    }
}

/// `NotFound { what, id }` with exactly these.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, id: &str) {
    match result {
        Err(StoreError::NotFound {
            what: got,
            id: got_id,
        }) => {
            assert_eq!((got, got_id.as_str()), (what, id));
        }
        other => panic!("expected NotFound {{ {what}, {id} }}, got {other:?}"),
    }
}

conformance!(
    provisioned_things_are_found_by_id_key_and_meta_id,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let second = new_channel(waba(1), 2);
        store.create_channel(second, Vec::new()).await.unwrap();

        let partner = store
            .partner(&partner(1).id)
            .await
            .unwrap()
            .expect("partner");
        assert_eq!(partner.partner, crate::support::partner(1));
        assert_eq!(partner.webhook_url, None);
        assert!(partner.webhook_headers.as_map().is_empty());
        assert_eq!(partner.signing_secret, None);
        let by_key = store.partner_by_key(&key("key-p1")).await.unwrap();
        assert_eq!(by_key.expect("by key").partner.id, partner.partner.id);
        assert!(store.partner_by_key(&key("nope")).await.unwrap().is_none());
        assert!(store
            .partner(&PartnerId::from_raw("nope"))
            .await
            .unwrap()
            .is_none());

        let channel = store.channel(&id).await.unwrap().expect("channel");
        let wanted = new_channel(waba(1), 1);
        assert_eq!(channel.waba_id, waba(1));
        assert_eq!(channel.phone_number, wanted.phone_number);
        assert_eq!(channel.phone_number_id, wanted.phone_number_id);
        assert_eq!(channel.webhook, None);
        assert!(!channel.multi_webhook.enabled && channel.multi_webhook.destinations.is_empty());
        assert!(!channel.ordered);
        let by_key = store.channel_by_key(&key("key-c1")).await.unwrap();
        assert_eq!(by_key.expect("by key"), channel);
        assert!(store.channel_by_key(&key("nope")).await.unwrap().is_none());
        assert!(store
            .channel(&ChannelId::from_raw("nope"))
            .await
            .unwrap()
            .is_none());

        let reference = store.channel_ref(&id).await.unwrap().expect("ref");
        assert_eq!(
            (reference.id.clone(), reference.waba_id),
            (id.clone(), waba(1))
        );
        assert_eq!(reference.phone_number, wanted.phone_number);
        let by_meta = store
            .channel_by_phone_number_id(wanted.phone_number_id.as_str())
            .await
            .unwrap()
            .expect("by Meta id");
        assert_eq!(by_meta.id, id);
        assert!(store
            .channel_by_phone_number_id("42")
            .await
            .unwrap()
            .is_none());
        assert!(store
            .channel_ref(&ChannelId::from_raw("nope"))
            .await
            .unwrap()
            .is_none());

        let view = store.waba_webhook(waba(1)).await.unwrap();
        assert!(view.webhook.is_none());
        let numbers: Vec<_> = view.numbers.iter().map(|n| n.as_str().to_owned()).collect();
        assert_eq!(
            numbers,
            ["+49151000001", "+49151000002"],
            "in the order added"
        );
        let route = store
            .waba_route(waba(1))
            .await
            .unwrap()
            .expect("WABA route");
        assert_eq!(route.partner, crate::support::partner(1).id);
        assert!(route.webhook.is_none() && route.signing_secret.is_none());
        assert!(store.waba_route(waba(9)).await.unwrap().is_none());
        assert_eq!(store.route(&id).await.unwrap(), Route::None);
    }
);

conformance!(
    a_channel_is_created_with_its_events_in_one_transaction,
    |db: Db| async move {
        let store = &*db.store;
        provisioned(store).await;
        let created = NewEvent::partner(
            partner(1).id,
            PartnerEventType::builtin("channel_created"),
            serde_json::json!({"channel": "c_2"}),
            now(),
        );
        store
            .create_channel(new_channel(waba(1), 2), vec![created.clone()])
            .await
            .unwrap();
        // A refused channel stores none of its events.
        let refused = store
            .create_channel(new_channel(waba(1), 2), vec![created])
            .await;
        assert!(refused.is_err());
        let due = claim_all(store).await;
        assert_eq!(due.len(), 1, "one partner event, unleased until claimed");
        assert_eq!(due[0].target, switchboard::domain::Target::Partner);
        assert_eq!(due[0].partner, Some(partner(1).id));
        let body: serde_json::Value = serde_json::from_slice(&due[0].payload).unwrap();
        assert_eq!(body["type"], "channel_created", "rendered: {body}");
    }
);

conformance!(
    a_duplicate_partner_id_is_a_conflict_naming_it,
    |db: Db| async move {
        let store = &*db.store;
        store.create_partner(partner(1), key("k1")).await.unwrap();
        let again = store.create_partner(partner(1), key("k2")).await;
        assert_conflict(again, "Partner p_1 already exists");
        let kept = store.partner(&partner(1).id).await.unwrap().expect("kept");
        assert!(store.partner_by_key(&key("k2")).await.unwrap().is_none());
        assert_eq!(kept.partner, partner(1));
    }
);

conformance!(
    a_waba_of_an_unknown_partner_is_not_found,
    |db: Db| async move {
        let store = &*db.store;
        let result = store
            .create_waba(&PartnerId::from_raw("ghost"), waba(5))
            .await;
        assert_not_found(result, "partner", "ghost");
        assert!(store.waba_route(waba(5)).await.unwrap().is_none());
    }
);

conformance!(
    a_duplicate_waba_is_a_conflict_naming_it,
    |db: Db| async move {
        let store = &*db.store;
        store.create_partner(partner(1), key("k1")).await.unwrap();
        store.create_partner(partner(2), key("k2")).await.unwrap();
        store.create_waba(&partner(1).id, waba(7)).await.unwrap();
        let again = store.create_waba(&partner(2).id, waba(7)).await;
        assert_conflict(again, "WABA 7 already exists");
        let route = store.waba_route(waba(7)).await.unwrap().expect("kept");
        assert_eq!(route.partner, partner(1).id, "the first owner keeps it");
    }
);

conformance!(
    a_channel_of_an_unknown_waba_is_not_found,
    |db: Db| async move {
        let store = &*db.store;
        let result = store
            .create_channel(new_channel(waba(3), 1), Vec::new())
            .await;
        assert_not_found(result, "WABA", "3");
        assert!(store
            .channel(&new_channel(waba(3), 1).id)
            .await
            .unwrap()
            .is_none());
    }
);

conformance!(
    a_taken_phone_number_is_a_conflict_naming_it,
    |db: Db| async move {
        let store = &*db.store;
        provisioned(store).await;
        let mut clash = new_channel(waba(1), 2);
        clash.phone_number = new_channel(waba(1), 1).phone_number;
        let result = store.create_channel(clash, Vec::new()).await;
        assert_conflict(
            result,
            "A channel with phone_number +49151000001 already exists",
        );
        assert!(store
            .channel(&new_channel(waba(1), 2).id)
            .await
            .unwrap()
            .is_none());
    }
);

conformance!(
    a_taken_phone_number_id_is_a_conflict_naming_it,
    |db: Db| async move {
        let store = &*db.store;
        provisioned(store).await;
        let mut clash = new_channel(waba(1), 2);
        clash.phone_number_id = new_channel(waba(1), 1).phone_number_id;
        let result = store.create_channel(clash, Vec::new()).await;
        assert_conflict(result, "A channel with phone_number_id 101 already exists");
        assert!(store
            .channel(&new_channel(waba(1), 2).id)
            .await
            .unwrap()
            .is_none());
    }
);

conformance!(
    a_new_key_revokes_the_old_one_and_removes_the_phone_webhook,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        store
            .set_phone_webhook(&id, Some(hook("https://phone.example.com/h")))
            .await
            .unwrap();
        // Cached before the change: the change must still be seen.
        assert!(matches!(store.route(&id).await.unwrap(), Route::Phone(_)));
        store
            .replace_channel_key(&id, key("new-key"))
            .await
            .unwrap();
        assert!(store
            .channel_by_key(&key("key-c1"))
            .await
            .unwrap()
            .is_none());
        let found = store.channel_by_key(&key("new-key")).await.unwrap();
        assert_eq!(found.expect("by the new key").id, id);
        assert_eq!(store.channel(&id).await.unwrap().unwrap().webhook, None);
        assert_eq!(store.route(&id).await.unwrap(), Route::None);
    }
);

conformance!(
    changes_to_unknown_ids_are_not_found_naming_the_kind,
    |db: Db| async move {
        let store = &*db.store;
        let ghost = ChannelId::from_raw("ghost");
        let nobody = PartnerId::from_raw("nobody");
        let max = 3;
        assert_not_found(
            store.replace_channel_key(&ghost, key("x")).await,
            "channel",
            "ghost",
        );
        assert_not_found(
            store.set_phone_webhook(&ghost, None).await,
            "channel",
            "ghost",
        );
        assert_not_found(
            store.set_signing_secret(&ghost, "s".into()).await,
            "channel",
            "ghost",
        );
        assert_not_found(
            store.set_ordered(&ghost, true, now()).await,
            "channel",
            "ghost",
        );
        let disable = switchboard::domain::MultiWebhookChange::Disable;
        assert_not_found(
            store.change_multi_webhook(&ghost, disable, max).await,
            "channel",
            "ghost",
        );
        assert_not_found(store.route(&ghost).await, "channel", "ghost");
        assert_not_found(store.waba_webhook(waba(8)).await, "WABA", "8");
        assert_not_found(store.set_waba_webhook(waba(8), None).await, "WABA", "8");
        assert_not_found(
            store.set_waba_signing_secret(waba(8), "s".into()).await,
            "WABA",
            "8",
        );
        assert_not_found(
            store.set_partner_webhook_url(&nobody, None).await,
            "partner",
            "nobody",
        );
        assert_not_found(
            store
                .set_partner_webhook_headers(&nobody, headers(&[]))
                .await,
            "partner",
            "nobody",
        );
        assert_not_found(
            store.set_partner_signing_secret(&nobody, "s".into()).await,
            "partner",
            "nobody",
        );
    }
);

conformance!(
    any_other_unique_violation_is_a_conflict_not_a_database_error,
    |db: Db| async move {
        let store = &*db.store;
        provisioned(store).await;
        // The same channel id with a new number and Meta id.
        let mut same_id = new_channel(waba(1), 2);
        same_id.id = new_channel(waba(1), 1).id;
        let result = store.create_channel(same_id, Vec::new()).await;
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        // A partner key that is already another partner's.
        let result = store.create_partner(partner(2), key("key-p1")).await;
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        assert!(store.partner(&partner(2).id).await.unwrap().is_none());
    }
);
