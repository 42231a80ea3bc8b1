//! Service endpoints: liveness, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::metrics::{Format, Scrape};
use crate::store::{within, ANSWER_WITHIN};

/// Status of a health check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    status: &'static str,
}

/// Liveness: 200 as soon as the server serves.
#[utoipa::path(get, path = "/health", tag = "Service",
    responses((status = 200, description = "Serving", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: 200 when the store accepts a write within a few seconds
/// ([`ANSWER_WITHIN`]), 503 otherwise (unreachable, hanging, full or read-only); a failure
/// for an unavailable database also pauses the engine until its probe finds it back.
#[utoipa::path(get, path = "/ready", tag = "Service",
    responses(
        (status = 200, description = "Ready: the database accepts writes", body = Health),
        (status = 503, description = "The database is unreachable, does not answer within 5 s, or cannot write; with Retry-After", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if let Err(error) = within(ANSWER_WITHIN, state.store.ping()).await {
        state.outage.failed(&error);
        return Err(ApiError::Unavailable(error));
    }
    Ok(Json(Health { status: "ok" }))
}

/// Prometheus metrics: events, attempts by outcome, deliveries by final state, queue
/// depth, attempt latency, per destination; OpenMetrics text unless `Accept` prefers the
/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "Service",
    responses((status = 200, description = "OpenMetrics text (or the Prometheus text format 0.0.4 when `Accept` prefers `text/plain`)", content_type = "application/openmetrics-text", body = String)))]
///
/// While the database is unavailable (or its backlog read does not answer within
/// [`ANSWER_WITHIN`]), the series read from it (queue depth, per destination) are left out
/// and the rest, `switchboard_store_up 0` among them, is still served.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let scrape = read_scrape(&state).await?;
    let text = state
        .metrics
        .encode(format, scrape)
        .map_err(ApiError::Encoding)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text))
}

/// What `/metrics` reads at scrape time: one backlog read for the depth and the
/// per-destination series, the store's write counters and its listener.
async fn read_scrape(state: &AppState) -> Result<Scrape, ApiError> {
    let mut scrape = Scrape {
        writes: state.store.write_stats(),
        listener_up: state.store.config_listener_up(),
        ..Scrape::default()
    };
    let read = within(ANSWER_WITHIN, state.backlog.groups(state.store.as_ref())).await;
    let pending = match read {
        Ok(pending) => pending,
        Err(error) if error.is_unavailable() => return Ok(scrape),
        Err(error) => return Err(error.into()),
    };
    scrape.queue_depth = Some(super::backlog::depth(&pending));
    let rows = super::destinations::metrics_rows(state, &pending, &mut scrape);
    let read = tokio::time::timeout(ANSWER_WITHIN, rows).await;
    match read {
        Ok(Err(error)) if !matches!(error, ApiError::Unavailable(_)) => Err(error),
        // Read; or the database went meanwhile: served without the rest.
        _ => Ok(scrape),
    }
}

/// Unknown paths answer in the same JSON shape as every other error.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("Not found".into())
}

/// Known paths with an unknown method, in the same JSON shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
