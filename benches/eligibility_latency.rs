//! Read latency of `GET /api/v1/eligibility` through the gateway over Redis, from clients on
//! kept-alive connections: p50, p99, p99.9 and the rate reached. Needs `REDIS_URL` (the test
//! command's Redis); run with `cargo bench --bench eligibility_latency`. Figures in
//! benches/README.md.

use std::io::{BufRead, BufReader, Read, Write};
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
    let address = listener.local_addr().expect("address");
    let served = store.clone();
    std::thread::spawn(move || arus_gateway::serve_blocking(listener, served));

    let questions = Arc::new(questions);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let questions = questions.clone();
            std::thread::spawn(move || {
                let stream = std::net::TcpStream::connect(address).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                let mut latencies = Vec::with_capacity(REQUESTS_PER_CLIENT);
                let mut line = String::new();
                for i in 0..REQUESTS_PER_CLIENT {
                    let (member, date) = &questions[(client * 7_919 + i * 104_729) % questions.len()];
                    let sent = Instant::now();
                    write!(
                        writer,
                        "GET /api/v1/eligibility?memberId={member}&serviceDate={date}&serviceType=99213 HTTP/1.1\r\nHost: arus\r\n\r\n"
                    )
                    .expect("request");
                    // Status line, headers, then the body by its length.
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        reader.read_line(&mut line).expect("response");
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = value.trim().parse().expect("a length");
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).expect("body");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = clients.into_iter().flat_map(|c| c.join().expect("client")).collect();
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    // The latency below which `per_mille` thousandths of the requests fall.
    let at = |per_mille: usize| latencies[(latencies.len() * per_mille / 1_000).min(latencies.len() - 1)];
    println!(
        "eligibility over REST from Redis: {} requests from {CLIENTS} kept-alive clients in {:.2?} ({}/s); \
         p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}",
        latencies.len(),
        elapsed,
        latencies.len() as u128 * 1_000 / elapsed.as_millis().max(1),
        at(500),
        at(990),
        at(999),
        latencies[latencies.len() - 1]
    );
}
