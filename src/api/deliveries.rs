//! Admin endpoints for deliveries: list them by state and channel, and replay failed ones,
//! one by one or in bulk.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, OptionalJsonBody, PathParam};
use super::AppState;
use crate::clock::{now_ms, rfc3339};
use crate::domain::{ChannelId, DeliveryId, DeliveryState, PartnerId};
use crate::store::{AttemptRecord, DeliveryFilter, DeliveryRecord};

/// One attempt, for inspection.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    number: u32,
    started_at: String,
    duration_ms: i64,
    url: String,
    /// The HTTP status, when an answer came.
    status: Option<u16>,
    /// `timeout`, `connect`, `tls`, `blocked` or `io`, when no answer came.
    error: Option<String>,
    /// The first bytes of the answer.
    response: Option<String>,
    /// The delay a 429 or 503 asked for with `Retry-After`, ms, as the receiver said it
    /// (the delay kept, clamped, is the delivery's `next_attempt_at`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<i64>,
}

impl AttemptView {
    fn of(attempt: AttemptRecord) -> Self {
        Self {
            number: attempt.number,
            started_at: rfc3339(attempt.started_at),
            duration_ms: attempt.duration_ms,
            url: attempt.url,
            status: attempt.status,
            error: attempt.error.map(|kind| kind.as_str().to_owned()),
            response: attempt.response_excerpt,
            retry_after_ms: attempt.retry_after_ms,
        }
    }
}

/// A delivery, for inspection.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    id: i64,
    event_id: i64,
    channel_id: Option<String>,
    /// For partner events.
    partner_id: Option<String>,
    /// `primary`, `extra:<name>` or `partner`.
    target: String,
    /// `pending`, `delivered`, `failed` or `dropped`.
    state: String,
    attempts: u32,
    /// When the next attempt is due (pending only).
    next_attempt_at: Option<String>,
    last_error: Option<String>,
    updated_at: String,
    /// Every attempt (in the event view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_log: Option<Vec<AttemptView>>,
}

impl DeliveryView {
    pub(super) fn of(delivery: DeliveryRecord, attempts: Option<Vec<AttemptRecord>>) -> Self {
        Self {
            id: delivery.id.0,
            event_id: delivery.event.0,
            channel_id: delivery.channel.map(|c| c.to_string()),
            partner_id: delivery.partner.map(|p| p.to_string()),
            target: delivery.target.to_stored(),
            state: delivery.state.as_str().to_owned(),
            attempts: delivery.attempts,
            next_attempt_at: (delivery.state == DeliveryState::Pending)
                .then(|| rfc3339(delivery.next_attempt_at)),
            last_error: delivery.last_error,
            updated_at: rfc3339(delivery.updated_at),
            attempt_log: attempts.map(|a| a.into_iter().map(AttemptView::of).collect()),
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// Default and largest page sizes.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// List deliveries, oldest first, filtered by state and channel, paged by id.
#[utoipa::path(
    get, path = "/admin/deliveries", tag = "Admin",
    security(("admin" = [])),
    params(
        ("state" = Option<String>, Query, description = "pending, delivered, failed or dropped"),
        ("channel" = Option<String>, Query, description = "A channel id"),
        ("after" = Option<i64>, Query, description = "Cursor: only ids greater than this"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page", body = DeliveryPage),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    _: AdminAuth,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let filter = parse_filter(&query)?;
    let limit = filter.limit;
    let deliveries = state.store.deliveries(filter).await?;
    let next_after = next_cursor(&deliveries, limit, |d| d.id.0);
    Ok(Json(DeliveryPage {
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView::of(d, None))
            .collect(),
        next_after,
    }))
}

fn parse_filter(query: &HashMap<String, String>) -> Result<DeliveryFilter, ApiError> {
    let state = query
        .get("state")
        .map(|raw| {
            DeliveryState::parse(raw).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Invalid state {raw:?}: expected pending, delivered, failed or dropped"
                ))
            })
        })
        .transpose()?;
    let (after, limit) = parse_page(query)?;
    Ok(DeliveryFilter {
        state,
        channel: query.get("channel").map(ChannelId::from_raw),
        after: after.map(DeliveryId),
        limit,
    })
}

/// The cursor of the next page: the last id of a full page, none after a short one.
pub(super) fn next_cursor<T>(page: &[T], limit: usize, id: impl Fn(&T) -> i64) -> Option<i64> {
    (page.len() == limit).then(|| page.last().map(id)).flatten()
}

/// The paging parameters shared by the lists: `after` (an id) and `limit`.
pub(super) fn parse_page(
    query: &HashMap<String, String>,
) -> Result<(Option<i64>, usize), ApiError> {
    let after = query
        .get("after")
        .map(|raw| {
            raw.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("Invalid after {raw:?}: expected an id")))
        })
        .transpose()?;
    Ok((after, parse_limit(query)?))
}

/// The `limit` of a paged list: 1 to 1000, 100 when absent.
pub(super) fn parse_limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(PAGE),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("Invalid limit {raw:?}: expected 1 to {MAX_PAGE}"))
            }),
    }
}

/// Body of POST /admin/deliveries/retry: which deliveries to replay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryRequest {
    /// `failed` (default) or `dropped`.
    #[serde(default)]
    state: Option<String>,
    /// Only this channel's deliveries.
    #[serde(default)]
    channel: Option<String>,
    /// Only this partner's (partner events).
    #[serde(default)]
    partner: Option<String>,
}

/// How many deliveries were re-queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRequeued {
    requeued: u64,
}

/// Replay every failed (or dropped) delivery, e.g. after a receiver's outage outlasted the
/// maximum age; optionally only one channel's or partner's.
#[utoipa::path(
    post, path = "/admin/deliveries/retry", tag = "Admin",
    security(("admin" = [])),
    request_body = BulkRetryRequest,
    responses(
        (status = 202, description = "Queued", body = BulkRequeued),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn retry_deliveries(
    State(state): State<AppState>,
    _: AdminAuth,
    OptionalJsonBody(body): OptionalJsonBody<BulkRetryRequest>,
) -> Result<(StatusCode, Json<BulkRequeued>), ApiError> {
    let target = match body.state.as_deref() {
        None | Some("failed") => DeliveryState::Failed,
        Some("dropped") => DeliveryState::Dropped,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Invalid state {other:?}: only failed or dropped deliveries can be retried"
            )))
        }
    };
    let channel = body.channel.map(ChannelId::from_raw);
    let partner = body.partner.map(PartnerId::from_raw);
    let requeued = state
        .store
        .retry_deliveries(target, channel, partner, now_ms())
        .await?;
    tracing::info!(
        requeued,
        state = target.as_str(),
        "deliveries re-queued by an operator"
    );
    Ok((StatusCode::ACCEPTED, Json(BulkRequeued { requeued })))
}

/// A re-queued delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    delivery_id: i64,
    state: &'static str,
}

/// Replay a failed or dropped delivery: due now, with a new maximum-age window.
#[utoipa::path(
    post, path = "/admin/deliveries/{delivery_id}/retry", tag = "Admin",
    security(("admin" = [])),
    params(("delivery_id" = i64, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Queued", body = Requeued),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown delivery", body = ErrorBody),
        (status = 409, description = "The delivery is pending or delivered", body = ErrorBody),
    )
)]
pub async fn retry_delivery(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(delivery_id): PathParam,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let not_found = || ApiError::NotFound(format!("Delivery {delivery_id} not found"));
    let id = delivery_id.parse::<i64>().map_err(|_| not_found())?;
    state.store.retry_delivery(DeliveryId(id), now_ms()).await?;
    tracing::info!(delivery = id, "delivery re-queued by an operator");
    Ok((
        StatusCode::ACCEPTED,
        Json(Requeued {
            delivery_id: id,
            state: DeliveryState::Pending.as_str(),
        }),
    ))
}
