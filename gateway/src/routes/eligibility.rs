//! Eligibility: `GET /api/v1/eligibility`, the partner route `POST
//! /api/partner/v1/eligibility/verify`, and `GET /api/v1/benefits/summary` — one store read of
//! the member's eligibility record each; gRPC calls the same check.

use arus_connectors::store::read;
use arus_schemas::Date;
use arus_schemas::events::EligibilityStatus;
use arus_schemas::read_models::Answer;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::commands::Invalid;
use crate::error::*;
use crate::routes::*;

/// The query of an eligibility check, all optional so that a missing one gets a clear 400.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EligibilityQuery {
    member_id: Option<String>,
    service_date: Option<String>,
    service_type: Option<String>,
}

pub(crate) async fn eligibility(
    State(gateway): State<Gateway>,
    query: Result<Query<EligibilityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    check(&gateway, query).await
}

/// The partner route: the same check, its parameters in a JSON body.
pub(crate) async fn verify(
    State(gateway): State<Gateway>,
    body: Result<Json<EligibilityQuery>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(query) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    check(&gateway, query).await
}

/// Why a question got no answer, whether asked over REST or gRPC.
pub(crate) enum Failure {
    Invalid(Invalid),
    MemberNotFound(String),
    Unavailable,
}

impl From<Invalid> for Failure {
    fn from(invalid: Invalid) -> Self {
        Failure::Invalid(invalid)
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Invalid(invalid) => invalid.into(),
            Failure::MemberNotFound(member_id) => member_not_found(&member_id),
            Failure::Unavailable => unavailable(),
        }
    }
}

/// An eligibility question, checked and answered from the store: the service both REST and
/// gRPC call.
pub(crate) struct Checked {
    pub(crate) member_id: String,
    pub(crate) service_date: Date,
    pub(crate) service_type: String,
    pub(crate) answer: Answer,
}

pub(crate) async fn check_eligibility(
    gateway: &Gateway,
    member_id: Option<String>,
    service_date: Option<String>,
    service_type: Option<String>,
) -> Result<Checked, Failure> {
    let required = |field, value: Option<String>| value.ok_or_else(|| crate::commands::invalid(field, "is required"));
    let member_id = crate::commands::id("memberId", &required("memberId", member_id)?)?;
    let service_date = crate::commands::date("serviceDate", &required("serviceDate", service_date)?)?;
    let service_type = crate::commands::id("serviceType", &required("serviceType", service_type)?)?;
    let store = gateway.store.clone();
    let (member, service) = (member_id.clone(), service_type.clone());
    let answer = tokio::task::spawn_blocking(move || read::eligibility(&*store, &member, service_date, &service))
        .await
        .map_err(|_| Failure::Unavailable)?
        .map_err(|_| Failure::Unavailable)?;
    if answer.status == EligibilityStatus::UNKNOWN_MEMBER {
        return Err(Failure::MemberNotFound(member_id));
    }
    Ok(Checked { member_id, service_date, service_type, answer })
}

pub(crate) async fn check(gateway: &Gateway, query: EligibilityQuery) -> Result<Json<Value>, ApiError> {
    let Checked { member_id, service_date, service_type, answer } =
        check_eligibility(gateway, query.member_id, query.service_date, query.service_type).await?;
    let link =
        format!("/api/v1/eligibility?memberId={member_id}&serviceDate={service_date}&serviceType={service_type}");
    Ok(Json(json!({
        "data": answer_json(&member_id, service_date, &service_type, &answer),
        "meta": { "traceId": trace_id() },
        "links": { "self": link },
    })))
}

pub(crate) fn answer_json(member_id: &str, date: Date, service_type: &str, answer: &Answer) -> Value {
    let text = |d: Option<Date>| d.map(|d| d.to_string());
    json!({
        "memberId": member_id,
        "serviceDate": date.to_string(),
        "serviceType": service_type,
        "eligible": answer.eligible,
        "status": format!("{:?}", answer.status),
        "planId": answer.plan_id,
        "coverageStart": text(answer.coverage_start),
        "coverageEnd": text(answer.coverage_end),
        "requiresPriorAuth": answer.requires_prior_auth,
        "reason": answer.reason,
        "benefits": answer.benefits.as_ref().map(|b| json!({
            "deductibleIndividualIdr": b.deductible_individual_idr.0,
            "deductibleFamilyIdr": b.deductible_family_idr.0,
            "oopMaxIndividualIdr": b.oop_max_individual_idr.0,
            "oopMaxFamilyIdr": b.oop_max_family_idr.0,
            "copayIdr": b.copay_idr.0,
            "coinsuranceBp": b.coinsurance_bp,
            "annualLimitIdr": b.annual_limit_idr.0,
        })),
    })
}

/// The benefits summary query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SummaryQuery {
    member_id: Option<String>,
    as_of: Option<String>,
}

/// `GET /api/v1/benefits/summary?memberId=…&asOf=YYYY-MM-DD`: the plan and benefits in force
/// for the member on the date.
pub(crate) async fn benefits_summary(
    State(gateway): State<Gateway>,
    query: Result<Query<SummaryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let member_id = identifier("memberId", query.member_id)?;
    let as_of = date("asOf", query.as_of)?;
    let Json(answer) = check(
        &gateway,
        EligibilityQuery {
            member_id: Some(member_id.clone()),
            service_date: Some(as_of.to_string()),
            service_type: Some("summary".to_owned()),
        },
    )
    .await?;
    let data = &answer["data"];
    Ok(Json(json!({
        "data": {
            "memberId": member_id,
            "asOf": as_of.to_string(),
            "covered": data["status"] == "ACTIVE",
            "status": data["status"],
            "planId": data["planId"],
            "coverageStart": data["coverageStart"],
            "coverageEnd": data["coverageEnd"],
            "benefits": data["benefits"],
        },
        "meta": { "traceId": trace_id() },
        "links": { "self": format!("/api/v1/benefits/summary?memberId={member_id}&asOf={as_of}") },
    })))
}
