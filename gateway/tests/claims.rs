//! Claims and accumulators through the gateway: the adjudication job run on an embedded log
//! into the store, its decisions and a member's totals read back over REST.

mod common;

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::wire;
use serde_json::Value;

fn get(address: std::net::SocketAddr, path: &str) -> (u16, Value) {
    common::request_json(address, "GET", path, "", &common::internal())
}

#[test]
fn a_decided_claim_and_the_members_accumulators_are_served() {
    let (store, report) =
        common::decided_store(common::events().into_iter().chain(common::provider_and_claim()).collect(), 2);
    assert_eq!(report.decided.get("APPROVED"), Some(&1), "{report:?}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || arus_gateway::serve(listener, store, common::options()));

    let (status, body) = get(address, "/api/v1/claims/C1");
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!((data["status"].as_str(), data["state"].as_str()), (Some("APPROVED"), Some("ADJUDICATED")));
    // Allowed 800,000; deductible 500,000; 20% of the 300,000 left; the plan pays 240,000.
    let line = &data["lines"][0];
    assert_eq!(
        [&line["allowedIdr"], &line["deductibleIdr"], &line["coinsuranceIdr"], &line["planPaidIdr"]],
        [800_000, 500_000, 60_000, 240_000]
    );
    let adjustments: Vec<(String, String, i64)> = line["adjustments"]
        .as_array()
        .expect("adjustments")
        .iter()
        .map(|a| {
            (
                a["group"].as_str().unwrap_or("").to_owned(),
                a["carc"].as_str().unwrap_or("").to_owned(),
                a["amountIdr"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let expected = [("CO", "45", 200_000), ("PR", "1", 500_000), ("PR", "2", 60_000)]
        .map(|(g, c, a)| (g.to_owned(), c.to_owned(), a));
    assert_eq!(adjustments, expected);
    assert!(
        data["explanation"]
            .as_array()
            .is_some_and(|t| t.iter().any(|l| l.as_str().is_some_and(|l| l.contains("plan SILVER-2026 version 1")))),
        "{body}"
    );
    assert_eq!(data["totalMemberShareIdr"], 560_000);

    let (status, body) = get(address, "/api/v1/members/M1/accumulators?year=2026");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["data"]["deductibleMetIdr"].as_i64(), body["data"]["outOfPocketMetIdr"].as_i64()),
        (Some(500_000), Some(560_000))
    );
    assert_eq!(body["data"]["family"]["deductibleMetIdr"], 500_000);
    assert_eq!(body["data"]["planPaidToDateIdr"], 240_000);
    // Another year: nothing met yet.
    let (status, body) = get(address, "/api/v1/members/M1/accumulators?year=2027");
    assert_eq!((status, body["data"]["deductibleMetIdr"].as_i64()), (200, Some(0)), "{body}");

    for (path, status, code) in [
        ("/api/v1/claims/C404", 404, "CLAIM_NOT_FOUND"),
        ("/api/v1/claims/bad%20id", 400, "INVALID_PARAMETER"),
        ("/api/v1/members/NOPE/accumulators?year=2026", 404, "MEMBER_NOT_FOUND"),
        ("/api/v1/members/M1/accumulators?year=twenty", 400, "INVALID_PARAMETER"),
    ] {
        let (got, body) = get(address, path);
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
}

fn post(address: std::net::SocketAddr, path: &str, body: &str, headers: &str) -> (u16, Value) {
    common::request_json(address, "POST", path, body, &format!("{}{headers}", common::internal()))
}

#[test]
fn claims_and_authorizations_submitted_over_rest_are_decided() {
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in common::events().into_iter().chain(common::provider_and_claim()) {
        state.apply_to(&event, &*store).expect("store");
        let bytes = wire::encode(&event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let (served, publisher) = (store.clone(), Arc::new(arus_gateway::commands::TopicPublisher::log(log.clone())));
    let options = arus_gateway::Options { publisher: Some(publisher), ..common::options() };
    std::thread::spawn(move || arus_gateway::serve(listener, served, options));

    // A week ago: within timely filing of today's submission.
    let today = arus_schemas::Timestamp(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    )
    .date();
    let served_on = today.add_days(-7);
    let claim = format!(
        r#"{{"memberId":"M1","providerId":"P1","claimType":"PROFESSIONAL","lines":[{{"procedureCode":"80053","diagnosisCode":"J06.9","serviceDate":"{served_on}","units":1,"chargeAmountIdr":1000000}}]}}"#
    );
    let (status, body) = post(address, "/api/v1/claims", &claim, "Idempotency-Key: claim-1\r\n");
    assert_eq!(status, 202, "{body}");
    let claim_id = body["data"]["claimId"].as_str().expect("a claim id").to_owned();
    assert_eq!(body["links"]["self"], format!("/api/v1/claims/{claim_id}"));
    // A retry with the same key: the same answer, no second claim.
    let (status, again) = post(address, "/api/v1/claims", &claim, "Idempotency-Key: claim-1\r\n");
    assert_eq!((status, again["data"]["claimId"].as_str()), (202, Some(claim_id.as_str())), "{again}");
    // The partner route answers only on the partner listener, to a client certificate
    // (tests/tls.rs): here, refused.
    let (status, body) = post(address, "/api/partner/v1/claims/submit", &claim, "");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("CLIENT_CERTIFICATE_REQUIRED")), "{body}");

    let authorization = format!(
        r#"{{"memberId":"M1","providerId":"P1","procedureCode":"70551","diagnosisCode":"G43.9","requestedUnits":1,"serviceDateFrom":"{served_on}","serviceDateTo":"{}"}}"#,
        served_on.add_days(30)
    );
    let (status, body) = post(address, "/api/v1/authorizations", &authorization, "");
    assert_eq!(status, 202, "{body}");
    let auth_id = body["data"]["authId"].as_str().expect("an auth id").to_owned();

    // Mistakes are refused clearly, and publish nothing.
    let future = today.add_days(3);
    for (body, status, field) in [
        // Money is whole rupiah: a fraction is refused, naming the field.
        (claim.replace("1000000", "1000000.5"), 400, "lines[0].chargeAmountIdr"),
        ("{not json".to_owned(), 400, "body"),
        (claim.replace("J06.9", "flu"), 400, "lines.diagnosisCode"),
        (claim.replace(&served_on.to_string(), &future.to_string()), 422, "lines.serviceDate"),
        (claim.replace(r#""units":1"#, r#""units":0"#), 400, "lines.units"),
        (r#"{"memberId":"M1","providerId":"P1","claimType":"PROFESSIONAL","lines":[]}"#.to_owned(), 400, "lines"),
        (claim.replace("PROFESSIONAL", "DENTAL"), 400, "claimType"),
    ] {
        let (got, answer) = post(address, "/api/v1/claims", &body, "");
        assert_eq!((got, answer["error"]["details"][0]["field"].as_str()), (status, Some(field)), "{body}: {answer}");
    }
    let (status, answer) = post(
        address,
        "/api/v1/authorizations",
        &authorization.replace(&served_on.add_days(30).to_string(), &served_on.add_days(-1).to_string()),
        "",
    );
    assert_eq!((status, answer["error"]["details"][0]["field"].as_str()), (422, Some("serviceDateTo")), "{answer}");
    let submitted = |log: &EmbeddedLog| -> usize {
        log.end_offsets("claims.events").expect("offsets").iter().sum::<u64>() as usize
    };
    assert_eq!(submitted(&log), 2, "the first claim, and the one submitted over REST");

    // The adjudication job decides them.
    let report = arus_jobs::adjudication::job::run_on_log(
        log.clone(),
        &arus_jobs::runtime::Cluster::Local { workers: 1 },
        store.clone(),
    )
    .expect("adjudication");
    assert_eq!(report.decided.values().sum::<u64>(), 2, "{report:?}");
    let (status, body) = get(address, &format!("/api/v1/claims/{claim_id}"));
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("APPROVED")), "{body}");
    let (status, body) = get(address, &format!("/api/v1/authorizations/{auth_id}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["status"].as_str(), body["data"]["memberId"].as_str()), (Some("REQUESTED"), Some("M1")));
    let (status, body) = get(address, "/api/v1/authorizations/A404");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("AUTHORIZATION_NOT_FOUND")));
}
