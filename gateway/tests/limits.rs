//! Rate limits per tier, shared by two gateways through one Redis: anonymous callers by
//! address (behind a trusted proxy, the forwarded one), token holders by client, each with
//! `RateLimit-*` headers and, past the limit, 429 with `Retry-After`.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arus_connectors::store::MemoryStore;
use arus_jobs::eligibility::EligibilityState;

fn gateway(redis: &str, prefix: &str, trusted: &[&str]) -> SocketAddr {
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in common::events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let per_hour = |requests| arus_gateway::RateLimit { requests, per: Duration::from_secs(3_600) };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let options = arus_gateway::Options {
        rate_limit: Some(arus_gateway::RateLimiting {
            tiers: arus_gateway::Tiers { anonymous: per_hour(3), authenticated: per_hour(4), premium: per_hour(50) },
            redis: Some(redis.to_owned()),
            prefix: prefix.to_owned(),
            trusted_proxies: trusted.iter().map(|a| a.parse().expect("an address")).collect(),
        }),
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(listener, store, options));
    address
}

/// The status and the headers (lower case) of a GET with `headers`.
fn get(address: SocketAddr, headers: &str) -> (u16, Vec<(String, String)>) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let path = "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=99213";
    write!(stream, "GET {path} HTTP/1.1\r\nHost: arus\r\n{headers}Connection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn tiers_hold_across_two_gateways_sharing_redis() {
    let Some(redis) = arus_connectors::service_address("REDIS_URL") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-limits-{}-{nanos}:", std::process::id());
    let (a, b) = (gateway(&redis, &prefix, &[]), gateway(&redis, &prefix, &[]));

    // Anonymous, one address: three in all, whichever gateway answers.
    for (n, gateway) in [a, b, a].into_iter().enumerate() {
        let (status, headers) = get(gateway, "");
        assert_eq!(status, 200, "#{n}: {headers:?}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&headers, "ratelimit-remaining"), Some((2 - n).to_string().as_str()), "#{n}");
    }
    let (status, headers) = get(b, "");
    assert_eq!(status, 429, "the fourth, at the other gateway: {headers:?}");
    let retry: u64 = header(&headers, "retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1_100..=1_200).contains(&retry), "a third of an hour: {retry}");
    assert_eq!(header(&headers, "ratelimit-remaining"), Some("0"));

    // A token holder from the same address: its client's own budget, four.
    let internal = common::internal();
    for gateway in [a, b, a, b] {
        assert_eq!(get(gateway, &internal).0, 200);
    }
    assert_eq!(get(a, &internal).0, 429);
    let other = format!("Authorization: Bearer {}\r\n", common::token("member", "M1"));
    assert_eq!(get(b, &other).0, 200, "another client has its own");

    // Behind a trusted proxy, the forwarded address is the caller.
    let c = gateway(&redis, &prefix, &["127.0.0.1"]);
    let from = |address: &str| format!("X-Forwarded-For: {address}\r\n");
    for _ in 0..3 {
        assert_eq!(get(c, &from("198.51.100.7")).0, 200);
    }
    assert_eq!(get(c, &from("198.51.100.7")).0, 429);
    assert_eq!(get(c, &from("198.51.100.8")).0, 200, "another forwarded address, another budget");
}
