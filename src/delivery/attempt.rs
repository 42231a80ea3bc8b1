//! One HTTP try: POST the payload with the configured headers (and signature), within the
//! hard timeout, and classify what came back.
//!
//! Safety: unless `--dev`, destinations that resolve to loopback, private, link-local,
//! multicast or otherwise internal addresses are refused. Names are checked by a DNS
//! resolver that filters the addresses it returns (so the check applies to the address
//! actually connected to); IP literals, which skip DNS, are checked before sending.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

use crate::domain::{AttemptErrorKind, DeliveryTarget};
use crate::store::AttemptRecord;

/// How many bytes of an answer are kept for inspection.
const EXCERPT_BYTES: usize = 512;

/// Parsed destination URLs kept at most; the memo is emptied when it is full.
const MAX_PARSED_URLS: usize = 10_000;

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// An HTTP answer: its status and the first bytes of its body.
    Answered {
        /// The HTTP status.
        status: u16,
        /// The first bytes of the body, lossily decoded.
        excerpt: String,
    },
    /// No (complete) answer.
    Failed {
        /// Why, as counted and stored.
        kind: AttemptErrorKind,
        /// The error chain, for logs and `last_error`.
        detail: String,
    },
}

impl AttemptResult {
    /// The attempt as recorded for inspection: the `number`th of its delivery, sent to `url`
    /// at `started_at` (ms since the epoch), answered (or not) after `took`.
    pub fn record(&self, number: u32, url: &str, started_at: i64, took: Duration) -> AttemptRecord {
        let (status, error, excerpt) = match self {
            Self::Answered { status, excerpt } => (Some(*status), None, Some(excerpt)),
            Self::Failed { kind, .. } => (None, Some(*kind), None),
        };
        AttemptRecord {
            number,
            started_at,
            duration_ms: took.as_millis() as i64,
            url: url.to_owned(),
            status,
            error,
            response_excerpt: excerpt.filter(|e| !e.is_empty()).cloned(),
        }
    }
}

/// Sends attempts over one pooled keep-alive client.
#[derive(Clone)]
pub struct Attempter {
    client: reqwest::Client,
    timeout: Duration,
    allow_internal: bool,
    parsed: Arc<RwLock<HashMap<String, Arc<reqwest::Url>>>>,
}

/// Error of the guarded resolver: the name resolves only to refused addresses.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to internal addresses, which deliveries may not reach")]
struct BlockedAddress(String);

impl Attempter {
    /// A client with the hard `timeout`; `allow_internal` (from `--dev`) lifts the address
    /// guard.
    pub fn new(timeout: Duration, allow_internal: bool) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")));
        if !allow_internal {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(Self {
            client: builder.build()?,
            timeout,
            allow_internal,
            parsed: Arc::default(),
        })
    }

    /// `url` parsed, from a memo: parsing (with IDNA host mapping) is a measurable share of
    /// an attempt's CPU, and a destination's URL is the same for every event it gets.
    fn parse(&self, url: &str) -> Result<Arc<reqwest::Url>, url::ParseError> {
        let memo = self.parsed.read().unwrap_or_else(|p| p.into_inner());
        if let Some(parsed) = memo.get(url) {
            return Ok(Arc::clone(parsed));
        }
        drop(memo);
        let parsed = Arc::new(reqwest::Url::parse(url)?);
        let mut memo = self.parsed.write().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= MAX_PARSED_URLS {
            memo.clear();
        }
        memo.insert(url.to_owned(), Arc::clone(&parsed));
        Ok(parsed)
    }

    /// POSTs `payload` to `target`, signed if the target has a secret.
    pub async fn send(&self, target: &DeliveryTarget, payload: Bytes) -> AttemptResult {
        let url = match self.parse(target.webhook.url.as_str()) {
            Ok(url) => url,
            Err(error) => {
                return AttemptResult::Failed {
                    kind: AttemptErrorKind::Connect,
                    detail: format!("the URL cannot be parsed: {error}"),
                }
            }
        };
        if !self.allow_internal {
            if let Some(ip) = literal_ip(&url).filter(|ip| is_internal(*ip)) {
                return AttemptResult::Failed {
                    kind: AttemptErrorKind::Blocked,
                    detail: format!("{ip} is an internal address, which deliveries may not reach"),
                };
            }
        }
        let mut request = self
            .client
            .post(reqwest::Url::clone(&url))
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in target.webhook.headers.iter() {
            request = request.header(name, value);
        }
        if let Some(secret) = &target.signing_secret {
            request = request.header("X-Hub-Signature-256", signature(secret, &payload));
        }
        let exchange = async {
            let mut response = request.body(payload).send().await?;
            let status = response.status().as_u16();
            let mut excerpt = Vec::new();
            while excerpt.len() < EXCERPT_BYTES {
                match response.chunk().await? {
                    Some(chunk) => excerpt.extend_from_slice(&chunk),
                    None => break,
                }
            }
            excerpt.truncate(EXCERPT_BYTES);
            Ok::<_, reqwest::Error>(AttemptResult::Answered {
                status,
                excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(error)) => classify(&error),
            Err(_) => AttemptResult::Failed {
                kind: AttemptErrorKind::Timeout,
                detail: format!("no complete answer within {} ms", self.timeout.as_millis()),
            },
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of the body>`, the header WhatsApp receivers verify.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", crate::domain::hex(&digest))
}

fn classify(error: &reqwest::Error) -> AttemptResult {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    let mut blocked = false;
    while let Some(cause) = source {
        blocked |= cause.downcast_ref::<BlockedAddress>().is_some();
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    let lower = chain.to_lowercase();
    let kind = if blocked {
        AttemptErrorKind::Blocked
    } else if error.is_timeout() {
        AttemptErrorKind::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        AttemptErrorKind::Tls
    } else if error.is_connect() {
        AttemptErrorKind::Connect
    } else {
        AttemptErrorKind::Io
    };
    AttemptResult::Failed {
        kind,
        detail: chain,
    }
}

fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Addresses deliveries may not reach without `--dev`: this host, private networks,
/// link-local (cloud metadata), multicast, and the unspecified and broadcast addresses.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The system resolver, minus internal addresses.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| !is_internal(address.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(
                    Box::new(BlockedAddress(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "ff02::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:2800:220:1::1",
            "100.128.0.1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn signature_is_the_hex_hmac_sha256_of_the_body() {
        // Reference value: printf 'hello' | openssl dgst -sha256 -hmac 'secret'
        assert_eq!(
            signature("secret", b"hello"),
            "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b"
        );
    }
}
