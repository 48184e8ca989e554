//! Authorizations: where one stands, as the adjudication job keeps it.

use arus_schemas::read_models::{AuthView, authorization_key};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Gateway;
use crate::access::Access;
use crate::auth::Role;
use crate::body::Body;
use crate::error::{ApiError, Detail, ErrorBody};
use crate::openapi::{Id, ReadErrors};
use crate::routes::PathId;
use crate::routes::members::check_member;
use crate::routes::{identifier, stored};

/// Where an authorization stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Authorization {
    auth_id: String,
    member_id: String,
    /// `REQUESTED`, `APPROVED` or `DENIED`.
    status: String,
    /// The procedure, once approved.
    procedure_code: Option<String>,
    approved_units: Option<i32>,
    /// Units used by decided claims.
    used_units: i32,
    #[schema(format = Date)]
    valid_from: Option<String>,
    #[schema(format = Date)]
    valid_to: Option<String>,
}

/// Where an authorization stands: requested, approved (units approved and used), denied.
#[utoipa::path(get, path = "/api/v1/authorizations/{authId}", tag = "authorizations",
    params(("authId" = Id, Path, example = "A1", description = "the authorization")),
    responses(
        (status = 200, description = "the authorization", body = Body<Authorization>),
        (status = 404, description = "no such authorization", body = ErrorBody),
        ReadErrors,
    ))]
pub(crate) async fn authorization(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(auth_id): PathId,
) -> Result<Body<Authorization>, ApiError> {
    let auth_id = identifier("authId", Some(auth_id))?;
    let not_found = || ApiError {
        status: StatusCode::NOT_FOUND,
        code: "AUTHORIZATION_NOT_FOUND",
        message: format!("no authorization {auth_id}"),
        details: vec![Detail::field("authId", "unknown")],
    };
    let view: AuthView = stored(&gateway, authorization_key(&auth_id)).await?.ok_or_else(not_found)?;
    // A provider sees the authorizations it requested, a member its own and its family's.
    let visible = match access.caller().map(|c| &c.role) {
        Some(Role::Internal) => true,
        Some(Role::Provider(me)) => view.provider_id.as_deref() == Some(me.as_str()),
        Some(Role::Member(_)) => check_member(&gateway, &access, &view.member_id).await.is_ok(),
        _ => false,
    };
    if !visible {
        return Err(not_found());
    }
    let link = format!("/api/v1/authorizations/{auth_id}");
    let data = Authorization {
        auth_id,
        member_id: view.member_id,
        status: view.status,
        procedure_code: view.procedure_code,
        approved_units: view.approved_units,
        used_units: view.used_units,
        valid_from: view.valid_from.map(|d| d.to_string()),
        valid_to: view.valid_to.map(|d| d.to_string()),
    };
    Ok(Body::new(data, link))
}
