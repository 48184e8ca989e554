//! The OpenAPI 3 document of the routes (`GET /openapi.json`).

use axum::Json;
use serde_json::{Value, json};

/// The OpenAPI 3 document of the routes above.
pub(crate) async fn openapi() -> Json<Value> {
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
                    { "name": "status", "in": "query", "required": false, "description": "the seed's pending, approved (partly included), denied, paid; or a decision status", "schema": { "type": "string", "enum": ["pending", "approved", "denied", "paid", "APPROVED", "PARTIALLY_APPROVED", "DENIED", "PENDED"] } },
                    { "name": "dateFrom", "in": "query", "required": false, "schema": { "type": "string", "format": "date" } },
                    { "name": "limit", "in": "query", "required": false, "description": "1 to 1000 (default 100)", "schema": { "type": "integer" } },
                    { "name": "cursor", "in": "query", "required": false, "description": "where the page starts: the links.next of the page before", "schema": { "type": "string" } },
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
                "required": ["code", "message", "details", "trace_id"],
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                    "details": { "type": "array", "items": { "type": "object" } },
                    "trace_id": { "type": "string" },
                },
            }},
        }}},
    })
}
