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
    common::request_json(address, method, path, body, &common::internal())
}

fn request_with(address: std::net::SocketAddr, method: &str, path: &str, body: &str, headers: &str) -> (u16, Value) {
    common::request_json(address, method, path, body, &format!("{}{headers}", common::internal()))
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

/// A gateway publishing to an embedded log of its own and reading a store of its own: both,
/// and its address.
fn serve_on_log() -> (Arc<EmbeddedLog>, Arc<MemoryStore>, std::net::SocketAddr) {
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let store = Arc::new(MemoryStore::new());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let (served, publisher) = (store.clone(), Arc::new(TopicPublisher::log(log.clone())));
    let options = arus_gateway::Options { publisher: Some(publisher), ..common::options() };
    std::thread::spawn(move || arus_gateway::serve(listener, served, options));
    (log, store, address)
}

const MEMBER: &str = r#"{"relationship":"SUBSCRIBER","nik":"3171014703900012","fullName":"Siti Aminah","dateOfBirth":"1990-03-07","sex":"FEMALE","provinceCode":"31","regencyCode":"3171","city":"Jakarta"}"#;

#[test]
fn posted_commands_become_events_that_make_the_member_eligible() {
    let (log, store, address) = serve_on_log();

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

    // Coverage for a member the store does not know yet needs the family and subscriber: a
    // well-formed request that does not agree with the store (422, not a malformed 400).
    let path = format!("/api/v1/members/{member_id}/coverage");
    let enrol = r#"{"changeType":"ENROLLED","planId":"SILVER-2026","effectiveDate":"2026-01-01"}"#;
    let (status, body) = request(address, "POST", &path, enrol);
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (422, Some("familyId")), "{body}");
    // Once the job has folded the MemberCreated in, the store knows them.
    let mut state = EligibilityState::new();
    for event in member_events(&log) {
        state.apply_to(&event, &*store).expect("store");
    }
    let (status, body) = request(address, "POST", &path, enrol);
    assert_eq!(status, 202, "{body}");
    // The store knows the member now: recording it again is a conflict, and publishes nothing.
    let again = MEMBER.replacen('{', &format!("{{\"memberId\":\"{member_id}\","), 1);
    let (status, body) = request(address, "POST", "/api/v1/members", &again);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("MEMBER_EXISTS")), "{body}");
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

    // Mistakes: 400 for what is malformed (what the OpenAPI schema rules out), 422 for what
    // does not fit together (a spouse without a family, say); nothing published.
    let before = member_events(&log).len();
    for (body, status, field) in [
        (MEMBER.replace("3171014703900012", "31710147039"), 400, "nik"),
        (MEMBER.replace("\"1990-03-07\"", "\"1990-03-08\""), 422, "nik"),
        (MEMBER.replace("\"FEMALE\"", "\"MALE\""), 422, "nik"),
        (MEMBER.replace("\"3171\"", "\"3271\""), 422, "regencyCode"),
        (MEMBER.replace("\"SUBSCRIBER\"", "\"SPOUSE\""), 422, "familyId"),
        (MEMBER.replace("3171014703900012", "3171019903900012"), 422, "nik"),
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
    // The key bound to that request: another body with it is refused (IETF draft: 422) ...
    let other = MEMBER.replace("Jakarta", "Bandung");
    let (status, body) = request_with(address, "POST", "/api/v1/members", &other, key);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{body}");
    assert!(!body.to_string().contains("Bandung"), "the body is not echoed: {body}");
    // ... and a key is per route: the same key on another command is another request.
    let (status, body) = request_with(address, "POST", &path, enrol, key);
    assert_eq!(status, 202, "{body}");
    assert!(body["meta"]["replayed"].is_null() && body["data"]["eventId"] != first["data"]["eventId"], "{body}");
    assert_eq!(member_events(&log).len(), before + 2);
    let (status, body) =
        request_with(address, "POST", "/api/v1/members", MEMBER, "Idempotency-Key: no spaces allowed\r\n");
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (400, Some("Idempotency-Key")), "{body}");
}

/// A claim or authorization for a member the store knows, with a service before the member
/// was born: 422 naming the field, the date of birth not told, nothing published; on the day
/// of birth: accepted.
#[test]
fn services_before_a_members_birth_are_refused() {
    let (log, store, address) = serve_on_log();

    let newborn = MEMBER.replace("3171014703900012", "3171015506240001").replace("1990-03-07", "2024-06-15");
    let (status, body) = request(address, "POST", "/api/v1/members", &newborn);
    assert_eq!(status, 202, "{body}");
    let member_id = body["data"]["memberId"].as_str().expect("a member id").to_owned();
    let claim = |served_on: &str| {
        format!(
            r#"{{"memberId":"{member_id}","providerId":"P1","claimType":"PROFESSIONAL","lines":[{{"procedureCode":"80053","diagnosisCode":"J06.9","serviceDate":"2024-07-01","units":1,"chargeAmountIdr":100000}},{{"procedureCode":"80053","diagnosisCode":"J06.9","serviceDate":"{served_on}","units":1,"chargeAmountIdr":100000}}]}}"#
        )
    };
    let authorization = |from: &str| {
        format!(
            r#"{{"memberId":"{member_id}","providerId":"P1","procedureCode":"70551","diagnosisCode":"G43.9","requestedUnits":1,"serviceDateFrom":"{from}","serviceDateTo":"2024-08-01"}}"#
        )
    };
    // Before the job has folded the member in, the gateway cannot know the date of birth.
    let (status, body) = request(address, "POST", "/api/v1/claims", &claim("2024-06-14"));
    assert_eq!(status, 202, "{body}");
    let mut state = EligibilityState::new();
    for event in member_events(&log) {
        state.apply_to(&event, &*store).expect("store");
    }
    let claims_before = log.end_offsets("claims.events").expect("topic").iter().sum::<u64>();
    let (status, body) = request(address, "POST", "/api/v1/claims", &claim("2024-06-14"));
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (422, Some("lines.serviceDate")), "{body}");
    assert!(body.to_string().contains("line 2"), "the line is named: {body}");
    assert!(!body.to_string().contains("2024-06-15"), "the date of birth is not told: {body}");
    let (status, body) = request(address, "POST", "/api/v1/authorizations", &authorization("2024-06-01"));
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (422, Some("serviceDateFrom")), "{body}");
    assert_eq!(
        log.end_offsets("claims.events").expect("topic").iter().sum::<u64>(),
        claims_before,
        "nothing published for a refused claim"
    );
    let (status, body) = request(address, "POST", "/api/v1/claims", &claim("2024-06-15"));
    assert_eq!(status, 202, "{body}");
    let (status, body) = request(address, "POST", "/api/v1/authorizations", &authorization("2024-06-15"));
    assert_eq!(status, 202, "{body}");
}

/// A publisher that holds each event until the test lets it go, and can be told to fail.
struct Gated {
    entered: std::sync::mpsc::SyncSender<()>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<bool>>,
    inner: TopicPublisher,
}

impl arus_gateway::commands::Publisher for Gated {
    fn publish(&self, event: &Event) -> Result<(), String> {
        self.entered.send(()).map_err(|e| e.to_string())?;
        let publish = self.go.lock().map_err(|e| e.to_string())?.recv().map_err(|e| e.to_string())?;
        if publish { self.inner.publish(event) } else { Err("the bus is down".to_owned()) }
    }
}

#[test]
fn a_key_in_flight_is_409_and_a_failed_publish_frees_it() {
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let (entered, on_enter) = std::sync::mpsc::sync_channel(4);
    let (go, gate) = std::sync::mpsc::sync_channel(4);
    let publisher =
        Arc::new(Gated { entered, go: std::sync::Mutex::new(gate), inner: TopicPublisher::log(log.clone()) });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let options = arus_gateway::Options { publisher: Some(publisher), ..common::options() };
        arus_gateway::serve(listener, Arc::new(MemoryStore::new()), options)
    });
    let key = "Idempotency-Key: flight-1\r\n";

    // The first try fails to publish: 503, and the key is free again.
    let first = std::thread::spawn(move || request_with(address, "POST", "/api/v1/members", MEMBER, key));
    on_enter.recv().expect("the first try is publishing");
    go.send(false).expect("fail it");
    let (status, body) = first.join().expect("the first try");
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("EVENT_BUS_UNAVAILABLE")), "{body}");

    // The retry publishes; while it does, a third try with the key is told to wait (409).
    let second = std::thread::spawn(move || request_with(address, "POST", "/api/v1/members", MEMBER, key));
    on_enter.recv().expect("the retry is publishing");
    let (status, body) = request_with(address, "POST", "/api/v1/members", MEMBER, key);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("IDEMPOTENCY_KEY_IN_USE")), "{body}");
    go.send(true).expect("let it publish");
    let (status, published) = second.join().expect("the retry");
    assert_eq!(status, 202, "{published}");
    // Answered now: the next try gets that answer, and nothing reaches the publisher.
    let (status, again) = request_with(address, "POST", "/api/v1/members", MEMBER, key);
    assert_eq!((status, &again["data"]), (202, &published["data"]), "{again}");
    assert!(on_enter.try_recv().is_err(), "a replay publishes nothing");
    assert_eq!(member_events(&log).len(), 1);
}

#[test]
fn a_gateway_without_an_event_bus_refuses_commands_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || arus_gateway::serve(listener, Arc::new(MemoryStore::new()), common::options()));
    let (status, body) = request(address, "POST", "/api/v1/members", MEMBER);
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("NO_EVENT_BUS")), "{body}");
}

#[test]
fn a_new_member_with_a_nik_on_record_is_refused() {
    // The eligibility job and the gateway share the key of NIK digests; the store holds the
    // digest of M1's NIK, never the NIK.
    let key = "a key of NIK digests, for this test".as_bytes();
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::with_nik_key(key);
    for event in common::events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let Event::MemberCreated(m1) = &common::events()[1] else { panic!("M1") };
    let digest = arus_schemas::nik::nik_digest(key, &m1.nik);
    let held = arus_connectors::store::StateStore::get(&*store, &arus_schemas::read_models::nik_key(&digest));
    assert_eq!(held.expect("read").map(|(_, member)| member), Some(b"M1".to_vec()));

    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let options = arus_gateway::Options {
        publisher: Some(Arc::new(TopicPublisher::log(log.clone()))),
        nik_key: Some(key.to_vec()),
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(listener, store, options));
    // Another person's record with M1's NIK (consistent with its birth date, sex and regency).
    let body = |nik: &str| {
        format!(
            r#"{{"relationship":"SUBSCRIBER","nik":"{nik}","fullName":"Another Person","dateOfBirth":"1990-01-01","sex":"MALE","provinceCode":"31","regencyCode":"3171","city":"Jakarta"}}"#
        )
    };
    let (status, answer) = request(address, "POST", "/api/v1/members", &body(&m1.nik));
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("NIK_EXISTS")), "{answer}");
    assert!(!answer.to_string().contains(&m1.nik), "the NIK is not echoed: {answer}");
    assert!(member_events(&log).is_empty(), "nothing published");
    let (status, answer) = request(address, "POST", "/api/v1/members", &body("3171010101900002"));
    assert_eq!(status, 202, "another NIK is another person: {answer}");
}
