//! Domain: the plain types of Switchboard and the rules they enforce.
//!
//! Every value that reaches the store or the delivery engine was parsed here once
//! ("parse, don't validate"): a `WebhookUrl` is a URL that obeys the provider's rules,
//! a `WebhookHeaders` holds only legal HTTP headers, a `DestinationName` is a usable
//! name. This module knows no HTTP framework and no SQL.

mod address;
mod delivery;
mod destination;
mod headers;
mod ids;
mod json_text;
mod keys;
mod multi_webhook;
mod partner_event;
mod settlement;
mod summary;
mod trace_context;
mod webhook;
mod webhook_url;

pub use address::AddressPolicy;
pub use delivery::{
    AttemptErrorKind, AttemptId, DeliveryId, DeliveryState, DeliveryTarget, EventId, EventKind,
    Target,
};
pub use destination::DestinationId;
pub use headers::{HeaderError, WebhookHeaders};
pub use ids::{ChannelId, PartnerId, PhoneNumber, PhoneNumberId, PhonePrefix, WabaId};
pub use json_text::ascii_escaped;
pub use keys::{hex, random_alphanumeric, random_hex, ApiKey, KeyHash};
pub use multi_webhook::{
    Destination, DestinationName, MultiWebhook, MultiWebhookChange, MultiWebhookError,
};
pub use partner_event::{PartnerEvent, PartnerEventType};
pub use settlement::{Effect, RowChange, Settlement};
pub use summary::{
    summary, EnvelopeSummary, MessageSummary, StatusError, StatusSummary, Summary,
    TEXT_PREVIEW_CHARS,
};
pub use trace_context::{TraceContext, MAX_TRACESTATE_LEN};
pub use webhook::{Channel, Partner, Route, WabaWebhook, Webhook};
pub use webhook_url::{redact_query, UrlError, UrlPolicy, WebhookUrl};

/// A value supplied by a client that breaks one of the domain's rules.
///
/// It carries the message shown to the client, which names the field and the problem,
/// so every surface can answer 400 with the same words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);
