//! Freshness of eligibility answers: from a `CoverageChanged` produced to Kafka to the changed
//! answer readable through the gateway, with the eligibility job following the topics
//! (`arus run pipelines/eligibility.toml --set source.follow=true`, two workers) into Redis.
//!
//! A generated population is produced and materialized first; then terminations of distinct
//! covered members are produced at `RATE` per second, and poller threads ask the gateway about
//! each pending member until its answer says TERMINATED. Reported: p50, p99, p99.9 and max
//! from send to the first changed answer (the pollers' sweep time bounds the resolution; it is
//! reported too). Needs `KAFKA_BROKERS` and `REDIS_URL` (`source ~/.cache/arus/services.env`);
//! run with `cargo bench --bench eligibility_freshness`.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::kafka::{KafkaConfig, KafkaSink, create_topics, delete_topics};
use arus_connectors::store::RedisStore;
use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::events::{CoverageChangeType, CoverageChanged, EligibilityStatus};
use arus_schemas::{Date, Event, Timestamp, wire};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Changes per second.
const RATE: u64 = 1_000;
/// How many changes.
const CHANGES: usize = 5_000;
const POLLERS: usize = 4;

/// A change in flight: whose, the date asked about, when it was sent.
struct Pending {
    member_id: String,
    date: Date,
    sent: Instant,
}

fn main() {
    let (Ok(brokers), Ok(redis)) = (std::env::var("KAFKA_BROKERS"), std::env::var("REDIS_URL")) else {
        eprintln!("KAFKA_BROKERS and REDIS_URL not set: source ~/.cache/arus/services.env first");
        return;
    };
    let config = KafkaConfig::new(brokers.clone());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-bench-fresh-{nanos}.");
    let (members, benefits) = (format!("{prefix}member.events"), format!("{prefix}benefit.events"));
    create_topics(&config, &[(&members, 3), (&benefits, 1)]).expect("create topics");

    // The population, produced, and the covered (member, date) pairs to change.
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let mut state = EligibilityState::new();
    let mut claims = Vec::new();
    let settings = GeneratorConfig { claims: 40_000, days: 60, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        match output {
            Output::Event(Event::ClaimSubmitted(claim)) => claims.push((claim.member_id, claim.service_date)),
            Output::Event(event) => {
                state.apply(&event);
                let topic = match event.topic().as_ref() {
                    "member.events" => &members,
                    "benefit.events" => &benefits,
                    _ => return Ok(()),
                };
                let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
                producer
                    .send(topic, event.key().as_bytes(), &bytes, event.event_time().0)
                    .map_err(|e| e.to_string())?;
            }
            Output::Label(_) => {}
        }
        Ok(())
    })
    .expect("generate and produce");
    producer.flush(Duration::from_secs(60)).expect("delivered");
    let mut seen = HashSet::new();
    let targets: Vec<(String, Date)> = claims
        .into_iter()
        .filter(|(member, date)| {
            state.answer(member, *date, "99213").status == EligibilityStatus::ACTIVE && seen.insert(member.clone())
        })
        .take(CHANGES)
        .collect();
    assert!(targets.len() >= CHANGES / 2, "only {} covered members to change", targets.len());

    let store_prefix = format!("{prefix}store:");
    let job_log = std::env::temp_dir().join(format!("{prefix}job.log"));
    let mut job = common::Stop(
        std::process::Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &format!("{}/pipelines/eligibility.toml", env!("CARGO_MANIFEST_DIR")), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}")])
            .args(["--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", "source.follow=true", "--set", "source.idle_timeout=10m"])
            .args(["--set", &format!("store.url={redis}")])
            .args(["--set", &format!("store.prefix={store_prefix}")])
            .stderr(std::fs::File::create(&job_log).expect("a log file"))
            .spawn()
            .expect("arus runs"),
    );
    let store = Arc::new(RedisStore::connect(&redis, &store_prefix).expect("redis"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || arus_gateway::serve(listener, store, arus_gateway::Options::default()));

    // Caught up: every target answers ACTIVE through the gateway.
    let path = |(member, date): &(String, Date)| {
        format!("/api/v1/eligibility?memberId={member}&serviceDate={date}&serviceType=99213")
    };
    let loaded = Instant::now();
    let mut connection = common::KeptAlive::connect(address).expect("connect");
    for target in &targets {
        while !connection.get(&path(target)).is_ok_and(|(s, body)| s == 200 && contains(&body, b"\"ACTIVE\"")) {
            if let Ok(Some(status)) = job.0.try_wait() {
                panic!("the job ended ({status}): {}", std::fs::read_to_string(&job_log).unwrap_or_default());
            }
            assert!(loaded.elapsed() < Duration::from_secs(300), "the job did not catch up in 5 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!("population of {} members materialized and served in {:.1?}", seen.len(), loaded.elapsed());

    // The changes, paced; the pollers.
    let queues: Arc<Vec<Mutex<Vec<Pending>>>> = Arc::new((0..POLLERS).map(|_| Mutex::new(Vec::new())).collect());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pollers: Vec<_> = (0..POLLERS)
        .map(|p| {
            let (queues, done) = (queues.clone(), done.clone());
            std::thread::spawn(move || {
                let mut connection = common::KeptAlive::connect(address).expect("connect");
                let (mut latencies, mut sweeps, mut sweep_time) = (Vec::new(), 0u32, Duration::ZERO);
                loop {
                    let pending: Vec<Pending> = std::mem::take(&mut *queues[p].lock().expect("queue"));
                    if pending.is_empty() {
                        if done.load(std::sync::atomic::Ordering::Acquire) {
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    let sweep = Instant::now();
                    let mut still = Vec::new();
                    for change in pending {
                        let (status, body) =
                            connection.get(&path(&(change.member_id.clone(), change.date))).expect("get");
                        if status == 200 && contains(&body, b"\"TERMINATED\"") {
                            latencies.push(change.sent.elapsed());
                        } else {
                            still.push(change);
                        }
                    }
                    sweeps += 1;
                    sweep_time += sweep.elapsed();
                    queues[p].lock().expect("queue").extend(still);
                }
                (latencies, sweep_time / sweeps.max(1))
            })
        })
        .collect();
    let started = Instant::now();
    for (i, (member_id, date)) in targets.iter().enumerate() {
        let due = started + Duration::from_micros(i as u64 * 1_000_000 / RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let change = Event::CoverageChanged(CoverageChanged {
            event_id: format!("{prefix}change-{i}"),
            event_time: Timestamp(i64::try_from(nanos / 1_000_000).unwrap_or(0)),
            member_id: member_id.clone(),
            family_id: "unknown".to_owned(),
            subscriber_id: member_id.clone(),
            change_type: CoverageChangeType::TERMINATED,
            plan_id: "any".to_owned(),
            effective_date: *date,
            end_date: None,
            reason: Some("VOLUNTARY".to_owned()),
        });
        let bytes = wire::encode(&change).expect("encode");
        let sent = Instant::now();
        producer.send(&members, member_id.as_bytes(), &bytes, 0).expect("send");
        queues[i % POLLERS].lock().expect("queue").push(Pending { member_id: member_id.clone(), date: *date, sent });
    }
    let produced = started.elapsed();
    producer.flush(Duration::from_secs(60)).expect("delivered");
    done.store(true, std::sync::atomic::Ordering::Release);
    let (mut latencies, mut sweep) = (Vec::new(), Duration::ZERO);
    for poller in pollers {
        let (found, took) = poller.join().expect("a poller");
        latencies.extend(found);
        sweep = sweep.max(took);
    }
    latencies.sort_unstable();
    let at = |per_mille| common::percentile(&latencies, per_mille);
    println!(
        "freshness: {} terminations produced in {produced:.2?} ({}/s), each seen through the gateway after \
         p50 {:.1?}, p99 {:.1?}, p99.9 {:.1?}, max {:.1?} (pollers' mean sweep {sweep:.2?})",
        latencies.len(),
        latencies.len() as u128 * 1_000 / produced.as_millis().max(1),
        at(500),
        at(990),
        at(999),
        latencies[latencies.len() - 1]
    );
    drop(job);
    let _ = std::fs::remove_file(&job_log);
    let _ = delete_topics(&config, &[members.as_str(), benefits.as_str()]);
    let _ = common::redis_cleanup(&redis, &store_prefix);
}

fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}
