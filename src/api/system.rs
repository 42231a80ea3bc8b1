//! Service endpoints: liveness, readiness and the OpenAPI document.

use axum::extract::State;
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

/// Unknown paths answer in the same JSON shape as every other error.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("Not found".into())
}

/// Known paths with an unknown method, in the same JSON shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
