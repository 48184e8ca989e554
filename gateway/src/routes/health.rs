//! `GET /health` (the process is up) and `GET /ready` (the store answers).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::Gateway;
use crate::error::*;

pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn ready(State(gateway): State<Gateway>) -> Result<Json<Value>, ApiError> {
    let store = gateway.store.clone();
    let reached = tokio::task::spawn_blocking(move || store.get("ready-probe")).await;
    match reached {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        _ => Err(unavailable()),
    }
}
