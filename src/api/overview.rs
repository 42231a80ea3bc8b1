//! `GET /admin/overview`: the figures of the console's first page in one read, polled every
//! couple of seconds; the page turns the counters into rates.
//!
//! It reads what `/metrics` reads (the counters, the pending count, the destinations'
//! health and backlog), nothing more, so polling it costs no table scan of its own.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::destinations::{unhealthy, DestinationView};
use super::error::{ApiError, ErrorBody};
use super::extract::AdminAuth;
use super::AppState;
use crate::clock::{now_ms, rfc3339};

/// This node's counters since it started, and the state of the queue now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// When the figures were read (rates are differences between two reads).
    at: String,
    /// The same instant, ms since the epoch, for the page's arithmetic.
    at_ms: i64,
    /// Events stored since this node started.
    events_ingested: u64,
    /// Attempts made since this node started.
    attempts: u64,
    /// Deliveries answered 200 since this node started.
    delivered: u64,
    /// Deliveries given up since this node started.
    failed: u64,
    /// Deliveries without a route since this node started.
    dropped: u64,
    /// Deliveries pending now (due or scheduled), all nodes.
    backlog: u64,
    /// The destinations degraded or paused now.
    unhealthy_destinations: Vec<DestinationView>,
}

/// The console's overview: counters, backlog and the destinations that need attention.
#[utoipa::path(
    get, path = "/admin/overview", tag = "Admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The figures", body = Overview),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn overview(
    State(state): State<AppState>,
    _: AdminAuth,
) -> Result<Json<Overview>, ApiError> {
    let totals = state.metrics.totals();
    let pending = state.backlog.groups(state.store.as_ref()).await?;
    let backlog = super::backlog::depth(&pending);
    let at_ms = now_ms();
    Ok(Json(Overview {
        at: rfc3339(at_ms),
        at_ms,
        events_ingested: totals.events_ingested,
        attempts: totals.attempts,
        delivered: totals.delivered,
        failed: totals.failed,
        dropped: totals.dropped,
        backlog,
        unhealthy_destinations: unhealthy(&state, &pending).await?,
    }))
}
