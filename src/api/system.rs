//! Service endpoints: liveness, readiness and the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;

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

/// Readiness: 200 when the store answers, 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "Service",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is not reachable", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await.map_err(ApiError::Unavailable)?;
    Ok(Json(Health { status: "ok" }))
}

/// Prometheus metrics: events, attempts by outcome, deliveries by final state, queue
/// depth, attempt latency.
#[utoipa::path(get, path = "/metrics", tag = "Service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    // One backlog read for the depth and the per-destination series.
    let pending = state.backlog.groups(state.store.as_ref()).await?;
    let depth = super::backlog::depth(&pending);
    let mut text = state.metrics.render(
        depth,
        state.store.write_stats(),
        state.store.config_listener_up(),
    );
    super::destinations::render_metrics(&mut text, &state, &pending).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// Unknown paths answer in the same JSON shape as every other error.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("Not found".into())
}

/// Known paths with an unknown method, in the same JSON shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
