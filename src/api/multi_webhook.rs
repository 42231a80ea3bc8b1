//! Messaging API: extra destinations of a number (`/multi_webhook`), with every status code
//! and message of the provider's docs. The rules themselves are `MultiWebhook::apply`; the
//! store applies them inside one transaction, so a rejected request changes nothing.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, MessageBody};
use super::extract::{present, ChannelAuth, JsonBody, PathParam};
use super::messaging::OPERATION_STARTED;
use super::AppState;
use crate::domain::{
    ChannelId, Destination, DestinationName, MultiWebhookChange, UrlPolicy, WebhookHeaders,
    WebhookUrl,
};

/// One extra destination, as sent and shown by the provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DestinationBody {
    /// Case-sensitive name, unique per number.
    name: String,
    /// https:// URL without `_` in the host and without a port.
    url: String,
    /// Headers sent with each clone.
    #[serde(default, deserialize_with = "present")]
    headers: Option<BTreeMap<String, String>>,
}

impl DestinationBody {
    fn parse(self, policy: UrlPolicy) -> Result<Destination, ApiError> {
        Ok(Destination {
            name: DestinationName::parse(&self.name)?,
            url: WebhookUrl::parse(&self.url, policy)?,
            headers: WebhookHeaders::parse(self.headers.unwrap_or_default())?,
        })
    }

    fn show(destination: &Destination) -> Self {
        Self {
            name: destination.name.as_str().to_owned(),
            url: destination.url.as_str().to_owned(),
            headers: Some(destination.headers.as_map().clone()),
        }
    }
}

fn parse_all(
    destinations: Vec<DestinationBody>,
    policy: UrlPolicy,
) -> Result<Vec<Destination>, ApiError> {
    destinations.into_iter().map(|d| d.parse(policy)).collect()
}

/// GET /multi_webhook answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MultiWebhookConfig {
    /// Always `true` here: a disabled config answers 409.
    enabled: bool,
    /// The extra destinations, in the order they were added.
    destinations: Vec<DestinationBody>,
}

/// Body of POST /multi_webhook.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EnableMultiWebhookRequest {
    /// `true` enables (optionally with initial destinations), `false` disables.
    enabled: bool,
    /// Destinations to add while enabling.
    #[serde(default, deserialize_with = "present")]
    destinations: Option<Vec<DestinationBody>>,
}

/// Body of PUT /multi_webhook.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AppendDestinationsRequest {
    /// Destinations to append.
    destinations: Vec<DestinationBody>,
}

/// Body of PATCH /multi_webhook: the destination's name, and what to replace.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateDestinationRequest {
    /// Name of the existing destination (exact, case-sensitive).
    name: String,
    /// New URL, if it changes.
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    /// New headers (replacing the old ones), if they change.
    #[serde(default, deserialize_with = "present")]
    headers: Option<BTreeMap<String, String>>,
}

async fn apply(
    state: &AppState,
    channel: &ChannelId,
    change: MultiWebhookChange,
) -> Result<Json<MessageBody>, ApiError> {
    let next = state
        .store
        .change_multi_webhook(channel, change, state.config.max_extra_destinations)
        .await?;
    tracing::info!(
        channel = %channel,
        enabled = next.enabled,
        destinations = next.destinations.len(),
        "multi webhook changed"
    );
    Ok(MessageBody::new(OPERATION_STARTED))
}

/// List the extra destinations of the number that owns the key.
#[utoipa::path(
    get, path = "/multi_webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    responses(
        (status = 200, description = "Enabled, with its destinations", body = MultiWebhookConfig),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
        (status = 409, description = "Multi webhook is disabled, use POST to enable it first", body = MessageBody),
    )
)]
pub async fn get_multi_webhook(
    ChannelAuth(channel): ChannelAuth,
) -> Result<Json<MultiWebhookConfig>, ApiError> {
    let config = channel.multi_webhook;
    if !config.enabled {
        return Err(ApiError::MultiWebhookDisabled);
    }
    Ok(Json(MultiWebhookConfig {
        enabled: true,
        destinations: config
            .destinations
            .iter()
            .map(DestinationBody::show)
            .collect(),
    }))
}

/// Enable (optionally with destinations) or disable the multi webhook.
#[utoipa::path(
    post, path = "/multi_webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    request_body = EnableMultiWebhookRequest,
    responses(
        (status = 200, description = "Applied", body = MessageBody),
        (status = 400, description = "Invalid json, already enabled, duplicate names, or more than the maximum", body = ErrorBody),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
    )
)]
pub async fn enable_multi_webhook(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
    JsonBody(body): JsonBody<EnableMultiWebhookRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    let destinations = parse_all(
        body.destinations.unwrap_or_default(),
        state.config.url_policy(),
    )?;
    let change = match (body.enabled, destinations.is_empty()) {
        (true, _) => MultiWebhookChange::Enable(destinations),
        (false, true) => MultiWebhookChange::Disable,
        (false, false) => {
            return Err(ApiError::BadRequest(
                "destinations can only be given with enabled=true".into(),
            ))
        }
    };
    apply(&state, &channel.id, change).await
}

/// Append destinations; the multi webhook must be enabled.
#[utoipa::path(
    put, path = "/multi_webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    request_body = AppendDestinationsRequest,
    responses(
        (status = 200, description = "Applied", body = MessageBody),
        (status = 400, description = "Invalid json, duplicate names, or more than the maximum", body = ErrorBody),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
        (status = 409, description = "Multi webhook is disabled, use POST to enable it first", body = MessageBody),
    )
)]
pub async fn append_destinations(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
    JsonBody(body): JsonBody<AppendDestinationsRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    if body.destinations.is_empty() {
        return Err(ApiError::BadRequest(
            "destinations must not be empty".into(),
        ));
    }
    let destinations = parse_all(body.destinations, state.config.url_policy())?;
    apply(
        &state,
        &channel.id,
        MultiWebhookChange::Append(destinations),
    )
    .await
}

/// Replace the url and/or headers of a destination found by its exact name.
#[utoipa::path(
    patch, path = "/multi_webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    request_body = UpdateDestinationRequest,
    responses(
        (status = 200, description = "Applied", body = MessageBody),
        (status = 400, description = "Invalid json, URL or headers", body = ErrorBody),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
        (status = 404, description = "No destination with that name", body = ErrorBody),
        (status = 409, description = "Multi webhook is disabled, use POST to enable it first", body = MessageBody),
    )
)]
pub async fn update_destination(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
    JsonBody(body): JsonBody<UpdateDestinationRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    let policy = state.config.url_policy();
    let change = MultiWebhookChange::Update {
        name: DestinationName::parse(&body.name)?,
        url: body
            .url
            .map(|url| WebhookUrl::parse(&url, policy))
            .transpose()?,
        headers: body.headers.map(WebhookHeaders::parse).transpose()?,
    };
    apply(&state, &channel.id, change).await
}

/// Delete a destination by its exact name.
#[utoipa::path(
    delete, path = "/multi_webhook/{name}", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    params(("name" = String, Path, description = "Exact (case-sensitive) destination name")),
    responses(
        (status = 200, description = "Applied", body = MessageBody),
        (status = 400, description = "The name is empty or not a valid destination name", body = ErrorBody),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
        (status = 404, description = "No destination with that name", body = ErrorBody),
        (status = 409, description = "Multi webhook is disabled, use POST to enable it first", body = MessageBody),
    )
)]
pub async fn delete_destination(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
    PathParam(name): PathParam,
) -> Result<Json<MessageBody>, ApiError> {
    let change = MultiWebhookChange::Delete(DestinationName::parse(&name)?);
    apply(&state, &channel.id, change).await
}

/// DELETE /multi_webhook/ without a name: the provider's 400.
pub async fn delete_without_name(_: ChannelAuth) -> ApiError {
    ApiError::BadRequest("dest_name is required".into())
}
