//! Members: `GET /api/v1/members/{memberId}` and its accumulators.

use arus_connectors::store::read;
use arus_schemas::events::{CoverageChangeType, Relationship};
use arus_schemas::read_models::{Accumulators, MemberEligibility, accumulator_key};
use axum::Extension;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::access::{Access, may_see_member};
use crate::body::Body;
use crate::error::{ApiError, ErrorBody, member_not_found, unavailable};
use crate::openapi::{Id, ReadErrors};
use crate::routes::{PathId, malformed_query};
use crate::routes::{identifier, now, stored};

/// The member's record in the store, read off the async runtime; `None` for a member it does
/// not know.
pub(crate) async fn member_record(gateway: &Gateway, member_id: &str) -> Result<Option<MemberEligibility>, ApiError> {
    let (store, id) = (gateway.store.clone(), member_id.to_owned());
    tokio::task::spawn_blocking(move || read::member_eligibility(&*store, &id))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())
}

/// Whether the caller may see member `member_id`'s data: 404 `MEMBER_NOT_FOUND` when not, the
/// same as for a member nobody knows, so that a refusal tells nothing. Reads the member's
/// record only when who the caller is does not settle it (a subscriber asking about its
/// family).
pub(crate) async fn check_member(gateway: &Gateway, access: &Access, member_id: &str) -> Result<(), ApiError> {
    if may_see_member(access, member_id, None) {
        return Ok(());
    }
    let record = member_record(gateway, member_id).await?;
    if may_see_member(access, member_id, record.as_ref()) { Ok(()) } else { Err(member_not_found(member_id)) }
}

/// A member's coverage as the store holds it (no personal data: the store holds none).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberCoverage {
    member_id: String,
    /// The family (policy), once the member's record is in.
    family_id: Option<String>,
    relationship: Option<Relationship>,
    subscriber_id: Option<String>,
    #[schema(format = Date)]
    date_of_death: Option<String>,
    /// The coverage changes, oldest first.
    coverage: Vec<CoverageEntry>,
}

/// One change of a member's coverage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CoverageEntry {
    change: CoverageChangeType,
    plan_id: String,
    #[schema(format = Date)]
    effective_date: String,
    #[schema(format = Date)]
    end_date: Option<String>,
    reason: Option<String>,
}

/// A member's relationship, subscriber and coverage changes.
#[utoipa::path(get, path = "/api/v1/members/{memberId}", tag = "members",
    params(("memberId" = Id, Path, example = "M1", description = "the member")),
    responses(
        (status = 200, description = "the member's coverage record", body = Body<MemberCoverage>),
        (status = 404, description = "no such member", body = ErrorBody),
        ReadErrors,
    ))]
pub(crate) async fn member(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(member_id): PathId,
) -> Result<Body<MemberCoverage>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let view = member_record(&gateway, &member_id)
        .await?
        .filter(|view| may_see_member(&access, &member_id, Some(view)))
        .ok_or_else(|| member_not_found(&member_id))?;
    let coverage = view
        .changes
        .iter()
        .map(|c| CoverageEntry {
            change: c.change_type,
            plan_id: c.plan_id.clone(),
            effective_date: c.effective_date.to_string(),
            end_date: c.end_date.map(|d| d.to_string()),
            reason: c.reason.clone(),
        })
        .collect();
    let link = format!("/api/v1/members/{member_id}");
    let data = MemberCoverage {
        member_id: view.member_id,
        family_id: view.created.as_ref().map(|(family, _)| family.clone()),
        relationship: view.created.as_ref().map(|(_, r)| *r),
        subscriber_id: view.subscriber_id,
        date_of_death: view.date_of_death.map(|d| d.to_string()),
        coverage,
    };
    Ok(Body::new(data, link))
}

/// The accumulators query: the year (default: this calendar year).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct YearQuery {
    /// The plan year, YYYY (default: this year).
    #[param(value_type = Option<i32>, minimum = 1900, maximum = 9999)]
    year: Option<String>,
}

/// What a member (and the family) has met in a year, in whole rupiah.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccumulatorsView {
    member_id: String,
    family_id: String,
    /// The plan of the year's latest decided claim.
    plan_id: Option<String>,
    year: i32,
    deductible_met_idr: i64,
    out_of_pocket_met_idr: i64,
    plan_paid_to_date_idr: i64,
    /// Paid out so far (completed payments).
    paid_to_date_idr: i64,
    family: FamilyMet,
    /// Changes so far: a reader can tell a newer record from an older.
    version: i64,
}

/// What the whole family has met.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FamilyMet {
    deductible_met_idr: i64,
    out_of_pocket_met_idr: i64,
}

/// Deductible and out-of-pocket met (the member's and the family's) and what the plan has
/// paid, for a year.
#[utoipa::path(get, path = "/api/v1/members/{memberId}/accumulators", tag = "members",
    params(("memberId" = Id, Path, example = "M1", description = "the member"), YearQuery),
    responses(
        (status = 200, description = "the accumulators", body = Body<AccumulatorsView>),
        (status = 404, description = "no such member", body = ErrorBody),
        ReadErrors,
    ))]
pub(crate) async fn accumulators(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(member_id): PathId,
    query: Result<Query<YearQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Body<AccumulatorsView>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    check_member(&gateway, &access, &member_id).await?;
    let Query(query) = query.map_err(|_| malformed_query())?;
    let year = match query.year {
        None => crate::commands::Checks::at(now(), gateway.plausible).today.year(),
        Some(text) => text
            .parse::<i32>()
            .ok()
            .filter(|y| (1900..=9999).contains(y))
            .ok_or_else(|| ApiError::invalid("year", "must be a year, YYYY"))?,
    };
    let acc: Option<Accumulators> = stored(&gateway, accumulator_key(&member_id, year)).await?;
    let acc = match acc {
        Some(acc) => acc,
        // A known member with no claims decided this year has met nothing.
        None => {
            let known = member_record(&gateway, &member_id).await?.ok_or_else(|| member_not_found(&member_id))?;
            Accumulators {
                member_id: member_id.clone(),
                family_id: known.created.map(|(family, _)| family).unwrap_or_default(),
                year,
                ..Default::default()
            }
        }
    };
    let link = format!("/api/v1/members/{member_id}/accumulators?year={year}");
    let data = AccumulatorsView {
        plan_id: (!acc.plan_id.is_empty()).then_some(acc.plan_id),
        year,
        deductible_met_idr: acc.member.deductible.0,
        out_of_pocket_met_idr: acc.member.oop.0,
        plan_paid_to_date_idr: acc.member.plan_paid.0,
        paid_to_date_idr: acc.paid_idr.0,
        family: FamilyMet { deductible_met_idr: acc.family.deductible.0, out_of_pocket_met_idr: acc.family.oop.0 },
        version: acc.version,
        member_id: acc.member_id,
        family_id: acc.family_id,
    };
    Ok(Body::new(data, link))
}
