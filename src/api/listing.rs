//! Admin API: the provisioning lists (partners, WABAs, channels) an operator browses, and the
//! single views of a partner and a WABA.
//!
//! Paged by a cursor like the other admin lists (`after`, `limit`, `next_after`); the store
//! answers each page from an index range. Secrets never appear: header values are shown as
//! `***` and URL query values masked, by the one helper `WebhookConfig::masked` (and
//! `WebhookHeaders::masked` where a partner has headers without a URL).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::ChannelView;
use super::deliveries::parse_limit;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, PathParam};
use super::messaging::WebhookConfig;
use super::AppState;
use crate::clock::rfc3339;
use crate::domain::{redact_query, ChannelId, PartnerId, PhonePrefix, WabaId};
use crate::store::{
    ChannelFilter, ChannelListing, PartnerFilter, PartnerListing, WabaFilter, WabaListing,
};

/// A partner as operators see it; no key, no secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerView {
    id: String,
    name: String,
    /// RFC 3339.
    created_at: String,
    /// The partner webhook URL, query values masked.
    webhook_url: Option<String>,
    /// Header names; every value shown as `***`.
    webhook_headers: BTreeMap<String, String>,
    /// Whether partner events are signed.
    signing: bool,
    /// How many WABAs it owns.
    wabas: u64,
}

impl PartnerView {
    fn of(listing: PartnerListing) -> Self {
        Self {
            id: listing.partner.id.to_string(),
            name: listing.partner.name,
            created_at: rfc3339(listing.created_at),
            webhook_url: listing
                .webhook_url
                .map(|url| redact_query(url.as_str()).into_owned()),
            webhook_headers: listing.webhook_headers.masked(),
            signing: listing.signing,
            wabas: listing.wabas,
        }
    }
}

/// A page of partners.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerPage {
    partners: Vec<PartnerView>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<String>,
}

/// List partners by id, paged.
#[utoipa::path(
    get, path = "/admin/partners", tag = "Admin",
    security(("admin" = [])),
    params(
        ("after" = Option<String>, Query, description = "Cursor: only ids greater than this"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page", body = PartnerPage),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list_partners(
    State(state): State<AppState>,
    _: AdminAuth,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PartnerPage>, ApiError> {
    let limit = parse_limit(&query)?;
    let filter = PartnerFilter {
        only: None,
        after: query.get("after").map(PartnerId::from_raw),
        limit,
    };
    let partners = state.store.list_partners(filter).await?;
    let next_after = next_cursor(&partners, limit, |p| p.partner.id.to_string());
    Ok(Json(PartnerPage {
        partners: partners.into_iter().map(PartnerView::of).collect(),
        next_after,
    }))
}

/// Show a partner.
#[utoipa::path(
    get, path = "/admin/partners/{partner_id}", tag = "Admin",
    security(("admin" = [])),
    params(("partner_id" = String, Path, description = "The partner's id")),
    responses(
        (status = 200, description = "The partner", body = PartnerView),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown partner", body = ErrorBody),
    )
)]
pub async fn get_partner(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(partner_id): PathParam,
) -> Result<Json<PartnerView>, ApiError> {
    let id = PartnerId::from_raw(partner_id);
    let filter = PartnerFilter {
        only: Some(id.clone()),
        after: None,
        limit: 1,
    };
    let found = state.store.list_partners(filter).await?.into_iter().next();
    let partner = found.ok_or_else(|| ApiError::NotFound(format!("Partner {id} not found")))?;
    Ok(Json(PartnerView::of(partner)))
}

/// A WABA's webhook as lists show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WabaWebhookView {
    /// URL (query values masked) and header names (values `***`).
    #[serde(flatten)]
    webhook: WebhookConfig,
    /// As last set.
    override_all: bool,
}

/// A WABA as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WabaView {
    waba_id: i64,
    partner_id: String,
    /// RFC 3339.
    created_at: String,
    /// The WABA webhook, if set.
    webhook: Option<WabaWebhookView>,
    /// Whether its WABA-level notifications are signed.
    signing: bool,
    /// How many channels it has.
    channels: u64,
}

impl WabaView {
    fn of(listing: WabaListing) -> Self {
        Self {
            waba_id: listing.waba_id.get(),
            partner_id: listing.partner_id.to_string(),
            created_at: rfc3339(listing.created_at),
            webhook: listing.webhook.map(|waba| WabaWebhookView {
                webhook: WebhookConfig::masked(&waba.webhook),
                override_all: waba.override_all,
            }),
            signing: listing.signing,
            channels: listing.channels,
        }
    }
}

/// A page of WABAs.
#[derive(Debug, Serialize, ToSchema)]
pub struct WabaPage {
    wabas: Vec<WabaView>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<i64>,
}

/// List WABAs by id, paged, optionally those of one partner.
#[utoipa::path(
    get, path = "/admin/wabas", tag = "Admin",
    security(("admin" = [])),
    params(
        ("partner" = Option<String>, Query, description = "Only this partner's WABAs"),
        ("after" = Option<i64>, Query, description = "Cursor: only ids greater than this"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page", body = WabaPage),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list_wabas(
    State(state): State<AppState>,
    _: AdminAuth,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<WabaPage>, ApiError> {
    let limit = parse_limit(&query)?;
    let filter = WabaFilter {
        only: None,
        partner: query.get("partner").map(PartnerId::from_raw),
        after: waba_param(&query, "after")?,
        limit,
    };
    let wabas = state.store.list_wabas(filter).await?;
    let next_after = next_cursor(&wabas, limit, |w| w.waba_id.get());
    Ok(Json(WabaPage {
        wabas: wabas.into_iter().map(WabaView::of).collect(),
        next_after,
    }))
}

/// Show a WABA.
#[utoipa::path(
    get, path = "/admin/wabas/{waba_id}", tag = "Admin",
    security(("admin" = [])),
    params(("waba_id" = i64, Path, description = "The WABA's id")),
    responses(
        (status = 200, description = "The WABA", body = WabaView),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown WABA", body = ErrorBody),
    )
)]
pub async fn get_waba(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(waba_id): PathParam,
) -> Result<Json<WabaView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("WABA {waba_id} not found"));
    let id = WabaId::parse(&waba_id).map_err(|_| not_found())?;
    let filter = WabaFilter {
        only: Some(id),
        partner: None,
        after: None,
        limit: 1,
    };
    let found = state.store.list_wabas(filter).await?.into_iter().next();
    Ok(Json(WabaView::of(found.ok_or_else(not_found)?)))
}

/// A channel in a list: the single view's fields, every header value `***` and URL queries
/// masked, plus its owner and whether it signs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelSummary {
    #[serde(flatten)]
    view: ChannelView,
    partner_id: String,
    /// Whether its deliveries carry `X-Hub-Signature-256`.
    signing: bool,
}

impl ChannelSummary {
    fn of(listing: ChannelListing) -> Self {
        Self {
            view: ChannelView::shown(listing.channel, listing.route, WebhookConfig::masked),
            partner_id: listing.partner_id.to_string(),
            signing: listing.signing,
        }
    }
}

/// A page of channels.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelPage {
    channels: Vec<ChannelSummary>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<String>,
}

/// List channels by id, paged; filter by partner or WABA, search by the start of the number.
#[utoipa::path(
    get, path = "/admin/channels", tag = "Admin",
    security(("admin" = [])),
    params(
        ("partner" = Option<String>, Query, description = "Only channels of this partner's WABAs"),
        ("waba" = Option<i64>, Query, description = "Only channels of this WABA"),
        ("phone" = Option<String>, Query, description = "Numbers starting with these digits (a leading + is optional)"),
        ("after" = Option<String>, Query, description = "Cursor: only ids greater than this"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page", body = ChannelPage),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list_channels(
    State(state): State<AppState>,
    _: AdminAuth,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ChannelPage>, ApiError> {
    let limit = parse_limit(&query)?;
    let phone = query.get("phone").map(|raw| PhonePrefix::parse(raw));
    let filter = ChannelFilter {
        partner: query.get("partner").map(PartnerId::from_raw),
        waba: waba_param(&query, "waba")?,
        phone: phone.transpose()?,
        after: query.get("after").map(ChannelId::from_raw),
        limit,
    };
    let channels = state.store.list_channels(filter).await?;
    let next_after = next_cursor(&channels, limit, |c| c.channel.id.to_string());
    Ok(Json(ChannelPage {
        channels: channels.into_iter().map(ChannelSummary::of).collect(),
        next_after,
    }))
}

/// The WABA id in the query parameter `name`, if given; a 400 naming it when malformed.
fn waba_param(query: &HashMap<String, String>, name: &str) -> Result<Option<WabaId>, ApiError> {
    query
        .get(name)
        .map(|raw| {
            WabaId::parse(raw).map_err(|_| {
                ApiError::BadRequest(format!("Invalid {name} {raw:?}: expected a WABA id"))
            })
        })
        .transpose()
}

/// The cursor of the next page: the last key of a full page, none after a short one.
fn next_cursor<T, K>(page: &[T], limit: usize, key: impl Fn(&T) -> K) -> Option<K> {
    (page.len() == limit)
        .then(|| page.last().map(key))
        .flatten()
}
