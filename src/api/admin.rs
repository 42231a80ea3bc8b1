//! Admin API: provisioning partners, WABAs and channels, and inspecting a channel's routing.
//!
//! Authenticated by the admin token (`Authorization: Bearer …`). Keys are issued here, shown
//! once in the response and stored only as hashes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, JsonBody, OptionalJsonBody, PathParam};
use super::messaging::WebhookConfig;
use super::partner_events::channel_event;
use super::AppState;
use crate::domain::{
    random_alphanumeric, ApiKey, Channel, ChannelId, Partner, PartnerEventType, PartnerId,
    PhoneNumber, PhoneNumberId, Route, ValidationError, WabaId, Webhook,
};
use crate::metrics::Source;
use crate::store::{ChannelRef, NewChannel};

/// Longest partner name accepted.
const MAX_NAME_CHARS: usize = 200;

/// Body of POST /admin/partners.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartnerRequest {
    /// Display name (the Partner API's `brand_name`).
    name: String,
}

/// A created partner with its API key, shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPartner {
    id: String,
    name: String,
    api_key: String,
}

/// Create a partner and issue its Partner API key.
#[utoipa::path(
    post, path = "/admin/partners", tag = "Admin",
    security(("admin" = [])),
    request_body = CreatePartnerRequest,
    responses(
        (status = 201, description = "Created; the key is shown only now", body = CreatedPartner),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn create_partner(
    State(state): State<AppState>,
    _: AdminAuth,
    JsonBody(body): JsonBody<CreatePartnerRequest>,
) -> Result<(StatusCode, Json<CreatedPartner>), ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(
            ValidationError(format!("name must be 1 to {MAX_NAME_CHARS} characters")).into(),
        );
    }
    let partner = Partner {
        id: PartnerId::generate(),
        name,
    };
    let key = ApiKey::generate();
    state
        .store
        .create_partner(partner.clone(), key.hash())
        .await?;
    tracing::info!(partner = %partner.id, "partner created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedPartner {
            id: partner.id.to_string(),
            name: partner.name,
            api_key: key.expose().to_owned(),
        }),
    ))
}

/// Body of POST /admin/partners/{id}/wabas; without `waba_id` one is generated.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWabaRequest {
    /// Meta's WABA id (a positive integer).
    #[serde(default)]
    waba_id: Option<i64>,
}

/// A created WABA.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWaba {
    waba_id: i64,
    partner_id: String,
}

/// Add a WABA to a partner.
#[utoipa::path(
    post, path = "/admin/partners/{partner_id}/wabas", tag = "Admin",
    security(("admin" = [])),
    params(("partner_id" = String, Path, description = "The partner's id")),
    request_body = CreateWabaRequest,
    responses(
        (status = 201, description = "Created", body = CreatedWaba),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown partner", body = ErrorBody),
        (status = 409, description = "The WABA id exists", body = ErrorBody),
    )
)]
pub async fn create_waba(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(partner_id): PathParam,
    OptionalJsonBody(body): OptionalJsonBody<CreateWabaRequest>,
) -> Result<(StatusCode, Json<CreatedWaba>), ApiError> {
    let waba = match body.waba_id {
        Some(raw) => WabaId::new(raw)?,
        None => WabaId::generate(),
    };
    let partner = PartnerId::from_raw(partner_id);
    state.store.create_waba(&partner, waba).await?;
    tracing::info!(%partner, %waba, "WABA created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWaba {
            waba_id: waba.get(),
            partner_id: partner.to_string(),
        }),
    ))
}

/// Body of POST /admin/wabas/{waba_id}/channels; without `phone_number_id` one is generated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// The number, `+` and 6 to 15 digits.
    phone_number: String,
    /// Meta's id for the number (digits), which Meta's webhooks carry.
    #[serde(default)]
    phone_number_id: Option<String>,
}

/// A created channel with its D360-API-KEY, shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedChannel {
    id: String,
    waba_id: i64,
    phone_number: String,
    phone_number_id: String,
    api_key: String,
}

/// Add a channel (phone number) to a WABA and issue its D360-API-KEY.
#[utoipa::path(
    post, path = "/admin/wabas/{waba_id}/channels", tag = "Admin",
    security(("admin" = [])),
    params(("waba_id" = i64, Path, description = "The WABA's id")),
    request_body = CreateChannelRequest,
    responses(
        (status = 201, description = "Created; the key is shown only now", body = CreatedChannel),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown WABA", body = ErrorBody),
        (status = 409, description = "The number or its id exists", body = ErrorBody),
    )
)]
pub async fn create_channel(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(waba_id): PathParam,
    JsonBody(body): JsonBody<CreateChannelRequest>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let key = ApiKey::generate();
    let channel = NewChannel {
        id: ChannelId::generate(),
        waba_id: WabaId::parse(&waba_id)?,
        phone_number: PhoneNumber::parse(&body.phone_number)?,
        phone_number_id: match body.phone_number_id {
            Some(raw) => PhoneNumberId::parse(&raw)?,
            None => PhoneNumberId::generate(),
        },
        key_hash: key.hash(),
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
    let facts = ChannelRef {
        id: channel.id.clone(),
        waba_id: channel.waba_id,
        phone_number: channel.phone_number.clone(),
        phone_number_id: channel.phone_number_id.clone(),
    };
    let created = channel_event(&facts, partner, PartnerEventType::CHANNEL_CREATED);
    // One transaction: the channel never exists without its channel_created event.
    state
        .store
        .create_channel(channel.clone(), vec![created])
        .await?;
    state
        .metrics
        .event_stored(Source::Platform, crate::domain::EventKind::Partner);
    tracing::info!(channel = %channel.id, waba = %channel.waba_id, "channel created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannel {
            id: channel.id.to_string(),
            waba_id: channel.waba_id.get(),
            phone_number: channel.phone_number.as_str().to_owned(),
            phone_number_id: channel.phone_number_id.as_str().to_owned(),
            api_key: key.expose().to_owned(),
        }),
    ))
}

/// A newly issued key, shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKey {
    api_key: String,
}

/// Issue a new D360-API-KEY: the old key stops working and the phone-number webhook is
/// removed, as the provider does when a new key is generated.
#[utoipa::path(
    post, path = "/admin/channels/{channel_id}/api_key", tag = "Admin",
    security(("admin" = [])),
    params(("channel_id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The new key", body = IssuedKey),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    )
)]
pub async fn rotate_channel_key(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(channel_id): PathParam,
) -> Result<Json<IssuedKey>, ApiError> {
    let key = ApiKey::generate();
    let channel = ChannelId::from_raw(channel_id);
    state
        .store
        .replace_channel_key(&channel, key.hash())
        .await?;
    tracing::info!(%channel, "channel key replaced; phone-number webhook removed");
    Ok(Json(IssuedKey {
        api_key: key.expose().to_owned(),
    }))
}

/// Where the channel's notifications go now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    /// `phone`, `waba` or `none`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The destination, absent for `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<WebhookConfig>,
}

/// A channel as the operator sees it, with its resolved route.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    id: String,
    waba_id: i64,
    phone_number: String,
    phone_number_id: String,
    /// The phone-number webhook, if set.
    webhook: Option<WebhookConfig>,
    multi_webhook_enabled: bool,
    extra_destinations: Vec<String>,
    /// Whether notifications reach the primary destination one at a time, in order.
    ordered: bool,
    /// Where a notification would be delivered now.
    route: RouteView,
}

impl ChannelView {
    fn of(channel: Channel, route: Route) -> Self {
        Self::shown(channel, route, |w| WebhookConfig::of(Some(w)))
    }

    /// The view with each webhook rendered by `show` (as configured, or masked for lists).
    pub(super) fn shown(
        channel: Channel,
        route: Route,
        show: fn(&Webhook) -> WebhookConfig,
    ) -> Self {
        let route = match route {
            Route::Phone(webhook) => ("phone", Some(webhook)),
            Route::Waba(webhook) => ("waba", Some(webhook)),
            Route::None => ("none", None),
        };
        Self {
            id: channel.id.to_string(),
            waba_id: channel.waba_id.get(),
            phone_number: channel.phone_number.as_str().to_owned(),
            phone_number_id: channel.phone_number_id.as_str().to_owned(),
            webhook: channel.webhook.as_ref().map(show),
            multi_webhook_enabled: channel.multi_webhook.enabled,
            extra_destinations: channel
                .multi_webhook
                .destinations
                .iter()
                .map(|d| d.name.as_str().to_owned())
                .collect(),
            ordered: channel.ordered,
            route: RouteView {
                kind: route.0,
                webhook: route.1.as_ref().map(show),
            },
        }
    }
}

/// Show a channel and where its notifications are routed now.
#[utoipa::path(
    get, path = "/admin/channels/{channel_id}", tag = "Admin",
    security(("admin" = [])),
    params(("channel_id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The channel", body = ChannelView),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    )
)]
pub async fn get_channel(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(channel_id): PathParam,
) -> Result<Json<ChannelView>, ApiError> {
    let id = ChannelId::from_raw(channel_id);
    let Some(channel) = state.store.channel(&id).await? else {
        return Err(ApiError::NotFound(format!("Channel {id} not found")));
    };
    let route = state.store.route(&id).await?;
    Ok(Json(ChannelView::of(channel, route)))
}

/// A new signing secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecret {
    signing_secret: String,
}

/// Issue a signing secret: from now on every delivery of the channel carries
/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
#[utoipa::path(
    post, path = "/admin/channels/{channel_id}/signing_secret", tag = "Admin",
    security(("admin" = [])),
    params(("channel_id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The secret", body = SigningSecret),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    )
)]
pub async fn create_signing_secret(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(channel_id): PathParam,
) -> Result<Json<SigningSecret>, ApiError> {
    let secret = random_alphanumeric(40);
    let id = ChannelId::from_raw(channel_id);
    state.store.set_signing_secret(&id, secret.clone()).await?;
    tracing::info!(channel = %id, "signing secret issued");
    Ok(Json(SigningSecret {
        signing_secret: secret,
    }))
}

/// Issue a WABA's signing secret: from now on its WABA-level notifications (`account_update`,
/// `message_template_status_update`, …), which belong to no channel, reach the WABA webhook
/// with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
#[utoipa::path(
    post, path = "/admin/wabas/{waba_id}/signing_secret", tag = "Admin",
    security(("admin" = [])),
    params(("waba_id" = String, Path, description = "The WABA's id")),
    responses(
        (status = 200, description = "The secret", body = SigningSecret),
        (status = 400, description = "Not a WABA id", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown WABA", body = ErrorBody),
    )
)]
pub async fn create_waba_signing_secret(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(waba_id): PathParam,
) -> Result<Json<SigningSecret>, ApiError> {
    let waba = WabaId::parse(&waba_id)?;
    let secret = random_alphanumeric(40);
    state
        .store
        .set_waba_signing_secret(waba, secret.clone())
        .await?;
    tracing::info!(%waba, "WABA signing secret issued");
    Ok(Json(SigningSecret {
        signing_secret: secret,
    }))
}
