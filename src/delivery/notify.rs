//! Operational events: a destination's state change (`destination_degraded`,
//! `destination_paused`, `destination_recovered`) becomes a partner event for every partner
//! whose channels route to it, stored on the same durable engine as every other partner
//! event (same body, headers and signing; see docs/PARTNER_EVENTS.md), and counted.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::feed::{Feed, FeedItem};
use crate::domain::{DestinationId, PartnerEventType, PartnerId};
use crate::metrics::{Metrics, Source, StateChange};
use crate::store::{NewEvent, Store, StoreError};

/// Stores one `kind` event for each partner that owns a route to destination `id`, with
/// `details` merged into its data, and tells the change to the live feed (`url` is
/// already masked); returns how many events were stored.
pub async fn destination_changed(
    (store, metrics, feed): (&dyn Store, &Metrics, &Feed),
    (id, url): (&DestinationId, &str),
    change: StateChange,
    details: Value,
) -> Result<usize, StoreError> {
    metrics.destination_state_changed(change);
    if feed.is_watched() {
        feed.publish(FeedItem::destination_changed(id, url, change));
    }
    let kind = match change {
        StateChange::Degraded => PartnerEventType::DESTINATION_DEGRADED,
        StateChange::Paused => PartnerEventType::DESTINATION_PAUSED,
        StateChange::Recovered => PartnerEventType::DESTINATION_RECOVERED,
    };
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for route in store.configured_routes().await? {
        let (Some(owner), Some(route_id)) = (route.owner, DestinationId::of(&route.url)) else {
            continue;
        };
        if &route_id != id {
            continue;
        }
        let channels = owners.entry(owner.to_string()).or_default();
        if let Some(channel) = route.channel.map(|c| c.to_string()) {
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
    }
    let now = crate::clock::now_ms();
    let events: Vec<NewEvent> = owners
        .into_iter()
        .map(|(owner, channels)| {
            let mut data = json!({
                "destination": {"id": id.as_str(), "url": url},
                "channels": channels,
            });
            if let (Some(data), Value::Object(details)) = (data.as_object_mut(), &details) {
                data.extend(details.clone());
            }
            let owner = PartnerId::from_raw(&owner);
            NewEvent::partner(owner, PartnerEventType::builtin(kind), data, now)
        })
        .collect();
    let stored = events.len();
    if stored > 0 {
        let told = feed.facts_to_tell(&events);
        let saved = store.save_events(events, None).await?;
        feed.tell_stored(told, &saved);
        for _ in 0..stored {
            metrics.event_stored(Source::Platform, crate::domain::EventKind::Partner);
        }
    }
    Ok(stored)
}
