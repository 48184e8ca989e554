//! Commands in: members, coverage changes, claims and authorization requests become events on
//! their topics, answered `202 Accepted`; `Idempotency-Key` honoured.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Gateway;
use crate::commands::{CoverageCommand, NewMember};
use crate::error::*;
use crate::routes::members::member_record;
use crate::routes::*;

/// How long a command's answer is kept for retries with its `Idempotency-Key`.
pub(crate) const IDEMPOTENCY_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);

/// The body a command with this `Idempotency-Key` was answered with, if any.
pub(crate) async fn replayed(gateway: &Gateway, key: Option<&str>) -> Result<Option<Response>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let store = gateway.store.clone();
    let store_key = format!("idempotency:{key}");
    let stored = tokio::task::spawn_blocking(move || store.get(&store_key))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    Ok(stored.and_then(|(_, bytes)| serde_json::from_slice::<Value>(&bytes).ok()).map(|body| {
        let mut body = body;
        body["meta"]["traceId"] = trace_id().into();
        body["meta"]["replayed"] = true.into();
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }))
}

/// The `Idempotency-Key` header, validated.
pub(crate) fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| crate::commands::valid_id(k))
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", "must be 1 to 64 letters, digits, '-', '_' or '.'"))?;
    Ok(Some(key.to_owned()))
}

/// Publishes a command's event; `202 Accepted` with its id. With an idempotency key, the
/// answer is kept, and a retry with the same key gets it again without a second event.
pub(crate) async fn publish(
    gateway: &Gateway,
    event: arus_schemas::Event,
    location: String,
    key: Option<String>,
) -> Result<Response, ApiError> {
    let publisher = gateway.publisher.clone().ok_or(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "NO_EVENT_BUS",
        message: "this gateway takes no commands: it was started without an event bus".to_owned(),
        details: Vec::new(),
    })?;
    let event_id = event.event_id().to_owned();
    let member_id = match &event {
        arus_schemas::Event::ClaimSubmitted(c) => c.member_id.clone(),
        arus_schemas::Event::AuthRequested(a) => a.member_id.clone(),
        other => other.key().to_owned(),
    };
    let created = match &event {
        arus_schemas::Event::ClaimSubmitted(c) => Some(("claimId", c.claim_id.clone())),
        arus_schemas::Event::AuthRequested(a) => Some(("authId", a.auth_id.clone())),
        _ => None,
    };
    tokio::task::spawn_blocking(move || publisher.publish(&event)).await.map_err(|_| unavailable())?.map_err(|_| {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "EVENT_BUS_UNAVAILABLE",
            message: "the event could not be published; nothing was recorded, try again".to_owned(),
            details: Vec::new(),
        }
    })?;
    let mut data = json!({ "eventId": event_id, "memberId": member_id });
    if let Some((field, id)) = created {
        data[field] = id.into();
    }
    let body = json!({
        "data": data,
        "meta": { "traceId": trace_id() },
        "links": { "self": location },
    });
    if let Some(key) = key {
        let store = gateway.store.clone();
        let bytes = body.to_string().into_bytes();
        // Kept once, for a day: the first answer for a key stands.
        tokio::task::spawn_blocking(move || {
            store.put_versioned_expiring(&format!("idempotency:{key}"), 1, &bytes, IDEMPOTENCY_KEPT)
        })
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// A command as it came: a retry of one already answered (with that answer), or a new one.
enum Received<T> {
    Retry(Response),
    New(Option<String>, T),
}

/// What every command does first: its `Idempotency-Key` checked, the answer kept for it if it
/// is a retry, its body otherwise.
async fn received<T>(
    gateway: &Gateway,
    headers: &axum::http::HeaderMap,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<Received<T>, ApiError> {
    let key = idempotency_key(headers)?;
    if let Some(answer) = replayed(gateway, key.as_deref()).await? {
        return Ok(Received::Retry(answer));
    }
    let Json(request) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    Ok(Received::New(key, request))
}

/// `POST /api/v1/members`: a `MemberCreated` on `member.events`.
pub(crate) async fn create_member(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: Result<Json<NewMember>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let (key, request) = match received(&gateway, &headers, body).await? {
        Received::Retry(answer) => return Ok(answer),
        Received::New(key, request) => (key, request),
    };
    let event = request.event(now())?;
    let location = format!("/api/v1/members/{}", event.member_id);
    publish(&gateway, arus_schemas::Event::MemberCreated(event), location, key).await
}

/// `POST /api/v1/members/{memberId}/coverage`: a `CoverageChanged` on `member.events`.
pub(crate) async fn change_coverage(
    State(gateway): State<Gateway>,
    Path(member_id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<CoverageCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let (key, request) = match received(&gateway, &headers, body).await? {
        Received::Retry(answer) => return Ok(answer),
        Received::New(key, request) => (key, request),
    };
    let known =
        member_record(&gateway, &member_id).await?.and_then(|view| Some((view.created?.0, view.subscriber_id?)));
    let event = request.event(&member_id, known, now())?;
    publish(&gateway, arus_schemas::Event::CoverageChanged(event), format!("/api/v1/members/{member_id}"), key).await
}

/// `POST /api/v1/claims` (and the partner route): a `ClaimSubmitted` on `claims.events`, 202
/// with the new claim's id; the adjudication job decides it.
pub(crate) async fn submit_claim(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: Result<Json<crate::commands::ClaimCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let (key, request) = match received(&gateway, &headers, body).await? {
        Received::Retry(answer) => return Ok(answer),
        Received::New(key, request) => (key, request),
    };
    let event = request.event(now())?;
    let location = format!("/api/v1/claims/{}", event.claim_id);
    publish(&gateway, arus_schemas::Event::ClaimSubmitted(event), location, key).await
}

/// `POST /api/v1/authorizations`: an `AuthRequested` on `auth.events`, 202 with its id.
pub(crate) async fn request_authorization(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: Result<Json<crate::commands::AuthorizationCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let (key, request) = match received(&gateway, &headers, body).await? {
        Received::Retry(answer) => return Ok(answer),
        Received::New(key, request) => (key, request),
    };
    let event = request.event(now())?;
    let location = format!("/api/v1/authorizations/{}", event.auth_id);
    publish(&gateway, arus_schemas::Event::AuthRequested(event), location, key).await
}
