//! `POST /admin/deliveries/recover`: replay what a time window's events missed, e.g. "every
//! delivery of this number that failed between 09:00 and 11:00", once the receiver is back.
//!
//! The body is parsed into a `RecoverFilter` here (times, states, channel, destination), so
//! the store only runs it; a dry run counts what a real one would re-queue.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, JsonBody};
use super::AppState;
use crate::clock::{now_ms, parse_rfc3339};
use crate::domain::{ChannelId, DeliveryState, DestinationId};
use crate::store::RecoverFilter;

/// The longest window one call may cover: a bound on what one transaction re-queues.
const MAX_WINDOW_MS: i64 = 14 * 86_400_000;

/// Body of POST /admin/deliveries/recover: which deliveries to put back in the queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Start of the window (RFC 3339), on the events' arrival time, included.
    since: String,
    /// End of the window (RFC 3339), excluded; default now. At most 14 days after `since`.
    #[serde(default)]
    until: Option<String>,
    /// Only this channel's deliveries.
    #[serde(default)]
    channel: Option<String>,
    /// Only deliveries with an attempt to this destination (its id: 16 hex digits).
    #[serde(default)]
    destination: Option<String>,
    /// Which states to recover: `failed`, `dropped`, `delivered` (default failed and dropped).
    #[serde(default)]
    #[schema(example = json!(["failed", "dropped"]))]
    state: Option<Vec<String>>,
    /// Only count the matching deliveries; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// How many deliveries matched, and how many were re-queued (0 on a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverAnswer {
    matched: u64,
    requeued: u64,
}

/// Re-queue every delivery of the events that arrived in a window (optionally of one
/// channel, one destination, some states), due now with a new age window; they are routed
/// with the configuration of their next attempt. With `dry_run`, only count them.
#[utoipa::path(
    post, path = "/admin/deliveries/recover", tag = "Admin",
    security(("admin" = [])),
    request_body = RecoverRequest,
    responses(
        (status = 200, description = "Matched and re-queued", body = RecoverAnswer),
        (status = 400, description = "Invalid body, times, window, state or destination", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    )
)]
pub async fn recover_deliveries(
    State(state): State<AppState>,
    _: AdminAuth,
    JsonBody(body): JsonBody<RecoverRequest>,
) -> Result<Json<RecoverAnswer>, ApiError> {
    let now = now_ms();
    let filter = parse(body, now)?;
    if let Some(id) = &filter.channel {
        if state.store.channel_ref(id).await?.is_none() {
            return Err(ApiError::NotFound(format!("Channel {id} not found")));
        }
    }
    let recovered = state.store.recover_deliveries(filter.clone(), now).await?;
    tracing::info!(
        matched = recovered.matched,
        requeued = recovered.requeued,
        dry_run = filter.dry_run,
        since = filter.since,
        until = filter.until,
        channel = filter.channel.as_ref().map(ChannelId::as_str),
        destination = filter.destination.as_ref().map(DestinationId::as_str),
        "deliveries recovered by an operator"
    );
    Ok(Json(RecoverAnswer {
        matched: recovered.matched,
        requeued: recovered.requeued,
    }))
}

/// Checks the body and turns it into the store's filter; the first problem is a 400.
fn parse(body: RecoverRequest, now: i64) -> Result<RecoverFilter, ApiError> {
    let since = parse_time("since", &body.since)?;
    let until = match &body.until {
        Some(raw) => parse_time("until", raw)?,
        None => now,
    };
    if until < since {
        return Err(ApiError::BadRequest(format!(
            "Invalid window: until ({}) is before since ({})",
            crate::clock::rfc3339(until),
            crate::clock::rfc3339(since)
        )));
    }
    if until - since > MAX_WINDOW_MS {
        return Err(ApiError::BadRequest(format!(
            "Invalid window: at most 14 days from since to until, got {:.1} days",
            (until - since) as f64 / 86_400_000.0
        )));
    }
    let destination = body
        .destination
        .map(|raw| {
            DestinationId::parse(&raw).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Invalid destination {raw:?}: expected a destination id (16 lowercase hex \
                     digits)"
                ))
            })
        })
        .transpose()?;
    Ok(RecoverFilter {
        since,
        until,
        channel: body.channel.map(ChannelId::from_raw),
        destination,
        states: parse_states(body.state)?,
        dry_run: body.dry_run,
    })
}

fn parse_time(field: &str, raw: &str) -> Result<i64, ApiError> {
    parse_rfc3339(raw).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "Invalid {field} {raw:?}: expected an RFC 3339 time, e.g. 2026-11-25T09:00:00Z"
        ))
    })
}

/// The states named (each once), or failed and dropped; pending is refused (those
/// deliveries are queued already).
fn parse_states(raw: Option<Vec<String>>) -> Result<Vec<DeliveryState>, ApiError> {
    let Some(names) = raw else {
        return Ok(vec![DeliveryState::Failed, DeliveryState::Dropped]);
    };
    if names.is_empty() {
        return Err(ApiError::BadRequest(
            "Invalid state []: name at least one of failed, dropped or delivered".into(),
        ));
    }
    let mut states = Vec::with_capacity(names.len());
    for name in names {
        let parsed = DeliveryState::parse(&name).filter(|s| *s != DeliveryState::Pending);
        let Some(state) = parsed else {
            return Err(ApiError::BadRequest(format!(
                "Invalid state {name:?}: expected failed, dropped or delivered"
            )));
        };
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(states)
}
