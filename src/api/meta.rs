//! Meta's Cloud API webhook: the verification handshake and signed notifications.
//!
//! A notification is answered 200 only after every event split from it is durable; Meta
//! retries anything else (a 503 while the database is unavailable). Unknown numbers are acknowledged too (Meta would retry them
//! forever), kept as unroutable events and counted.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::read_body;
use super::AppState;
use crate::domain::KeyHash;
use crate::metrics::Source;

/// Meta's verification handshake: echo `hub.challenge` when the verify token matches.
#[utoipa::path(
    get, path = "/webhooks/whatsapp", tag = "Meta",
    params(
        ("hub.mode" = String, Query, description = "`subscribe`"),
        ("hub.verify_token" = String, Query, description = "Must equal --meta-verify-token"),
        ("hub.challenge" = String, Query, description = "Echoed back"),
    ),
    responses(
        (status = 200, description = "The challenge, as plain text", content_type = "text/plain", body = String),
        (status = 403, description = "Wrong mode or token, or no token configured", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let configured = state.config.meta_verify_token.as_ref();
    let presented = query.get("hub.verify_token");
    let token_ok = match (configured, presented) {
        (Some(configured), Some(presented)) => {
            KeyHash::of(presented).matches(&KeyHash::of(configured.expose()))
        }
        _ => false,
    };
    if query.get("hub.mode").map(String::as_str) != Some("subscribe") || !token_ok {
        return Err(ApiError::Forbidden("Verification failed".into()));
    }
    let challenge = query.get("hub.challenge").cloned().unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain")], challenge))
}

/// What a notification became.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    /// One event per phone number in the notification.
    event_ids: Vec<i64>,
}

/// A notification from Meta, signed with `X-Hub-Signature-256`.
///
/// The cheap checks (a secret configured, a signature header present) come before the body
/// is read, so a client without them cannot make the server read or hold a body.
#[utoipa::path(
    post, path = "/webhooks/whatsapp", tag = "Meta",
    request_body(content = String, description = "Meta's WhatsApp notification envelope", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored durably", body = Received),
        (status = 400, description = "Not a WhatsApp envelope", body = ErrorBody),
        (status = 401, description = "No X-Hub-Signature-256 header", body = ErrorBody),
        (status = 403, description = "Wrong signature, or no app secret configured", body = ErrorBody),
        (status = 503, description = "The database is unavailable (or did not answer within 5 s): nothing acknowledged, Meta retries; with Retry-After", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Received>, ApiError> {
    let Some(secret) = state.config.meta_app_secret.as_ref() else {
        return Err(ApiError::Forbidden(
            "Meta webhook is not configured: start with --meta-app-secret".into(),
        ));
    };
    let Some(signature) = headers.get("X-Hub-Signature-256") else {
        return Err(ApiError::Unauthorized(
            "Missing X-Hub-Signature-256 header".into(),
        ));
    };
    let body = read_body(&headers, body, &state).await?;
    if !signature_matches(secret.expose(), signature.as_bytes(), &body) {
        return Err(ApiError::Forbidden("Invalid X-Hub-Signature-256".into()));
    }
    let exporting = state.config.otlp_endpoint.is_some();
    let trace = crate::telemetry::incoming_trace(&headers, exporting);
    let events = state.ingest.meta_events(&body, trace).await?;
    let saved = state.ingest.accept(events, Source::Meta).await?;
    Ok(Json(Received {
        event_ids: saved.iter().map(|s| s.event.0).collect(),
    }))
}

/// Checks `sha256=<hex>` against the HMAC of `body`, in constant time.
fn signature_matches(secret: &str, header: &[u8], body: &[u8]) -> bool {
    let Some(hex) = header.strip_prefix(b"sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::signature;

    #[test]
    fn accepts_only_the_right_signature() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let good = signature("app-secret", body);
        assert!(signature_matches("app-secret", good.as_bytes(), body));
        assert!(!signature_matches("other", good.as_bytes(), body));
        assert!(!signature_matches("app-secret", good.as_bytes(), b"{}"));
        assert!(!signature_matches("app-secret", b"sha256=zz", body));
        assert!(!signature_matches("app-secret", b"md5=abcd", body));
        assert!(!signature_matches(
            "app-secret",
            &good.as_bytes()[..20],
            body
        ));
    }
}
