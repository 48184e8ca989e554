//! The audit trail: every request to a route with a member's data is an `AccessAudited` on
//! `audit.events` — who, what, how it ended, the trace id the caller was given — however it
//! ends (answered, refused, unauthenticated), and never the data; other routes are not.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::events::AccessAudited;
use arus_schemas::{Event, wire};
use serde_json::Value;

/// The audit records on the log: at least `n`, waiting for the auditing thread (10 s at most).
fn audited(log: &EmbeddedLog, n: usize) -> Vec<(AccessAudited, Vec<u8>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut records = Vec::new();
        for (partition, end) in log.end_offsets("audit.events").expect("the topic").into_iter().enumerate() {
            for record in log.fetch("audit.events", partition as u32, 0, end as usize).expect("fetch") {
                let Event::AccessAudited(audited) = wire::decode(&record.value).expect("an event") else {
                    panic!("only audit records on audit.events")
                };
                records.push((audited, record.value.to_vec()));
            }
        }
        if records.len() >= n || std::time::Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn every_access_to_a_members_data_is_on_the_audit_trail() {
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in common::events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let grpc_address = grpc.local_addr().expect("address");
    let options = arus_gateway::Options {
        audit: Some(Arc::new(arus_gateway::commands::TopicPublisher::log(log.clone()))),
        grpc: Some(grpc),
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(listener, store, options));

    let bearer = |token: String| format!("Authorization: Bearer {token}\r\n");
    let eligibility = "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=99213";
    let requests = [
        ("internal reads M1", "/api/v1/members/M1", common::internal(), 200),
        ("M2 asks about M1", "/api/v1/members/M1", bearer(common::token("member", "M2")), 404),
        ("no token", "/api/v1/members/M1", String::new(), 401),
        ("a token that does not verify", "/api/v1/claims/C9", "Authorization: Bearer junk\r\n".to_owned(), 401),
        ("anonymous eligibility", eligibility, String::new(), 200),
    ];
    let mut traces = HashMap::new();
    for (what, path, headers, status) in &requests {
        let (got, body): (u16, Value) = common::request_json(address, "GET", path, "", headers);
        assert_eq!(got, *status, "{what}: {body}");
        let trace = body["meta"]["traceId"].as_str().or(body["error"]["trace_id"].as_str()).expect("a trace id");
        traces.insert(trace.to_owned(), *what);
    }
    // The same question over gRPC, anonymous: audited too.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let grpc_trace = runtime.block_on(async {
        use arus_gateway::grpc::proto::CheckRequest;
        use arus_gateway::grpc::proto::eligibility_client::EligibilityClient;
        let mut client = EligibilityClient::connect(format!("http://{grpc_address}")).await.expect("connect");
        let question = CheckRequest {
            member_id: "M1".to_owned(),
            service_date: "2026-03-01".to_owned(),
            service_type: "99213".to_owned(),
        };
        client.check(question).await.expect("an answer").into_inner().trace_id
    });
    traces.insert(grpc_trace, "gRPC check");
    // Not a member's data: not audited.
    assert_eq!(common::request_text(address, "GET", "/health", "", "").0, 200);
    assert_eq!(common::request_text(address, "GET", "/metrics", "", &common::internal()).0, 200);

    let records = audited(&log, requests.len() + 1);
    assert_eq!(records.len(), requests.len() + 1, "one record per request to a member's data");
    let by_request: HashMap<&str, &AccessAudited> =
        records.iter().map(|(r, _)| (traces[r.trace_id.as_str()], r)).collect();
    let who = |what: &str| {
        let r = by_request[what];
        (r.role.as_str(), r.client_id.as_str(), r.route.as_str(), r.status, r.resource_ids.clone())
    };
    assert_eq!(
        who("internal reads M1"),
        ("internal", "dev-internal-ops", "/api/v1/members/{memberId}", 200, vec!["memberId=M1".to_owned()])
    );
    assert_eq!(
        who("M2 asks about M1"),
        ("member", "dev-member-M2", "/api/v1/members/{memberId}", 404, vec!["memberId=M1".to_owned()])
    );
    assert_eq!(who("no token").0, "anonymous");
    assert_eq!((who("no token").3, who("a token that does not verify").0), (401, "unverified"));
    assert_eq!(who("anonymous eligibility").4, ["memberId=M1"]);
    assert_eq!(
        who("gRPC check"),
        ("anonymous", "anonymous", "/arus.eligibility.v1.Eligibility/Check", 200, vec!["memberId=M1".to_owned()])
    );
    for (record, bytes) in &records {
        assert_eq!(record.event_id, record.trace_id);
        assert_eq!(record.method, if record.route.starts_with("/arus.") { "POST" } else { "GET" });
        // Never the data: no NIK, no name, not the token.
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("3171010101900001") && !text.contains("Test Member") && !text.contains("junk"));
    }
}
