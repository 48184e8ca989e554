//! Fraud alert latency after window close: the fraud job (`arus run pipelines/fraud.toml`, two
//! workers, rules and the model, following the topics) against claims produced to Kafka as
//! they happen.
//!
//! A generated population goes to the member, plan and provider topics first. Then its claims
//! are produced at `RATE` per second with event times running `SPEED` times the wall clock (a
//! 5-minute window closes every 5 s), so many windows close within a minute. A window ending at
//! `e` can close once the job has read a claim stamped `e + out_of_orderness` on every claims
//! partition; the producer notes when it sent the first such claim. The latency of an alert is
//! from then to the alert read back from `fraud.alerts` — through the broker both ways, an
//! upper bound on the job's own share. Reported: p50, p99, max over the alerts of windows that
//! closed while claims were coming. Needs `KAFKA_BROKERS` and ONNX Runtime (`ORT_DYLIB_PATH`,
//! or the cache's; `source ~/.cache/arus/services.env`); run with `cargo bench --bench
//! fraud_latency`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaSink, create_topics, delete_topics};
use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::fraud::windows::{SLOT_MS, slot_of};
use arus_jobs::runtime::sequenced::order_key;
use arus_schemas::events::AlertStatus;
use arus_schemas::{Event, Timestamp, wire};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Claims per second.
const RATE: u64 = 1_500;
/// Event time per wall-clock time.
const SPEED: i64 = 60;
/// The job's `out_of_orderness`, event time.
const LATENESS_MS: i64 = 10_000;
/// How long claims are produced.
const RUN: Duration = Duration::from_secs(45);

fn main() {
    let (Ok(brokers), Ok(_)) = (std::env::var("KAFKA_BROKERS"), arus_models::runtime_library()) else {
        eprintln!("KAFKA_BROKERS not set, or no ONNX Runtime: source ~/.cache/arus/services.env first");
        return;
    };
    let config = KafkaConfig::new(brokers.clone());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-bench-fraud-{nanos}.");
    let topic = |name: &str| format!("{prefix}{name}");
    let partitions = [("member.events", 1), ("benefit.events", 1), ("provider.events", 1), ("claims.events", 2)];
    let mut created: Vec<(String, u32)> = partitions.iter().map(|(t, n)| (topic(t), *n)).collect();
    created.push((topic("fraud.alerts"), 1));
    let refs: Vec<(&str, u32)> = created.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    create_topics(&config, &refs).expect("create topics");

    // The population first, at its own (earlier) times; the claims kept to be produced later.
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let mut claims = Vec::new();
    let settings = GeneratorConfig { claims: RATE * RUN.as_secs() + 5_000, days: 60, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        match output {
            Output::Event(Event::ClaimSubmitted(claim)) => claims.push(Event::ClaimSubmitted(claim)),
            Output::Event(event) if partitions.iter().any(|(t, _)| *t == event.topic().as_ref()) => {
                let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
                producer
                    .send(&topic(&event.topic()), event.key().as_bytes(), &bytes, event.event_time().0)
                    .map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        Ok(())
    })
    .expect("generate and produce");
    producer.flush(Duration::from_secs(60)).expect("delivered");
    claims.sort_by(|a, b| order_key(a).cmp(&order_key(b)));

    let job_log = std::env::temp_dir().join(format!("{prefix}job.log"));
    let _job = common::Stop(
        std::process::Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &format!("{}/pipelines/fraud.toml", env!("CARGO_MANIFEST_DIR")), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}")])
            .args(["--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", "source.follow=true", "--set", "source.idle_timeout=1s"])
            .args(["--set", &format!("out_of_orderness=\"{}s\"", LATENESS_MS / 1_000)])
            .args(["--set", &format!("model.dir=\"{}/models\"", env!("CARGO_MANIFEST_DIR"))])
            .stderr(std::fs::File::create(&job_log).expect("a log file"))
            .spawn()
            .expect("arus runs"),
    );

    // The alerts as they come back: (first claim, when read).
    let alerts_topic = topic("fraud.alerts");
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (config, received, done) = (config.clone(), received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reader =
                BoundedPartitionReader::open(&config, "arus-bench-fraud", &alerts_topic, &[(0, None)], 500)
                    .expect("a reader")
                    .following();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(record) = reader.next_available(Duration::from_millis(100)).expect("read")
                    && let Ok(Event::FraudAlert(alert)) = wire::decode(&record.value)
                    && alert.status == AlertStatus::RAISED
                    && let Some(first) = alert.claim_ids.first()
                {
                    received.lock().expect("alerts").push((first.clone(), Instant::now()));
                }
            }
        })
    };

    // The claims, paced, stamped with an event time running SPEED times the clock from now on
    // (a worker with nothing to read moves its watermark up to the clock: times behind it
    // would be late).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let base = Timestamp(i64::try_from(now).unwrap_or(0));
    let started = Instant::now();
    let mut stamped: HashMap<String, i64> = HashMap::new();
    let mut sent_at: Vec<(i64, Instant)> = Vec::new();
    for (i, claim) in claims.iter().enumerate() {
        let due = Duration::from_micros(i as u64 * 1_000_000 / RATE);
        if due > RUN {
            break;
        }
        if let Some(wait) = (started + due).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let Event::ClaimSubmitted(mut claim) = claim.clone() else { continue };
        claim.event_time = base.add_millis(due.as_millis() as i64 * SPEED);
        claim.event_id = format!("{}-{i}", claim.event_id);
        let event = Event::ClaimSubmitted(claim);
        let bytes = wire::encode(&event).expect("encode");
        producer.send(&topic("claims.events"), event.key().as_bytes(), &bytes, event.event_time().0).expect("send");
        let Event::ClaimSubmitted(claim) = event else { continue };
        stamped.insert(claim.claim_id, claim.event_time.0);
        sent_at.push((claim.event_time.0, Instant::now()));
    }
    producer.flush(Duration::from_secs(60)).expect("delivered");
    let produced = started.elapsed();
    // Alerts of the windows closed by then come within seconds: read until none came for 3 s
    // (or a minute passed).
    let mut last = 0;
    let waiting = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let now = received.lock().expect("alerts").len();
        if (now == last && now > 0) || waiting.elapsed() > Duration::from_secs(60) {
            break;
        }
        last = now;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    reader.join().expect("the reader");

    // Each alert's window close: the first claim sent stamped at or past its end + lateness.
    // The first window after the start is reported apart: the job holds it until the quiet
    // topics (members, plans, providers) have been quiet for the idle timeout.
    let newest = sent_at.last().map_or(0, |(t, _)| *t);
    let first_window = sent_at.first().map_or(0, |(t, _)| (slot_of(*t) + 1) * SLOT_MS + LATENESS_MS);
    let (mut latencies, mut first, mut windows) = (Vec::new(), Duration::ZERO, std::collections::BTreeSet::new());
    for (claim, read) in received.lock().expect("alerts").iter() {
        let Some(&at) = stamped.get(claim) else { continue };
        let closes = (slot_of(at) + 1) * SLOT_MS + LATENESS_MS;
        if closes > newest {
            continue;
        }
        let Some((_, sent)) = sent_at.get(sent_at.partition_point(|(t, _)| *t < closes)) else { continue };
        let latency = read.saturating_duration_since(*sent);
        if closes == first_window {
            first = first.max(latency);
        } else {
            windows.insert(closes);
            latencies.push(latency);
        }
    }
    let count = received.lock().expect("alerts").len();
    assert!(
        !latencies.is_empty(),
        "{count} alerts came back, none of a window closed in time: {}",
        std::fs::read_to_string(&job_log).unwrap_or_default()
    );
    latencies.sort_unstable();
    let at = |per_mille| common::percentile(&latencies, per_mille);
    println!(
        "fraud alert latency after window close: {} claims produced in {produced:.1?} ({}/s, event time at {SPEED}× \
         the clock); {} alerts of {} windows read back after p50 {:.1?}, p99 {:.1?}, max {:.1?}; the first window \
         after the start: {first:.1?}",
        sent_at.len(),
        sent_at.len() as u128 * 1_000 / produced.as_millis().max(1),
        latencies.len(),
        windows.len(),
        at(500),
        at(990),
        latencies[latencies.len() - 1]
    );
    let _ = std::fs::remove_file(&job_log);
    let names: Vec<&str> = created.iter().map(|(t, _)| t.as_str()).collect();
    let _ = delete_topics(&config, &names);
}
