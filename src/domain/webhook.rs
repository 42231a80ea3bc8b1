//! Webhook configurations and the routing rule that picks one for a notification.

use serde::Serialize;

use super::{
    ChannelId, MultiWebhook, PartnerId, PhoneNumber, PhoneNumberId, WabaId, WebhookHeaders,
    WebhookUrl,
};

/// Where notifications go and which headers they carry: a phone-number or WABA webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// The destination URL.
    pub url: WebhookUrl,
    /// Headers sent with every delivery, e.g. `Authorization`.
    pub headers: WebhookHeaders,
}

/// A WABA-level webhook, serving the WABA's numbers that have no phone-number webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WabaWebhook {
    /// The destination and its headers.
    pub webhook: Webhook,
    /// As last set: `true` removed the numbers' own webhooks when it was set.
    pub override_all: bool,
}

/// A partner: owns WABAs, gets platform events (Partner API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// The `{partner_id}` of the Partner API.
    pub id: PartnerId,
    /// Display name, the Partner API's `brand_name`.
    pub name: String,
}

/// One phone number with everything its notifications are routed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Switchboard's id for the channel.
    pub id: ChannelId,
    /// The WABA the number belongs to.
    pub waba_id: WabaId,
    /// The number itself.
    pub phone_number: PhoneNumber,
    /// Meta's id of the number, which Meta's webhooks carry.
    pub phone_number_id: PhoneNumberId,
    /// The phone-number webhook, if one is set.
    pub webhook: Option<Webhook>,
    /// The extra destinations that get a copy after the main one answered 200.
    pub multi_webhook: MultiWebhook,
    /// Whether its notifications reach the primary destination one at a time, in the order
    /// they were acknowledged (opt-in: chat bots need a `read` after its `sent`).
    pub ordered: bool,
}

/// Where a channel's notification goes, resolved at each attempt from the current config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The number's own webhook, which has priority.
    Phone(Webhook),
    /// The WABA's webhook, for numbers without their own.
    Waba(Webhook),
    /// Neither is set: the notification is recorded as dropped and nothing is sent.
    None,
}

impl Route {
    /// Applies the provider's priority: phone-number webhook, else WABA webhook, else none.
    pub fn resolve(phone: Option<Webhook>, waba: Option<WabaWebhook>) -> Self {
        match (phone, waba) {
            (Some(webhook), _) => Self::Phone(webhook),
            (None, Some(waba)) => Self::Waba(waba.webhook),
            (None, None) => Self::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UrlPolicy;

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: WebhookUrl::parse(url, UrlPolicy::default()).unwrap(),
            headers: WebhookHeaders::default(),
        }
    }

    #[test]
    fn phone_webhook_has_priority_then_waba_then_none() {
        let phone = hook("https://phone.example.com");
        let waba = WabaWebhook {
            webhook: hook("https://waba.example.com"),
            override_all: false,
        };
        assert_eq!(
            Route::resolve(Some(phone.clone()), Some(waba.clone())),
            Route::Phone(phone)
        );
        assert_eq!(
            Route::resolve(None, Some(waba.clone())),
            Route::Waba(waba.webhook)
        );
        assert_eq!(Route::resolve(None, None), Route::None);
    }
}
