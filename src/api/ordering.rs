//! Admin switch of ordered delivery per number: `POST /admin/channels/{id}/ordering`.
//!
//! While on, the channel's notifications reach its primary destination one at a time, in
//! the order they were acknowledged; the store enforces it (`store::ordering`), so it holds
//! across retries, restarts and nodes. Off (the default) they are delivered in parallel.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, JsonBody, PathParam};
use super::AppState;
use crate::clock::now_ms;
use crate::domain::ChannelId;

/// Body of POST /admin/channels/{id}/ordering.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderingRequest {
    /// `true`: one notification in flight at a time, in acknowledged order; `false`: in
    /// parallel (the default).
    ordered: bool,
}

/// The channel's ordering as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderingView {
    channel_id: String,
    ordered: bool,
}

/// Turn ordered delivery of a channel's notifications on or off. On: its pending
/// notifications wait behind the oldest one (those already in flight finish); off: the
/// ones waiting are released at once. Extras and partner events are never ordered.
#[utoipa::path(
    post, path = "/admin/channels/{channel_id}/ordering", tag = "Admin",
    security(("admin" = [])),
    params(("channel_id" = String, Path, description = "The channel's id")),
    request_body = OrderingRequest,
    responses(
        (status = 200, description = "The channel's ordering now", body = OrderingView),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    )
)]
pub async fn set_ordering(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(channel_id): PathParam,
    JsonBody(body): JsonBody<OrderingRequest>,
) -> Result<Json<OrderingView>, ApiError> {
    let id = ChannelId::from_raw(channel_id);
    state.store.set_ordered(&id, body.ordered, now_ms()).await?;
    tracing::info!(channel = %id, ordered = body.ordered, "channel ordering set");
    Ok(Json(OrderingView {
        channel_id: id.to_string(),
        ordered: body.ordered,
    }))
}
