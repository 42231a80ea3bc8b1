//! Custom headers that a destination receives with every delivery.
//!
//! Clients use them for authentication (`Authorization: Basic …` in the provider's docs), so
//! they must be legal HTTP headers, and they must not fight the framing that Switchboard
//! itself sets on each request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

/// More headers than this per destination is almost certainly a mistake.
const MAX_HEADERS: usize = 50;

/// Headers that describe the request's framing: Switchboard sets them, a client cannot.
const RESERVED: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Why a header map was refused; the text is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Refused: the message says why.
    #[error("Invalid header name {0:?}: header names must be HTTP tokens (letters, digits and !#$%&'*+-.^_`|~)")]
    Name(String),
    /// Refused: the message says why.
    #[error("Invalid value for header {0:?}: header values may contain only visible ASCII characters, spaces and tabs")]
    Value(String),
    /// Refused: the message says why.
    #[error("Header {0:?} is set by Switchboard and cannot be configured")]
    Reserved(String),
    /// Refused: the message says why.
    #[error("Header {0:?} is given more than once (header names are case-insensitive)")]
    Duplicate(String),
    /// Refused: the message says why.
    #[error("Too many headers: at most {MAX_HEADERS} are allowed")]
    TooMany,
}

/// A destination's custom headers, each a legal HTTP header, names unique ignoring case.
///
/// Names keep the client's spelling so a GET returns exactly what was set. The headers are
/// also kept parsed, ready to send: every attempt of a destination sends the same headers,
/// so names and values are parsed once, not per attempt; and one `Arc` makes the copy each
/// attempt takes of its route cheap.
#[derive(Clone, Default)]
pub struct WebhookHeaders(Arc<Parsed>);

#[derive(Default)]
struct Parsed {
    /// As the client wrote them.
    raw: BTreeMap<String, String>,
    /// The same headers, names lower-cased by `http`, one value each.
    ready: HeaderMap,
}

impl WebhookHeaders {
    /// Checks every name and value of `raw`.
    pub fn parse(raw: BTreeMap<String, String>) -> Result<Self, HeaderError> {
        if raw.len() > MAX_HEADERS {
            return Err(HeaderError::TooMany);
        }
        let mut ready = HeaderMap::with_capacity(raw.len());
        for (name, value) in &raw {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HeaderError::Name(name.clone()))?;
            if RESERVED.contains(&parsed.as_str()) {
                return Err(HeaderError::Reserved(name.clone()));
            }
            if ready.contains_key(&parsed) {
                return Err(HeaderError::Duplicate(name.clone()));
            }
            let value = is_portable_header_value(value)
                .then(|| HeaderValue::from_str(value).ok())
                .flatten()
                .ok_or_else(|| HeaderError::Value(name.clone()))?;
            ready.insert(parsed, value);
        }
        Ok(Self(Arc::new(Parsed { raw, ready })))
    }

    /// Rebuilds headers that were validated when they were stored.
    ///
    /// They are parsed again for sending; a header that no longer parses (which the rules
    /// above prevent) is left out rather than failing every delivery of the destination.
    pub fn from_stored(raw: BTreeMap<String, String>) -> Self {
        let mut ready = HeaderMap::with_capacity(raw.len());
        for (name, value) in &raw {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                ready.insert(name, value);
            }
        }
        Self(Arc::new(Parsed { raw, ready }))
    }

    /// The headers as name/value pairs, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.raw.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The headers as the client wrote them, for storage and display.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0.raw
    }

    /// The header names with every value shown as `***`: what lists display, since header
    /// values are credentials (`Authorization`, tokens) and lists are read by more people.
    pub fn masked(&self) -> BTreeMap<String, String> {
        self.0
            .raw
            .keys()
            .map(|name| (name.clone(), "***".to_owned()))
            .collect()
    }

    /// The headers parsed for sending: each name once, as a request's header map wants them.
    pub fn ready_to_send(&self) -> &HeaderMap {
        &self.0.ready
    }
}

impl PartialEq for WebhookHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.0.raw == other.0.raw
    }
}

impl Eq for WebhookHeaders {}

impl fmt::Debug for WebhookHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.raw.fmt(f)
    }
}

impl Serialize for WebhookHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.raw.serialize(serializer)
    }
}

/// Visible ASCII, spaces and tabs: what every HTTP stack accepts in a header value.
///
/// `http` also allows bytes above 0x7f (obs-text), but receivers disagree on how to read
/// them, so they are refused rather than delivered garbled.
fn is_portable_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_the_docs_examples() {
        let headers = WebhookHeaders::parse(map(&[
            ("Authorization", "Basic dGVzdHVzZXI6dGVzdHBhc3M="),
            ("Content-Type", "application/json"),
            ("X-Custom_Header", "a\tb c"),
        ]))
        .unwrap();
        assert_eq!(headers.iter().count(), 3);
        let ready = headers.ready_to_send();
        assert_eq!(ready.len(), 3);
        assert_eq!(ready["content-type"], "application/json");
        assert_eq!(ready["x-custom_header"], "a\tb c");
        assert_eq!(
            headers.as_map()["Authorization"],
            "Basic dGVzdHVzZXI6dGVzdHBhc3M="
        );
    }

    #[test]
    fn stored_headers_are_ready_to_send_and_shown_as_written() {
        let headers = WebhookHeaders::from_stored(map(&[("X-Tenant", "acme")]));
        assert_eq!(headers.ready_to_send()["x-tenant"], "acme");
        assert_eq!(
            serde_json::to_string(&headers).unwrap(),
            r#"{"X-Tenant":"acme"}"#
        );
        assert_eq!(
            headers,
            WebhookHeaders::parse(map(&[("X-Tenant", "acme")])).unwrap()
        );
    }

    #[test]
    fn rejects_bad_names() {
        for name in ["", "Bad Header", "x:y", "naïve", "a\nb", "(x)"] {
            assert_eq!(
                WebhookHeaders::parse(map(&[(name, "v")])),
                Err(HeaderError::Name(name.into())),
                "{name:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_values() {
        for value in ["line\nbreak", "cr\r", "nul\0", "naïve", "\u{7f}"] {
            assert_eq!(
                WebhookHeaders::parse(map(&[("X-A", value)])),
                Err(HeaderError::Value("X-A".into())),
                "{value:?}"
            );
        }
    }

    #[test]
    fn rejects_reserved_and_duplicate_names() {
        assert_eq!(
            WebhookHeaders::parse(map(&[("Content-Length", "5")])),
            Err(HeaderError::Reserved("Content-Length".into()))
        );
        assert_eq!(
            WebhookHeaders::parse(map(&[("HOST", "x")])),
            Err(HeaderError::Reserved("HOST".into()))
        );
        let error = WebhookHeaders::parse(map(&[("X-A", "1"), ("x-a", "2")])).unwrap_err();
        assert!(matches!(error, HeaderError::Duplicate(_)));
    }

    #[test]
    fn rejects_too_many() {
        let many: BTreeMap<_, _> = (0..=MAX_HEADERS)
            .map(|i| (format!("X-{i}"), "v".to_string()))
            .collect();
        assert_eq!(WebhookHeaders::parse(many), Err(HeaderError::TooMany));
    }
}
