//! Events, deliveries and attempts: the vocabulary of the delivery engine.

use serde::Serialize;

use super::{DestinationName, WabaId, Webhook};

/// An accepted notification's id, given by the store in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

/// One event-to-target delivery's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeliveryId(pub i64);

/// A recorded attempt's id (`attempts.id`), given by the store in the order attempts were
/// recorded: the live stream's cursor counts attempts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AttemptId(pub i64);

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What an event is, which decides how its deliveries are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A WhatsApp notification for one channel, delivered by the routing priority.
    Whatsapp,
    /// A notification for a phone_number_id no channel has: kept and counted, not delivered.
    Unroutable,
    /// A platform event for a partner, delivered to the partner webhook.
    Partner,
    /// A Meta notification that belongs to a WABA, not a number (`account_update`, …):
    /// delivered to the WABA webhook.
    Waba,
}

impl EventKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Unroutable => "unroutable",
            Self::Partner => "partner",
            Self::Waba => "waba",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "whatsapp" => Some(Self::Whatsapp),
            "unroutable" => Some(Self::Unroutable),
            "partner" => Some(Self::Partner),
            "waba" => Some(Self::Waba),
            _ => None,
        }
    }
}

/// Which destination a delivery is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The channel's main destination, resolved by priority at each attempt.
    Primary,
    /// One extra (multi-webhook) destination, created after the primary got 200.
    Extra(DestinationName),
    /// The partner webhook, for partner events.
    Partner,
    /// The WABA webhook of this WABA, for WABA-level notifications.
    Waba(WabaId),
}

impl Target {
    /// The stored spelling: `primary`, `extra:<name>`, `partner` or `waba:<id>`.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Primary => "primary".into(),
            Self::Extra(name) => format!("extra:{}", name.as_str()),
            Self::Partner => "partner".into(),
            Self::Waba(waba) => format!("waba:{waba}"),
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(raw: &str) -> Option<Self> {
        match raw.split_once(':') {
            None if raw == "primary" => Some(Self::Primary),
            None if raw == "partner" => Some(Self::Partner),
            Some(("extra", name)) => Some(Self::Extra(DestinationName::from_stored(name.into()))),
            Some(("waba", id)) => id
                .parse()
                .ok()
                .and_then(|id| WabaId::new(id).ok())
                .map(Self::Waba),
            _ => None,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A destination answered 200.
    Delivered,
    /// Given up after the maximum age; replayable.
    Failed,
    /// No destination was configured; nothing was sent; replayable.
    Dropped,
}

impl DeliveryState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            "dropped" => Some(Self::Dropped),
            _ => None,
        }
    }
}

/// Why an attempt got no 200, when it got no HTTP status at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptErrorKind {
    /// No complete answer within the delivery timeout.
    Timeout,
    /// The connection could not be made (refused, reset, DNS).
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The destination resolves to an address that deliveries may not reach.
    Blocked,
    /// The answer was cut or malformed.
    Io,
}

impl AttemptErrorKind {
    /// The stored and metric spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Blocked => "blocked",
            Self::Io => "io",
        }
    }
}

/// Where one attempt goes: a URL with its headers, and the signing secret if any.
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    /// URL and configured headers.
    pub webhook: Webhook,
    /// Signs the body with `X-Hub-Signature-256` when set.
    pub signing_secret: Option<String>,
}
