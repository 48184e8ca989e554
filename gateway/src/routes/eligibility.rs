//! Eligibility: `GET /api/v1/eligibility`, the partner route `POST
//! /api/partner/v1/eligibility/verify`, and `GET /api/v1/benefits/summary` — one store read of
//! the member's eligibility record each; gRPC calls the same check.

use arus_connectors::store::read;
use arus_schemas::Date;
use arus_schemas::events::{Benefits, EligibilityStatus};
use arus_schemas::read_models::Answer;
use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::access::Access;
use crate::body::Body;
use crate::commands::Invalid;
use crate::error::{ApiError, ErrorBody, member_not_found, unavailable};
use crate::openapi::{Id, IsoDate, ReadErrors};
use crate::routes::malformed_query;
use crate::routes::{date, identifier};

/// An eligibility question: all optional in Rust so that a missing one gets a clear 400.
#[derive(Deserialize, ToSchema, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct EligibilityQuery {
    /// The member.
    #[param(value_type = Id, required = true, example = "M1")]
    #[schema(value_type = Id, required = true)]
    member_id: Option<String>,
    /// The date of service.
    #[param(value_type = IsoDate, required = true)]
    #[schema(value_type = IsoDate, required = true)]
    service_date: Option<String>,
    /// The procedure code or service category asked about.
    #[param(value_type = Id, required = true, example = "80053")]
    #[schema(value_type = Id, required = true)]
    service_type: Option<String>,
}

/// Whether a member is covered for a service on a date, and under what.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EligibilityAnswer {
    member_id: String,
    #[schema(format = Date)]
    service_date: String,
    service_type: String,
    /// Covered for the service on the date.
    eligible: bool,
    /// Why (or why not).
    status: EligibilityStatus,
    /// The plan covered under.
    plan_id: Option<String>,
    /// First day of the unbroken coverage span the date falls in (null for anonymous callers).
    #[schema(format = Date)]
    coverage_start: Option<String>,
    /// Last covered day, when known (null for anonymous callers).
    #[schema(format = Date)]
    coverage_end: Option<String>,
    /// The service needs prior authorization under the plan.
    requires_prior_auth: bool,
    /// Why not eligible, in words (null for anonymous callers).
    reason: Option<String>,
    /// The plan's benefits in force on the date.
    benefits: Option<BenefitsView>,
}

/// A plan's benefits, in whole rupiah and basis points.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenefitsView {
    deductible_individual_idr: i64,
    deductible_family_idr: i64,
    oop_max_individual_idr: i64,
    oop_max_family_idr: i64,
    copay_idr: i64,
    /// In-network coinsurance, basis points (10000 = all of it).
    coinsurance_bp: i32,
    annual_limit_idr: i64,
}

impl From<&Benefits> for BenefitsView {
    fn from(b: &Benefits) -> Self {
        BenefitsView {
            deductible_individual_idr: b.deductible_individual_idr.0,
            deductible_family_idr: b.deductible_family_idr.0,
            oop_max_individual_idr: b.oop_max_individual_idr.0,
            oop_max_family_idr: b.oop_max_family_idr.0,
            copay_idr: b.copay_idr.0,
            coinsurance_bp: b.coinsurance_bp,
            annual_limit_idr: b.annual_limit_idr.0,
        }
    }
}

/// Whether a member is covered for a service on a date (one store read). Public: without a
/// token, covered-or-not and the plan only (no coverage dates, no reason).
#[utoipa::path(get, path = "/api/v1/eligibility", tag = "eligibility", params(EligibilityQuery), responses(
    (status = 200, description = "the answer: eligible, status, plan, coverage span, benefits, prior authorization, reason", body = Body<EligibilityAnswer>),
    (status = 404, description = "no such member", body = ErrorBody),
    ReadErrors,
))]
pub(crate) async fn eligibility(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    query: Result<Query<EligibilityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Body<EligibilityAnswer>, ApiError> {
    let Query(query) = query.map_err(|_| malformed_query())?;
    check(&gateway, query, &access).await
}

/// The eligibility check for partner systems, its parameters in a JSON body.
#[utoipa::path(post, path = "/api/partner/v1/eligibility/verify", tag = "eligibility", request_body = EligibilityQuery, responses(
    (status = 200, description = "the answer, as GET /api/v1/eligibility gives it", body = Body<EligibilityAnswer>),
    (status = 404, description = "no such member", body = ErrorBody),
    ReadErrors,
))]
pub(crate) async fn verify(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    body: Result<Json<EligibilityQuery>, axum::extract::rejection::JsonRejection>,
) -> Result<Body<EligibilityAnswer>, ApiError> {
    let Json(query) =
        body.map_err(|_| ApiError::invalid("body", "must be a JSON object of memberId, serviceDate, serviceType"))?;
    check(&gateway, query, &access).await
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

/// The question checked and answered from the store, for a caller with a token (`named`) or
/// without: anonymous callers learn covered-or-not and the plan, not the member's coverage
/// dates nor the reason (the one place REST and gRPC trim the answer).
pub(crate) async fn check_eligibility(
    gateway: &Gateway,
    member_id: Option<String>,
    service_date: Option<String>,
    service_type: Option<String>,
    named: bool,
) -> Result<Checked, Failure> {
    let required = |field, value: Option<String>| value.ok_or_else(|| crate::commands::invalid(field, "is required"));
    let member_id = crate::commands::id("memberId", &required("memberId", member_id)?)?;
    let service_date = crate::commands::date("serviceDate", &required("serviceDate", service_date)?)?;
    let service_type = crate::commands::id("serviceType", &required("serviceType", service_type)?)?;
    let store = gateway.store.clone();
    let (member, service) = (member_id.clone(), service_type.clone());
    let mut answer = tokio::task::spawn_blocking(move || read::eligibility(&*store, &member, service_date, &service))
        .await
        .map_err(|_| Failure::Unavailable)?
        .map_err(|_| Failure::Unavailable)?;
    if answer.status == EligibilityStatus::UNKNOWN_MEMBER {
        return Err(Failure::MemberNotFound(member_id));
    }
    if !named {
        (answer.coverage_start, answer.coverage_end, answer.reason) = (None, None, None);
    }
    Ok(Checked { member_id, service_date, service_type, answer })
}

pub(crate) async fn check(
    gateway: &Gateway,
    query: EligibilityQuery,
    access: &Access,
) -> Result<Body<EligibilityAnswer>, ApiError> {
    let Checked { member_id, service_date, service_type, answer } =
        check_eligibility(gateway, query.member_id, query.service_date, query.service_type, access.caller().is_some())
            .await?;
    let link =
        format!("/api/v1/eligibility?memberId={member_id}&serviceDate={service_date}&serviceType={service_type}");
    let text = |d: Option<Date>| d.map(|d| d.to_string());
    let data = EligibilityAnswer {
        service_date: service_date.to_string(),
        eligible: answer.eligible,
        status: answer.status,
        coverage_start: text(answer.coverage_start),
        coverage_end: text(answer.coverage_end),
        requires_prior_auth: answer.requires_prior_auth,
        benefits: answer.benefits.as_ref().map(BenefitsView::from),
        plan_id: answer.plan_id,
        reason: answer.reason,
        member_id,
        service_type,
    };
    Ok(Body::new(data, link))
}

/// The benefits summary query.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct SummaryQuery {
    /// The member.
    #[param(value_type = Id, required = true, example = "M1")]
    member_id: Option<String>,
    /// The date.
    #[param(value_type = IsoDate, required = true)]
    as_of: Option<String>,
}

/// The plan and benefits in force for a member on a date.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenefitsSummary {
    member_id: String,
    #[schema(format = Date)]
    as_of: String,
    /// Covered on the date.
    covered: bool,
    status: EligibilityStatus,
    plan_id: Option<String>,
    /// Null for anonymous callers.
    #[schema(format = Date)]
    coverage_start: Option<String>,
    /// Null for anonymous callers.
    #[schema(format = Date)]
    coverage_end: Option<String>,
    benefits: Option<BenefitsView>,
}

/// The plan and benefits in force for a member on a date.
#[utoipa::path(get, path = "/api/v1/benefits/summary", tag = "eligibility", params(SummaryQuery), responses(
    (status = 200, description = "plan, coverage span and benefits", body = Body<BenefitsSummary>),
    (status = 404, description = "no such member", body = ErrorBody),
    ReadErrors,
))]
pub(crate) async fn benefits_summary(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    query: Result<Query<SummaryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Body<BenefitsSummary>, ApiError> {
    let Query(query) = query.map_err(|_| malformed_query())?;
    let member_id = identifier("memberId", query.member_id)?;
    let as_of = date("asOf", query.as_of)?;
    let (member, day, summary) = (Some(member_id.clone()), Some(as_of.to_string()), Some("summary".to_owned()));
    let answer = check_eligibility(&gateway, member, day, summary, access.caller().is_some()).await?.answer;
    let text = |d: Option<Date>| d.map(|d| d.to_string());
    let link = format!("/api/v1/benefits/summary?memberId={member_id}&asOf={as_of}");
    let data = BenefitsSummary {
        member_id,
        as_of: as_of.to_string(),
        covered: answer.status == EligibilityStatus::ACTIVE,
        status: answer.status,
        plan_id: answer.plan_id,
        coverage_start: text(answer.coverage_start),
        coverage_end: text(answer.coverage_end),
        benefits: answer.benefits.as_ref().map(BenefitsView::from),
    };
    Ok(Body::new(data, link))
}
