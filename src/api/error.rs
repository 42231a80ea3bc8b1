//! The one place where errors become HTTP responses.
//!
//! Every handler returns `ApiError`; this file decides the status and renders the body in the
//! provider's shape (`{"error": "…"}`, or `{"message": "…"}` for a disabled multi webhook, as
//! the reference docs show). Internal failures are logged with their whole source chain and
//! answered with the provider's opaque 500 text, never with details.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::domain::{HeaderError, MultiWebhookError, UrlError, ValidationError};
use crate::store::StoreError;

/// The body of every Messaging API and admin error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words a client can act on.
    pub error: String,
}

/// The body of the provider's success messages (and of its 409 "disabled" answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    /// The message.
    pub message: String,
}

impl MessageBody {
    /// A message body with `text`.
    pub fn new(text: impl Into<String>) -> Json<Self> {
        Json(Self {
            message: text.into(),
        })
    }
}

/// Why a request failed, as the client will be told.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or breaks a rule.
    #[error("{0}")]
    BadRequest(String),
    /// 400 naming the field and the problem (the Partner API lists it under `details`).
    #[error("Invalid {field}: {problem}")]
    InvalidField {
        /// The field, as the client named it.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// 401: no credentials, or unknown ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the credentials are known to be wrong (a bad signature).
    #[error("{0}")]
    Forbidden(String),
    /// 404: the thing named does not exist (or is not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// 409 in the provider's `{"message"}` shape: multi webhook must be enabled first.
    #[error("Multi webhook is disabled, use POST to enable it first")]
    MultiWebhookDisabled,
    /// 413: the body is over the limit.
    #[error("Request body is too large: the limit is {0} bytes")]
    PayloadTooLarge(usize),
    /// 408: the client did not send the body it announced in time.
    #[error("Request body not received within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    /// 429: too many failed console logins lately; the client may try again after the
    /// given number of seconds.
    #[error("Too many failed logins, retry in {0} s")]
    TooManyRequests(u64),
    /// 503: the server is reading as many request bodies as its memory budget allows.
    #[error("Too many requests are being received at once, please retry later")]
    Overloaded,
    /// 503: as many live streams are open as the server allows (`--max-streams`).
    #[error("Too many live streams are open (at most {0}), please retry later")]
    TooManyStreams(usize),
    /// 503 with `Retry-After`: the database is not available right now (unreachable, not
    /// answering within a bound, full or read-only); nothing of the request was
    /// acknowledged. Logged at debug only: the engine logs the outage once
    /// (`delivery/outage.rs`), not each request it fails.
    #[error("Service unavailable, please retry later")]
    Unavailable(#[source] StoreError),
    /// 500: a bug or an unexpected failure; details go to the log only.
    #[error("Operation failed, please retry later or contact support")]
    Internal(#[source] StoreError),
    /// 500: `/metrics` could not encode its exposition (a bug); logged like `Internal`.
    #[error("Operation failed, please retry later or contact support")]
    Encoding(#[source] std::fmt::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidField { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::MultiWebhookDisabled => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::TooManyStreams(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Encoding(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// Logs the error (internal ones with their chain) and gives its status.
    fn log(&self) -> StatusCode {
        let status = self.status();
        match self {
            Self::Internal(source) => {
                tracing::error!(error = %crate::error_chain(source), %status, "request failed");
            }
            Self::Encoding(source) => {
                tracing::error!(error = %source, %status, "metrics could not be encoded");
            }
            Self::Unavailable(source) => {
                tracing::debug!(error = %crate::error_chain(source), %status, "request failed: the database is unavailable");
            }
            _ => tracing::debug!(error = %self, %status, "request rejected"),
        }
        status
    }

    /// The Partner API's `details`: the field and its problems.
    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::InvalidField { field, problem } => Some(json!({ field.as_str(): [problem] })),
            Self::BadRequest(message) => Some(json!({ "json": [message] })),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.log();
        let message = self.to_string();
        let response = match self {
            Self::MultiWebhookDisabled => (status, MessageBody::new(message)).into_response(),
            Self::TooManyRequests(seconds) => {
                let retry = [(header::RETRY_AFTER, seconds.to_string())];
                (status, retry, Json(ErrorBody { error: message })).into_response()
            }
            Self::Unavailable(_) => {
                let retry = [(header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_S.to_string())];
                (status, retry, Json(ErrorBody { error: message })).into_response()
            }
            _ => (status, Json(ErrorBody { error: message })).into_response(),
        };
        with_challenge(status, response)
    }
}

/// The `Retry-After` (seconds) of a 503 for an unavailable database: about the engine's
/// longest wait between two probes of the store, so a retry after it finds it back if it is.
const UNAVAILABLE_RETRY_AFTER_S: u64 = 2;

/// The body of every Partner API error, in the provider's `{"meta": {...}}` shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerErrorBody {
    meta: PartnerErrorMeta,
}

/// The fields of a Partner API error.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerErrorMeta {
    developer_message: String,
    http_code: u16,
    success: bool,
    /// Unique per request, for support.
    #[serde(rename = "360dialog_trace_id")]
    trace_id: String,
    /// For 400: each invalid field and its problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

/// An `ApiError` raised on the Partner API, rendered in that API's shape.
#[derive(Debug)]
pub struct PartnerApiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PartnerApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for PartnerApiError {
    fn into_response(self) -> Response {
        let status = self.0.log();
        let body = PartnerErrorBody {
            meta: PartnerErrorMeta {
                developer_message: self.0.to_string(),
                http_code: status.as_u16(),
                success: false,
                trace_id: crate::domain::random_alphanumeric(32),
                details: self.0.details(),
            },
        };
        with_challenge(status, (status, Json(body)).into_response())
    }
}

/// Adds `WWW-Authenticate` to 401 answers.
fn with_challenge(status: StatusCode, mut response: Response) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::BadRequest(error.0)
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(error: crate::ingest::IngestError) -> Self {
        Self::BadRequest(error.to_string())
    }
}

impl From<crate::ingest::IngestEventsError> for ApiError {
    fn from(error: crate::ingest::IngestEventsError) -> Self {
        match error {
            crate::ingest::IngestEventsError::Invalid(invalid) => invalid.into(),
            crate::ingest::IngestEventsError::Store(store) => store.into(),
        }
    }
}

impl From<UrlError> for ApiError {
    fn from(error: UrlError) -> Self {
        Self::BadRequest(error.to_string())
    }
}

impl From<HeaderError> for ApiError {
    fn from(error: HeaderError) -> Self {
        Self::BadRequest(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what, id } => {
                Self::NotFound(format!("{} {id} not found", capitalize(what)))
            }
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::Constraint(violation) => Self::Conflict(violation.to_string()),
            StoreError::MultiWebhook(rule) => rule.into(),
            StoreError::Closed | StoreError::Abandoned | StoreError::Unavailable(_) => {
                Self::Unavailable(error)
            }
            StoreError::Database(_) | StoreError::Open(_) | StoreError::Corrupt(_) => {
                Self::Internal(error)
            }
        }
    }
}

impl From<MultiWebhookError> for ApiError {
    fn from(error: MultiWebhookError) -> Self {
        match error {
            MultiWebhookError::Disabled => Self::MultiWebhookDisabled,
            MultiWebhookError::NotFound(_) => Self::NotFound(error.to_string()),
            _ => Self::BadRequest(error.to_string()),
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
