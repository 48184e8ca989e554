//! Commands in: a member and a coverage change posted to the gateway become events on
//! `member.events` (here the embedded log), which, folded into the store, make the member
//! eligible; bad requests get 400 or 422 and publish nothing.

mod common;

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_gateway::commands::TopicPublisher;
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::{Event, wire};
use serde_json::Value;

fn request(address: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    common::request_json(address, method, path, body, "")
}

fn request_with(address: std::net::SocketAddr, method: &str, path: &str, body: &str, headers: &str) -> (u16, Value) {
    common::request_json(address, method, path, body, headers)
}

fn member_events(log: &EmbeddedLog) -> Vec<Event> {
    let mut events = Vec::new();
    for (partition, end) in log.end_offsets("member.events").expect("topic").into_iter().enumerate() {
        for record in log.fetch("member.events", partition as u32, 0, end as usize).expect("fetch") {
            events.push(wire::decode(&record.value).expect("an event"));
        }
    }
    events
}

const MEMBER: &str = r#"{"relationship":"SUBSCRIBER","nik":"3171014703900012","fullName":"Siti Aminah","dateOfBirth":"1990-03-07","sex":"FEMALE","provinceCode":"31","regencyCode":"3171","city":"Jakarta"}"#;

#[test]
fn posted_commands_become_events_that_make_the_member_eligible() {
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let store = Arc::new(MemoryStore::new());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let (served, publisher) = (store.clone(), Arc::new(TopicPublisher::log(log.clone())));
    std::thread::spawn(move || arus_gateway::serve_blocking_with(listener, served, Some(publisher)));

    let (status, body) = request(address, "POST", "/api/v1/members", MEMBER);
    assert_eq!(status, 202, "{body}");
    let member_id = body["data"]["memberId"].as_str().expect("a member id").to_owned();
    assert!(body["data"]["eventId"].is_string());
    assert_eq!(body["links"]["self"], format!("/api/v1/members/{member_id}"));
    let events = member_events(&log);
    assert_eq!(events.len(), 1);
    let Event::MemberCreated(created) = &events[0] else { panic!("a MemberCreated") };
    assert_eq!((created.member_id.as_str(), created.subscriber_id.as_str()), (member_id.as_str(), member_id.as_str()));
    assert_eq!(created.event_id, body["data"]["eventId"]);

    // Coverage for a member the store does not know yet needs the family and subscriber.
    let path = format!("/api/v1/members/{member_id}/coverage");
    let enrol = r#"{"changeType":"ENROLLED","planId":"SILVER-2026","effectiveDate":"2026-01-01"}"#;
    let (status, body) = request(address, "POST", &path, enrol);
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (400, Some("familyId")), "{body}");
    // Once the job has folded the MemberCreated in, the store knows them.
    let mut state = EligibilityState::new();
    for event in member_events(&log) {
        state.apply_to(&event, &*store).expect("store");
    }
    let (status, body) = request(address, "POST", &path, enrol);
    assert_eq!(status, 202, "{body}");
    let events = member_events(&log);
    let Some(Event::CoverageChanged(change)) = events.last() else { panic!("a CoverageChanged") };
    assert_eq!(
        (change.family_id.as_str(), change.subscriber_id.as_str()),
        (created.family_id.as_str(), member_id.as_str())
    );
    for event in &events {
        state.apply_to(event, &*store).expect("store");
    }
    let (status, body) = request(
        address,
        "GET",
        &format!("/api/v1/eligibility?memberId={member_id}&serviceDate=2026-02-01&serviceType=99213"),
        "",
    );
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("ACTIVE")), "{body}");

    // Mistakes: 400 for what is malformed, 422 for what does not fit together; nothing published.
    let before = member_events(&log).len();
    for (body, status, field) in [
        (MEMBER.replace("3171014703900012", "31710147039"), 400, "nik"),
        (MEMBER.replace("\"1990-03-07\"", "\"1990-03-08\""), 422, "nik"),
        (MEMBER.replace("\"FEMALE\"", "\"MALE\""), 422, "nik"),
        (MEMBER.replace("\"3171\"", "\"3271\""), 422, "regencyCode"),
        (MEMBER.replace("\"SUBSCRIBER\"", "\"SPOUSE\""), 400, "familyId"),
        (MEMBER.replace("\"SUBSCRIBER\"", "\"COUSIN\""), 400, "relationship"),
        (MEMBER.replace(r#""fullName":"Siti Aminah","#, ""), 400, "fullName"),
        ("{not json".to_owned(), 400, "body"),
    ] {
        let (got, answer) = request(address, "POST", "/api/v1/members", &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["details"][0]["field"].as_str(), Some(field), "{body}: {answer}");
        assert!(!answer.to_string().contains("Siti"), "no personal data in errors: {answer}");
    }
    let (status, body) = request(
        address,
        "POST",
        &path,
        r#"{"changeType":"TERMINATED","planId":"SILVER-2026","effectiveDate":"2026-05-01","endDate":"2026-04-01"}"#,
    );
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (422, Some("endDate")), "{body}");
    assert_eq!(member_events(&log).len(), before, "nothing published for a refused command");

    // A retry with the same Idempotency-Key gets the first answer and publishes nothing more.
    let key = "Idempotency-Key: retry-1\r\n";
    let (status, first) = request_with(address, "POST", "/api/v1/members", MEMBER, key);
    assert_eq!(status, 202, "{first}");
    let (status, again) = request_with(address, "POST", "/api/v1/members", MEMBER, key);
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["data"], first["data"], "the same member and event ids");
    assert_eq!(again["meta"]["replayed"], true);
    assert_eq!(member_events(&log).len(), before + 1, "one event for two tries");
    let (status, body) =
        request_with(address, "POST", "/api/v1/members", MEMBER, "Idempotency-Key: no spaces allowed\r\n");
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (400, Some("Idempotency-Key")), "{body}");
}

#[test]
fn a_gateway_without_an_event_bus_refuses_commands_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || arus_gateway::serve_blocking(listener, Arc::new(MemoryStore::new())));
    let (status, body) = request(address, "POST", "/api/v1/members", MEMBER);
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("NO_EVENT_BUS")), "{body}");
}
