//! Who may call what: one table, [`RULES`], of each route's scope and roles, enforced by one
//! middleware ([`authorize`]) before any handler runs; and the checks of what a caller may see
//! of a resource once it is read (a member its own record and, as a subscriber, its family's; a
//! provider its own claims), which the handlers call from here.
//!
//! No token: a public route answers (at the anonymous tier, with nothing personal beyond
//! covered-or-not and the plan); any other is 401 with `WWW-Authenticate: Bearer` (RFC 6750).
//! A token that does not verify: 401 `error="invalid_token"`. A scope missing: 403
//! `error="insufficient_scope"` naming it. A role the route is not for: 403.

use std::sync::Arc;

use arus_schemas::read_models::MemberEligibility;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Gateway;
use crate::audit::Who;
use crate::auth::{Authenticator, Caller, Rejected, Role};
use crate::error::{ApiError, Detail};
use crate::limit::{Tier, Verdict};
use crate::server::PeerIdentity;

/// The roles a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Member,
    Provider,
    Partner,
    Internal,
}

impl Kind {
    fn of(role: &Role) -> Kind {
        match role {
            Role::Member(_) => Kind::Member,
            Role::Provider(_) => Kind::Provider,
            Role::Partner(_) => Kind::Partner,
            Role::Internal => Kind::Internal,
        }
    }
}

/// Who may call one route.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The method, upper case.
    pub(crate) method: &'static str,
    /// The route's template, as the OpenAPI document has it.
    pub(crate) route: &'static str,
    /// Answered without a token.
    pub(crate) public: bool,
    /// The scope a token needs (`admin.all` stands for every scope).
    pub(crate) scope: Option<&'static str>,
    /// The roles a token may have.
    pub(crate) roles: &'static [Kind],
    /// A member's data: every request is on the audit trail.
    pub(crate) audited: bool,
}

use Kind::{Internal, Member, Partner, Provider};

const ANYONE: &[Kind] = &[Member, Provider, Partner, Internal];

/// Public or not, the scope, the roles, whether audited.
const fn rule(
    method: &'static str,
    route: &'static str,
    public: bool,
    scope: Option<&'static str>,
    roles: &'static [Kind],
    audited: bool,
) -> Rule {
    Rule { method, route, public, scope, roles, audited }
}

/// Every route, who may call it (the table in `gateway/README.md`; a test checks that every
/// operation of the OpenAPI document has its row).
pub(crate) const RULES: &[Rule] = &[
    rule("GET", "/api/v1/eligibility", true, None, ANYONE, true),
    rule("GET", "/api/v1/benefits/summary", true, None, ANYONE, true),
    rule(
        "POST",
        "/api/partner/v1/eligibility/verify",
        false,
        Some("member.read"),
        &[Provider, Partner, Internal],
        true,
    ),
    rule("GET", "/api/v1/members/{memberId}", false, Some("member.read"), &[Member, Internal], true),
    rule("GET", "/api/v1/members/{memberId}/accumulators", false, Some("member.read"), &[Member, Internal], true),
    rule("GET", "/api/v1/members/{memberId}/claims", false, Some("claims.read"), &[Member, Internal], true),
    rule("GET", "/api/v1/claims/{claimId}", false, Some("claims.read"), &[Member, Provider, Internal], true),
    rule("GET", "/api/v1/authorizations/{authId}", false, Some("claims.read"), &[Member, Provider, Internal], true),
    rule("POST", "/api/v1/members", false, Some("member.write"), &[Internal], true),
    rule("POST", "/api/v1/members/{memberId}/coverage", false, Some("member.write"), &[Internal], true),
    rule("POST", "/api/v1/claims", false, Some("claims.write"), &[Provider, Internal], true),
    rule("POST", "/api/partner/v1/claims/submit", false, Some("claims.write"), &[Provider, Partner, Internal], true),
    rule("POST", "/api/v1/authorizations", false, Some("claims.write"), &[Provider, Internal], true),
    rule("GET", "/api/v1/analytics/claims/daily", false, Some("claims.read"), &[Internal], false),
    rule("GET", "/api/v1/providers/{providerId}/scorecard", false, Some("provider.read"), &[Provider, Internal], false),
    rule("GET", "/metrics", false, Some("admin.all"), &[Internal], false),
    rule("GET", "/health", true, None, ANYONE, false),
    rule("GET", "/ready", true, None, ANYONE, false),
    rule("GET", "/openapi.json", true, None, ANYONE, false),
];

/// The rule of `method` on `route`.
pub(crate) fn rule_of(method: &str, route: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == method && r.route == route)
}

/// Who is calling, as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// No token (public routes only).
    Anonymous,
    /// A verified token.
    Caller(Arc<Caller>),
}

impl Access {
    /// The caller, if there is a token.
    pub(crate) fn caller(&self) -> Option<&Caller> {
        match self {
            Access::Anonymous => None,
            Access::Caller(caller) => Some(caller),
        }
    }

    /// Who a rate limit or an idempotency key belongs to: the client, or nobody.
    pub(crate) fn client(&self) -> Option<&str> {
        self.caller().map(|c| c.client_id.as_str())
    }
}

/// Checks the caller against the route's rule; on its way, the request carries [`Access`].
/// A request to a route with a member's data is on the audit trail, however it ends.
pub(crate) async fn authorize(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        // No route matched: the fallback answers (404, 405).
        return next.run(request).await;
    };
    let Some(rule) = rule_of(request.method().as_str(), &route) else {
        // A method the route does not take: the fallback answers 405. A route without any
        // rule is refused: the table fails closed.
        if RULES.iter().any(|r| r.route == route) {
            return next.run(request).await;
        }
        return forbidden("NO_ACCESS_RULE", "this route has no access rule".to_owned(), None);
    };
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let (who, response) = decide(&gateway, rule, request, next).await;
    if rule.audited
        && let Some(auditor) = &gateway.auditor
    {
        let ids = crate::audit::resource_ids(rule.route, &uri);
        auditor.access(&who, method.as_str(), rule.route, ids, response.status().as_u16());
    }
    response
}

/// The rule applied: the request answered, or refused; under `/api/`, with its rate limit's
/// headers.
async fn decide(gateway: &Gateway, rule: &Rule, request: Request, next: Next) -> (Who, Response) {
    let limited = rule.route.starts_with("/api/");
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let limiter = gateway.limiter.as_ref().filter(|_| limited);
    // Read now, while the request is at hand: the address an anonymous caller is counted by.
    let address = limiter.map(|limiter| limiter.address(peer, request.headers()));
    let (who, mut response) = checked(gateway, rule, request, next, |who| async move {
        let (Some(limiter), Some(address)) = (limiter, address) else { return Ok(None) };
        let (tier, key) = match &who {
            Who::Caller(caller) if caller.premium => (Tier::Premium, caller.client_id.clone()),
            Who::Caller(caller) => (Tier::Authenticated, caller.client_id.clone()),
            Who::Anonymous | Who::Unverified => (Tier::Anonymous, address.to_string()),
        };
        match limiter.take(tier, &key).await {
            Ok(verdict) => match verdict.wait {
                None => Ok(Some(verdict)),
                Some(wait) => Err(rate_limited(verdict, wait)),
            },
            // Budgets that cannot be read refuse nothing: the limit is a guard, not the service.
            Err(_) => Ok(None),
        }
    })
    .await;
    if let Some(verdict) = response.extensions_mut().remove::<Verdict>() {
        rate_headers(&mut response, verdict);
    }
    (who, response)
}

/// The request checked: who asks, its budget (`limit`), the rule; answered or refused.
async fn checked<F, Fut>(gateway: &Gateway, rule: &Rule, mut request: Request, next: Next, limit: F) -> (Who, Response)
where
    F: FnOnce(Who) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Verdict>, Response>>,
{
    let token = bearer(request.headers());
    let access = match token {
        Err(rejected) => Err((Who::Unverified, unauthorized(Some(rejected)))),
        Ok(None) if rule.public => Ok(Access::Anonymous),
        Ok(None) => Err((Who::Anonymous, unauthorized(None))),
        Ok(Some(token)) => match verify(gateway.authenticator.clone(), token).await {
            Ok(caller) => Ok(Access::Caller(Arc::new(caller))),
            Err(rejected) => Err((Who::Unverified, unauthorized(Some(rejected)))),
        },
    };
    let who = match &access {
        Ok(Access::Anonymous) => Who::Anonymous,
        Ok(Access::Caller(caller)) => Who::Caller(caller.clone()),
        Err((who, _)) => who.clone(),
    };
    // Every caller spends its budget, refused ones too (a stream of bad tokens is limited).
    let verdict = match limit(who.clone()).await {
        Ok(verdict) => verdict,
        Err(refused) => return (who, refused),
    };
    let with_verdict = |mut response: Response| {
        if let Some(verdict) = verdict {
            response.extensions_mut().insert(verdict);
        }
        response
    };
    let access = match access {
        Ok(access) => access,
        Err((who, refused)) => return (who, with_verdict(refused)),
    };
    if let Some(caller) = access.caller() {
        if let Some(scope) = rule.scope
            && !caller.has_scope(scope)
        {
            let mut response = forbidden(
                "INSUFFICIENT_SCOPE",
                format!("this route needs the scope {scope}"),
                Some(Detail::field("scope", format!("{scope} is required"))),
            );
            let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
            return (who, with_verdict(response));
        }
        if !rule.roles.contains(&Kind::of(&caller.role)) {
            let message = format!("this route is not for a {} token", caller.role.name());
            return (who, with_verdict(forbidden("ROLE_NOT_ALLOWED", message, None)));
        }
        // Partner routes: a client certificate (the partner listener), naming the token's
        // partner or provider.
        if rule.route.starts_with("/api/partner/") {
            let refused = match (request.extensions().get::<PeerIdentity>(), &caller.role) {
                (None, _) => Some((
                    "CLIENT_CERTIFICATE_REQUIRED",
                    "partner routes answer on the partner listener, to a client certificate",
                )),
                (Some(PeerIdentity(id)), Role::Partner(me) | Role::Provider(me)) if id != me => {
                    Some(("CERTIFICATE_MISMATCH", "the client certificate names another partner than the token"))
                }
                _ => None,
            };
            if let Some((code, message)) = refused {
                return (who, with_verdict(forbidden(code, message.to_owned(), None)));
            }
        }
    }
    request.extensions_mut().insert(access);
    (who, with_verdict(next.run(request).await))
}

/// 429, with when to come back (`Retry-After`, whole seconds rounded up).
fn rate_limited(verdict: Verdict, wait: std::time::Duration) -> Response {
    let mut response = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "RATE_LIMITED",
        message: format!("too many requests from this caller; retry in {} ms", wait.as_millis().max(1)),
        details: vec![Detail { field: None, issue: None, retry_after_ms: Some(wait.as_millis().max(1) as u64) }],
    }
    .into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    rate_headers(&mut response, verdict);
    response
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds until the budget is
/// whole), as the IETF draft names them.
fn rate_headers(response: &mut Response, verdict: Verdict) {
    let reset = verdict.reset.as_secs() + u64::from(verdict.reset.subsec_nanos() > 0);
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", verdict.limit.into());
    headers.insert("ratelimit-remaining", verdict.remaining.into());
    headers.insert("ratelimit-reset", reset.into());
}

/// The bearer token of `Authorization`, if any; another scheme, or a malformed header, is
/// refused rather than ignored.
fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<String>, Rejected> {
    headers.get(header::AUTHORIZATION).map(|value| bearer_token(value.as_bytes())).transpose()
}

/// The token of an `Authorization` value (an HTTP header, a gRPC metadata entry):
/// `Bearer <token>`, the scheme in any case.
pub(crate) fn bearer_token(value: &[u8]) -> Result<String, Rejected> {
    let text = std::str::from_utf8(value).map_err(|_| Rejected("the Authorization header is not text"))?;
    let (scheme, token) = text.split_once(' ').ok_or(Rejected("the Authorization header is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Rejected("the Authorization header is not `Bearer <token>`"));
    }
    Ok(token.trim().to_owned())
}

/// Verifies off the async threads only when the issuer's keys have to be fetched.
pub(crate) async fn verify(authenticator: Option<Arc<Authenticator>>, token: String) -> Result<Caller, Rejected> {
    let Some(authenticator) = authenticator else {
        return Err(Rejected("this gateway verifies no tokens (it was started without an issuer)"));
    };
    match authenticator.verify_cached(&token) {
        Ok(Some(caller)) => Ok(caller),
        Err(rejected) => Err(rejected),
        Ok(None) => tokio::task::spawn_blocking(move || authenticator.verify(&token))
            .await
            .unwrap_or(Err(Rejected("the token cannot be verified"))),
    }
}

fn unauthorized(rejected: Option<Rejected>) -> Response {
    let (message, challenge) = match &rejected {
        // RFC 6750 §3.1: no error code when the request carried no token.
        None => ("this route needs a bearer token".to_owned(), "Bearer realm=\"arus\"".to_owned()),
        Some(Rejected(why)) => (
            format!("the bearer token is not accepted: {why}"),
            format!("Bearer realm=\"arus\", error=\"invalid_token\", error_description=\"{why}\""),
        ),
    };
    let mut response =
        ApiError { status: StatusCode::UNAUTHORIZED, code: "UNAUTHENTICATED", message, details: Vec::new() }
            .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn forbidden(code: &'static str, message: String, detail: Option<Detail>) -> Response {
    ApiError { status: StatusCode::FORBIDDEN, code, message, details: detail.into_iter().collect() }.into_response()
}

/// 403 for a resource the caller may not see; the same whether it exists or not, so that a
/// refusal tells nothing.
pub(crate) fn not_yours(what: &str) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "NOT_YOURS",
        message: format!("this token does not give access to this {what}"),
        details: Vec::new(),
    }
}

/// Whether the caller may see member `member_id`'s data: internal callers any member's; a
/// member its own and, as the subscriber, its family's (`record`, when the store has one).
pub(crate) fn may_see_member(access: &Access, member_id: &str, record: Option<&MemberEligibility>) -> bool {
    match access.caller().map(|c| &c.role) {
        Some(Role::Internal) => true,
        Some(Role::Member(me)) => {
            me == member_id || record.is_some_and(|r| r.subscriber_id.as_deref() == Some(me.as_str()))
        }
        _ => false,
    }
}

/// Whether the caller may act as, or see what belongs to, provider `provider_id`: internal
/// callers always; a provider as itself.
pub(crate) fn is_provider_or_internal(access: &Access, provider_id: &str) -> bool {
    match access.caller().map(|c| &c.role) {
        Some(Role::Internal) => true,
        Some(Role::Provider(me)) => me == provider_id,
        _ => false,
    }
}

/// A provider submits and requests only as itself: `provider_id` of a command must be the
/// token's (partners and internal callers submit for any provider).
pub(crate) fn may_submit_for(access: &Access, provider_id: &str) -> Result<(), ApiError> {
    match access.caller().map(|c| &c.role) {
        Some(Role::Provider(me)) if me != provider_id => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "NOT_YOURS",
            message: "a provider submits only as itself: providerId must be the token's provider".to_owned(),
            details: vec![Detail::field("providerId", "is not the token's provider")],
        }),
        Some(_) => Ok(()),
        None => Err(not_yours("command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation the gateway serves has exactly one rule, and every rule an operation.
    #[test]
    fn the_table_covers_every_operation_once() {
        let document = crate::openapi_document();
        let mut served: Vec<(String, String)> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().into_iter().flat_map(|m| m.keys()).map(|m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        served.sort();
        let mut ruled: Vec<(String, String)> =
            RULES.iter().map(|r| (r.method.to_owned(), r.route.to_owned())).collect();
        ruled.sort();
        let before = ruled.len();
        ruled.dedup();
        assert_eq!(ruled.len(), before, "a route with two rules");
        assert_eq!(served, ruled);
    }

    /// What a member may see: itself, as subscriber its family, nobody else; internal callers
    /// everyone; providers and partners no member's record.
    #[test]
    fn members_see_themselves_and_their_family() {
        let caller = |role| {
            Access::Caller(Arc::new(Caller {
                subject: "s".into(),
                client_id: "c".into(),
                role,
                scopes: vec![],
                premium: false,
            }))
        };
        let record = |subscriber: &str| MemberEligibility {
            member_id: "M3".to_owned(),
            created: None,
            subscriber_id: Some(subscriber.to_owned()),
            date_of_birth: None,
            date_of_death: None,
            changes: Vec::new(),
            spans: Vec::new(),
            benefits: Vec::new(),
            version: 1,
        };
        let (family, other) = (record("M1"), record("M2"));
        let m1 = caller(Role::Member("M1".into()));
        assert!(may_see_member(&m1, "M1", None));
        assert!(may_see_member(&m1, "M3", Some(&family)));
        assert!(!may_see_member(&m1, "M4", Some(&other)));
        assert!(!may_see_member(&m1, "M4", None));
        assert!(may_see_member(&caller(Role::Internal), "M4", None));
        assert!(!may_see_member(&caller(Role::Provider("P1".into())), "M1", Some(&family)));
        assert!(!may_see_member(&Access::Anonymous, "M1", None));
        assert!(may_submit_for(&caller(Role::Provider("P1".into())), "P2").is_err());
        assert!(may_submit_for(&caller(Role::Provider("P1".into())), "P1").is_ok());
        assert!(may_submit_for(&caller(Role::Partner("X1".into())), "P2").is_ok());
    }
}
