//! The server guards itself: every refusal in the error format (405, 413, 414, 431), a cap on
//! open connections, and a deadline for a request's head (a connection that says nothing is
//! closed, so half-open connections cannot pile up).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use arus_connectors::store::MemoryStore;
use serde_json::Value;

fn serve(limits: arus_gateway::Limits) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let options = arus_gateway::Options { limits, ..common::options() };
    std::thread::spawn(move || arus_gateway::serve(listener, Arc::new(MemoryStore::new()), options));
    address
}

/// Sends `head` (and `body`), and reads the answer: its status and JSON body.
fn send(address: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    stream.write_all(head.as_bytes()).expect("head");
    // The server may answer (and close) before the whole body is sent.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null))
}

#[test]
fn every_refusal_is_in_the_error_format() {
    let address = serve(arus_gateway::Limits::default());
    let auth = common::internal();
    let big = vec![b' '; 2 << 20];
    let head = format!(
        "POST /api/v1/claims HTTP/1.1\r\nHost: arus\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let long = format!("/api/v1/eligibility?memberId={}", "M".repeat(10_000));
    let header = format!("X-Filler: {}\r\n", "x".repeat(8_000));
    for (what, head, body, status, code) in [
        ("a 2 MiB body", head, &big[..], 413, "BODY_TOO_LARGE"),
        (
            "a 10 KB target",
            format!("GET {long} HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n"),
            &[][..],
            414,
            "URI_TOO_LONG",
        ),
        (
            "40 KB of headers",
            format!("GET /health HTTP/1.1\r\nHost: arus\r\n{}Connection: close\r\n\r\n", header.repeat(5)),
            &[][..],
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "a method a route does not take",
            format!("DELETE /api/v1/claims HTTP/1.1\r\nHost: arus\r\n{auth}Connection: close\r\n\r\n"),
            &[][..],
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "no such route",
            "GET /nowhere HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n".to_owned(),
            &[][..],
            404,
            "NOT_FOUND",
        ),
        (
            "a path parameter that is not text",
            format!("GET /api/v1/members/%FF%FE HTTP/1.1\r\nHost: arus\r\n{auth}Connection: close\r\n\r\n"),
            &[][..],
            400,
            "INVALID_PARAMETER",
        ),
        (
            "a query that is not text",
            "GET /api/v1/eligibility?memberId=%FF&serviceDate=2026-03-01&serviceType=99213 HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n"
                .to_owned(),
            &[][..],
            400,
            "INVALID_PARAMETER",
        ),
    ] {
        let (got, body) = send(address, &head, body);
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert!(body["error"]["trace_id"].is_string(), "{what}: {body}");
    }
}

/// Whether the server closed `stream` (end of stream, or a reset), waiting at most 10 s.
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted),
    }
}

#[test]
fn a_silent_connection_is_closed_at_its_deadline() {
    let address = serve(arus_gateway::Limits { header_read_timeout: Duration::from_millis(300), ..Default::default() });
    let mut silent = TcpStream::connect(address).expect("connect");
    assert!(closed(&mut silent), "a connection that sends nothing is closed");
    // Half a head, never finished: closed too.
    let mut slow = TcpStream::connect(address).expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: ar").expect("part of a head");
    assert!(closed(&mut slow), "a head that never ends is closed");
    // A prompt request is answered.
    assert_eq!(send(address, "GET /health HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n", b"").0, 200);
}

#[test]
fn past_the_connection_cap_new_connections_are_closed() {
    let address = serve(arus_gateway::Limits { max_connections: 2, header_read_timeout: Duration::from_secs(30) });
    // Two connections held open, each proven accepted by an answer on it.
    let request = b"GET /health HTTP/1.1\r\nHost: arus\r\n\r\n";
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(address).expect("connect")).collect();
    for stream in &mut held {
        stream.write_all(request).expect("request");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        let mut buffer = [0u8; 12];
        stream.read_exact(&mut buffer).expect("an answer");
        assert_eq!(&buffer, b"HTTP/1.1 200");
    }
    let mut third = TcpStream::connect(address).expect("the kernel accepts the connection");
    let _ = third.write_all(request);
    assert!(closed(&mut third), "the third connection is closed unanswered");
    // One let go, a new connection is served.
    drop(held.pop());
    let mut answered = false;
    for _ in 0..50 {
        // The server notices the close asynchronously: a few tries, each a full request.
        let mut stream = TcpStream::connect(address).expect("connect");
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n");
        let mut response = Vec::new();
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        let _ = stream.read_to_end(&mut response);
        if response.starts_with(b"HTTP/1.1 200") {
            answered = true;
            break;
        }
    }
    assert!(answered, "a freed slot serves again");
}
