//! Claims: a decision and where its payment is (`GET /api/v1/claims/{claimId}`), and a
//! member's history from ClickHouse.

use arus_connectors::store::read;
use arus_schemas::Date;
use arus_schemas::events::{AdjustmentGroup, ClaimStatus};
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::access::Access;
use crate::auth::Role;
use crate::body::Body;
use crate::commands::Invalid;
use crate::error::{ApiError, Detail, ErrorBody, unavailable};
use crate::openapi::{Id, IsoDate, ReadErrors};
use crate::routes::analytics::analytics_unavailable;
use crate::routes::identifier;
use crate::routes::members::check_member;
use crate::routes::{PathId, malformed_query};

/// A claim's decision, explained, and where its payment is; amounts in whole rupiah.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClaimDecision {
    claim_id: String,
    member_id: String,
    provider_id: String,
    status: ClaimStatus,
    /// `ADJUDICATED`, `PAID`, `PAYMENT_FAILED` (retryable) or `REVERSED`.
    state: String,
    /// The plan decided under (none when the member was not covered).
    plan_id: Option<String>,
    plan_version: Option<i32>,
    auth_id: Option<String>,
    total_billed_idr: i64,
    total_allowed_idr: i64,
    total_member_share_idr: i64,
    total_plan_paid_idr: i64,
    lines: Vec<LineDecision>,
    /// How the decision was reached, step by step.
    explanation: Vec<String>,
    payment_id: Option<String>,
    /// Why it was reversed.
    reversal: Option<String>,
}

/// One line of a decision.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineDecision {
    line_number: i32,
    billed_idr: i64,
    allowed_idr: i64,
    deductible_idr: i64,
    copay_idr: i64,
    coinsurance_idr: i64,
    plan_paid_idr: i64,
    adjustments: Vec<AdjustmentView>,
}

/// An adjustment of a line: its X12 group and claim adjustment reason code (CARC).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdjustmentView {
    group: AdjustmentGroup,
    carc: String,
    amount_idr: i64,
}

/// A claim's decision: status, per-line amounts and adjustments (group and CARC), the
/// explanation, payment state.
#[utoipa::path(get, path = "/api/v1/claims/{claimId}", tag = "claims",
    params(("claimId" = Id, Path, example = "C1", description = "the claim")),
    responses(
        (status = 200, description = "the decision", body = Body<ClaimDecision>),
        (status = 404, description = "no such claim, or not decided yet", body = ErrorBody),
        ReadErrors,
    ))]
pub(crate) async fn claim(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(claim_id): PathId,
) -> Result<Body<ClaimDecision>, ApiError> {
    let claim_id = identifier("claimId", Some(claim_id))?;
    let store = gateway.store.clone();
    let id = claim_id.clone();
    let not_found = || ApiError {
        status: StatusCode::NOT_FOUND,
        code: "CLAIM_NOT_FOUND",
        message: format!("no decided claim {claim_id}"),
        details: vec![Detail::field("claimId", "unknown or not decided yet")],
    };
    let view = tokio::task::spawn_blocking(move || read::claim(&*store, &id))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?
        .ok_or_else(not_found)?;
    // A provider sees the claims it submitted, a member its own and its family's; any other
    // claim is answered as if there were none.
    let visible = match access.caller().map(|c| &c.role) {
        Some(Role::Internal) => true,
        Some(Role::Provider(me)) => *me == view.adjudication.provider_id,
        Some(Role::Member(_)) => check_member(&gateway, &access, &view.adjudication.member_id).await.is_ok(),
        _ => false,
    };
    if !visible {
        return Err(not_found());
    }
    let a = view.adjudication;
    let lines = a
        .lines
        .iter()
        .map(|l| LineDecision {
            line_number: l.line_number,
            billed_idr: l.billed_idr.0,
            allowed_idr: l.allowed_idr.0,
            deductible_idr: l.deductible_idr.0,
            copay_idr: l.copay_idr.0,
            coinsurance_idr: l.coinsurance_idr.0,
            plan_paid_idr: l.plan_paid_idr.0,
            adjustments: l
                .adjustments
                .iter()
                .map(|x| AdjustmentView { group: x.group, carc: x.carc.clone(), amount_idr: x.amount_idr.0 })
                .collect(),
        })
        .collect();
    let data = ClaimDecision {
        claim_id: a.claim_id,
        member_id: a.member_id,
        provider_id: a.provider_id,
        status: a.status,
        state: view.state,
        plan_id: a.plan_id,
        plan_version: a.plan_version,
        auth_id: a.auth_id,
        total_billed_idr: a.total_billed_idr.0,
        total_allowed_idr: a.total_allowed_idr.0,
        total_member_share_idr: a.total_member_share_idr.0,
        total_plan_paid_idr: a.total_plan_paid_idr.0,
        lines,
        explanation: a.trace,
        payment_id: view.payment_id,
        reversal: view.reversal,
    };
    Ok(Body::new(data, format!("/api/v1/claims/{claim_id}")))
}

/// A member's claims query.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct MemberClaimsQuery {
    /// The seed's `pending`, `approved` (partly approved included), `denied`, `paid`; or one
    /// decision status as the events write it.
    #[param(value_type = Option<StatusFilter>)]
    status: Option<String>,
    /// Claims decided on this day or later.
    #[param(value_type = Option<IsoDate>)]
    date_from: Option<String>,
    /// The most claims on a page (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: the `links.next` of the page before.
    #[param(value_type = Option<String>)]
    cursor: Option<String>,
}

/// The claims a `status` filter keeps.
#[derive(ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
pub(crate) enum StatusFilter {
    pending,
    approved,
    denied,
    paid,
    APPROVED,
    PARTIALLY_APPROVED,
    DENIED,
    PENDED,
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
    // Any text is a cursor's shape; one this route did not give is well formed but points
    // nowhere (422).
    let bad = || -> ApiError {
        Invalid { field: "cursor", issue: "is not a cursor this route gave (links.next)".to_owned(), semantic: true }
            .into()
    };
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

/// A claim in a member's history; amounts in whole rupiah.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberClaim {
    claim_id: String,
    #[schema(format = Date)]
    decided_date: String,
    provider_id: String,
    status: ClaimStatus,
    lines: u64,
    billed_idr: i64,
    member_share_idr: i64,
    plan_paid_idr: i64,
}

/// A member's decided claims, newest first, a page at a time, from ClickHouse (history
/// beyond what Redis keeps).
#[utoipa::path(get, path = "/api/v1/members/{memberId}/claims", tag = "claims",
    params(("memberId" = Id, Path, example = "M1", description = "the member"), MemberClaimsQuery),
    responses(
        (status = 200, description = "a page of the member's claims; links.next when there are more", body = Body<Vec<MemberClaim>>),
        (status = 404, description = "no such member, or not one this token may see", body = ErrorBody),
        (status = 422, description = "a cursor this route did not give", body = ErrorBody),
        ReadErrors,
    ))]
pub(crate) async fn member_claims(
    State(gateway): State<Gateway>,
    Extension(access): Extension<Access>,
    PathId(member_id): PathId,
    query: Result<Query<MemberClaimsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Body<Vec<MemberClaim>>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    check_member(&gateway, &access, &member_id).await?;
    let Query(query) = query.map_err(|_| malformed_query())?;
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
    let data = claims
        .iter()
        .map(|c| {
            Ok(MemberClaim {
                claim_id: c.claim_id.clone(),
                decided_date: Date(i32::from(c.decided)).to_string(),
                provider_id: c.provider.clone(),
                status: claim_status(&c.claim_status).ok_or_else(analytics_unavailable)?,
                lines: c.lines,
                billed_idr: c.billed,
                member_share_idr: c.member_share,
                plan_paid_idr: c.paid,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
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
    let mut body = Body::new(data, link(query.cursor.as_deref()));
    body.meta.count = Some(body.data.len());
    body.meta.limit = Some(limit);
    body.links.next = next;
    Ok(body)
}

/// A decision status as ClickHouse keeps it (the events' symbol).
fn claim_status(text: &str) -> Option<ClaimStatus> {
    ClaimStatus::ALL.iter().copied().find(|s| s.as_str() == text)
}
