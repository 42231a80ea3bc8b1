//! A destination: one receiver, whichever configuration points at it.
//!
//! Receivers are judged (health, pause and recovery) and filtered per destination, not per
//! configured webhook: two numbers whose webhooks name the same URL share one receiver. A
//! destination is the URL's scheme, host, port and path (the query and fragment are not
//! part of it, so a token in the query does not make two destinations of one receiver), and
//! its id is a short hash of that, stable across nodes and restarts, and safe as a metrics
//! label (it does not show the URL).

use std::fmt;

use sha2::{Digest, Sha256};

/// The id of a destination: 16 hex digits of the SHA-256 of its normalized URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationId(String);

impl DestinationId {
    /// The destination `url` belongs to; `None` for text that is not an absolute URL.
    pub fn of(url: &str) -> Option<Self> {
        let normalized = normalize(url)?;
        let digest = Sha256::digest(normalized.as_bytes());
        let mut id = super::hex(&digest);
        id.truncate(16);
        Some(Self(id))
    }

    /// Reads an id given by a client (16 lowercase hex digits).
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = raw.len() == 16 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `scheme://host:port/path`, lowercased where URLs are case-insensitive, with the default
/// port written out, and without query or fragment.
pub fn normalize(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let port = parsed.port_or_known_default()?;
    Some(format!(
        "{}://{}:{}{}",
        parsed.scheme(),
        host.to_ascii_lowercase(),
        port,
        parsed.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_receiver_is_one_destination_whatever_the_query() {
        let id = |url| DestinationId::of(url).unwrap();
        assert_eq!(
            id("https://Example.com/hook?token=a"),
            id("https://example.com:443/hook")
        );
        assert_eq!(
            id("https://example.com/hook#x"),
            id("https://example.com/hook")
        );
        assert_ne!(
            id("https://example.com/hook"),
            id("https://example.com/other")
        );
        assert_ne!(id("http://127.0.0.1:8080/a"), id("http://127.0.0.1:8081/a"));
        assert_eq!(id("https://example.com/hook").as_str().len(), 16);
        assert!(DestinationId::of("not a url").is_none());
    }

    #[test]
    fn ids_from_clients_are_checked() {
        let id = DestinationId::of("https://example.com/hook").unwrap();
        assert_eq!(DestinationId::parse(id.as_str()), Some(id));
        assert_eq!(DestinationId::parse("XYZ"), None);
        assert_eq!(DestinationId::parse("0123456789ABCDEF"), None);
    }
}
