//! Read latency of eligibility answers through the gateway over Redis: p50, p99, p99.9 and the
//! rate reached, for REST (`GET /api/v1/eligibility`, anonymous and with a bearer token) and
//! gRPC (`Eligibility/Check`).
//! REST three ways: this bench's own kept-alive clients; `wrk` (Debian's, when installed:
//! `apt-get install wrk`) at full speed; and `wrk` again, less connections. gRPC: concurrent calls
//! on one HTTP/2 connection through the generated tonic client. Needs `REDIS_URL` (the test
//! command's Redis); run with `cargo bench --bench eligibility_latency`. Figures in
//! benches/README.md.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arus_connectors::store::RedisStore;
use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::Event;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 4;
const REQUESTS_PER_CLIENT: usize = 10_000;

fn main() {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL not set: source ~/.cache/arus/services.env first");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-bench-{nanos}:");
    let store = Arc::new(RedisStore::connect(&redis, &prefix).expect("redis"));
    // A population materialized into Redis.
    let mut state = EligibilityState::new();
    let mut questions = Vec::new();
    let config = GeneratorConfig { claims: 20_000, days: 60, ..GeneratorConfig::default() };
    generate(&config, |output| -> Result<(), String> {
        match output {
            Output::Event(Event::ClaimSubmitted(c)) => questions.push((c.member_id, c.service_date)),
            Output::Event(event) => state.apply_to(&event, &*store).map_err(|e| e.to_string())?,
            Output::Label(_) => {}
        }
        Ok(())
    })
    .expect("materialize");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let (address, grpc_address) = (listener.local_addr().expect("address"), grpc.local_addr().expect("address"));
    let served = store.clone();
    // Tokens verified as in production (ES256 against the issuer's cached key); anonymous
    // requests need none (the eligibility check is public).
    let issuer = arus_gateway::auth::DevIssuer::new("arus-bench").expect("an issuer");
    let audience = arus_gateway::auth::DEFAULT_AUDIENCE;
    let token =
        issuer.token(audience, &arus_gateway::auth::dev_claims("internal", "bench"), Duration::from_secs(3_600));
    let options = arus_gateway::Options {
        grpc: Some(grpc),
        authenticator: Some(Arc::new(issuer.authenticator(audience))),
        ..arus_gateway::Options::default()
    };
    std::thread::spawn(move || arus_gateway::serve(listener, served, options));
    let questions = Arc::new(questions);

    rest_clients(address, &questions);
    for (who, header) in [("anonymous", None), ("with a bearer token", Some(format!("Authorization: Bearer {token}")))]
    {
        if let Err(e) = wrk(address, &questions, who, header.as_deref()) {
            eprintln!("wrk: {e} (apt-get install wrk to measure with it)");
        }
    }
    grpc_clients(grpc_address, &questions);
    let _ = common::redis_cleanup(&redis, &prefix);
}

/// Sorted latencies' p50, p99, p99.9 and max, and the rate, in one line.
fn report(what: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort_unstable();
    let at = |per_mille| common::percentile(&latencies, per_mille);
    println!(
        "{what}: {} requests in {:.2?} ({}/s); p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}",
        latencies.len(),
        elapsed,
        latencies.len() as u128 * 1_000 / elapsed.as_millis().max(1),
        at(500),
        at(990),
        at(999),
        latencies[latencies.len() - 1]
    );
}

/// The bench's own HTTP/1.1 clients, one kept-alive connection each.
fn rest_clients(address: std::net::SocketAddr, questions: &Arc<Vec<(String, arus_schemas::Date)>>) {
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let questions = questions.clone();
            std::thread::spawn(move || {
                let mut connection = common::KeptAlive::connect(address).expect("connect");
                let mut latencies = Vec::with_capacity(REQUESTS_PER_CLIENT);
                for i in 0..REQUESTS_PER_CLIENT {
                    let (member, date) = &questions[(client * 7_919 + i * 104_729) % questions.len()];
                    let sent = Instant::now();
                    let path = format!("/api/v1/eligibility?memberId={member}&serviceDate={date}&serviceType=99213");
                    let (status, _) = connection.get(&path).expect("an answer");
                    assert_eq!(status, 200, "{path}");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies: Vec<Duration> = clients.into_iter().flat_map(|c| c.join().expect("client")).collect();
    report(&format!("REST, {CLIENTS} kept-alive clients of this bench"), latencies, started.elapsed());
}

/// `wrk` at full speed over the same questions (a Lua script walks them), with its latency
/// percentiles.
fn wrk(
    address: std::net::SocketAddr,
    questions: &[(String, arus_schemas::Date)],
    who: &str,
    header: Option<&str>,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = dir.path().join("questions.lua");
    let mut lua = String::from("local paths = {\n");
    for (member, date) in questions.iter().step_by(3) {
        lua.push_str(&format!("  \"/api/v1/eligibility?memberId={member}&serviceDate={date}&serviceType=99213\",\n"));
    }
    lua.push_str(
        "}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n\
         done = function(summary, latency, requests)\n  io.write(string.format(\"%d requests, %d errors, \
         p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\\n\", summary.requests, \
         summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout, \
         latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, \
         latency.max / 1000))\nend\n",
    );
    std::fs::write(&script, lua).map_err(|e| e.to_string())?;
    for connections in [8, 2] {
        let mut command = std::process::Command::new("wrk");
        if let Some(header) = header {
            command.args(["-H", header]);
        }
        let output = command
            .args(["-t1", &format!("-c{connections}"), "-d10s", "-s"])
            .arg(&script)
            .arg(format!("http://{address}"))
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout);
        let rate = text.lines().find(|l| l.starts_with("Requests/sec")).unwrap_or("Requests/sec: ?");
        let summary = text.lines().last().unwrap_or("");
        println!("REST {who}, wrk -t1 -c{connections} -d10s: {rate}; {summary}");
    }
    Ok(())
}

/// Concurrent gRPC checks over one HTTP/2 connection.
fn grpc_clients(address: std::net::SocketAddr, questions: &Arc<Vec<(String, arus_schemas::Date)>>) {
    use arus_gateway::grpc::proto::CheckRequest;
    use arus_gateway::grpc::proto::eligibility_client::EligibilityClient;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let (latencies, elapsed) = runtime.block_on(async {
        let client = EligibilityClient::connect(format!("http://{address}")).await.expect("connect");
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS * 2)
            .map(|caller| {
                let (mut client, questions) = (client.clone(), questions.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(REQUESTS_PER_CLIENT);
                    for i in 0..REQUESTS_PER_CLIENT / 2 {
                        let (member, date) = &questions[(caller * 7_919 + i * 104_729) % questions.len()];
                        let sent = Instant::now();
                        let request = CheckRequest {
                            member_id: member.clone(),
                            service_date: date.to_string(),
                            service_type: "99213".to_owned(),
                        };
                        client.check(request).await.expect("an answer");
                        latencies.push(sent.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("a caller"));
        }
        (latencies, started.elapsed())
    });
    report(&format!("gRPC, {} concurrent calls on one connection", CLIENTS * 2), latencies, elapsed);
}
