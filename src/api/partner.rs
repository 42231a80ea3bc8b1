//! Partner API: the partner webhook URL and headers (`/api/v2/partners/{partner_id}/…`),
//! authenticated by the partner's key (`X-API-Key`, or `Authorization: Bearer`), with the
//! provider's `{"meta": {...}}` errors. URL and header rules are the Messaging API's.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{ApiError, PartnerApiError, PartnerErrorBody};
use super::extract::{read_body, PathParam};
use super::AppState;
use crate::domain::{redact_query, KeyHash, PartnerId, WebhookHeaders, WebhookUrl};
use crate::store::PartnerRecord;

/// The partner, as the provider's `PartnerOut` shows it (the fields Switchboard can fill).
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerOut {
    id: String,
    brand_name: String,
    /// Where partner events go; absent when none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
    logo_url: Option<String>,
    allow_client_to_add_phone_no: bool,
    /// Present in the answer to POST …/webhook_headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_headers: Option<BTreeMap<String, String>>,
}

impl PartnerOut {
    fn of(record: &PartnerRecord, with_headers: bool) -> Self {
        Self {
            id: record.partner.id.to_string(),
            brand_name: record.partner.name.clone(),
            webhook_url: record.webhook_url.as_ref().map(|u| u.as_str().to_owned()),
            logo_url: None,
            allow_client_to_add_phone_no: true,
            webhook_headers: with_headers.then(|| record.webhook_headers.as_map().clone()),
        }
    }
}

/// GET …/webhook_url answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookUrlOut {
    /// `""` when none is set.
    webhook_url: String,
}

/// GET …/webhook_headers answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookHeadersOut {
    webhook_headers: BTreeMap<String, String>,
}

/// Body of POST …/webhook_url.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; it is parsed field by field for exact errors
pub struct SetWebhookUrlIn {
    /// https:// URL without `_` in the host and without a port; `""` removes it.
    webhook_url: String,
}

/// Body of POST …/webhook_headers.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; it is parsed field by field for exact errors
pub struct SetWebhookHeadersIn {
    /// Header names and string values.
    webhook_headers: BTreeMap<String, String>,
}

/// The partner that owns the presented key, if it is the partner of the path; handlers call
/// it before they read the body, so an unauthenticated client makes the server read nothing.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    partner_id: &str,
) -> Result<PartnerRecord, ApiError> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let key = header("X-API-Key")
        .or_else(|| header("Authorization").and_then(|value| value.strip_prefix("Bearer ")));
    let Some(key) = key else {
        return Err(ApiError::Unauthorized(
            "Missing API key: send X-API-Key or Authorization: Bearer <key>".into(),
        ));
    };
    let Some(record) = state.store.partner_by_key(&KeyHash::of(key)).await? else {
        return Err(ApiError::Unauthorized("Invalid API key".into()));
    };
    if record.partner.id != PartnerId::from_raw(partner_id) {
        // Another partner's id: answered like an unknown id, so ids cannot be probed.
        return Err(partner_not_found());
    }
    Ok(record)
}

fn partner_not_found() -> ApiError {
    ApiError::NotFound("Partner not found".into())
}

fn invalid(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// Parses a body that must be an object with exactly the field `only`.
fn single_field(body: &[u8], only: &str) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Invalid json: {e}")))?;
    let Value::Object(mut object) = parsed else {
        return Err(invalid("json", "Invalid input type: expected an object."));
    };
    if let Some(unknown) = object.keys().find(|k| k.as_str() != only) {
        return Err(invalid(unknown, "Unknown field."));
    }
    object
        .remove(only)
        .ok_or_else(|| invalid(only, "Missing data for required field."))
}

/// Retrieve the partner webhook URL.
#[utoipa::path(
    get, path = "/api/v2/partners/{partner_id}/webhook_url", tag = "Partner API",
    security(("PartnerApiKeyV2" = []), ("Bearer" = [])),
    params(("partner_id" = String, Path, description = "The ID of the partner.")),
    responses(
        (status = 200, description = "The URL", body = WebhookUrlOut),
        (status = 401, description = "Missing or invalid API key", body = PartnerErrorBody),
        (status = 404, description = "Not found (or not this key's partner)", body = PartnerErrorBody),
    )
)]
pub async fn get_webhook_url(
    State(state): State<AppState>,
    headers: HeaderMap,
    partner_id: Result<PathParam, ApiError>,
) -> Result<Json<WebhookUrlOut>, PartnerApiError> {
    let record = authenticate(&state, &headers, &partner_id?.0).await?;
    Ok(Json(WebhookUrlOut {
        webhook_url: record
            .webhook_url
            .map_or_else(String::new, |u| u.as_str().to_owned()),
    }))
}

/// Set or update the partner webhook URL (partner events go there).
#[utoipa::path(
    post, path = "/api/v2/partners/{partner_id}/webhook_url", tag = "Partner API",
    security(("PartnerApiKeyV2" = []), ("Bearer" = [])),
    params(("partner_id" = String, Path, description = "The ID of the partner.")),
    request_body = SetWebhookUrlIn,
    responses(
        (status = 200, description = "The partner", body = PartnerOut),
        (status = 400, description = "Wrong payload", body = PartnerErrorBody),
        (status = 401, description = "Missing or invalid API key", body = PartnerErrorBody),
        (status = 404, description = "Not found (or not this key's partner)", body = PartnerErrorBody),
    )
)]
pub async fn set_webhook_url(
    State(state): State<AppState>,
    headers: HeaderMap,
    partner_id: Result<PathParam, ApiError>,
    body: Body,
) -> Result<Json<PartnerOut>, PartnerApiError> {
    let record = authenticate(&state, &headers, &partner_id?.0).await?;
    let body = read_body(&headers, body, &state).await?;
    let value = single_field(&body, "webhook_url")?;
    let Value::String(raw) = value else {
        return Err(invalid("webhook_url", "Not a valid string.").into());
    };
    let url = if raw.is_empty() {
        None
    } else {
        let policy = state.config.url_policy();
        Some(WebhookUrl::parse(&raw, policy).map_err(|e| invalid("webhook_url", e.to_string()))?)
    };
    let id = &record.partner.id;
    let updated = state.store.set_partner_webhook_url(id, url).await?;
    tracing::info!(partner = %id, url = %redact_query(&raw), "partner webhook URL set");
    Ok(Json(PartnerOut::of(&updated, false)))
}

/// Retrieve the partner webhook headers.
#[utoipa::path(
    get, path = "/api/v2/partners/{partner_id}/webhook_headers", tag = "Partner API",
    security(("PartnerApiKeyV2" = []), ("Bearer" = [])),
    params(("partner_id" = String, Path, description = "The ID of the partner.")),
    responses(
        (status = 200, description = "The headers", body = WebhookHeadersOut),
        (status = 401, description = "Missing or invalid API key", body = PartnerErrorBody),
        (status = 404, description = "Not found (or not this key's partner)", body = PartnerErrorBody),
    )
)]
pub async fn get_webhook_headers(
    State(state): State<AppState>,
    headers: HeaderMap,
    partner_id: Result<PathParam, ApiError>,
) -> Result<Json<WebhookHeadersOut>, PartnerApiError> {
    let record = authenticate(&state, &headers, &partner_id?.0).await?;
    Ok(Json(WebhookHeadersOut {
        webhook_headers: record.webhook_headers.as_map().clone(),
    }))
}

/// Set or update the headers sent with every partner event.
#[utoipa::path(
    post, path = "/api/v2/partners/{partner_id}/webhook_headers", tag = "Partner API",
    security(("PartnerApiKeyV2" = []), ("Bearer" = [])),
    params(("partner_id" = String, Path, description = "The ID of the partner.")),
    request_body = SetWebhookHeadersIn,
    responses(
        (status = 200, description = "The partner, with its headers", body = PartnerOut),
        (status = 400, description = "Wrong payload", body = PartnerErrorBody),
        (status = 401, description = "Missing or invalid API key", body = PartnerErrorBody),
        (status = 404, description = "Not found (or not this key's partner)", body = PartnerErrorBody),
    )
)]
pub async fn set_webhook_headers(
    State(state): State<AppState>,
    headers: HeaderMap,
    partner_id: Result<PathParam, ApiError>,
    body: Body,
) -> Result<Json<PartnerOut>, PartnerApiError> {
    let record = authenticate(&state, &headers, &partner_id?.0).await?;
    let body = read_body(&headers, body, &state).await?;
    let value = single_field(&body, "webhook_headers")?;
    let Value::Object(map) = value else {
        return Err(invalid("webhook_headers", "Not a valid mapping type.").into());
    };
    let parsed = WebhookHeaders::parse(string_values(map)?)
        .map_err(|e| invalid("webhook_headers", e.to_string()))?;
    let id = &record.partner.id;
    let updated = state.store.set_partner_webhook_headers(id, parsed).await?;
    tracing::info!(partner = %id, "partner webhook headers set");
    Ok(Json(PartnerOut::of(&updated, true)))
}

fn string_values(map: Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    map.into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            _ => Err(invalid(
                "webhook_headers",
                format!("Value of header {name:?} is not a valid string."),
            )),
        })
        .collect()
}
