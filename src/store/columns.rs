//! Column encodings both backends share: JSON columns for headers and the multi webhook,
//! nullable URL columns for webhooks, and the spellings of stored enums.
//!
//! Stored values were validated when they were written, so they are rebuilt with the
//! domain's `from_stored` constructors.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::{
    AttemptErrorKind, Destination, DestinationName, MultiWebhook, WabaId, WabaWebhook, Webhook,
    WebhookHeaders, WebhookUrl,
};
use crate::store::StoreError;

/// A WABA id read back from the store.
pub fn stored_waba_id(raw: i64) -> Result<WabaId, StoreError> {
    WabaId::new(raw).map_err(|e| StoreError::Database(e.into()))
}

/// Rebuilds a webhook from its URL and headers columns; no URL means no webhook.
pub fn webhook_from_columns(
    url: Option<String>,
    headers: Option<String>,
) -> Result<Option<Webhook>, StoreError> {
    let Some(url) = url else {
        return Ok(None);
    };
    Ok(Some(Webhook {
        url: WebhookUrl::from_stored(url),
        headers: decode_headers(headers.as_deref())?,
    }))
}

/// Rebuilds a WABA webhook from its three columns.
pub fn waba_webhook_from_columns(
    url: Option<String>,
    headers: Option<String>,
    override_all: bool,
) -> Result<Option<WabaWebhook>, StoreError> {
    Ok(
        webhook_from_columns(url, headers)?.map(|webhook| WabaWebhook {
            webhook,
            override_all,
        }),
    )
}

/// Rebuilds a [`WabaRoute`](crate::store::WabaRoute) from `(partner_id, webhook_url,
/// webhook_headers, signing_secret)`, the same four columns on both backends.
pub fn waba_route_from_columns(
    (partner, url, headers, signing_secret): (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
) -> Result<crate::store::WabaRoute, StoreError> {
    Ok(crate::store::WabaRoute {
        partner: crate::domain::PartnerId::from_raw(partner),
        webhook: webhook_from_columns(url, headers)?,
        signing_secret,
    })
}

/// The URL and headers columns of a webhook (both `NULL` for none).
pub fn webhook_columns(
    webhook: Option<&Webhook>,
) -> Result<(Option<String>, Option<String>), StoreError> {
    match webhook {
        None => Ok((None, None)),
        Some(webhook) => Ok((
            Some(webhook.url.as_str().to_owned()),
            Some(encode(webhook.headers.as_map())?),
        )),
    }
}

/// Decodes a headers JSON column (`NULL` means none).
pub fn decode_headers(raw: Option<&str>) -> Result<WebhookHeaders, StoreError> {
    let map: BTreeMap<String, String> = match raw {
        Some(text) => decode(text)?,
        None => BTreeMap::new(),
    };
    Ok(WebhookHeaders::from_stored(map))
}

/// The stored shape of a multi-webhook configuration.
#[derive(Deserialize)]
struct StoredMultiWebhook {
    enabled: bool,
    destinations: Vec<StoredDestination>,
}

#[derive(Deserialize)]
struct StoredDestination {
    name: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Decodes the `multi_webhook` column.
pub fn decode_multi_webhook(raw: &str) -> Result<MultiWebhook, StoreError> {
    let stored: StoredMultiWebhook = decode(raw)?;
    Ok(MultiWebhook {
        enabled: stored.enabled,
        destinations: stored
            .destinations
            .into_iter()
            .map(|d| Destination {
                name: DestinationName::from_stored(d.name),
                url: WebhookUrl::from_stored(d.url),
                headers: WebhookHeaders::from_stored(d.headers),
            })
            .collect(),
    })
}

/// Encodes a value for a JSON column.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(e.into()))
}

/// Decodes a JSON column.
pub fn decode<'a, T: Deserialize<'a>>(raw: &'a str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Database(e.into()))
}

/// Reads a stored attempt error kind.
pub fn parse_error_kind(raw: &str) -> Option<AttemptErrorKind> {
    [
        AttemptErrorKind::Timeout,
        AttemptErrorKind::Connect,
        AttemptErrorKind::Tls,
        AttemptErrorKind::Blocked,
        AttemptErrorKind::Io,
    ]
    .into_iter()
    .find(|kind| kind.as_str() == raw)
}

/// Fails with `NotFound` unless a statement changed a row.
pub fn require_changed(changed: u64, what: &'static str, id: &str) -> Result<(), StoreError> {
    if changed == 0 {
        return Err(StoreError::NotFound {
            what,
            id: id.to_owned(),
        });
    }
    Ok(())
}

/// An event's trace context as its column holds it (`NULL` for none).
pub fn trace_column(trace: Option<&crate::domain::TraceContext>) -> Option<String> {
    trace.map(crate::domain::TraceContext::to_stored)
}

/// The trace context a column holds. One that cannot be read is no trace context: it is
/// carried for the receivers' and the operators' convenience, never a reason to fail a
/// delivery.
pub fn trace_of_column(stored: Option<String>) -> Option<crate::domain::TraceContext> {
    stored
        .as_deref()
        .and_then(crate::domain::TraceContext::from_stored)
}
