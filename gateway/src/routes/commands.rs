//! Commands in: members, coverage changes, claims and authorization requests become events on
//! their topics, answered `202 Accepted`; `Idempotency-Key` honoured.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::Gateway;
use crate::access::{Access, may_submit_for};
use crate::body::{Accepted, Body};
use crate::commands::{
    AuthorizationCommand, Checks, ClaimCommand, CoverageCommand, NewMember, requested_after_birth, served_after_birth,
};
use crate::error::{ApiError, Detail, body_refused, trace_id, unavailable};
use crate::idempotency;
use crate::openapi::{CommandErrors, Id, IdempotencyKey};
use crate::routes::PathId;
use crate::routes::members::member_record;
use crate::routes::{identifier, now};

/// A command accepted: its event published.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandAccepted {
    /// The event's id.
    event_id: String,
    /// The member the event is about.
    member_id: String,
    /// A claim submitted: its new id.
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_id: Option<String>,
    /// An authorization requested: its new id.
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_id: Option<String>,
}

/// A command's body read: its JSON (`Content-Type: application/json`) into `T`; the errors
/// name the field, never the value sent.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let json =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
            |v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            },
        );
    if !json {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "UNSUPPORTED_MEDIA_TYPE",
            message: "a command's body is JSON: send Content-Type: application/json".to_owned(),
            details: vec![Detail::field("Content-Type", "must be application/json")],
        });
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        match e.inner().classify() {
            serde_json::error::Category::Data if path != "." => {
                ApiError::invalid(&path, "has the wrong type, or a value out of range")
            }
            serde_json::error::Category::Data => ApiError::invalid("body", "must be a JSON object"),
            _ => ApiError::invalid("body", "is not JSON"),
        }
    })?;
    // Nothing after the value but white space.
    reader.end().map_err(|_| ApiError::invalid("body", "is not JSON"))?;
    Ok(value)
}

/// Publishes a command's event; `202 Accepted` with its id. With an `Idempotency-Key`, a
/// retry of the same request gets the first answer again and publishes nothing (see
/// [`idempotency`]).
async fn publish(
    gateway: &Gateway,
    event: arus_schemas::Event,
    location: String,
    key: Option<idempotency::Key>,
) -> Result<Response, ApiError> {
    let publisher = gateway.publisher.clone().ok_or(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "NO_EVENT_BUS",
        message: "this gateway takes no commands: it was started without an event bus".to_owned(),
        details: Vec::new(),
    })?;
    let claimed = match key {
        None => None,
        Some(key) => match idempotency::claim(gateway, key).await? {
            idempotency::Claim::Answered(mut answer) => {
                answer["meta"]["traceId"] = trace_id().into();
                answer["meta"]["replayed"] = true.into();
                return Ok((StatusCode::ACCEPTED, Json(answer)).into_response());
            }
            idempotency::Claim::New(key, version) => Some((key, version)),
        },
    };
    let event_id = event.event_id().to_owned();
    let member_id = match &event {
        arus_schemas::Event::ClaimSubmitted(c) => c.member_id.clone(),
        arus_schemas::Event::AuthRequested(a) => a.member_id.clone(),
        other => other.key().into_owned(),
    };
    let (claim_id, auth_id) = match &event {
        arus_schemas::Event::ClaimSubmitted(c) => (Some(c.claim_id.clone()), None),
        arus_schemas::Event::AuthRequested(a) => (None, Some(a.auth_id.clone())),
        _ => (None, None),
    };
    let published = tokio::task::spawn_blocking(move || publisher.publish(&event)).await;
    if !matches!(published, Ok(Ok(()))) {
        if let Some((key, version)) = &claimed {
            idempotency::release(gateway, key, *version).await;
        }
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "EVENT_BUS_UNAVAILABLE",
            message: "the event could not be published; nothing was recorded, try again".to_owned(),
            details: Vec::new(),
        });
    }
    let body = Body::new(CommandAccepted { event_id, member_id, claim_id, auth_id }, location);
    if let Some((key, version)) = &claimed {
        let answer = serde_json::to_value(&body).map_err(|_| unavailable())?;
        idempotency::answered(gateway, key, *version, answer).await?;
    }
    Ok(Accepted(body).into_response())
}

/// What every command does first: its `Idempotency-Key` checked and bound to the caller, the
/// route and the request, its body read.
fn received<T: DeserializeOwned>(
    route: &str,
    access: &Access,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Option<idempotency::Key>, T), ApiError> {
    let body = body.map_err(|e| body_refused(e.status()))?;
    let scope = format!("{}:{route}", access.client().unwrap_or("-"));
    let key = idempotency::key(headers, &scope, uri.path(), &body)?;
    Ok((key, parse(headers, &body)?))
}

/// Record a new member: a `MemberCreated` on `member.events`.
#[utoipa::path(post, path = "/api/v1/members", tag = "commands", params(IdempotencyKey), request_body = NewMember,
    responses(
        (status = 202, description = "published: the event's id and the member's", body = Body<CommandAccepted>),
        CommandErrors,
    ))]
pub(crate) async fn create_member(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (key, request): (_, NewMember) = received("members", &access, &uri, &headers, body)?;
    let event = request.event(&Checks::at(now(), gateway.plausible))?;
    // A member id the store knows already is another member's: 409, nothing published.
    if member_record(&gateway, &event.member_id).await?.is_some_and(|record| record.created.is_some()) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "MEMBER_EXISTS",
            message: "a member with this id exists; a member is recorded once".to_owned(),
            details: vec![Detail::field("memberId", "exists")],
        });
    }
    // A NIK on record is another member's (found by its keyed digest: the store holds no NIK).
    if let Some(key) = &gateway.nik_key {
        let store_key = arus_schemas::read_models::nik_key(&arus_schemas::nik::nik_digest(key, &event.nik));
        let store = gateway.store.clone();
        let holder = tokio::task::spawn_blocking(move || store.get(&store_key))
            .await
            .map_err(|_| unavailable())?
            .map_err(|_| unavailable())?;
        if holder.is_some_and(|(_, member)| member != event.member_id.as_bytes()) {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "NIK_EXISTS",
                message: "a member with this NIK is on record; a person is recorded once".to_owned(),
                details: vec![Detail::field("nik", "on record")],
            });
        }
    }
    let location = format!("/api/v1/members/{}", event.member_id);
    publish(&gateway, arus_schemas::Event::MemberCreated(event), location, key).await
}

/// Change a member's coverage: a `CoverageChanged` on `member.events`.
#[utoipa::path(post, path = "/api/v1/members/{memberId}/coverage", tag = "commands",
    params(("memberId" = Id, Path, example = "M1", description = "the member"), IdempotencyKey), request_body = CoverageCommand,
    responses(
        (status = 202, description = "published: the event's id and the member's", body = Body<CommandAccepted>),
        CommandErrors,
    ))]
pub(crate) async fn change_coverage(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(member_id): PathId,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let (key, request): (_, CoverageCommand) = received("coverage", &access, &uri, &headers, body)?;
    let known =
        member_record(&gateway, &member_id).await?.and_then(|view| Some((view.created?.0, view.subscriber_id?)));
    let event = request.event(&member_id, known, &Checks::at(now(), gateway.plausible))?;
    publish(&gateway, arus_schemas::Event::CoverageChanged(event), format!("/api/v1/members/{member_id}"), key).await
}

/// Submit a claim: a `ClaimSubmitted` on `claims.events`, decided by the adjudication job.
#[utoipa::path(post, path = "/api/v1/claims", tag = "commands", params(IdempotencyKey), request_body = ClaimCommand,
    responses(
        (status = 202, description = "published: the event's id, the member's and the new claim's", body = Body<CommandAccepted>),
        CommandErrors,
    ))]
pub(crate) async fn submit_claim(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (key, request): (_, ClaimCommand) = received("claims", &access, &uri, &headers, body)?;
    let event = request.event(&Checks::at(now(), gateway.plausible))?;
    may_submit_for(&access, &event.provider_id)?;
    // A member on record was born on a known day: nothing is served before it. (A store out
    // of reach skips the check: submissions do not wait on the store.)
    if let Some(born) = date_of_birth(&gateway, &event.member_id).await {
        served_after_birth(&event, born)?;
    }
    let location = format!("/api/v1/claims/{}", event.claim_id);
    publish(&gateway, arus_schemas::Event::ClaimSubmitted(event), location, key).await
}

/// Submit a claim, for partner systems (as `POST /api/v1/claims`).
#[utoipa::path(post, path = "/api/partner/v1/claims/submit", tag = "commands", params(IdempotencyKey), request_body = ClaimCommand,
    responses(
        (status = 202, description = "published: the event's id, the member's and the new claim's", body = Body<CommandAccepted>),
        CommandErrors,
    ))]
pub(crate) async fn submit_partner_claim(
    state: State<Gateway>,
    access: Extension<Access>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    submit_claim(state, access, uri, headers, body).await
}

/// The member's date of birth, when the store has the member's record and is in reach.
async fn date_of_birth(gateway: &Gateway, member_id: &str) -> Option<arus_schemas::Date> {
    member_record(gateway, member_id).await.ok().flatten()?.date_of_birth
}

/// Request a prior authorization: an `AuthRequested` on `auth.events`.
#[utoipa::path(post, path = "/api/v1/authorizations", tag = "commands", params(IdempotencyKey), request_body = AuthorizationCommand,
    responses(
        (status = 202, description = "published: the event's id, the member's and the new authorization's", body = Body<CommandAccepted>),
        CommandErrors,
    ))]
pub(crate) async fn request_authorization(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (key, request): (_, AuthorizationCommand) = received("authorizations", &access, &uri, &headers, body)?;
    let event = request.event(&Checks::at(now(), gateway.plausible))?;
    may_submit_for(&access, &event.provider_id)?;
    if let Some(born) = date_of_birth(&gateway, &event.member_id).await {
        requested_after_birth(&event, born)?;
    }
    let location = format!("/api/v1/authorizations/{}", event.auth_id);
    publish(&gateway, arus_schemas::Event::AuthRequested(event), location, key).await
}
