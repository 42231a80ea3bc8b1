//! The URL rules of the provider's docs, enforced once for every endpoint that takes a URL.
//!
//! The provider accepts only absolute `https://` URLs whose host has no `_` and which carry no
//! explicit port. Switchboard keeps those rules and adds one exception for local development:
//! with `--dev`, `http://` and ports are accepted for loopback hosts only, so a test receiver
//! on `127.0.0.1:PORT` can be configured without opening the door to internal networks.

use std::net::{IpAddr, Ipv6Addr};

use serde::Serialize;

/// The longest URL accepted; longer ones are almost certainly a mistake and bloat every row.
const MAX_URL_LEN: usize = 2048;

/// Which exceptions to the production URL rules are allowed, set once from `--dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Accept `http://` and explicit ports when the host is a loopback address.
    pub allow_loopback_http: bool,
}

/// Why a URL was refused; the text is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Refused: the message says why.
    #[error("Invalid URL: url must not be empty")]
    Empty,
    /// Refused: the message says why.
    #[error("Invalid URL {0:?}: url is longer than {MAX_URL_LEN} characters")]
    TooLong(String),
    /// Refused: the message says why.
    #[error("Invalid URL {0:?}: {1}")]
    Malformed(String, String),
    /// Refused: the message says why.
    #[error("Invalid URL {0:?}: only absolute https:// URLs are accepted")]
    NotHttps(String),
    /// Refused: the message says why.
    #[error("Invalid URL {0:?}: host names must not contain \"_\" (underscore)")]
    Underscore(String),
    /// Refused: the message says why.
    #[error("Invalid URL {0:?}: an explicit port is not supported, use the default https port")]
    Port(String),
    /// Refused: the message says why.
    #[error("Invalid URL {0:?}: credentials in the URL are not supported, send them in a header such as Authorization")]
    Credentials(String),
}

/// A webhook destination that obeys the provider's URL rules.
///
/// The original spelling is kept, so a client reads back exactly the URL it set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Checks `raw` against the URL rules under `policy`.
    pub fn parse(raw: &str, policy: UrlPolicy) -> Result<Self, UrlError> {
        let owned = || raw.to_owned();
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if raw.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong(raw.chars().take(64).collect()));
        }
        if raw.trim() != raw {
            return Err(UrlError::Malformed(
                owned(),
                "leading or trailing whitespace".into(),
            ));
        }
        let parsed = url::Url::parse(raw)
            .map_err(|error| UrlError::Malformed(owned(), error.to_string()))?;
        let Some(host) = parsed.host() else {
            return Err(UrlError::NotHttps(owned()));
        };
        let loopback_allowed = policy.allow_loopback_http && is_loopback(&host);
        match parsed.scheme() {
            "https" => {}
            "http" if loopback_allowed => {}
            _ => return Err(UrlError::NotHttps(owned())),
        }
        if host.to_string().contains('_') {
            return Err(UrlError::Underscore(owned()));
        }
        if has_explicit_port(raw) && !loopback_allowed {
            return Err(UrlError::Port(owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlError::Credentials(owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Rebuilds a URL that was validated when it was stored.
    ///
    /// Only the store calls this: re-checking would make a stored URL unreadable after
    /// `--dev` is switched off, which must instead be refused at delivery time.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The URL as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `raw` with the value of every query parameter replaced by `***`, for logs: webhook URLs
/// often carry a token in their query (`?token=…`), and logs are read by more people than
/// the configuration. The fragment is dropped; scheme, host and path stay readable.
pub fn redact_query(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_fragment = raw.split('#').next().unwrap_or(raw);
    let Some((base, query)) = without_fragment.split_once('?') else {
        return std::borrow::Cow::Borrowed(without_fragment);
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}=***"),
            None if pair.is_empty() => String::new(),
            None => "***".to_owned(),
        })
        .collect();
    std::borrow::Cow::Owned(format!("{base}?{}", masked.join("&")))
}

impl WebhookUrl {
    /// The URL as it may be logged: query values masked (see [`redact_query`]).
    pub fn redacted(&self) -> std::borrow::Cow<'_, str> {
        redact_query(&self.0)
    }
}

/// Whether `host` is `localhost`, in `127.0.0.0/8`, or `[::1]`.
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => *ip == Ipv6Addr::LOCALHOST,
    }
}

/// Whether the authority of `raw` names a port, even the scheme's default one.
///
/// The `url` crate forgets a default port (`https://host:443` has no port for it), and the
/// provider rejects any `:port`, so the authority is read from the raw text.
fn has_explicit_port(raw: &str) -> bool {
    let Some((_, rest)) = raw.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_and_port.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once(']')
            .is_some_and(|(_, after)| after.starts_with(':')),
        None => host_and_port.contains(':'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: UrlPolicy = UrlPolicy {
        allow_loopback_http: false,
    };
    const DEV: UrlPolicy = UrlPolicy {
        allow_loopback_http: true,
    };

    #[test]
    fn accepts_the_docs_valid_examples() {
        for raw in [
            "https://yourwebhook.example.com",
            "https://subdomain.yourwebhook.example.com",
            "https://www.example.com/webhook",
            "https://example.com/hook?token=a_b#frag",
        ] {
            assert_eq!(WebhookUrl::parse(raw, PROD).unwrap().as_str(), raw);
        }
    }

    #[test]
    fn redaction_masks_every_query_value() {
        assert_eq!(
            redact_query("https://example.com/hook?token=s3cret&x=1#frag"),
            "https://example.com/hook?token=***&x=***"
        );
        assert_eq!(
            redact_query("https://example.com/a?flag"),
            "https://example.com/a?***"
        );
        assert_eq!(
            redact_query("https://example.com/a"),
            "https://example.com/a"
        );
    }

    #[test]
    fn rejects_the_docs_invalid_examples() {
        assert!(matches!(
            WebhookUrl::parse("https://your_webhook.example.com", PROD),
            Err(UrlError::Underscore(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("https://subdomain.your_webhook.example.com:3000", PROD),
            Err(UrlError::Underscore(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("https://subdomain.yourwebhook.example.com:3000", PROD),
            Err(UrlError::Port(_))
        ));
    }

    #[test]
    fn rejects_even_the_default_port() {
        assert!(matches!(
            WebhookUrl::parse("https://example.com:443/hook", PROD),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("https://[2001:db8::1]:8443/", PROD),
            Err(UrlError::Port(_))
        ));
        assert!(WebhookUrl::parse("https://[2001:db8::1]/hook", PROD).is_ok());
    }

    #[test]
    fn requires_absolute_https() {
        for raw in [
            "http://example.com",
            "ftp://example.com",
            "example.com/webhook",
            "www.example.com/webhook",
            "/relative",
            "mailto:someone@example.com",
        ] {
            let error = WebhookUrl::parse(raw, PROD).unwrap_err();
            assert!(
                matches!(error, UrlError::NotHttps(_) | UrlError::Malformed(..)),
                "{raw}: {error:?}"
            );
        }
    }

    #[test]
    fn rejects_empty_whitespace_credentials_and_overlong() {
        assert_eq!(WebhookUrl::parse("", PROD), Err(UrlError::Empty));
        assert!(matches!(
            WebhookUrl::parse(" https://example.com", PROD),
            Err(UrlError::Malformed(..))
        ));
        assert!(matches!(
            WebhookUrl::parse("https://user:pass@example.com/", PROD),
            Err(UrlError::Credentials(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            WebhookUrl::parse(&long, PROD),
            Err(UrlError::TooLong(_))
        ));
    }

    #[test]
    fn dev_allows_http_and_ports_on_loopback_only() {
        for raw in [
            "http://127.0.0.1:8080/hook",
            "http://127.1.2.3:1/",
            "http://localhost:3000",
            "http://[::1]:9000/x",
            "https://localhost:8443/",
        ] {
            assert!(WebhookUrl::parse(raw, DEV).is_ok(), "{raw}");
            assert!(WebhookUrl::parse(raw, PROD).is_err(), "{raw}");
        }
        assert!(matches!(
            WebhookUrl::parse("http://10.0.0.1:8080/", DEV),
            Err(UrlError::NotHttps(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("https://example.com:8443/", DEV),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("http://local_host:80/", DEV),
            Err(UrlError::NotHttps(_))
        ));
    }

    #[test]
    fn error_messages_name_the_problem() {
        let message = WebhookUrl::parse("https://a_b.example.com", PROD)
            .unwrap_err()
            .to_string();
        assert!(message.contains("a_b.example.com"), "{message}");
        assert!(message.contains("underscore"), "{message}");
    }
}
