//! Analytics from ClickHouse: daily claims by group, a provider's weekly scorecard.

use arus_schemas::Date;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::access::{Access, is_provider_or_internal, not_yours};
use crate::body::Body;
use crate::commands::Invalid;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{Id, IsoDate, ReadErrors};
use crate::routes::{PathId, malformed_query};
use crate::routes::{date, identifier};

/// The daily analytics query.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct DailyQuery {
    /// The first day.
    #[param(value_type = IsoDate, required = true)]
    from: Option<String>,
    /// The last day: on or after `from`, at most 366 days after it.
    #[param(value_type = IsoDate, required = true)]
    to: Option<String>,
    /// What a row is per, besides the day (default: provider).
    #[param(value_type = Option<GroupBy>)]
    group_by: Option<String>,
}

/// What the daily rows are grouped by.
#[derive(ToSchema)]
#[allow(non_camel_case_types, dead_code)]
pub(crate) enum GroupBy {
    province,
    provider,
    plan,
}

/// A day of decisions for one group; amounts in whole rupiah. The group's field is the one
/// `groupBy` names.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DailyClaims {
    #[schema(format = Date)]
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    province: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<String>,
    claims: u64,
    lines: u64,
    billed_idr: i64,
    allowed_idr: i64,
    member_share_idr: i64,
    plan_paid_idr: i64,
}

/// A row of the daily claims query.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub(crate) struct DailyRow {
    day: u16,
    key: String,
    claims: u64,
    lines: u64,
    billed: i64,
    allowed: i64,
    member_share: i64,
    paid: i64,
}

/// Longest range one query may cover.
pub(crate) const MAX_ANALYTICS_DAYS: i32 = 366;

/// Per day of decision and province, provider or plan: claims, lines, billed, allowed, member
/// share, paid (ClickHouse).
#[utoipa::path(get, path = "/api/v1/analytics/claims/daily", tag = "analytics", params(DailyQuery), responses(
    (status = 200, description = "rows by day and group", body = Body<Vec<DailyClaims>>),
    (status = 422, description = "the range ends before it starts, or is longer than 366 days", body = ErrorBody),
    ReadErrors,
))]
pub(crate) async fn daily_claims(
    State(gateway): State<Gateway>,
    query: Result<Query<DailyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Body<Vec<DailyClaims>>, ApiError> {
    let Query(query) = query.map_err(|_| malformed_query())?;
    let (from, to) = date_range(query.from, query.to)?;
    let group_by = query.group_by.unwrap_or_else(|| "provider".to_owned());
    // The grouping picks one of these fixed texts: nothing from the request enters the SQL.
    let (key, join) = match group_by.as_str() {
        "provider" => ("provider_id", ""),
        "plan" => ("plan_id", ""),
        "province" => (
            "province_code",
            "ANY LEFT JOIN (SELECT provider_id, province_code FROM providers FINAL) USING provider_id",
        ),
        _ => return Err(ApiError::invalid("groupBy", "must be province, provider or plan")),
    };
    let client = gateway.clickhouse.clone().ok_or_else(analytics_unavailable)?;
    let sql = format!(
        "SELECT decided_date AS day, {key} AS key, uniqExact(claim_id) AS claims, count() AS lines, \
         sum(billed_idr) AS billed, sum(allowed_idr) AS allowed, \
         sum(deductible_idr + copay_idr + coinsurance_idr) AS member_share, sum(plan_paid_idr) AS paid \
         FROM claim_lines FINAL {join} \
         WHERE decided_date >= toDate(?) AND decided_date <= toDate(?) \
         GROUP BY day, key ORDER BY day, key"
    );
    let rows: Vec<DailyRow> =
        client.query(&sql).bind(from.to_string()).bind(to.to_string()).fetch_all().await.map_err(|_| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "ANALYTICS_UNAVAILABLE",
            message: "ClickHouse did not answer; try again shortly".to_owned(),
            details: Vec::new(),
        })?;
    let data = rows
        .into_iter()
        .map(|r| {
            let key = |group: &str| (group_by == group).then(|| r.key.clone());
            DailyClaims {
                date: Date(i32::from(r.day)).to_string(),
                province: key("province"),
                provider: key("provider"),
                plan: key("plan"),
                claims: r.claims,
                lines: r.lines,
                billed_idr: r.billed,
                allowed_idr: r.allowed,
                member_share_idr: r.member_share,
                plan_paid_idr: r.paid,
            }
        })
        .collect();
    let link = format!("/api/v1/analytics/claims/daily?from={from}&to={to}&groupBy={group_by}");
    let mut body = Body::new(data, link);
    body.meta.from = Some(from.to_string());
    body.meta.to = Some(to.to_string());
    body.meta.group_by = Some(group_by);
    Ok(body)
}

pub(crate) fn analytics_unavailable() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "ANALYTICS_UNAVAILABLE",
        message: "ClickHouse does not answer, or this gateway has none (start it with --clickhouse)".to_owned(),
        details: Vec::new(),
    }
}

/// The date range of an analytics query: both given, in order, at most a year and a day.
pub(crate) fn date_range(from: Option<String>, to: Option<String>) -> Result<(Date, Date), ApiError> {
    let from = date("from", from)?;
    let to = date("to", to)?;
    // Two well-formed dates that do not make a range: 422, as for commands.
    let inconsistent = |issue: String| Invalid { field: "to", issue, semantic: true };
    if to < from {
        return Err(inconsistent("is before from".to_owned()).into());
    }
    if to.days_since(from) >= MAX_ANALYTICS_DAYS {
        return Err(inconsistent(format!("the range is longer than {MAX_ANALYTICS_DAYS} days")).into());
    }
    Ok((from, to))
}

/// The scorecard query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// The first day.
    #[param(value_type = IsoDate, required = true)]
    from: Option<String>,
    /// The last day: on or after `from`, at most 366 days after it.
    #[param(value_type = IsoDate, required = true)]
    to: Option<String>,
}

/// A provider's week (from Monday); amounts in whole rupiah.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScorecardWeek {
    #[schema(format = Date)]
    week_start: String,
    claims: u64,
    lines: u64,
    denied_lines: u64,
    /// Denied lines in basis points of all lines (10000: every line denied).
    denial_rate_bp: u64,
    billed_idr: i64,
    allowed_idr: i64,
    plan_paid_idr: i64,
    /// Distinct members.
    members: u64,
}

/// A provider's weeks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Scorecard {
    provider_id: String,
    weeks: Vec<ScorecardWeek>,
}

/// A week of a provider's scorecard.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub(crate) struct WeekRow {
    week: u16,
    claims: u64,
    lines: u64,
    denied_lines: u64,
    billed: i64,
    allowed: i64,
    paid: i64,
    members: u64,
}

/// A provider week by week (from Monday): claims, lines, denials (rate in basis points),
/// billed, allowed, paid, distinct members (ClickHouse).
#[utoipa::path(get, path = "/api/v1/providers/{providerId}/scorecard", tag = "analytics",
    params(("providerId" = Id, Path, example = "P1", description = "the provider"), RangeQuery),
    responses(
        (status = 200, description = "the weeks", body = Body<Scorecard>),
        (status = 403, description = "another provider's scorecard", body = ErrorBody),
        (status = 422, description = "the range ends before it starts, or is longer than 366 days", body = ErrorBody),
        ReadErrors,
    ))]
pub(crate) async fn scorecard(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(provider_id): PathId,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Body<Scorecard>, ApiError> {
    let provider_id = identifier("providerId", Some(provider_id))?;
    if !is_provider_or_internal(&access, &provider_id) {
        return Err(not_yours("provider's scorecard"));
    }
    let Query(query) = query.map_err(|_| malformed_query())?;
    let (from, to) = date_range(query.from, query.to)?;
    let client = gateway.clickhouse.clone().ok_or_else(analytics_unavailable)?;
    let weeks: Vec<WeekRow> = client
        .query(
            "SELECT toMonday(decided_date) AS week, uniqExact(claim_id) AS claims, count() AS lines, \
             countIf(allowed_idr = 0) AS denied_lines, sum(billed_idr) AS billed, sum(allowed_idr) AS allowed, \
             sum(plan_paid_idr) AS paid, uniqExact(member_id) AS members \
             FROM claim_lines_by_provider FINAL \
             WHERE provider_id = ? AND decided_date >= toDate(?) AND decided_date <= toDate(?) \
             GROUP BY week ORDER BY week",
        )
        .bind(provider_id.as_str())
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all()
        .await
        .map_err(|_| analytics_unavailable())?;
    let weeks = weeks
        .iter()
        .map(|w| ScorecardWeek {
            week_start: Date(i32::from(w.week)).to_string(),
            claims: w.claims,
            lines: w.lines,
            denied_lines: w.denied_lines,
            // Basis points, in integers: 10000 = every line denied.
            denial_rate_bp: w.denied_lines * 10_000 / w.lines.max(1),
            billed_idr: w.billed,
            allowed_idr: w.allowed,
            plan_paid_idr: w.paid,
            members: w.members,
        })
        .collect();
    let link = format!("/api/v1/providers/{provider_id}/scorecard?from={from}&to={to}");
    let mut body = Body::new(Scorecard { provider_id, weeks }, link);
    body.meta.from = Some(from.to_string());
    body.meta.to = Some(to.to_string());
    Ok(body)
}
