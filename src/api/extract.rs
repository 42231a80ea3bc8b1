//! Extractors: authentication and bodies, each failing with an `ApiError` in the right shape.
//!
//! Bodies are read as bytes and parsed here (not with axum's `Json`), so malformed JSON,
//! wrong types, invalid UTF-8 and oversize bodies all become the provider's
//! `{"error": "Invalid json: …"}` 400 or a JSON 413, never a plain-text rejection.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use bytes::BytesMut;
use http_body::Body as _;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::AppState;
use crate::domain::{Channel, KeyHash, TraceContext};
use crate::telemetry::incoming_trace;

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The channel whose `D360-API-KEY` authenticated the request.
pub struct ChannelAuth(pub Channel);

impl FromRequestParts<AppState> for ChannelAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("D360-API-KEY") else {
            return Err(ApiError::Unauthorized("Missing D360-API-KEY header".into()));
        };
        let invalid = || ApiError::Unauthorized("Invalid D360-API-KEY".into());
        let key = value.to_str().map_err(|_| invalid())?;
        let channel = state.store.channel_by_key(&KeyHash::of(key)).await?;
        channel.map(Self).ok_or_else(invalid)
    }
}

/// Proof that the request carried the admin token (`Authorization: Bearer …`, for the CLI
/// and scripts) or the console's session cookie (for the web console; a write with the
/// cookie must also carry the session's `X-CSRF-Token`, so another site cannot make a
/// logged-in browser write).
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match presented {
            Some(token) if KeyHash::of(token).matches(&state.admin_token_hash) => Ok(Self),
            Some(_) => Err(ApiError::Unauthorized("Invalid admin token".into())),
            None if session_cookie(&parts.headers).is_some() => {
                ConsoleSession::from_request_parts(parts, state).await?;
                Ok(Self)
            }
            None => Err(ApiError::Unauthorized(
                "Missing admin token: send Authorization: Bearer <admin token>".into(),
            )),
        }
    }
}

/// The console session named by the request's cookie, alive, and for any method but GET
/// and HEAD, with its CSRF token in `X-CSRF-Token`: what console writes (and logout) need.
pub struct ConsoleSession {
    /// The session id, as the cookie holds it.
    pub id: String,
    /// The session's CSRF token.
    pub csrf: String,
}

impl FromRequestParts<AppState> for ConsoleSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(id) = session_cookie(&parts.headers) else {
            return Err(ApiError::Unauthorized("No console session: log in".into()));
        };
        let Some(csrf) = state.sessions.csrf_of(id) else {
            return Err(ApiError::Unauthorized(
                "Invalid or expired console session: log in again".into(),
            ));
        };
        let reads = parts.method == Method::GET || parts.method == Method::HEAD;
        let sent = parts.headers.get(CSRF_HEADER).map(|value| value.as_bytes());
        let guarded = sent.is_some_and(|sent| bool::from(sent.ct_eq(csrf.as_bytes())));
        if !reads && !guarded {
            return Err(ApiError::Forbidden("Missing or invalid CSRF token".into()));
        }
        Ok(Self {
            id: id.to_owned(),
            csrf,
        })
    }
}

/// The header that carries a console session's CSRF token on writes.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// The value of the console's session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == super::console::COOKIE_NAME)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// A JSON body parsed into `T`; anything unparsable is a 400 "Invalid json: …".
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_body(&parts.headers, body, state).await?;
        parse_json(&bytes).map(Self)
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()` (all fields optional).
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_body(&parts.headers, body, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(Self)
    }
}

/// The raw body, for handlers that need the exact bytes (signatures, stored payloads).
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_body(&parts.headers, body, state).await.map(Self)
    }
}

/// Reads a request body under every limit: at most [`BODY_LIMIT`] bytes (a larger declared
/// length is refused before reading), within the body timeout, within the server-wide
/// budget of bytes being read at once (beyond it: 503, which Meta retries), and nested at
/// most [`MAX_NESTING`] levels deep.
///
/// Handlers that authenticate from headers call it after they did, so an unauthenticated
/// client never makes the server read (or hold) a body.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge(BODY_LIMIT));
    }
    let timeout = state.config.http.body_timeout;
    let bytes = tokio::time::timeout(timeout, collect(body, &state.body_budget))
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))??;
    check_nesting(&bytes)?;
    Ok(bytes)
}

/// Collects the body's frames, taking budget for every byte before keeping it.
async fn collect(mut body: Body, budget: &Arc<Semaphore>) -> Result<Bytes, ApiError> {
    let mut kept = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::BadRequest(format!("Cannot read the request body: {error}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if kept.len() + data.len() > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge(BODY_LIMIT));
        }
        let more = u32::try_from(data.len()).map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))?;
        let Ok(permit) = Arc::clone(budget).try_acquire_many_owned(more) else {
            return Err(ApiError::Overloaded);
        };
        match held.as_mut() {
            Some(held) => held.merge(permit),
            None => held = Some(permit),
        }
        if kept.is_empty() && body.is_end_stream() {
            // The usual case, a body in one frame: keep hyper's buffer, no copy.
            return Ok(data);
        }
        kept.extend_from_slice(&data);
    }
    Ok(kept.freeze())
}

/// The deepest nesting of arrays and objects accepted in any body: serde_json's own limit
/// for the bodies it parses, applied also to the bodies Switchboard stores without parsing
/// them whole (injected events), so every body obeys one limit.
pub const MAX_NESTING: usize = 128;

/// Refuses JSON nested deeper than [`MAX_NESTING`], in one pass over the bytes.
///
/// Nesting that deep takes more than [`MAX_NESTING`] opening brackets, and a notification
/// has a few dozen: counting them (memchr's vectorised search) settles almost every body
/// without the byte-by-byte walk, which cost about a tenth of the ingest path.
fn check_nesting(bytes: &[u8]) -> Result<(), ApiError> {
    let openings = memchr::memchr2_iter(b'[', b'{', bytes).take(MAX_NESTING + 1);
    if openings.count() <= MAX_NESTING {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid json: nested deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a body with serde; the error names the field it is about (`headers: invalid
/// type: null, expected a map …`), after the provider's "Invalid json: " prefix.
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match path.as_str() {
            "." => ApiError::BadRequest(format!("Invalid json: {inner}")),
            _ => ApiError::BadRequest(format!("Invalid json: {path}: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("Invalid json: {e}")))?;
    Ok(value)
}

/// For an optional field whose schema has a type: absent is `None` (with
/// `#[serde(default)]`), but `null` is refused like any other value of the wrong type, as
/// the provider's schemas say.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// One path segment as text; a segment that is not UTF-8 is a 400, not a plain-text error.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// The W3C trace context a notification came with (`traceparent`, `tracestate`), or the
/// request span's own when spans are exported; a malformed header is none, never a 4xx.
pub struct IncomingTrace(pub Option<TraceContext>);

impl FromRequestParts<AppState> for IncomingTrace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let exporting = state.config.otlp_endpoint.is_some();
        Ok(Self(incoming_trace(&parts.headers, exporting)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_nesting(deep(MAX_NESTING).as_bytes()).is_ok());
        assert!(check_nesting(deep(MAX_NESTING + 1).as_bytes()).is_err());
        let in_string = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(check_nesting(in_string.as_bytes()).is_ok(), "{in_string}");
    }
}
