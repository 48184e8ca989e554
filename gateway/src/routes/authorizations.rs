//! Authorizations: where one stands, as the adjudication job keeps it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::Gateway;
use crate::error::*;
use crate::routes::*;

/// `GET /api/v1/authorizations/{authId}`: where an authorization stands (requested, approved
/// with its units used, denied), as the adjudication job keeps it.
pub(crate) async fn authorization(
    State(gateway): State<Gateway>,
    Path(auth_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let auth_id = identifier("authId", Some(auth_id))?;
    let view: arus_schemas::read_models::AuthView =
        stored(&gateway, arus_schemas::read_models::authorization_key(&auth_id)).await?.ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "AUTHORIZATION_NOT_FOUND",
            message: format!("no authorization {auth_id}"),
            details: vec![json!({ "field": "authId", "issue": "unknown" })],
        })?;
    Ok(Json(json!({
        "data": {
            "authId": auth_id,
            "memberId": view.member_id,
            "status": view.status,
            "procedureCode": view.procedure_code,
            "approvedUnits": view.approved_units,
            "usedUnits": view.used_units,
            "validFrom": view.valid_from.map(|d| d.to_string()),
            "validTo": view.valid_to.map(|d| d.to_string()),
        },
        "meta": { "traceId": trace_id() },
        "links": { "self": format!("/api/v1/authorizations/{auth_id}") },
    })))
}
