//! Admin endpoints for partner events: the operator's signals (`messaging_enabled`), the
//! sandbox door for any partner event, and partner signing secrets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::events::Accepted;
use super::extract::{AdminAuth, JsonBody, PathParam};
use super::AppState;
use crate::clock::now_ms;
use crate::domain::{random_alphanumeric, ChannelId, PartnerEventType, PartnerId};
use crate::ingest::partner_event;
use crate::metrics::Source;
use crate::store::{ChannelRef, NewEvent};

/// A partner event about a channel (`channel_created`, `template_messaging_enabled`).
pub(super) fn channel_event(
    channel: &ChannelRef,
    partner: PartnerId,
    kind: &'static str,
) -> NewEvent {
    let data = json!({"channel": {
        "id": channel.id.as_str(),
        "phone_number": channel.phone_number.as_str(),
        "phone_number_id": channel.phone_number_id.as_str(),
        "waba_id": channel.waba_id.get(),
        "partner_id": partner.as_str(),
    }});
    partner_event(partner, kind, data, now_ms())
}

/// Signal that a channel may send template messages: emits `template_messaging_enabled`
/// to its partner.
#[utoipa::path(
    post, path = "/admin/channels/{channel_id}/messaging_enabled", tag = "Admin",
    security(("admin" = [])),
    params(("channel_id" = String, Path, description = "The channel's id")),
    responses(
        (status = 202, description = "The partner event is stored; delivery started", body = Accepted),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    )
)]
pub async fn enable_messaging(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(channel_id): PathParam,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id = ChannelId::from_raw(channel_id);
    let Some(channel) = state.store.channel_ref(&id).await? else {
        return Err(ApiError::NotFound(format!("Channel {id} not found")));
    };
    let Some(partner) = state
        .store
        .waba_route(channel.waba_id)
        .await?
        .map(|r| r.partner)
    else {
        return Err(ApiError::NotFound(format!(
            "WABA {} not found",
            channel.waba_id
        )));
    };
    let event = channel_event(
        &channel,
        partner,
        PartnerEventType::TEMPLATE_MESSAGING_ENABLED,
    );
    let event_id = state.ingest.accept_one(event, Source::Platform).await?.0;
    tracing::info!(channel = %id, "template messaging enabled");
    Ok((StatusCode::ACCEPTED, Json(Accepted { event_id })))
}

/// Body of POST /admin/partners/{id}/events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartnerEventRequest {
    /// The event type, e.g. `channel_created`.
    #[serde(rename = "type")]
    kind: String,
    /// The event's data (an object; default `{}`).
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
}

/// Emit any partner event (sandbox and testing).
#[utoipa::path(
    post, path = "/admin/partners/{partner_id}/events", tag = "Admin",
    security(("admin" = [])),
    params(("partner_id" = String, Path, description = "The partner's id")),
    request_body = CreatePartnerEventRequest,
    responses(
        (status = 202, description = "Stored; delivery started", body = Accepted),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown partner", body = ErrorBody),
    )
)]
pub async fn create_partner_event(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(partner_id): PathParam,
    JsonBody(body): JsonBody<CreatePartnerEventRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let partner = PartnerId::from_raw(partner_id);
    if state.store.partner(&partner).await?.is_none() {
        return Err(ApiError::NotFound(format!("Partner {partner} not found")));
    }
    let kind = PartnerEventType::parse(&body.kind)?;
    let data = Value::Object(body.data.unwrap_or_default());
    let event = NewEvent::partner(partner, kind, data, now_ms());
    let event_id = state.ingest.accept_one(event, Source::Admin).await?.0;
    Ok((StatusCode::ACCEPTED, Json(Accepted { event_id })))
}

/// A partner's new signing secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerSigningSecret {
    signing_secret: String,
}

/// Issue a signing secret: from now on every partner event carries
/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
#[utoipa::path(
    post, path = "/admin/partners/{partner_id}/signing_secret", tag = "Admin",
    security(("admin" = [])),
    params(("partner_id" = String, Path, description = "The partner's id")),
    responses(
        (status = 200, description = "The secret", body = PartnerSigningSecret),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown partner", body = ErrorBody),
    )
)]
pub async fn create_partner_signing_secret(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(partner_id): PathParam,
) -> Result<Json<PartnerSigningSecret>, ApiError> {
    let partner = PartnerId::from_raw(partner_id);
    let secret = random_alphanumeric(40);
    state
        .store
        .set_partner_signing_secret(&partner, secret.clone())
        .await?;
    tracing::info!(%partner, "partner signing secret issued");
    Ok(Json(PartnerSigningSecret {
        signing_secret: secret,
    }))
}
