//! Extractors: authentication and bodies, each failing with an `ApiError` in the right shape.
//!
//! Bodies are read as bytes and parsed here (not with axum's `Json`), so malformed JSON,
//! wrong types, invalid UTF-8 and oversize bodies all become the provider's
//! `{"error": "Invalid json: …"}` 400 or a JSON 413, never a plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::domain::{Channel, KeyHash};

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

/// Proof that the request carried the admin token (`Authorization: Bearer …`).
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
            None => Err(ApiError::Unauthorized(
                "Missing admin token: send Authorization: Bearer <admin token>".into(),
            )),
        }
    }
}

/// A JSON body parsed into `T`; anything unparsable is a 400 "Invalid json: …".
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(Self)
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()` (all fields optional).
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(Self)
    }
}

/// The raw body, for handlers that need the exact bytes (signatures, stored payloads).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        read_body(request, state).await.map(Self)
    }
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::from_body_rejection(rejection, BODY_LIMIT))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("Invalid json: {e}")))
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
