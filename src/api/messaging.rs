//! Messaging API: the phone-number webhook (`/v1/configs/webhook`) and the WABA webhook
//! (`/waba_webhook`), authenticated by `D360-API-KEY`, with the provider's paths and bodies.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, MessageBody};
use super::extract::{present, ChannelAuth, JsonBody};
use super::AppState;
use crate::domain::{redact_query, UrlPolicy, WabaWebhook, Webhook, WebhookHeaders, WebhookUrl};

/// The provider's answer to accepted configuration changes.
pub const OPERATION_STARTED: &str =
    "Operation has been started, please wait several seconds until change is applied";

/// A webhook as the provider shows it; `url` is `""` when none is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookConfig {
    /// The destination URL.
    url: String,
    /// Headers sent with every delivery.
    headers: BTreeMap<String, String>,
}

impl WebhookConfig {
    /// The provider's view of an optional webhook.
    pub(super) fn of(webhook: Option<&Webhook>) -> Self {
        match webhook {
            Some(webhook) => Self {
                url: webhook.url.as_str().to_owned(),
                headers: webhook.headers.as_map().clone(),
            },
            None => Self {
                url: String::new(),
                headers: BTreeMap::new(),
            },
        }
    }
}

impl WebhookConfig {
    /// A webhook as lists display it: query values and header values masked (`***`), since
    /// both often carry credentials and lists are read by more people than configurations.
    pub(super) fn masked(webhook: &Webhook) -> Self {
        Self {
            url: redact_query(webhook.url.as_str()).into_owned(),
            headers: webhook.headers.masked(),
        }
    }
}

/// Body of POST /v1/configs/webhook. An empty `url` removes the phone-number webhook.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetWebhookRequest {
    /// https:// URL without `_` in the host and without a port; `""` removes the webhook.
    url: String,
    /// Headers to send with every delivery, e.g. `Authorization`.
    #[serde(default, deserialize_with = "present")]
    headers: Option<BTreeMap<String, String>>,
}

/// Parses a URL and headers into a webhook; an empty URL (with no headers) means "none".
pub fn parse_webhook(
    url: &str,
    headers: Option<BTreeMap<String, String>>,
    policy: UrlPolicy,
) -> Result<Option<Webhook>, ApiError> {
    let headers = headers.unwrap_or_default();
    if url.is_empty() {
        if !headers.is_empty() {
            return Err(ApiError::BadRequest(
                "headers cannot be set without a url".into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(Webhook {
        url: WebhookUrl::parse(url, policy)?,
        headers: WebhookHeaders::parse(headers)?,
    }))
}

/// Get the phone-number webhook of the number that owns the key.
#[utoipa::path(
    get, path = "/v1/configs/webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    responses(
        (status = 200, description = "The phone-number webhook", body = WebhookConfig),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
    )
)]
pub async fn get_phone_webhook(ChannelAuth(channel): ChannelAuth) -> Json<WebhookConfig> {
    Json(WebhookConfig::of(channel.webhook.as_ref()))
}

/// Set (or, with an empty url, remove) the phone-number webhook; it has priority over the
/// WABA webhook.
#[utoipa::path(
    post, path = "/v1/configs/webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    request_body = SetWebhookRequest,
    responses(
        (status = 200, description = "The saved webhook", body = WebhookConfig),
        (status = 400, description = "Invalid json, URL or headers", body = ErrorBody),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    )
)]
pub async fn set_phone_webhook(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
    JsonBody(body): JsonBody<SetWebhookRequest>,
) -> Result<Json<WebhookConfig>, ApiError> {
    let webhook = parse_webhook(&body.url, body.headers, state.config.url_policy())?;
    let answer = WebhookConfig::of(webhook.as_ref());
    state.store.set_phone_webhook(&channel.id, webhook).await?;
    tracing::info!(channel = %channel.id, url = %redact_query(&answer.url), "phone-number webhook set");
    Ok(Json(answer))
}

/// The WABA webhook as the provider shows it, with the WABA's id and numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WabaWebhookConfig {
    /// The destination URL; `""` when none is set.
    url: String,
    /// Headers sent with every delivery.
    headers: BTreeMap<String, String>,
    /// As last set.
    override_all: bool,
    /// The WABA of the number that owns the key.
    waba_id: i64,
    /// Every number of the WABA.
    numbers_on_this_waba: Vec<String>,
}

/// Body of POST /waba_webhook.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetWabaWebhookRequest {
    /// https:// URL without `_` in the host and without a port; `""` removes the webhook.
    url: String,
    /// Headers to send with every delivery.
    #[serde(default, deserialize_with = "present")]
    headers: Option<BTreeMap<String, String>>,
    /// `true`: serve every number of the WABA, removing their phone-number webhooks;
    /// `false` (default): serve only numbers without a phone-number webhook.
    #[serde(default, deserialize_with = "present")]
    override_all: Option<bool>,
}

/// Get the WABA-level webhook of the WABA of the number that owns the key.
#[utoipa::path(
    get, path = "/waba_webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    responses(
        (status = 200, description = "The WABA webhook", body = WabaWebhookConfig),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
    )
)]
pub async fn get_waba_webhook(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
) -> Result<Json<WabaWebhookConfig>, ApiError> {
    let view = state.store.waba_webhook(channel.waba_id).await?;
    let webhook = WebhookConfig::of(view.webhook.as_ref().map(|w| &w.webhook));
    Ok(Json(WabaWebhookConfig {
        url: webhook.url,
        headers: webhook.headers,
        override_all: view.webhook.is_some_and(|w| w.override_all),
        waba_id: channel.waba_id.get(),
        numbers_on_this_waba: view.numbers.iter().map(|n| n.as_str().to_owned()).collect(),
    }))
}

/// Set (or, with an empty url, remove) the WABA-level webhook.
#[utoipa::path(
    post, path = "/waba_webhook", tag = "Messaging API",
    security(("D360-API-KEY" = [])),
    request_body = SetWabaWebhookRequest,
    responses(
        (status = 200, description = "Applied", body = MessageBody),
        (status = 400, description = "Invalid json, URL or headers", body = ErrorBody),
        (status = 401, description = "Missing or invalid D360-API-KEY", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    )
)]
pub async fn set_waba_webhook(
    State(state): State<AppState>,
    ChannelAuth(channel): ChannelAuth,
    JsonBody(body): JsonBody<SetWabaWebhookRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    let override_all = body.override_all.unwrap_or(false);
    let webhook =
        parse_webhook(&body.url, body.headers, state.config.url_policy())?.map(|webhook| {
            WabaWebhook {
                webhook,
                override_all,
            }
        });
    state
        .store
        .set_waba_webhook(channel.waba_id, webhook)
        .await?;
    tracing::info!(waba = %channel.waba_id, url = %redact_query(&body.url), override_all, "WABA webhook set");
    Ok(MessageBody::new(OPERATION_STARTED))
}
