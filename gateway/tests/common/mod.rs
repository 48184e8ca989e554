//! For the gateway tests: a plan, a member enrolled in it, and a bare HTTP/1.1 client (one
//! request per connection).

#![allow(dead_code)]

use std::io::{Read, Write};

use arus_schemas::events::{
    Benefits, CoverageChangeType, CoverageChanged, MemberCreated, PlanCreated, PlanTier, Relationship, Sex,
};
use arus_schemas::{Date, Event, Idr, Timestamp};
use serde_json::Value;

/// Sends a request (with extra header lines, each ending in `\r\n`) and returns the status and
/// the body text.
pub fn request_text(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: arus\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

/// [`request_text`], the body read as JSON (`Null` when it is not).
pub fn request_json(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, Value) {
    let (status, text) = request_text(address, method, path, body, headers);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn date(text: &str) -> Date {
    text.parse().expect("a date")
}

/// A Silver plan, member M1 (a subscriber) and M1 enrolled from 2026-01-01.
pub fn events() -> Vec<Event> {
    let benefits = Benefits {
        deductible_individual_idr: Idr(500_000),
        deductible_family_idr: Idr(1_500_000),
        oop_max_individual_idr: Idr(5_000_000),
        oop_max_family_idr: Idr(15_000_000),
        copay_idr: Idr(25_000),
        coinsurance_bp: 2_000,
        out_of_network_coinsurance_bp: 4_000,
        annual_limit_idr: Idr(100_000_000),
        prior_auth_procedures: vec!["70551".to_owned()],
        excluded_procedures: vec![],
    };
    vec![
        Event::PlanCreated(PlanCreated {
            event_id: "p".to_owned(),
            event_time: Timestamp(0),
            plan_id: "SILVER-2026".to_owned(),
            name: "Silver".to_owned(),
            tier: PlanTier::SILVER,
            plan_year: 2026,
            version: 1,
            benefits,
        }),
        Event::MemberCreated(MemberCreated {
            event_id: "m".to_owned(),
            event_time: Timestamp(1),
            member_id: "M1".to_owned(),
            family_id: "F1".to_owned(),
            subscriber_id: "M1".to_owned(),
            relationship: Relationship::SUBSCRIBER,
            nik: "3171010101900001".to_owned(),
            full_name: "Test Member".to_owned(),
            date_of_birth: date("1990-01-01"),
            sex: Sex::MALE,
            province_code: "31".to_owned(),
            regency_code: "3171".to_owned(),
            city: "Jakarta".to_owned(),
            phone: None,
            email: None,
        }),
        coverage("c1", CoverageChangeType::ENROLLED, "2026-01-01"),
    ]
}

/// A coverage change of M1 under the Silver plan.
pub fn coverage(id: &str, change_type: CoverageChangeType, effective: &str) -> Event {
    Event::CoverageChanged(CoverageChanged {
        event_id: id.to_owned(),
        event_time: Timestamp(2),
        member_id: "M1".to_owned(),
        family_id: "F1".to_owned(),
        subscriber_id: "M1".to_owned(),
        change_type,
        plan_id: "SILVER-2026".to_owned(),
        effective_date: date(effective),
        end_date: None,
        reason: Some("VOLUNTARY".to_owned()),
    })
}
