//! The OpenAPI 3.1 document (`GET /openapi.json`), generated from the handlers: each route is
//! registered in [`api`] together with its `#[utoipa::path]` (parameters, body, responses and
//! the types they are made of), so the server cannot serve a route the document does not
//! describe, or answer a success the document has no schema for.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Gateway;
use crate::error::ErrorBody;
use crate::routes::{analytics, authorizations, claims, commands, eligibility, health, members};

/// The document's frame: what the routes add their paths and schemas to.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "arus gateway",
        description = "Eligibility, claims, members and authorizations over the state the arus jobs materialize; commands in as events."
    ),
    components(schemas(ErrorBody, Id, IsoDate, crate::routes::claims::StatusFilter, crate::routes::analytics::GroupBy)),
    tags(
        (name = "eligibility", description = "Coverage on a date: one store read"),
        (name = "members", description = "Members, their coverage and accumulators"),
        (name = "claims", description = "Decisions and a member's history"),
        (name = "authorizations", description = "Prior authorizations"),
        (name = "commands", description = "Commands in: each becomes an event, answered 202"),
        (name = "analytics", description = "Aggregates from ClickHouse"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct Document;

/// Every route with its documentation: the router the gateway serves and the document are
/// both made from this one list.
pub(crate) fn api() -> OpenApiRouter<Gateway> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(eligibility::eligibility))
        .routes(routes!(eligibility::verify))
        .routes(routes!(eligibility::benefits_summary))
        .routes(routes!(members::member))
        .routes(routes!(members::accumulators))
        .routes(routes!(claims::claim))
        .routes(routes!(claims::member_claims))
        .routes(routes!(authorizations::authorization))
        .routes(routes!(commands::create_member))
        .routes(routes!(commands::change_coverage))
        .routes(routes!(commands::submit_claim))
        .routes(routes!(commands::submit_partner_claim))
        .routes(routes!(commands::request_authorization))
        .routes(routes!(analytics::daily_claims))
        .routes(routes!(analytics::scorecard))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(crate::metrics::metrics))
        .routes(routes!(openapi))
}

/// The document, as JSON text: made once per process.
fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut document = api().into_openapi();
        secured(&mut document);
        document.to_json().expect("the OpenAPI document serializes")
    })
}

/// Who may call each operation, from the access table (`access::RULES`): the bearer scheme,
/// each operation's requirement (optional on public routes, with the scope on the others),
/// and the 401 and 403 answers.
fn secured(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let components = document.components.get_or_insert_with(Default::default);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.bearer_format = Some("JWT".to_owned());
    bearer.description = Some(
        "An access token (JWT, RS256 or ES256) from the configured OpenID issuer, for the audience \
         api.healthinsurance.com; its arus_role and scopes decide what it may call"
            .to_owned(),
    );
    components.security_schemes.insert("bearer".to_owned(), RefOr::T(SecurityScheme::Http(bearer)));
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let Some(rule) = crate::access::rule_of(method, path) else { continue };
            let scopes: Vec<&str> = rule.scope.into_iter().collect();
            let mut requirements = vec![SecurityRequirement::new("bearer", scopes)];
            if rule.public {
                requirements.insert(0, SecurityRequirement::default());
            }
            operation.security = Some(requirements);
            let responses = &mut operation.responses.responses;
            responses.entry("401".to_owned()).or_insert_with(|| error("no bearer token where the route needs one, or one that does not verify (WWW-Authenticate says why)"));
            if !rule.public {
                responses
                    .entry("403".to_owned())
                    .or_insert_with(|| error("the token lacks the route's scope, or its role may not call it"));
            }
        }
    }
}

/// An item's operations, with their methods upper case.
fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut utoipa::openapi::path::Operation)> {
    [
        ("GET", &mut item.get),
        ("POST", &mut item.post),
        ("PUT", &mut item.put),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
    .collect()
}

/// The OpenAPI 3.1 document, as JSON (a test walks its paths).
pub fn openapi_document() -> serde_json::Value {
    serde_json::from_str(document_text()).expect("the OpenAPI document is JSON")
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses(
    (status = 200, description = "the OpenAPI 3.1 document of these routes", content_type = "application/json", body = Object),
))]
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document_text()).into_response()
}

/// An identifier as arus writes them: letters, digits, `-`, `_` and `.`, 1 to 64 of them.
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "M000123")]
#[allow(dead_code)]
pub(crate) struct Id(String);

/// A calendar date, `YYYY-MM-DD`.
#[derive(ToSchema)]
#[schema(format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", example = "2026-03-01")]
#[allow(dead_code)]
pub(crate) struct IsoDate(String);

/// An error answer: `{"error": …}`, described by `description`.
fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
        .build()
        .into()
}

/// 429, with when to come back.
fn rate_limited() -> RefOr<utoipa::openapi::Response> {
    let seconds = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .minimum(Some(1))
        .build();
    ResponseBuilder::new()
        .description("past the caller's rate limit; Retry-After says when to come back")
        .header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new().schema(Some(seconds)).description(Some("seconds")).build(),
        )
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
        .build()
        .into()
}

/// The failures every query shares: a malformed parameter, a rate limit, the store away.
pub(crate) struct ReadErrors;

impl IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([
            ("400".to_owned(), error("a parameter is missing or malformed")),
            ("429".to_owned(), rate_limited()),
            ("503".to_owned(), error("the state store (or ClickHouse) does not answer; try again shortly")),
        ])
    }
}

/// The failures every command shares: a malformed or inconsistent body, a rate limit, the
/// event bus away.
pub(crate) struct CommandErrors;

impl IntoResponses for CommandErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([
            ("400".to_owned(), error("a field is missing or malformed, or the Idempotency-Key is")),
            (
                "409".to_owned(),
                error(
                    "the first request with this Idempotency-Key is still being processed; or, for a new member, its id or NIK is on record",
                ),
            ),
            ("413".to_owned(), error("the body is over 1 MiB")),
            ("415".to_owned(), error("the body is not declared JSON (Content-Type: application/json)")),
            (
                "422".to_owned(),
                error(
                    "well-formed fields that do not agree (a service date after today, say), or an Idempotency-Key reused for another request",
                ),
            ),
            ("429".to_owned(), rate_limited()),
            ("503".to_owned(), error("no event bus, or it does not answer: nothing was recorded, try again")),
        ])
    }
}

/// The `Idempotency-Key` header every command takes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IdempotencyKey {
    /// A retry with the same key within a day gets the first answer again, and publishes
    /// nothing.
    #[param(rename = "Idempotency-Key", value_type = Option<Id>)]
    key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::ParameterIn;

    #[test]
    fn the_header_parameter_is_where_commands_read_it() {
        let params = <IdempotencyKey as utoipa::IntoParams>::into_params(|| None);
        assert_eq!(params.len(), 1);
        assert_eq!(params[0].name, "Idempotency-Key");
        assert!(matches!(params[0].parameter_in, ParameterIn::Header));
    }
}
