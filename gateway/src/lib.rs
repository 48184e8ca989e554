//! The gateway: REST over the state the jobs materialize (Redis, or the embedded store).
//! Eligibility first: `GET /api/v1/eligibility?memberId=…&serviceDate=…&serviceType=…`, and the
//! same check for partners as `POST /api/partner/v1/eligibility/verify` with a JSON body.
//!
//! Responses follow the seed's format: `{"data": …, "meta": {"traceId": …}, "links": {"self": …}}`;
//! errors `{"error": {"code", "message", "details", "traceId"}}` with 400 for a malformed or
//! missing parameter, 404 for an unknown member, 503 when the store cannot be read. A client's
//! mistake never gets a 500. `GET /health` says the process is up, `GET /ready` that the store
//! answers, `GET /metrics` the rate, errors and latency of each route (Prometheus text).

pub mod commands;
pub mod grpc;
mod limit;

pub use limit::RateLimit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use commands::{CoverageCommand, Invalid, NewMember, Publisher};

use arus_connectors::store::StateStore;
use arus_connectors::store::read;
use arus_schemas::Date;
use arus_schemas::events::EligibilityStatus;
use arus_schemas::read_models::{Answer, MemberEligibility};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

/// What the handlers (REST and gRPC) share.
#[derive(Clone)]
struct Gateway {
    store: Arc<dyn StateStore>,
    metrics: Arc<Red>,
    publisher: Option<Arc<dyn Publisher>>,
    limiter: Option<Arc<limit::Limiter>>,
    /// ClickHouse, for the analytics routes.
    clickhouse: Option<clickhouse::Client>,
}

/// How a gateway serves, beyond its store.
#[derive(Default)]
pub struct Options {
    /// Where commands are published; without it they are refused with 503.
    pub publisher: Option<Arc<dyn Publisher>>,
    /// Requests allowed per caller address on the `/api/` routes and gRPC; past it, 429 (gRPC
    /// `RESOURCE_EXHAUSTED`) with when to retry. None: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Serve gRPC (`arus.eligibility.v1.Eligibility`) on this listener too.
    pub grpc: Option<std::net::TcpListener>,
    /// ClickHouse (its database chosen), for `/api/v1/analytics/…`; without it they answer 503.
    pub clickhouse: Option<clickhouse::Client>,
}

/// Latency buckets, in seconds: 100 µs to 10 s (the seed's "p95 > 1 s" alert needs buckets past
/// a second).
const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Rate, errors and duration per route (its template): requests by status, and a latency
/// histogram, kept with the `prometheus` crate.
struct Red {
    registry: prometheus::Registry,
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl Default for Red {
    fn default() -> Self {
        let registry = prometheus::Registry::new();
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("arus_gateway_requests_total", "Requests by route and status."),
            &["route", "status"],
        )
        .expect("a valid metric");
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("arus_gateway_request_duration_seconds", "Time to answer, by route.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("a valid metric");
        registry.register(Box::new(requests.clone())).expect("unique names");
        registry.register(Box::new(duration.clone())).expect("unique names");
        Red { registry, requests, duration }
    }
}

impl Red {
    fn observe(&self, route: &str, status: u16, took: std::time::Duration) {
        self.requests.with_label_values(&[route, itoa::Buffer::new().format(status)]).inc();
        self.duration.with_label_values(&[route]).observe(took.as_secs_f64());
    }

    fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Records each request's route (its template, not the raw path), status and duration.
async fn record(
    State(gateway): State<Gateway>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    gateway.metrics.observe(&route, response.status().as_u16(), started.elapsed());
    response
}

async fn metrics(State(gateway): State<Gateway>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], gateway.metrics.render())
}

/// The REST routes over `store`, without commands (they answer 503).
pub fn router(store: Arc<dyn StateStore>) -> Router {
    router_with(store, None)
}

/// Refuses an `/api/` request past its caller's rate limit: 429 with `Retry-After`.
async fn limit(
    State(gateway): State<Gateway>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(limiter) = &gateway.limiter
        && request.uri().path().starts_with("/api/")
    {
        let caller = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        if let Err(wait) = limiter.admit(caller, std::time::Instant::now()) {
            let mut response = rate_limited(wait).into_response();
            // Whole seconds, rounded up.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
            return response;
        }
    }
    next.run(request).await
}

fn rate_limited(wait: std::time::Duration) -> ApiError {
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "RATE_LIMITED",
        message: format!("too many requests from this address; retry in {} ms", wait.as_millis().max(1)),
        details: vec![json!({ "retryAfterMs": wait.as_millis().max(1) as u64 })],
    }
}

/// The REST routes over `store`, commands published through `publisher`.
pub fn router_with(store: Arc<dyn StateStore>, publisher: Option<Arc<dyn Publisher>>) -> Router {
    routes(Gateway { store, metrics: Arc::new(Red::default()), publisher, limiter: None, clickhouse: None })
}

fn routes(gateway: Gateway) -> Router {
    Router::new()
        .route("/api/v1/eligibility", get(eligibility))
        .route("/api/v1/members", axum::routing::post(create_member))
        .route("/api/v1/benefits/summary", get(benefits_summary))
        .route("/api/v1/members/{member_id}", get(member))
        .route("/api/v1/members/{member_id}/coverage", axum::routing::post(change_coverage))
        .route("/api/v1/members/{member_id}/accumulators", get(accumulators))
        .route("/api/v1/claims/{claim_id}", get(claim))
        .route("/api/v1/claims", axum::routing::post(submit_claim))
        .route("/api/partner/v1/claims/submit", axum::routing::post(submit_claim))
        .route("/api/v1/authorizations", axum::routing::post(request_authorization))
        .route("/api/v1/authorizations/{auth_id}", get(authorization))
        .route("/api/v1/analytics/claims/daily", get(daily_claims))
        .route("/api/v1/providers/{provider_id}/scorecard", get(scorecard))
        .route("/api/v1/members/{member_id}/claims", get(member_claims))
        .route("/api/partner/v1/eligibility/verify", axum::routing::post(verify))
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(gateway.clone(), limit))
        .route_layer(axum::middleware::from_fn_with_state(gateway.clone(), record))
        .with_state(gateway)
}

/// Serves `router(store)` on `listener` until the process ends, on a runtime of its own.
pub fn serve_blocking(listener: std::net::TcpListener, store: Arc<dyn StateStore>) -> std::io::Result<()> {
    serve_blocking_with(listener, store, None)
}

/// Serves `router_with(store, publisher)` on `listener` until the process ends.
pub fn serve_blocking_with(
    listener: std::net::TcpListener,
    store: Arc<dyn StateStore>,
    publisher: Option<Arc<dyn Publisher>>,
) -> std::io::Result<()> {
    serve(listener, store, Options { publisher, ..Options::default() })
}

/// Serves REST on `listener` (and gRPC, per `options`) until the process ends, on a runtime
/// of its own.
pub fn serve(listener: std::net::TcpListener, store: Arc<dyn StateStore>, options: Options) -> std::io::Result<()> {
    let gateway = Gateway {
        store,
        metrics: Arc::new(Red::default()),
        publisher: options.publisher,
        limiter: options.rate_limit.map(|limit| Arc::new(limit::Limiter::new(limit))),
        clickhouse: options.clickhouse,
    };
    listener.set_nonblocking(true)?;
    if let Some(grpc) = &options.grpc {
        grpc.set_nonblocking(true)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = routes(gateway.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let rest = async move { axum::serve(listener, app).await };
        match options.grpc {
            None => rest.await,
            Some(grpc) => {
                let incoming = tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(grpc)?);
                let grpc = async move {
                    tonic::transport::Server::builder()
                        .add_service(grpc::service(gateway))
                        .serve_with_incoming(incoming)
                        .await
                        .map_err(std::io::Error::other)
                };
                tokio::try_join!(rest, grpc).map(|_| ())
            }
        }
    })
}

/// A trace id per request, for the caller to quote: the process's start and a counter.
fn trace_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!("{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An error in the seed's format.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Value>,
}

impl ApiError {
    fn invalid(field: &str, issue: impl Into<String>) -> Self {
        let issue = issue.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER",
            message: format!("{field}: {issue}"),
            details: vec![json!({ "field": field, "issue": issue })],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details, "traceId": trace_id() }
        });
        (self.status, Json(body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "NOT_FOUND",
        message: "no such route".to_owned(),
        details: Vec::new(),
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(gateway): State<Gateway>) -> Result<Json<Value>, ApiError> {
    let store = gateway.store.clone();
    let reached = tokio::task::spawn_blocking(move || store.get("ready-probe")).await;
    match reached {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        _ => Err(unavailable()),
    }
}

fn unavailable() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "STORE_UNAVAILABLE",
        message: "the state store does not answer; try again shortly".to_owned(),
        details: Vec::new(),
    }
}

/// The query of an eligibility check, all optional so that a missing one gets a clear 400.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EligibilityQuery {
    member_id: Option<String>,
    service_date: Option<String>,
    service_type: Option<String>,
}

/// An identifier as arus writes them: letters, digits, `-`, `_` and `.`, at most 64.
fn identifier(field: &'static str, value: Option<String>) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| commands::invalid(field, "is required"))?;
    Ok(commands::id(field, &value)?)
}

fn date(field: &'static str, value: Option<String>) -> Result<Date, ApiError> {
    let value = value.ok_or_else(|| commands::invalid(field, "is required"))?;
    Ok(commands::date(field, &value)?)
}

fn member_not_found(member_id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "MEMBER_NOT_FOUND",
        message: format!("no member {member_id}"),
        details: vec![json!({ "field": "memberId", "issue": "unknown" })],
    }
}

async fn eligibility(
    State(gateway): State<Gateway>,
    query: Result<Query<EligibilityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    check(&gateway, query).await
}

/// The partner route: the same check, its parameters in a JSON body.
async fn verify(
    State(gateway): State<Gateway>,
    body: Result<Json<EligibilityQuery>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(query) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    check(&gateway, query).await
}

/// Why a question got no answer, whether asked over REST or gRPC.
enum Failure {
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
struct Checked {
    member_id: String,
    service_date: Date,
    service_type: String,
    answer: Answer,
}

async fn check_eligibility(
    gateway: &Gateway,
    member_id: Option<String>,
    service_date: Option<String>,
    service_type: Option<String>,
) -> Result<Checked, Failure> {
    let required = |field, value: Option<String>| value.ok_or_else(|| commands::invalid(field, "is required"));
    let member_id = commands::id("memberId", &required("memberId", member_id)?)?;
    let service_date = commands::date("serviceDate", &required("serviceDate", service_date)?)?;
    let service_type = commands::id("serviceType", &required("serviceType", service_type)?)?;
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

async fn check(gateway: &Gateway, query: EligibilityQuery) -> Result<Json<Value>, ApiError> {
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

fn answer_json(member_id: &str, date: Date, service_type: &str, answer: &Answer) -> Value {
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

/// The member's record in the store, read off the async runtime; `None` for a member it does
/// not know.
async fn member_record(gateway: &Gateway, member_id: &str) -> Result<Option<MemberEligibility>, ApiError> {
    let (store, id) = (gateway.store.clone(), member_id.to_owned());
    tokio::task::spawn_blocking(move || read::member_eligibility(&*store, &id))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())
}

/// A member's coverage as the store holds it: relationship, subscriber, coverage changes (no
/// personal data: the store holds none).
async fn member(State(gateway): State<Gateway>, Path(member_id): Path<String>) -> Result<Json<Value>, ApiError> {
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

/// The OpenAPI 3 document of the routes above.
async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3 document: what the server serves, no more (a test walks its paths).
pub fn openapi_document() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let limited = json!({
        "description": "past the caller's rate limit; Retry-After says when to come back",
        "headers": { "Retry-After": { "schema": { "type": "integer" }, "description": "seconds" } },
        "content": { "application/json": { "schema": error } },
    });
    let responses = |ok: &str| {
        json!({
            "200": { "description": ok },
            "400": { "description": "a parameter is missing or malformed", "content": { "application/json": { "schema": error } } },
            "404": { "description": "no such member", "content": { "application/json": { "schema": error } } },
            "429": limited.clone(),
            "503": { "description": "the state store does not answer", "content": { "application/json": { "schema": error } } },
        })
    };
    // What a command answers: 202 once its event is published, or why not.
    let accepted = |disagree: &str| {
        json!({
            "202": { "description": "published: the event's id, and the member's or the new resource's" },
            "400": { "description": "a field is missing or malformed", "content": { "application/json": { "schema": error } } },
            "422": { "description": disagree, "content": { "application/json": { "schema": error } } },
            "429": limited.clone(),
            "503": { "description": "no event bus, or it does not answer", "content": { "application/json": { "schema": error } } },
        })
    };
    let query = |name: &str, description: &str, format: Option<&str>| {
        let mut schema = json!({ "type": "string" });
        if let Some(format) = format {
            schema["format"] = format.into();
        }
        json!({ "name": name, "in": "query", "required": true, "description": description, "schema": schema })
    };
    let idempotency = json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "a retry with the same key gets the first answer again, and publishes nothing",
        "schema": { "type": "string" },
    });
    json!({
        "openapi": "3.0.3",
        "info": { "title": "arus gateway", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/api/v1/eligibility": { "get": {
                "summary": "Whether a member is covered for a service on a date",
                "parameters": [
                    query("memberId", "member id", None),
                    query("serviceDate", "date of service, YYYY-MM-DD", Some("date")),
                    query("serviceType", "procedure code or service category", None),
                ],
                "responses": responses("the answer: eligible, status, plan, coverage span, benefits, prior authorization, reason"),
            }},
            "/api/partner/v1/eligibility/verify": { "post": {
                "summary": "The eligibility check for partner systems, its parameters in a JSON body",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["memberId", "serviceDate", "serviceType"],
                    "properties": {
                        "memberId": { "type": "string" },
                        "serviceDate": { "type": "string", "format": "date" },
                        "serviceType": { "type": "string" },
                    },
                }}}},
                "responses": responses("the answer, as GET /api/v1/eligibility gives it"),
            }},
            "/api/v1/members": { "post": {
                "summary": "Record a new member: a MemberCreated on member.events",
                "parameters": [idempotency.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["relationship", "nik", "fullName", "dateOfBirth", "sex", "provinceCode", "regencyCode", "city"] } } } },
                "responses": accepted("fields that do not agree (the NIK and the date of birth, say)"),
            }},
            "/api/v1/members/{memberId}/coverage": { "post": {
                "summary": "Change a member's coverage: a CoverageChanged on member.events",
                "parameters": [{ "name": "memberId", "in": "path", "required": true, "schema": { "type": "string" } }, idempotency.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["changeType", "planId", "effectiveDate"] } } } },
                "responses": accepted("fields that do not agree"),
            }},
            "/api/v1/benefits/summary": { "get": {
                "summary": "The plan and benefits in force for a member on a date",
                "parameters": [query("memberId", "member id", None), query("asOf", "the date, YYYY-MM-DD", Some("date"))],
                "responses": responses("plan, coverage span and benefits"),
            }},
            "/api/v1/members/{memberId}": { "get": {
                "summary": "A member's relationship, subscriber and coverage changes",
                "parameters": [{ "name": "memberId", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses("the member's coverage record"),
            }},
            "/api/v1/claims/{claimId}": { "get": {
                "summary": "A claim's decision: status, per-line amounts and adjustments (group and CARC), the explanation, payment state",
                "parameters": [{ "name": "claimId", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses("the decision"),
            }},
            "/api/v1/members/{memberId}/accumulators": { "get": {
                "summary": "Deductible and out-of-pocket met (member and family) and plan paid to date, for a year",
                "parameters": [
                    { "name": "memberId", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "year", "in": "query", "required": false, "description": "YYYY (default: this year)", "schema": { "type": "integer" } },
                ],
                "responses": responses("the accumulators"),
            }},
            "/api/v1/analytics/claims/daily": { "get": {
                "summary": "Per day of decision and province, provider or plan: claims, lines, billed, allowed, member share, paid (ClickHouse)",
                "parameters": [
                    query("from", "first day, YYYY-MM-DD", Some("date")),
                    query("to", "last day, YYYY-MM-DD (at most 366 days after from)", Some("date")),
                    { "name": "groupBy", "in": "query", "required": false, "description": "province, provider (default) or plan", "schema": { "type": "string", "enum": ["province", "provider", "plan"] } },
                ],
                "responses": responses("rows by day and group"),
            }},
            "/api/v1/providers/{providerId}/scorecard": { "get": {
                "summary": "A provider week by week: claims, lines, denials (rate in basis points), billed, allowed, paid, members (ClickHouse)",
                "parameters": [
                    { "name": "providerId", "in": "path", "required": true, "schema": { "type": "string" } },
                    query("from", "first day, YYYY-MM-DD", Some("date")),
                    query("to", "last day, YYYY-MM-DD", Some("date")),
                ],
                "responses": responses("the weeks"),
            }},
            "/api/v1/members/{memberId}/claims": { "get": {
                "summary": "A member's decided claims, newest first (ClickHouse)",
                "parameters": [
                    { "name": "memberId", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "status", "in": "query", "required": false, "schema": { "type": "string", "enum": ["APPROVED", "PARTIALLY_APPROVED", "DENIED", "PENDED"] } },
                    { "name": "dateFrom", "in": "query", "required": false, "schema": { "type": "string", "format": "date" } },
                    { "name": "limit", "in": "query", "required": false, "description": "1 to 1000 (default 100)", "schema": { "type": "integer" } },
                ],
                "responses": responses("the claims"),
            }},
            "/api/v1/claims": { "post": {
                "summary": "Submit a claim: a ClaimSubmitted on claims.events, decided by the adjudication job",
                "parameters": [idempotency.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["memberId", "providerId", "claimType", "lines"] } } } },
                "responses": accepted("fields that do not agree (a service date after today, say)"),
            }},
            "/api/partner/v1/claims/submit": { "post": {
                "summary": "Submit a claim, for partner systems (as POST /api/v1/claims)",
                "parameters": [idempotency.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["memberId", "providerId", "claimType", "lines"] } } } },
                "responses": accepted("fields that do not agree (a service date after today, say)"),
            }},
            "/api/v1/authorizations": { "post": {
                "summary": "Request a prior authorization: an AuthRequested on auth.events",
                "parameters": [idempotency.clone()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["memberId", "providerId", "procedureCode", "diagnosisCode", "requestedUnits", "serviceDateFrom", "serviceDateTo"] } } } },
                "responses": accepted("fields that do not agree (a service date after today, say)"),
            }},
            "/api/v1/authorizations/{authId}": { "get": {
                "summary": "Where an authorization stands: requested, approved (units approved and used), denied",
                "parameters": [{ "name": "authId", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses("the authorization"),
            }},
            "/health": { "get": { "summary": "The process is up", "responses": { "200": { "description": "up" } } } },
            "/ready": { "get": { "summary": "The state store answers", "responses": {
                "200": { "description": "ready" },
                "503": { "description": "the store does not answer", "content": { "application/json": { "schema": error } } },
            } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3" } } } },
            "/metrics": { "get": { "summary": "Requests, errors and latency per route (Prometheus text)", "responses": { "200": { "description": "metrics" } } } },
        },
        "components": { "schemas": { "Error": {
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message", "details", "traceId"],
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                    "details": { "type": "array", "items": { "type": "object" } },
                    "traceId": { "type": "string" },
                },
            }},
        }}},
    })
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        let (status, code) = if invalid.semantic {
            (StatusCode::UNPROCESSABLE_ENTITY, "INCONSISTENT_VALUES")
        } else {
            (StatusCode::BAD_REQUEST, "INVALID_PARAMETER")
        };
        ApiError {
            status,
            code,
            message: format!("{}: {}", invalid.field, invalid.issue),
            details: vec![json!({ "field": invalid.field, "issue": invalid.issue })],
        }
    }
}

fn now() -> arus_schemas::Timestamp {
    arus_schemas::Timestamp(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    )
}

/// How long a command's answer is kept for retries with its `Idempotency-Key`.
const IDEMPOTENCY_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);

/// The body a command with this `Idempotency-Key` was answered with, if any.
async fn replayed(gateway: &Gateway, key: Option<&str>) -> Result<Option<Response>, ApiError> {
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
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| commands::valid_id(k))
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", "must be 1 to 64 letters, digits, '-', '_' or '.'"))?;
    Ok(Some(key.to_owned()))
}

/// Publishes a command's event; `202 Accepted` with its id. With an idempotency key, the
/// answer is kept, and a retry with the same key gets it again without a second event.
async fn publish(
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

/// `POST /api/v1/members`: a `MemberCreated` on `member.events`.
async fn create_member(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: Result<Json<NewMember>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if let Some(answer) = replayed(&gateway, key.as_deref()).await? {
        return Ok(answer);
    }
    let Json(request) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let event = request.event(now())?;
    let location = format!("/api/v1/members/{}", event.member_id);
    publish(&gateway, arus_schemas::Event::MemberCreated(event), location, key).await
}

/// `POST /api/v1/members/{memberId}/coverage`: a `CoverageChanged` on `member.events`.
async fn change_coverage(
    State(gateway): State<Gateway>,
    Path(member_id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<CoverageCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let key = idempotency_key(&headers)?;
    if let Some(answer) = replayed(&gateway, key.as_deref()).await? {
        return Ok(answer);
    }
    let Json(request) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let known =
        member_record(&gateway, &member_id).await?.and_then(|view| Some((view.created?.0, view.subscriber_id?)));
    let event = request.event(&member_id, known, now())?;
    publish(&gateway, arus_schemas::Event::CoverageChanged(event), format!("/api/v1/members/{member_id}"), key).await
}

/// The benefits summary query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SummaryQuery {
    member_id: Option<String>,
    as_of: Option<String>,
}

/// `GET /api/v1/benefits/summary?memberId=…&asOf=YYYY-MM-DD`: the plan and benefits in force
/// for the member on the date.
async fn benefits_summary(
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

/// A record the jobs keep in the store, read and decoded; `None` when there is none.
async fn stored<T: serde::de::DeserializeOwned + Send + 'static>(
    gateway: &Gateway,
    key: String,
) -> Result<Option<T>, ApiError> {
    let store = gateway.store.clone();
    let found = tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    found.map(|(_, bytes)| serde_json::from_slice(&bytes).map_err(|_| unavailable())).transpose()
}

/// `GET /api/v1/claims/{claimId}`: the claim's decision, explained, and where its payment is.
async fn claim(State(gateway): State<Gateway>, Path(claim_id): Path<String>) -> Result<Json<Value>, ApiError> {
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

/// The accumulators query: the year (default: this calendar year).
#[derive(Deserialize)]
struct YearQuery {
    year: Option<String>,
}

/// `GET /api/v1/members/{memberId}/accumulators?year=YYYY`: deductible and out-of-pocket met,
/// the member's and the family's, and what the plan has paid.
async fn accumulators(
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

/// The daily analytics query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DailyQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

/// A row of the daily claims query.
#[derive(Debug, clickhouse::Row, Deserialize)]
struct DailyRow {
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
const MAX_ANALYTICS_DAYS: i32 = 366;

/// `GET /api/v1/analytics/claims/daily?from=&to=&groupBy=province|provider|plan`: per day of
/// decision and group, claims, lines, billed, allowed, member share and paid, from ClickHouse.
async fn daily_claims(
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

fn analytics_unavailable() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "ANALYTICS_UNAVAILABLE",
        message: "ClickHouse does not answer, or this gateway has none (start it with --clickhouse)".to_owned(),
        details: Vec::new(),
    }
}

/// The date range of an analytics query: both given, in order, at most a year and a day.
fn date_range(from: Option<String>, to: Option<String>) -> Result<(Date, Date), ApiError> {
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
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A week of a provider's scorecard.
#[derive(Debug, clickhouse::Row, Deserialize)]
struct WeekRow {
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
async fn scorecard(
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

/// A member's claims query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberClaimsQuery {
    status: Option<String>,
    date_from: Option<String>,
    limit: Option<String>,
}

/// A claim in a member's history.
#[derive(Debug, clickhouse::Row, Deserialize)]
struct HistoryRow {
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
async fn member_claims(
    State(gateway): State<Gateway>,
    Path(member_id): Path<String>,
    query: Result<Query<MemberClaimsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let member_id = identifier("memberId", Some(member_id))?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s @ ("APPROVED" | "PARTIALLY_APPROVED" | "DENIED" | "PENDED")) => Some(s.to_owned()),
        Some(_) => return Err(ApiError::invalid("status", "must be APPROVED, PARTIALLY_APPROVED, DENIED or PENDED")),
    };
    let date_from = match query.date_from {
        Some(text) => commands::date("dateFrom", &text)?,
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
    // Two fixed texts: with or without the status condition. (The aggregates' aliases differ
    // from the columns': ClickHouse would read an alias in WHERE.)
    let sql = format!(
        "SELECT claim_id, any(decided_date) AS decided, any(provider_id) AS provider, any(status) AS claim_status, \
         count() AS lines, sum(billed_idr) AS billed, sum(deductible_idr + copay_idr + coinsurance_idr) AS member_share, \
         sum(plan_paid_idr) AS paid FROM claim_lines_by_member FINAL \
         WHERE member_id = ? AND decided_date >= toDate(?) {} \
         GROUP BY claim_id ORDER BY decided DESC, claim_id DESC LIMIT ?",
        if status.is_some() { "AND status = ?" } else { "" }
    );
    let mut request = client.query(&sql).bind(member_id.as_str()).bind(date_from.to_string());
    if let Some(status) = &status {
        request = request.bind(status.as_str());
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
    Ok(Json(json!({
        "data": data,
        "meta": { "traceId": trace_id(), "count": data.len(), "limit": limit },
        "links": { "self": format!("/api/v1/members/{member_id}/claims") },
    })))
}

/// `POST /api/v1/claims` (and the partner route): a `ClaimSubmitted` on `claims.events`, 202
/// with the new claim's id; the adjudication job decides it.
async fn submit_claim(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: Result<Json<commands::ClaimCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if let Some(answer) = replayed(&gateway, key.as_deref()).await? {
        return Ok(answer);
    }
    let Json(request) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let event = request.event(now())?;
    let location = format!("/api/v1/claims/{}", event.claim_id);
    publish(&gateway, arus_schemas::Event::ClaimSubmitted(event), location, key).await
}

/// `POST /api/v1/authorizations`: an `AuthRequested` on `auth.events`, 202 with its id.
async fn request_authorization(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: Result<Json<commands::AuthorizationCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if let Some(answer) = replayed(&gateway, key.as_deref()).await? {
        return Ok(answer);
    }
    let Json(request) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let event = request.event(now())?;
    let location = format!("/api/v1/authorizations/{}", event.auth_id);
    publish(&gateway, arus_schemas::Event::AuthRequested(event), location, key).await
}

/// `GET /api/v1/authorizations/{authId}`: where an authorization stands (requested, approved
/// with its units used, denied), as the adjudication job keeps it.
async fn authorization(State(gateway): State<Gateway>, Path(auth_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let auth_id = identifier("authId", Some(auth_id))?;
    let view: arus_schemas::read_models::AuthView =
        stored(&gateway, arus_schemas::read_models::authorization_key(&auth_id)).await?.ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "AUTHORIZATION_NOT_FOUND",
            message: format!("no authorization {auth_id}"),
            details: vec![json!({ "field": "authId", "issue": "unknown" })],
        })?;
    Ok(Json(json!({
        "data": {
            "authId": auth_id,
            "memberId": view.member_id,
            "status": view.status,
            "procedureCode": view.procedure_code,
            "approvedUnits": view.approved_units,
            "usedUnits": view.used_units,
            "validFrom": view.valid_from.map(|d| d.to_string()),
            "validTo": view.valid_to.map(|d| d.to_string()),
        },
        "meta": { "traceId": trace_id() },
        "links": { "self": format!("/api/v1/authorizations/{auth_id}") },
    })))
}
