//! The REST gateway over the embedded store: eligibility answers in the seed's format, which
//! change as the store does, and clear 4xx errors for every client mistake.

mod common;

use std::sync::Arc;

use arus_connectors::store::MemoryStore;
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::events::CoverageChangeType;
use common::{coverage, events};
use serde_json::Value;

/// A GET: status and body text.
fn get_text(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    common::request_text(address, "GET", path, "", &common::internal())
}

/// A POST of a JSON body: status and JSON body.
fn post(address: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    common::request_json(address, "POST", path, body, &common::internal())
}

/// A GET: status and JSON body.
fn get(address: std::net::SocketAddr, path: &str) -> (u16, Value) {
    common::request_json(address, "GET", path, "", &common::internal())
}

#[test]
fn eligibility_answers_follow_the_store_and_mistakes_get_clear_errors() {
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let served = store.clone();
    std::thread::spawn(move || arus_gateway::serve(listener, served, common::options()));

    let (status, body) = get(address, "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=70551");
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["eligible"], true);
    assert_eq!(data["status"], "ACTIVE");
    assert_eq!(data["planId"], "SILVER-2026");
    assert_eq!(data["coverageStart"], "2026-01-01");
    assert_eq!(data["requiresPriorAuth"], true);
    assert_eq!(data["benefits"]["copayIdr"], 25_000);
    assert!(body["meta"]["traceId"].is_string());
    assert_eq!(body["links"]["self"], "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=70551");

    // A termination reaches the store: the same question gets the new answer.
    state.apply_to(&coverage("c2", CoverageChangeType::TERMINATED, "2026-02-15"), &*store).expect("store");
    let (status, body) = get(address, "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=99213");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["data"]["eligible"].clone(), body["data"]["status"].clone()),
        (Value::Bool(false), "TERMINATED".into())
    );
    assert_eq!(body["data"]["coverageEnd"], "2026-02-14");

    for (path, status, code, field) in [
        (
            "/api/v1/eligibility?memberId=NOPE&serviceDate=2026-03-01&serviceType=99213",
            404,
            "MEMBER_NOT_FOUND",
            "memberId",
        ),
        (
            "/api/v1/eligibility?memberId=M1&serviceDate=2026-02-30&serviceType=99213",
            400,
            "INVALID_PARAMETER",
            "serviceDate",
        ),
        (
            "/api/v1/eligibility?memberId=M1&serviceDate=yesterday&serviceType=99213",
            400,
            "INVALID_PARAMETER",
            "serviceDate",
        ),
        ("/api/v1/eligibility?serviceDate=2026-03-01&serviceType=99213", 400, "INVALID_PARAMETER", "memberId"),
        (
            "/api/v1/eligibility?memberId=M%201%3B&serviceDate=2026-03-01&serviceType=99213",
            400,
            "INVALID_PARAMETER",
            "memberId",
        ),
        ("/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01", 400, "INVALID_PARAMETER", "serviceType"),
    ] {
        let (got, body) = get(address, path);
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], field, "{path}: {body}");
        assert!(body["error"]["trace_id"].is_string() && body["error"]["message"].is_string(), "{body}");
    }
    // The member's record: relationship, subscriber, coverage changes; never personal data.
    let (status, body) = get(address, "/api/v1/members/M1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["relationship"], "SUBSCRIBER");
    assert_eq!(body["data"]["coverage"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["data"]["coverage"][1]["change"], "TERMINATED");
    let text = body.to_string();
    assert!(!text.contains("3171010101900001") && !text.contains("Test Member"), "no NIK or name: {text}");
    assert_eq!(get(address, "/api/v1/members/NOPE").0, 404);
    assert_eq!(get(address, "/api/v1/members/bad%20id").0, 400);

    // The OpenAPI document lists what the server serves.
    let (status, document) = get(address, "/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(document, arus_gateway::openapi_document());
    let paths = document["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 19);
    for path in paths.keys().filter(|p| document["paths"][p.as_str()].get("get").is_some()) {
        let concrete = path
            .replace("{memberId}", "M1")
            .replace("{claimId}", "C404")
            .replace("{providerId}", "P1")
            .replace("{authId}", "A404")
            + match path.as_str() {
                "/api/v1/eligibility" => "?memberId=M1&serviceDate=2026-03-01&serviceType=99213",
                "/api/v1/benefits/summary" => "?memberId=M1&asOf=2026-03-01",
                "/api/v1/analytics/claims/daily" | "/api/v1/providers/{providerId}/scorecard" => {
                    "?from=2026-01-01&to=2026-01-31"
                }
                _ => "",
            };
        // Served: an answer, or the route's own refusal (no such claim; no ClickHouse here),
        // never the fallback's "no such route".
        let (status, body) = get(address, &concrete);
        assert!(
            [200, 404, 503].contains(&status) && body["error"]["code"] != "NOT_FOUND",
            "{concrete} is in the document but not served: {status} {body}"
        );
    }
    assert_eq!(get(address, "/nowhere").0, 404);

    // The partner route answers only on the partner listener, to a client certificate
    // (tests/tls.rs): here, refused.
    let verify = "/api/partner/v1/eligibility/verify";
    let (status, body) = post(address, verify, r#"{"memberId":"M1","serviceDate":"2026-03-01","serviceType":"99213"}"#);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("CLIENT_CERTIFICATE_REQUIRED")), "{body}");
    assert_eq!(get(address, "/health"), (200, serde_json::json!({ "status": "ok" })));
    assert_eq!(get(address, "/ready").0, 200);

    // The benefits summary: plan and benefits in force on a date.
    let (status, body) = get(address, "/api/v1/benefits/summary?memberId=M1&asOf=2026-01-10");
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["covered"].as_bool(), body["data"]["planId"].as_str()), (Some(true), Some("SILVER-2026")));
    assert_eq!(body["data"]["benefits"]["copayIdr"], 25_000);
    let (_, body) = get(address, "/api/v1/benefits/summary?memberId=M1&asOf=2026-03-01");
    assert_eq!(body["data"]["covered"].as_bool(), Some(false), "terminated from 2026-02-15: {body}");
    assert_eq!(get(address, "/api/v1/benefits/summary?memberId=M1").0, 400);

    // Rate, errors and latency per route template.
    let (status, metrics) = get_text(address, "/metrics");
    assert_eq!(status, 200);
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    let route = "route=\"/api/v1/eligibility\"";
    assert_eq!(value(&format!("arus_gateway_requests_total{{{route},status=\"400\"}}")), 5);
    assert_eq!(value(&format!("arus_gateway_requests_total{{{route},status=\"404\"}}")), 1);
    assert_eq!(value(&format!("arus_gateway_requests_total{{{route},status=\"200\"}}")), 3);
    assert_eq!(value(&format!("arus_gateway_request_duration_seconds_count{{{route}}}")), 9);
    assert_eq!(value(&format!("arus_gateway_request_duration_seconds_bucket{{{route},le=\"+Inf\"}}")), 9);
    assert_eq!(
        value("arus_gateway_requests_total{route=\"/api/v1/members/{memberId}\",status=\"200\"}"),
        2,
        "labelled by the route's template, not the member"
    );
}
