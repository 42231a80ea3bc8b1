//! Custom headers that a destination receives with every delivery.
//!
//! Clients use them for authentication (`Authorization: Basic …` in the provider's docs), so
//! they must be legal HTTP headers, and they must not fight the framing that Switchboard
//! itself sets on each request.

use std::collections::BTreeMap;

use http::HeaderName;
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
/// Names keep the client's spelling so a GET returns exactly what was set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebhookHeaders(BTreeMap<String, String>);

impl WebhookHeaders {
    /// Checks every name and value of `raw`.
    pub fn parse(raw: BTreeMap<String, String>) -> Result<Self, HeaderError> {
        if raw.len() > MAX_HEADERS {
            return Err(HeaderError::TooMany);
        }
        let mut seen = Vec::with_capacity(raw.len());
        for (name, value) in &raw {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HeaderError::Name(name.clone()))?;
            if RESERVED.contains(&parsed.as_str()) {
                return Err(HeaderError::Reserved(name.clone()));
            }
            if seen.contains(&parsed) {
                return Err(HeaderError::Duplicate(name.clone()));
            }
            if !is_portable_header_value(value) {
                return Err(HeaderError::Value(name.clone()));
            }
            seen.push(parsed);
        }
        Ok(Self(raw))
    }

    /// Rebuilds headers that were validated when they were stored.
    pub fn from_stored(raw: BTreeMap<String, String>) -> Self {
        Self(raw)
    }

    /// The headers as name/value pairs, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The headers as the client wrote them, for storage and display.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
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
        assert_eq!(
            headers.as_map()["Authorization"],
            "Basic dGVzdHVzZXI6dGVzdHBhc3M="
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
