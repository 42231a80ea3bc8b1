//! Partner events: the platform's own notifications to a partner's webhook.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{EventId, PartnerId, ValidationError};

/// The longest event type accepted.
const MAX_TYPE_CHARS: usize = 64;

/// A partner event's type, e.g. `channel_created`: lowercase letters, digits, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEventType(String);

impl PartnerEventType {
    /// A channel was created (admin API).
    pub const CHANNEL_CREATED: &'static str = "channel_created";
    /// Meta reported a message template status change for one of the partner's WABAs.
    pub const WABA_TEMPLATE_STATUS_CHANGED: &'static str = "waba_template_status_changed";
    /// Meta sent a WABA-level notification (`account_update`, `security`, …) for one of
    /// the partner's WABAs: the field and the value unchanged.
    pub const WABA_UPDATE: &'static str = "waba_update";
    /// The operator enabled template messaging on a channel.
    pub const TEMPLATE_MESSAGING_ENABLED: &'static str = "template_messaging_enabled";
    /// A receiver of the partner's channels started missing the provider's standards.
    pub const DESTINATION_DEGRADED: &'static str = "destination_degraded";
    /// A receiver of the partner's channels was paused (nothing but failures, or by hand).
    pub const DESTINATION_PAUSED: &'static str = "destination_paused";
    /// A paused or degraded receiver of the partner's channels is healthy again.
    pub const DESTINATION_RECOVERED: &'static str = "destination_recovered";

    /// Checks a type given by a client.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let valid = (1..=MAX_TYPE_CHARS).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError(format!(
                "Invalid type {raw:?}: 1 to {MAX_TYPE_CHARS} lowercase letters, digits, \"_\" or \".\""
            )))
        }
    }

    /// One of the built-in types (the constants above).
    pub fn builtin(name: &'static str) -> Self {
        Self(name.to_owned())
    }

    /// The type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A partner event before it has an id: the store renders its body once the id is known.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerEvent {
    /// What happened.
    pub kind: PartnerEventType,
    /// Who is told.
    pub partner: PartnerId,
    /// The details, by kind.
    pub data: Value,
    /// When it happened, ms since the epoch.
    pub created_at: i64,
}

impl PartnerEvent {
    /// The delivered body: `{"id", "type", "partner_id", "created_at", "data"}`.
    pub fn render(&self, id: EventId) -> Bytes {
        let body = json!({
            "id": id.0,
            "type": self.kind.as_str(),
            "partner_id": self.partner.as_str(),
            "created_at": crate::clock::rfc3339(self.created_at),
            "data": self.data,
        });
        Bytes::from(super::ascii_escaped(&body.to_string()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_the_escaped_unicode_form() {
        let event = PartnerEvent {
            kind: PartnerEventType::builtin(PartnerEventType::CHANNEL_CREATED),
            partner: PartnerId::from_raw("p1"),
            data: json!({"name": "Café 😀"}),
            created_at: 0,
        };
        let body = event.render(EventId(1));
        assert!(body.is_ascii());
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["data"]["name"], "Café 😀");
    }

    #[test]
    fn renders_the_documented_body() {
        let event = PartnerEvent {
            kind: PartnerEventType::builtin(PartnerEventType::CHANNEL_CREATED),
            partner: PartnerId::from_raw("p1"),
            data: json!({"channel": {"id": "c1"}}),
            created_at: 0,
        };
        let body: Value = serde_json::from_slice(&event.render(EventId(7))).unwrap();
        assert_eq!(
            body,
            json!({"id": 7, "type": "channel_created", "partner_id": "p1",
                   "created_at": "1970-01-01T00:00:00.000Z", "data": {"channel": {"id": "c1"}}})
        );
    }

    #[test]
    fn types_are_checked() {
        assert!(PartnerEventType::parse("client.updated_2").is_ok());
        for bad in ["", "Channel", "a b", "x/y", &"a".repeat(65)] {
            assert!(PartnerEventType::parse(bad).is_err(), "{bad:?}");
        }
    }
}
