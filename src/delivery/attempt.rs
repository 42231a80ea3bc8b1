//! One HTTP try: POST the payload with the configured headers (and signature), within the
//! hard timeout, and classify what came back.
//!
//! Safety: destinations that resolve to internal addresses (`AddressPolicy`: everything but
//! global unicast, plus loopback under `--dev`) are refused. Names are checked by a DNS
//! resolver that filters the addresses it returns (so the check applies to the address
//! actually connected to); IP literals, which skip DNS, are checked before sending. No proxy
//! is ever used, whatever the environment says: a proxy would resolve the name itself, out
//! of the guard's reach.
//!
//! Headers: each name is sent once. The configured headers come first; Switchboard's
//! defaults (`Content-Type`, `User-Agent` and `Accept`) fill only the names
//! they leave out; the signature, when the destination signs, replaces any configured one,
//! and so do `traceparent` and `tracestate` when the event came with a trace context.
//!
//! Answers: the status, the first bytes of the body and, on a 429 or 503, the `Retry-After`
//! the receiver sent (seconds or an HTTP date), which `backoff` honours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use http::uri::InvalidUri;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sha2::Sha256;

use super::dns::{DnsPool, GuardedResolver, LookupError, MAX_LOOKUP_TIME};
use crate::domain::{AddressPolicy, AttemptErrorKind, DeliveryTarget};
use crate::store::AttemptRecord;
use crate::telemetry::{TraceHeaders, TRACEPARENT, TRACESTATE};

/// How many bytes of an answer are kept for inspection.
const EXCERPT_BYTES: usize = 512;

/// Parsed destination URLs kept at most; the memo is emptied when it is full.
const MAX_PARSED_URLS: usize = 10_000;

/// The header that carries the body's HMAC, as WhatsApp receivers expect it.
const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// Why the delivery client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS settings of the HTTP client.
    #[error("cannot build the delivery HTTP client: {0}")]
    Tls(#[from] rustls::Error),
    /// The DNS threads could not be started.
    #[error("cannot start the DNS threads of deliveries: {0}")]
    DnsThreads(#[from] std::io::Error),
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// An HTTP answer: its status and the first bytes of its body.
    Answered {
        /// The HTTP status.
        status: u16,
        /// The first bytes of the body, lossily decoded.
        excerpt: String,
        /// How long a 429 or 503 asked to wait (`Retry-After`, from the answer's arrival),
        /// so the next attempt is not sooner; `None` without a readable header or on other
        /// statuses.
        retry_after: Option<Duration>,
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
        let (status, error, excerpt, retry_after) = match self {
            Self::Answered {
                status,
                excerpt,
                retry_after,
            } => (Some(*status), None, Some(excerpt), *retry_after),
            Self::Failed { kind, .. } => (None, Some(*kind), None, None),
        };
        AttemptRecord {
            number,
            started_at,
            duration_ms: took.as_millis() as i64,
            url: url.to_owned(),
            status,
            error,
            response_excerpt: excerpt.filter(|e| !e.is_empty()).cloned(),
            retry_after_ms: retry_after.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// The pooled HTTP/1.1 client attempts go through: plain TCP or TLS, names resolved by the
/// guarded resolver.
type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>,
    Full<Bytes>,
>;

/// Sends attempts over one pooled keep-alive client.
#[derive(Clone)]
pub struct Attempter {
    client: Client,
    timeout: Duration,
    policy: AddressPolicy,
    parsed: Arc<RwLock<HashMap<String, Destination>>>,
}

/// A destination URL as a request needs it, parsed once.
#[derive(Clone)]
struct Destination {
    uri: Uri,
    literal_ip: Option<IpAddr>,
}

impl Attempter {
    /// A client with the hard `timeout` that reaches only the addresses `policy` allows,
    /// resolving names on its own DNS threads.
    pub fn new(timeout: Duration, policy: AddressPolicy) -> Result<Self, ClientError> {
        let dns = DnsPool::system(timeout.min(MAX_LOOKUP_TIME))?;
        let mut http =
            HttpConnector::new_with_resolver(GuardedResolver::new(Arc::new(dns), policy));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Self {
            client,
            timeout,
            policy,
            parsed: Arc::default(),
        })
    }

    /// `url` parsed, from a memo: parsing (with IDNA host mapping) is a measurable share of
    /// an attempt's CPU, and a destination's URL is the same for every event it gets.
    fn parse(&self, url: &str) -> Result<Destination, String> {
        let memo = self.parsed.read().unwrap_or_else(|p| p.into_inner());
        if let Some(parsed) = memo.get(url) {
            return Ok(parsed.clone());
        }
        drop(memo);
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let destination = Destination {
            uri: parsed
                .as_str()
                .parse()
                .map_err(|e: InvalidUri| e.to_string())?,
            literal_ip: literal_ip(&parsed),
        };
        let mut memo = self.parsed.write().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= MAX_PARSED_URLS {
            memo.clear();
        }
        memo.insert(url.to_owned(), destination.clone());
        Ok(destination)
    }

    /// POSTs `payload` to `target`, signed if the target has a secret, with the event's
    /// trace headers if it has a trace context.
    pub async fn send(
        &self,
        target: &DeliveryTarget,
        payload: Bytes,
        trace: Option<TraceHeaders>,
    ) -> AttemptResult {
        let destination = match self.parse(target.webhook.url.as_str()) {
            Ok(destination) => destination,
            Err(error) => {
                return AttemptResult::Failed {
                    kind: AttemptErrorKind::Connect,
                    detail: format!("the URL cannot be parsed: {error}"),
                }
            }
        };
        if let Some(ip) = destination.literal_ip.filter(|ip| !self.policy.allows(*ip)) {
            return AttemptResult::Failed {
                kind: AttemptErrorKind::Blocked,
                detail: format!("{ip} is an internal address, which deliveries may not reach"),
            };
        }
        let mut headers = delivery_headers(target, &payload);
        if let Some(trace) = trace {
            headers.insert(TRACEPARENT, trace.traceparent);
            match trace.tracestate {
                Some(state) => headers.insert(TRACESTATE, state),
                None => headers.remove(TRACESTATE),
            };
        }
        let mut request = Request::new(Full::new(payload));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = destination.uri;
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(Failure::Request)?;
            let status = response.status().as_u16();
            let retry_after = asked_delay(status, response.headers());
            let mut body = response.into_body();
            let mut excerpt = Vec::new();
            while excerpt.len() < EXCERPT_BYTES {
                match body.frame().await {
                    Some(frame) => {
                        if let Ok(chunk) = frame.map_err(Failure::Body)?.into_data() {
                            excerpt.extend_from_slice(&chunk);
                        }
                    }
                    None => break,
                }
            }
            excerpt.truncate(EXCERPT_BYTES);
            Ok::<_, Failure>(AttemptResult::Answered {
                status,
                excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
                retry_after,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(failure)) => classify(&failure),
            Err(_) => AttemptResult::Failed {
                kind: AttemptErrorKind::Timeout,
                detail: format!("no complete answer within {} ms", self.timeout.as_millis()),
            },
        }
    }
}

/// Why an exchange got no complete answer: the request (connecting, TLS, sending, the
/// answer's head) or the answer's body. The cause is left to its source, which `classify`
/// appends, as every error in the chain leaves its own.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("error sending request")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("error reading the answer's body")]
    Body(#[source] hyper::Error),
}

/// TLS for https destinations: the system's roots and Mozilla's (as reqwest's
/// `rustls-tls-native-roots` and `rustls-tls-webpki-roots` gave), TLS 1.2 and 1.3, ring.
fn tls_config() -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The headers of one delivery, each name once: the configured ones, `Content-Type` unless
/// configured, `User-Agent` and `Accept` unless configured, and the signature in place of
/// any configured one when the target signs.
fn delivery_headers(target: &DeliveryTarget, payload: &[u8]) -> HeaderMap {
    let mut headers = target.webhook.headers.ready_to_send().clone();
    headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(concat!(
            "Switchboard/",
            env!("CARGO_PKG_VERSION")
        )));
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("*/*"));
    if let Some(secret) = &target.signing_secret {
        let value = HeaderValue::try_from(signature(secret, payload))
            .unwrap_or_else(|_| unreachable!("a signature is visible ASCII"));
        headers.insert(SIGNATURE, value);
    }
    headers
}

/// `sha256=<hex HMAC-SHA256 of the body>`, the header WhatsApp receivers verify.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", crate::domain::hex(&digest))
}

/// The `Retry-After` of a 429 or 503, the answers that use it to ask for patience (on other
/// statuses it is ignored), counted from now.
fn asked_delay(status: u16, headers: &HeaderMap) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// The delay a `Retry-After` value asks for, counted from `now`: delay-seconds (digits
/// only) or an HTTP date (a date in the past asks for nothing more: zero). Anything else is
/// unreadable (`None`), and the normal backoff applies.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time": the clamp decides.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

fn classify(failure: &Failure) -> AttemptResult {
    let mut chain = failure.to_string();
    let mut source = std::error::Error::source(failure);
    let (mut blocked, mut tls, mut timed_out) = (false, false, false);
    while let Some(cause) = source {
        blocked |= matches!(
            cause.downcast_ref::<LookupError>(),
            Some(LookupError::Blocked(_))
        );
        tls |= is_rustls(cause);
        timed_out |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    let connect = matches!(failure, Failure::Request(error) if error.is_connect());
    let kind = if blocked {
        AttemptErrorKind::Blocked
    } else if timed_out {
        AttemptErrorKind::Timeout
    } else if tls {
        AttemptErrorKind::Tls
    } else if connect {
        AttemptErrorKind::Connect
    } else {
        AttemptErrorKind::Io
    };
    AttemptResult::Failed {
        kind,
        detail: chain,
    }
}

/// Whether `error` is rustls' or wraps it in I/O errors: an I/O error's `source` skips its
/// inner error, and the TLS connector wraps rustls' error in two of them.
fn is_rustls(error: &(dyn std::error::Error + 'static)) -> bool {
    match error.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().is_some_and(|inner| is_rustls(inner)),
        None => error.is::<rustls::Error>(),
    }
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::{Webhook, WebhookHeaders, WebhookUrl};

    fn target(headers: &[(&str, &str)], secret: Option<&str>) -> DeliveryTarget {
        let raw = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        DeliveryTarget {
            webhook: Webhook {
                url: WebhookUrl::from_stored("https://example.com/hook".into()),
                headers: WebhookHeaders::parse(raw).unwrap(),
            },
            signing_secret: secret.map(str::to_owned),
        }
    }

    fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        let all = headers.get_all(name).iter();
        all.map(|value| value.to_str().unwrap()).collect()
    }

    /// A one-connection loopback server that reads what comes, answers `answer` and hands
    /// back what it read.
    async fn serve_once(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut read = vec![0; 4096];
            let n = stream.read(&mut read).await.unwrap();
            read.truncate(n);
            stream.write_all(answer).await.unwrap();
            read
        });
        (format!("127.0.0.1:{port}"), served)
    }

    fn at(url: String) -> DeliveryTarget {
        let mut target = target(&[("X-Tenant", "t1")], None);
        target.webhook.url = WebhookUrl::from_stored(url);
        target
    }

    fn failed_kind(result: &AttemptResult) -> Option<AttemptErrorKind> {
        match result {
            AttemptResult::Failed { kind, .. } => Some(*kind),
            AttemptResult::Answered { .. } => None,
        }
    }

    fn loopback_attempter() -> Attempter {
        let policy = AddressPolicy {
            allow_loopback: true,
        };
        Attempter::new(Duration::from_secs(5), policy).unwrap()
    }

    #[tokio::test]
    async fn an_answer_is_read_with_its_status_excerpt_and_retry_after() {
        let (address, served) =
            serve_once(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy")
                .await;
        let target = at(format!("http://{address}/hook?x=1"));
        let result = loopback_attempter()
            .send(&target, Bytes::from_static(b"{}"), None)
            .await;
        let expected = AttemptResult::Answered {
            status: 503,
            excerpt: "busy".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(result, expected);
        let request = String::from_utf8(served.await.unwrap())
            .unwrap()
            .to_lowercase();
        assert!(
            request.starts_with("post /hook?x=1 http/1.1\r\n"),
            "{request}"
        );
        for header in [
            format!("host: {address}"),
            "x-tenant: t1".into(),
            "content-type: application/json".into(),
            "content-length: 2".into(),
            "accept: */*".into(),
            "user-agent: switchboard/".into(),
        ] {
            assert!(request.contains(&header), "{header} in {request}");
        }
    }

    #[tokio::test]
    async fn a_receiver_that_does_not_speak_tls_to_an_https_url_is_a_tls_error() {
        let (address, _served) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let target = at(format!("https://{address}/hook"));
        let result = loopback_attempter()
            .send(&target, Bytes::from_static(b"{}"), None)
            .await;
        assert_eq!(
            failed_kind(&result),
            Some(AttemptErrorKind::Tls),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_and_an_internal_literal_is_blocked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let attempter = loopback_attempter();
        let closed = at(format!("http://127.0.0.1:{port}/hook"));
        let result = attempter.send(&closed, Bytes::new(), None).await;
        assert_eq!(
            failed_kind(&result),
            Some(AttemptErrorKind::Connect),
            "{result:?}"
        );
        let internal = at("http://10.0.0.1/hook".into());
        let result = attempter.send(&internal, Bytes::new(), None).await;
        assert_eq!(
            failed_kind(&result),
            Some(AttemptErrorKind::Blocked),
            "{result:?}"
        );
    }

    #[test]
    fn a_configured_header_replaces_the_default_of_its_name() {
        let configured = target(&[("Content-Type", "text/plain"), ("X-A", "1")], None);
        let headers = delivery_headers(&configured, b"{}");
        assert_eq!(values(&headers, "content-type"), ["text/plain"]);
        assert_eq!(values(&headers, "x-a"), ["1"]);
        let plain = delivery_headers(&target(&[], None), b"{}");
        assert_eq!(values(&plain, "content-type"), ["application/json"]);
        assert_eq!(values(&plain, "accept"), ["*/*"]);
        assert_eq!(plain.len(), 3);
        let agent = delivery_headers(&target(&[("User-Agent", "mine")], None), b"{}");
        assert_eq!(values(&agent, "user-agent"), ["mine"]);
    }

    #[test]
    fn the_signature_is_switchboards_own_when_signing() {
        let forged = [("X-Hub-Signature-256", "sha256=forged")];
        let signed = delivery_headers(&target(&forged, Some("secret")), b"hello");
        assert_eq!(
            values(&signed, "x-hub-signature-256"),
            [signature("secret", b"hello").as_str()]
        );
        let unsigned = delivery_headers(&target(&forged, None), b"hello");
        assert_eq!(values(&unsigned, "x-hub-signature-256"), ["sha256=forged"]);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let secs = |value| parse_retry_after(value, now);
        assert_eq!(secs("120"), Some(Duration::from_secs(120)));
        assert_eq!(secs(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            secs("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
        assert_eq!(
            secs("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(secs("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(
            secs("Sat, 05 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a date in the past asks for nothing"
        );
        for unreadable in ["", "soon", "-5", "1.5", "+3", "12 s"] {
            assert_eq!(secs(unreadable), None, "{unreadable:?}");
        }
    }

    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        for status in [429, 503] {
            assert_eq!(asked_delay(status, &headers), Some(Duration::from_secs(5)));
        }
        for status in [200, 500, 502, 301] {
            assert_eq!(asked_delay(status, &headers), None, "{status}");
        }
        assert_eq!(asked_delay(429, &HeaderMap::new()), None);
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
