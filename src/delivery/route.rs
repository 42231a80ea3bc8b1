//! Pick the destination of one attempt from the configuration as it is now.
//!
//! Routes are resolved at each attempt, not at ingest, so fixing a broken URL drains the
//! backlog, and removing every webhook makes the remaining attempts drop instead of fail.

use crate::domain::{DeliveryTarget, DestinationName, Route, Target, WabaId, Webhook};
use crate::store::{DueDelivery, Store, StoreError};

/// Where this attempt goes, or why it goes nowhere.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Send to this destination.
    Send(DeliveryTarget),
    /// Nothing is configured for it, or nothing is left to send: record as dropped.
    Drop(String),
}

/// Why a delivery whose event's payload was purged is dropped. Requeues skip such events;
/// on PostgreSQL one can still slip back in while a purge runs on another node.
pub const PAYLOAD_PURGED: &str = "the event's payload was purged (--payload-retention-hours)";

/// Resolves `job`'s destination from the current configuration.
pub async fn resolve(store: &dyn Store, job: &DueDelivery) -> Result<Resolution, StoreError> {
    if job.payload.is_empty() {
        return Ok(Resolution::Drop(PAYLOAD_PURGED.into()));
    }
    match &job.target {
        Target::Partner => resolve_partner(store, job).await,
        Target::Waba(waba) => resolve_waba(store, *waba).await,
        Target::Primary | Target::Extra(_) => resolve_channel(store, job).await,
    }
}

/// A WABA-level notification goes to the WABA webhook as it is now, signed with the WABA's
/// own secret.
async fn resolve_waba(store: &dyn Store, waba: WabaId) -> Result<Resolution, StoreError> {
    let Some(route) = store.waba_route(waba).await? else {
        return Ok(Resolution::Drop(format!("WABA {waba} no longer exists")));
    };
    Ok(match route.webhook {
        Some(webhook) => Resolution::Send(DeliveryTarget {
            webhook,
            signing_secret: route.signing_secret,
        }),
        None => Resolution::Drop("no WABA webhook configured".into()),
    })
}

/// A partner event goes to the partner webhook URL as it is now, with the partner's headers.
async fn resolve_partner(store: &dyn Store, job: &DueDelivery) -> Result<Resolution, StoreError> {
    let Some(partner) = &job.partner else {
        return Ok(Resolution::Drop("the event has no partner".into()));
    };
    let Some(record) = store.partner(partner).await? else {
        return Ok(Resolution::Drop(format!(
            "partner {partner} no longer exists"
        )));
    };
    Ok(match record.webhook() {
        Some(webhook) => Resolution::Send(DeliveryTarget {
            webhook,
            signing_secret: record.signing_secret,
        }),
        None => Resolution::Drop("no partner webhook URL configured".into()),
    })
}

/// A channel's delivery: phone ▸ WABA ▸ none for the primary, the named extra otherwise.
async fn resolve_channel(store: &dyn Store, job: &DueDelivery) -> Result<Resolution, StoreError> {
    let Some(channel) = &job.channel else {
        return Ok(Resolution::Drop("the event has no channel".into()));
    };
    let Some(routing) = store.routing(channel).await? else {
        return Ok(Resolution::Drop(format!(
            "channel {channel} no longer exists"
        )));
    };
    let send = |webhook: Webhook| {
        Resolution::Send(DeliveryTarget {
            webhook,
            signing_secret: routing.signing_secret.clone(),
        })
    };
    Ok(match &job.target {
        Target::Primary => match &routing.route {
            Route::Phone(webhook) | Route::Waba(webhook) => send(webhook.clone()),
            Route::None => Resolution::Drop(
                "no webhook configured (neither phone-number nor WABA webhook)".into(),
            ),
        },
        Target::Extra(name) => {
            let multi = &routing.multi_webhook;
            match multi.destinations.iter().find(|d| &d.name == name) {
                Some(extra) if multi.enabled => send(Webhook {
                    url: extra.url.clone(),
                    headers: extra.headers.clone(),
                }),
                _ => Resolution::Drop(format!(
                    "extra destination {} was removed or multi webhook disabled",
                    name.as_str()
                )),
            }
        }
        Target::Partner | Target::Waba(_) => {
            Resolution::Drop("this delivery has no channel route".into())
        }
    })
}

/// The extra destinations that get a clone after a primary delivery's 200, from the
/// configuration at that moment; none while the multi webhook is disabled.
pub async fn extras_after_primary(
    store: &dyn Store,
    job: &DueDelivery,
) -> Result<Vec<DestinationName>, StoreError> {
    if job.target != Target::Primary {
        return Ok(Vec::new());
    }
    let Some(channel) = &job.channel else {
        return Ok(Vec::new());
    };
    Ok(match store.routing(channel).await? {
        Some(routing) if routing.multi_webhook.enabled => routing
            .multi_webhook
            .destinations
            .iter()
            .map(|d| d.name.clone())
            .collect(),
        _ => Vec::new(),
    })
}
