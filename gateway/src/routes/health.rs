//! `GET /health` (the process is up) and `GET /ready` (the store answers).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Gateway;
use crate::error::{ApiError, ErrorBody, unavailable};

/// How the process is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` (up) or `ready` (the store answers).
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "up", body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The state store answers.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "ready", body = Health),
    (status = 503, description = "the store does not answer", body = ErrorBody),
))]
pub(crate) async fn ready(State(gateway): State<Gateway>) -> Result<Json<Health>, ApiError> {
    let store = gateway.store.clone();
    let reached = tokio::task::spawn_blocking(move || store.get("ready-probe")).await;
    match reached {
        Ok(Ok(_)) => Ok(Json(Health { status: "ready" })),
        _ => Err(unavailable()),
    }
}
