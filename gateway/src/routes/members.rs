//! Members: `GET /api/v1/members/{memberId}` and its accumulators.

use arus_connectors::store::read;
use arus_schemas::read_models::MemberEligibility;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::error::*;
use crate::routes::*;

/// The member's record in the store, read off the async runtime; `None` for a member it does
/// not know.
pub(crate) async fn member_record(gateway: &Gateway, member_id: &str) -> Result<Option<MemberEligibility>, ApiError> {
    let (store, id) = (gateway.store.clone(), member_id.to_owned());
    tokio::task::spawn_blocking(move || read::member_eligibility(&*store, &id))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())
}

/// A member's coverage as the store holds it: relationship, subscriber, coverage changes (no
/// personal data: the store holds none).
pub(crate) async fn member(
    State(gateway): State<Gateway>,
    Path(member_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let view = member_record(&gateway, &member_id).await?.ok_or_else(|| member_not_found(&member_id))?;
    let coverage: Vec<Value> = view
        .changes
        .iter()
        .map(|c| {
            json!({
                "change": format!("{:?}", c.change_type),
                "planId": c.plan_id,
                "effectiveDate": c.effective_date.to_string(),
                "endDate": c.end_date.map(|d| d.to_string()),
                "reason": c.reason,
            })
        })
        .collect();
    Ok(Json(json!({
        "data": {
            "memberId": view.member_id,
            "familyId": view.created.as_ref().map(|(family, _)| family),
            "relationship": view.created.as_ref().map(|(_, r)| format!("{r:?}")),
            "subscriberId": view.subscriber_id,
            "dateOfDeath": view.date_of_death.map(|d| d.to_string()),
            "coverage": coverage,
        },
        "meta": { "traceId": trace_id() },
        "links": { "self": format!("/api/v1/members/{member_id}") },
    })))
}

/// The accumulators query: the year (default: this calendar year).
#[derive(Deserialize)]
pub(crate) struct YearQuery {
    year: Option<String>,
}

/// `GET /api/v1/members/{memberId}/accumulators?year=YYYY`: deductible and out-of-pocket met,
/// the member's and the family's, and what the plan has paid.
pub(crate) async fn accumulators(
    State(gateway): State<Gateway>,
    Path(member_id): Path<String>,
    query: Result<Query<YearQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let year = match query.year {
        None => now().date().year(),
        Some(text) => text
            .parse::<i32>()
            .ok()
            .filter(|y| (1900..=9999).contains(y))
            .ok_or_else(|| ApiError::invalid("year", "must be a year, YYYY"))?,
    };
    let acc: Option<arus_schemas::read_models::Accumulators> =
        stored(&gateway, arus_schemas::read_models::accumulator_key(&member_id, year)).await?;
    let acc = match acc {
        Some(acc) => acc,
        // A known member with no claims decided this year has met nothing.
        None => {
            let known = member_record(&gateway, &member_id).await?.ok_or_else(|| member_not_found(&member_id))?;
            arus_schemas::read_models::Accumulators {
                member_id: member_id.clone(),
                family_id: known.created.map(|(family, _)| family).unwrap_or_default(),
                year,
                ..Default::default()
            }
        }
    };
    Ok(Json(json!({
        "data": {
            "memberId": acc.member_id,
            "familyId": acc.family_id,
            "planId": (!acc.plan_id.is_empty()).then_some(&acc.plan_id),
            "year": year,
            "deductibleMetIdr": acc.member.deductible.0,
            "outOfPocketMetIdr": acc.member.oop.0,
            "planPaidToDateIdr": acc.member.plan_paid.0,
            "paidToDateIdr": acc.paid_idr.0,
            "family": { "deductibleMetIdr": acc.family.deductible.0, "outOfPocketMetIdr": acc.family.oop.0 },
            "version": acc.version,
        },
        "meta": { "traceId": trace_id() },
        "links": { "self": format!("/api/v1/members/{member_id}/accumulators?year={year}") },
    })))
}
