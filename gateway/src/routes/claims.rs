//! Claims: a decision and where its payment is (`GET /api/v1/claims/{claimId}`), and a
//! member's history from ClickHouse.

use arus_connectors::store::read;
use arus_schemas::Date;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::error::*;
use crate::routes::analytics::analytics_unavailable;
use crate::routes::*;

/// `GET /api/v1/claims/{claimId}`: the claim's decision, explained, and where its payment is.
pub(crate) async fn claim(
    State(gateway): State<Gateway>,
    Path(claim_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let claim_id = identifier("claimId", Some(claim_id))?;
    let store = gateway.store.clone();
    let id = claim_id.clone();
    let view = tokio::task::spawn_blocking(move || read::claim(&*store, &id))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "CLAIM_NOT_FOUND",
            message: format!("no decided claim {claim_id}"),
            details: vec![json!({ "field": "claimId", "issue": "unknown or not decided yet" })],
        })?;
    let a = &view.adjudication;
    let lines: Vec<Value> = a
        .lines
        .iter()
        .map(|l| {
            json!({
                "lineNumber": l.line_number,
                "billedIdr": l.billed_idr.0,
                "allowedIdr": l.allowed_idr.0,
                "deductibleIdr": l.deductible_idr.0,
                "copayIdr": l.copay_idr.0,
                "coinsuranceIdr": l.coinsurance_idr.0,
                "planPaidIdr": l.plan_paid_idr.0,
                "adjustments": l.adjustments.iter().map(|x| json!({
                    "group": format!("{:?}", x.group),
                    "carc": x.carc,
                    "amountIdr": x.amount_idr.0,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "data": {
            "claimId": a.claim_id,
            "memberId": a.member_id,
            "providerId": a.provider_id,
            "status": format!("{:?}", a.status),
            "state": view.state,
            "planId": a.plan_id,
            "planVersion": a.plan_version,
            "authId": a.auth_id,
            "totalBilledIdr": a.total_billed_idr.0,
            "totalAllowedIdr": a.total_allowed_idr.0,
            "totalMemberShareIdr": a.total_member_share_idr.0,
            "totalPlanPaidIdr": a.total_plan_paid_idr.0,
            "lines": lines,
            "explanation": a.trace,
            "paymentId": view.payment_id,
            "reversal": view.reversal,
        },
        "meta": { "traceId": trace_id() },
        "links": { "self": format!("/api/v1/claims/{claim_id}") },
    })))
}

/// A member's claims query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberClaimsQuery {
    status: Option<String>,
    date_from: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The condition a `status` filter puts on a claim's lines: the seed's `pending`, `approved`
/// (partly approved included), `denied` and `paid` (a completed payment), or one decision
/// status as the events write it (`APPROVED`, `PARTIALLY_APPROVED`, `DENIED`, `PENDED`).
fn status_condition(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" | "PENDED" => "AND status = 'PENDED'",
        "approved" => "AND status IN ('APPROVED', 'PARTIALLY_APPROVED')",
        "APPROVED" => "AND status = 'APPROVED'",
        "PARTIALLY_APPROVED" => "AND status = 'PARTIALLY_APPROVED'",
        "denied" | "DENIED" => "AND status = 'DENIED'",
        "paid" => "AND claim_id IN (SELECT claim_id FROM payments FINAL WHERE kind = 'COMPLETED')",
        _ => return None,
    })
}

/// Where a page of a member's claims ends, as the next page's `cursor`: the last claim's
/// decision date and id (`YYYY-MM-DD~<claimId>`; the claims are newest first).
fn cursor_of(decided: Date, claim_id: &str) -> String {
    format!("{decided}~{claim_id}")
}

/// A `cursor` read back: the decision date and claim id the next page comes after.
fn parse_cursor(text: &str) -> Result<(Date, String), ApiError> {
    let bad = || ApiError::invalid("cursor", "is not a cursor this route gave (links.next)");
    let (date, claim_id) = text.split_once('~').ok_or_else(bad)?;
    let date = crate::commands::date("cursor", date).map_err(|_| bad())?;
    let claim_id = identifier("cursor", Some(claim_id.to_owned())).map_err(|_| bad())?;
    Ok((date, claim_id))
}

/// A claim in a member's history.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub(crate) struct HistoryRow {
    claim_id: String,
    decided: u16,
    provider: String,
    claim_status: String,
    lines: u64,
    billed: i64,
    member_share: i64,
    paid: i64,
}

/// `GET /api/v1/members/{memberId}/claims?status=&dateFrom=&limit=`: the member's decided
/// claims, newest first, from ClickHouse (history beyond what Redis keeps).
pub(crate) async fn member_claims(
    State(gateway): State<Gateway>,
    Path(member_id): Path<String>,
    query: Result<Query<MemberClaimsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let status = match query.status.as_deref() {
        None => "",
        Some(text) => status_condition(text)
            .ok_or_else(|| ApiError::invalid("status", "must be pending, approved, denied or paid"))?,
    };
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let date_from = match &query.date_from {
        Some(text) => crate::commands::date("dateFrom", text)?,
        None => Date(0),
    };
    let limit: u32 = match query.limit {
        None => 100,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=1_000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 1000"))?,
    };
    let client = gateway.clickhouse.clone().ok_or_else(analytics_unavailable)?;
    // Fixed texts only: the status condition one of `status_condition`'s, the values bound.
    // (The aggregates' aliases differ from the columns': ClickHouse would read an alias in
    // WHERE.) A page after a cursor starts past the claim it names, newest first.
    let sql = format!(
        "SELECT claim_id, any(decided_date) AS decided, any(provider_id) AS provider, any(status) AS claim_status, \
         count() AS lines, sum(billed_idr) AS billed, sum(deductible_idr + copay_idr + coinsurance_idr) AS member_share, \
         sum(plan_paid_idr) AS paid FROM claim_lines_by_member FINAL \
         WHERE member_id = ? AND decided_date >= toDate(?) {status} {} \
         GROUP BY claim_id ORDER BY decided DESC, claim_id DESC LIMIT ?",
        if after.is_some() {
            "AND (decided_date < toDate(?) OR (decided_date = toDate(?) AND claim_id < ?))"
        } else {
            ""
        }
    );
    let mut request = client.query(&sql).bind(member_id.as_str()).bind(date_from.to_string());
    if let Some((date, claim_id)) = &after {
        request = request.bind(date.to_string()).bind(date.to_string()).bind(claim_id.as_str());
    }
    let claims: Vec<HistoryRow> = request.bind(limit).fetch_all().await.map_err(|_| analytics_unavailable())?;
    let data: Vec<Value> = claims
        .iter()
        .map(|c| {
            json!({
                "claimId": c.claim_id,
                "decidedDate": Date(i32::from(c.decided)).to_string(),
                "providerId": c.provider,
                "status": c.claim_status,
                "lines": c.lines,
                "billedIdr": c.billed,
                "memberShareIdr": c.member_share,
                "planPaidIdr": c.paid,
            })
        })
        .collect();
    // The query as asked, for the links: the page's own, and the next when this one is full.
    let mut asked = vec![format!("limit={limit}")];
    if let Some(text) = &query.status {
        asked.push(format!("status={text}"));
    }
    if let Some(text) = &query.date_from {
        asked.push(format!("dateFrom={text}"));
    }
    let link = |cursor: Option<&str>| {
        let cursor = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        format!("/api/v1/members/{member_id}/claims?{}{cursor}", asked.join("&"))
    };
    let next = (claims.len() == limit as usize)
        .then(|| claims.last().map(|c| link(Some(&cursor_of(Date(i32::from(c.decided)), &c.claim_id)))))
        .flatten();
    Ok(Json(json!({
        "data": data,
        "meta": { "traceId": trace_id(), "count": data.len(), "limit": limit },
        "links": { "self": link(query.cursor.as_deref()), "next": next },
    })))
}
