//! A bare HTTP/1.1 client for the gateway tests: one request per connection.

#![allow(dead_code)]

use std::io::{Read, Write};

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
