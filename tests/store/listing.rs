//! The provisioning lists: keyset pages by id, their filters and counts.

use switchboard::domain::{PhonePrefix, Route, WabaWebhook};
use switchboard::store::{ChannelFilter, PartnerFilter, Store, WabaFilter};

use crate::support::*;

/// Two partners; partner 1 owns WABAs 1 and 2, partner 2 owns WABA 3; channels 1 and 2 in
/// WABA 1, 3 in WABA 2, 4 in WABA 3 (number spelled without `+`).
async fn provision_many(store: &dyn Store) {
    store.create_partner(partner(1), key("k1")).await.unwrap();
    store.create_partner(partner(2), key("k2")).await.unwrap();
    for (owner, id) in [(1, 1), (1, 2), (2, 3)] {
        store
            .create_waba(&partner(owner).id, waba(id))
            .await
            .unwrap();
    }
    for (id, n) in [(1, 1), (1, 2), (2, 3), (3, 4)] {
        let mut channel = new_channel(waba(id), n);
        if n == 4 {
            channel.phone_number = switchboard::domain::PhoneNumber::parse("4915200004").unwrap();
        }
        store.create_channel(channel, Vec::new()).await.unwrap();
    }
}

conformance!(
    partners_are_paged_by_id_with_their_waba_counts,
    |db: Db| async move {
        let store = &*db.store;
        provision_many(store).await;
        store
            .set_partner_signing_secret(&partner(2).id, "s".into())
            .await
            .unwrap();
        let page = |after, limit| PartnerFilter {
            only: None,
            after,
            limit,
        };
        let first = store.list_partners(page(None, 1)).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].partner.clone(), first[0].wabas, first[0].signing),
            (partner(1), 2, false)
        );
        assert!(first[0].created_at > 0);
        let next = store
            .list_partners(page(Some(partner(1).id), 10))
            .await
            .unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].partner.clone(), next[0].wabas, next[0].signing),
            (partner(2), 1, true)
        );
        assert!(store
            .list_partners(page(Some(partner(2).id), 10))
            .await
            .unwrap()
            .is_empty());
        let only = PartnerFilter {
            only: Some(partner(2).id),
            after: None,
            limit: 10,
        };
        assert_eq!(
            store.list_partners(only).await.unwrap()[0].partner,
            partner(2)
        );
    }
);

conformance!(
    wabas_are_paged_by_id_per_partner_with_channel_counts,
    |db: Db| async move {
        let store = &*db.store;
        provision_many(store).await;
        let shared = WabaWebhook {
            webhook: hook("https://waba.example.com/w"),
            override_all: false,
        };
        store
            .set_waba_webhook(waba(2), Some(shared.clone()))
            .await
            .unwrap();
        let filter = |partner, after, limit| WabaFilter {
            only: None,
            partner,
            after,
            limit,
        };
        let all = store.list_wabas(filter(None, None, 10)).await.unwrap();
        let rows: Vec<_> = all
            .iter()
            .map(|w| (w.waba_id, w.partner_id.clone(), w.channels))
            .collect();
        assert_eq!(
            rows,
            [
                (waba(1), partner(1).id, 2),
                (waba(2), partner(1).id, 1),
                (waba(3), partner(2).id, 1)
            ]
        );
        assert_eq!(all[1].webhook, Some(shared));
        assert_eq!(all[0].webhook, None);
        let of_first = store
            .list_wabas(filter(Some(partner(1).id), Some(waba(1)), 10))
            .await
            .unwrap();
        assert_eq!(
            of_first.iter().map(|w| w.waba_id).collect::<Vec<_>>(),
            [waba(2)]
        );
        let limited = store.list_wabas(filter(None, None, 2)).await.unwrap();
        assert_eq!(limited.len(), 2);
        let only = WabaFilter {
            only: Some(waba(3)),
            partner: None,
            after: None,
            limit: 10,
        };
        assert_eq!(store.list_wabas(only).await.unwrap()[0].waba_id, waba(3));
    }
);

conformance!(
    channels_are_paged_by_id_and_filtered_with_their_route,
    |db: Db| async move {
        let store = &*db.store;
        provision_many(store).await;
        let phone = hook("https://phone.example.com/p");
        let one = new_channel(waba(1), 1).id;
        store
            .set_phone_webhook(&one, Some(phone.clone()))
            .await
            .unwrap();
        store.set_signing_secret(&one, "s".into()).await.unwrap();
        let filter = ChannelFilter {
            partner: None,
            waba: None,
            phone: None,
            after: None,
            limit: 10,
        };
        let ids = |listed: Vec<switchboard::store::ChannelListing>| {
            listed
                .into_iter()
                .map(|c| c.channel.id.to_string())
                .collect::<Vec<_>>()
        };
        let all = store.list_channels(filter.clone()).await.unwrap();
        assert_eq!(all[0].route, Route::Phone(phone));
        assert!(all[0].signing && !all[1].signing);
        assert_eq!(all[0].partner_id, partner(1).id);
        assert_eq!(all[1].route, Route::None);
        assert_eq!(ids(all), ["c_1", "c_2", "c_3", "c_4"]);
        let page = ChannelFilter {
            after: Some(one.clone()),
            limit: 2,
            ..filter.clone()
        };
        assert_eq!(
            ids(store.list_channels(page).await.unwrap()),
            ["c_2", "c_3"]
        );
        let by_partner = ChannelFilter {
            partner: Some(partner(2).id),
            ..filter.clone()
        };
        assert_eq!(ids(store.list_channels(by_partner).await.unwrap()), ["c_4"]);
        let by_waba = ChannelFilter {
            waba: Some(waba(1)),
            ..filter.clone()
        };
        assert_eq!(
            ids(store.list_channels(by_waba).await.unwrap()),
            ["c_1", "c_2"]
        );
        let prefix = |raw: &str| ChannelFilter {
            phone: Some(PhonePrefix::parse(raw).unwrap()),
            ..filter.clone()
        };
        assert_eq!(
            ids(store.list_channels(prefix("+49151")).await.unwrap()),
            ["c_1", "c_2", "c_3"]
        );
        assert_eq!(
            ids(store.list_channels(prefix("49152")).await.unwrap()),
            ["c_4"],
            "either spelling"
        );
        assert_eq!(
            ids(store.list_channels(prefix("4915")).await.unwrap()).len(),
            4
        );
        assert!(store.list_channels(prefix("1")).await.unwrap().is_empty());
    }
);
