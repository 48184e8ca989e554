//! gRPC `Eligibility/Check` against the same store as REST: the same answers, the same errors as
//! gRPC codes, and one rate limit per caller across both.

mod common;

use std::sync::Arc;

use arus_connectors::store::MemoryStore;
use arus_gateway::grpc::proto::CheckRequest;
use arus_gateway::grpc::proto::eligibility_client::EligibilityClient;
use arus_jobs::eligibility::EligibilityState;
use tonic::Code;

/// Serves the common events over REST and gRPC; their addresses.
fn serve(rate_limit: Option<&str>) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in common::events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let rest = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addresses = (rest.local_addr().expect("address"), grpc.local_addr().expect("address"));
    let options = arus_gateway::Options {
        rate_limit: rate_limit.map(|limit| arus_gateway::RateLimiting {
            tiers: arus_gateway::Tiers::all(limit.parse().expect("a limit")),
            ..arus_gateway::RateLimiting::default()
        }),
        grpc: Some(grpc),
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(rest, store, options));
    addresses
}

fn question(member_id: &str, service_date: &str, service_type: &str) -> CheckRequest {
    CheckRequest {
        member_id: member_id.to_owned(),
        service_date: service_date.to_owned(),
        service_type: service_type.to_owned(),
    }
}

#[tokio::test]
async fn grpc_answers_as_rest_does_and_errors_are_grpc_codes() {
    let (rest, grpc) = serve(None);
    let mut client = EligibilityClient::connect(format!("http://{grpc}")).await.expect("connect");

    let answer = client.check(question("M1", "2026-03-01", "70551")).await.expect("an answer").into_inner();
    let (status, body) = tokio::task::spawn_blocking(move || {
        common::request_json(
            rest,
            "GET",
            "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=70551",
            "",
            "",
        )
    })
    .await
    .expect("REST");
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert!(answer.eligible);
    assert_eq!(answer.status, "ACTIVE");
    assert_eq!(answer.status, data["status"]);
    assert_eq!(answer.plan_id.as_deref(), data["planId"].as_str());
    // Anonymous, as over REST: covered or not and the plan, no coverage dates.
    assert_eq!(answer.coverage_start, None);
    assert_eq!(answer.requires_prior_auth, data["requiresPriorAuth"] == true);
    let benefits = answer.benefits.expect("benefits");
    assert_eq!(benefits.copay_idr, data["benefits"]["copayIdr"].as_i64().expect("copay"));
    assert_eq!(benefits.coinsurance_bp, 2_000);
    assert!(!answer.trace_id.is_empty());

    let before = client.check(question("M1", "2025-12-31", "99213")).await.expect("an answer").into_inner();
    assert_eq!((before.eligible, before.status.as_str()), (false, "NOT_YET_COVERED"));

    for (request, code, names) in [
        (question("", "2026-03-01", "99213"), Code::InvalidArgument, "memberId"),
        (question("M1", "2026-02-30", "99213"), Code::InvalidArgument, "serviceDate"),
        (question("M1", "2026-03-01", ""), Code::InvalidArgument, "serviceType"),
        (question("M 1", "2026-03-01", "99213"), Code::InvalidArgument, "memberId"),
        (question("nobody", "2026-03-01", "99213"), Code::NotFound, "nobody"),
    ] {
        let status = client.check(request.clone()).await.expect_err("refused");
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(status.message().contains(names), "{request:?}: {status:?}");
    }

    // Counted in /metrics beside the REST routes.
    let (status, metrics) =
        tokio::task::spawn_blocking(move || common::request_text(rest, "GET", "/metrics", "", &common::internal()))
            .await
            .expect("REST");
    assert_eq!(status, 200);
    let route = "route=\"/arus.eligibility.v1.Eligibility/Check\"";
    assert!(metrics.contains(&format!("arus_gateway_requests_total{{{route},status=\"200\"}} 2")), "{metrics}");
    assert!(metrics.contains(&format!("arus_gateway_requests_total{{{route},status=\"400\"}} 4")), "{metrics}");
    assert!(metrics.contains(&format!("arus_gateway_requests_total{{{route},status=\"404\"}} 1")), "{metrics}");
}

#[tokio::test]
async fn one_rate_limit_per_caller_across_rest_and_grpc() {
    // Three per hour: nothing comes back during the test, so the fourth is refused.
    let (rest, grpc) = serve(Some("3/h"));
    let mut client = EligibilityClient::connect(format!("http://{grpc}")).await.expect("connect");
    let path = "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=99213";
    // Anonymous: the eligibility check is public, and /metrics takes an internal token.
    let get = move |path: &'static str| {
        let headers = if path == "/metrics" { common::internal() } else { "Accept: */*\r\n".to_owned() };
        tokio::task::spawn_blocking(move || common::request_text(rest, "GET", path, "", &headers))
    };
    assert_eq!(get(path).await.expect("REST").0, 200);
    assert_eq!(get(path).await.expect("REST").0, 200);
    client.check(question("M1", "2026-03-01", "99213")).await.expect("the third is allowed");

    let refused = client.check(question("M1", "2026-03-01", "99213")).await.expect_err("the fourth is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("retry in"), "{refused:?}");

    let stream = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(rest).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    });
    let response = stream.await.expect("REST");
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    let lower = response.to_ascii_lowercase();
    let retry_after: u64 = lower
        .split("retry-after: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .and_then(|s| s.parse().ok())
        .expect("a Retry-After header in seconds");
    assert!((1..=1_200).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or("")).expect("a JSON error");
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert!(body["error"]["trace_id"].is_string());

    // Health, readiness and metrics are not limited; the refusal is counted.
    assert_eq!(get("/health").await.expect("REST").0, 200);
    assert_eq!(get("/ready").await.expect("REST").0, 200);
    let (status, metrics) = get("/metrics").await.expect("REST");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("arus_gateway_requests_total{route=\"/api/v1/eligibility\",status=\"429\"} 1"),
        "{metrics}"
    );
}

/// Sends `bytes` as the body of a `Check` call, as they are: no message encoding.
#[derive(Debug, Default, Clone)]
struct Raw;

struct RawBytes;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

#[tokio::test]
async fn malformed_messages_tokens_and_reflection() {
    let (_, grpc) = serve(None);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("an endpoint")
        .connect()
        .await
        .expect("connect");

    // Bytes that are no CheckRequest: the caller's mistake.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/arus.eligibility.v1.Eligibility/Check");
    let refused =
        raw.unary(tonic::Request::new(vec![0x0a, 0xff, 0xff, 0xff]), path, Raw).await.expect_err("not a message");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // A token gives the full answer; one that does not verify is UNAUTHENTICATED.
    let mut client = EligibilityClient::new(channel.clone());
    let mut request = tonic::Request::new(question("M1", "2026-03-01", "99213"));
    let token = format!("Bearer {}", common::token("internal", "ops"));
    request.metadata_mut().insert("authorization", token.parse().expect("metadata"));
    let answer = client.check(request).await.expect("an answer").into_inner();
    assert_eq!(answer.coverage_start.as_deref(), Some("2026-01-01"));
    let mut request = tonic::Request::new(question("M1", "2026-03-01", "99213"));
    request.metadata_mut().insert("authorization", "Bearer junk".parse().expect("metadata"));
    let refused = client.check(request).await.expect_err("a bad token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(!refused.message().contains("junk"));

    // Reflection names the service.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(tokio_stream::iter([ask])).await.expect("reflection").into_inner();
    let answer = answers.message().await.expect("an answer").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("a list: {answer:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"arus.eligibility.v1.Eligibility".to_owned()), "{names:?}");
}
