//! Analytics from ClickHouse: daily claims by group, a provider's weekly scorecard.

use arus_schemas::Date;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::error::*;
use crate::routes::*;

/// The daily analytics query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DailyQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
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

/// `GET /api/v1/analytics/claims/daily?from=&to=&groupBy=province|provider|plan`: per day of
/// decision and group, claims, lines, billed, allowed, member share and paid, from ClickHouse.
pub(crate) async fn daily_claims(
    State(gateway): State<Gateway>,
    query: Result<Query<DailyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
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
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "date": Date(i32::from(r.day)).to_string(),
                group_by.as_str(): r.key,
                "claims": r.claims,
                "lines": r.lines,
                "billedIdr": r.billed,
                "allowedIdr": r.allowed,
                "memberShareIdr": r.member_share,
                "planPaidIdr": r.paid,
            })
        })
        .collect();
    Ok(Json(json!({
        "data": data,
        "meta": { "traceId": trace_id(), "from": from.to_string(), "to": to.to_string(), "groupBy": group_by },
        "links": { "self": format!("/api/v1/analytics/claims/daily?from={from}&to={to}&groupBy={group_by}") },
    })))
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
    if to < from {
        return Err(ApiError::invalid("to", "is before from"));
    }
    if to.days_since(from) >= MAX_ANALYTICS_DAYS {
        return Err(ApiError::invalid("to", format!("the range is longer than {MAX_ANALYTICS_DAYS} days")));
    }
    Ok((from, to))
}

/// The scorecard query.
#[derive(Deserialize)]
pub(crate) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
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

/// `GET /api/v1/providers/{providerId}/scorecard?from=&to=`: the provider's week by week
/// (weeks from Monday): claims, lines, denied lines and rate, billed, allowed, paid, distinct
/// members; from ClickHouse.
pub(crate) async fn scorecard(
    State(gateway): State<Gateway>,
    Path(provider_id): Path<String>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let provider_id = identifier("providerId", Some(provider_id))?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
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
    let data: Vec<Value> = weeks
        .iter()
        .map(|w| {
            json!({
                "weekStart": Date(i32::from(w.week)).to_string(),
                "claims": w.claims,
                "lines": w.lines,
                "deniedLines": w.denied_lines,
                // Basis points, in integers: 10000 = every line denied.
                "denialRateBp": w.denied_lines * 10_000 / w.lines.max(1),
                "billedIdr": w.billed,
                "allowedIdr": w.allowed,
                "planPaidIdr": w.paid,
                "members": w.members,
            })
        })
        .collect();
    Ok(Json(json!({
        "data": { "providerId": provider_id, "weeks": data },
        "meta": { "traceId": trace_id(), "from": from.to_string(), "to": to.to_string() },
        "links": { "self": format!("/api/v1/providers/{provider_id}/scorecard?from={from}&to={to}") },
    })))
}
