//! Claims adjudicated per second, two ways:
//! - in process: the adjudication job over an embedded log into the in-process store (decode,
//!   sequence, decide, encode and append the decisions), 2 workers;
//! - end to end (needs `KAFKA_BROKERS` and `REDIS_URL`): `arus run pipelines/adjudication.toml
//!   --workers 2` against the broker, reading every topic, writing decisions and accumulator
//!   updates back to it and the records to Redis, with reruns writing nothing twice.
//!
//! `cargo bench --bench adjudication [-- CLAIMS]` (default 100,000 claims). Figures in
//! benches/README.md.

mod common;

use std::sync::Arc;
use std::time::Instant;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::{MemoryStore, StateStore};
use arus_generator::{GeneratorConfig, Output, generate};
use arus_schemas::{Event, wire};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let claims: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let mut events = Vec::new();
    let settings = GeneratorConfig { claims, days: 120, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        if let Output::Event(event) = output {
            events.push(event);
        }
        Ok(())
    })
    .expect("generate");
    let submitted = events.iter().filter(|e| matches!(e, Event::ClaimSubmitted(_))).count();
    println!("{} events, {submitted} claims", events.len());

    // The decisions alone: the events folded in the job's order, nothing decoded or written.
    let mut ordered: Vec<&Event> = events.iter().filter(|e| arus_jobs::runtime::sequenced::wanted(e)).collect();
    ordered
        .sort_by(|a, b| arus_jobs::runtime::sequenced::order_key(a).cmp(&arus_jobs::runtime::sequenced::order_key(b)));
    let started = Instant::now();
    let mut adjudicator = arus_jobs::adjudication::Adjudicator::new();
    let outputs: usize = ordered.iter().map(|e| adjudicator.apply(e).len()).sum();
    let elapsed = started.elapsed();
    println!(
        "the fold alone (one thread): {submitted} claims in {elapsed:.2?}: {}/s ({outputs} events decided)",
        submitted as u128 * 1_000 / elapsed.as_millis().max(1)
    );
    drop(adjudicator);
    // What the decisions weigh on the wire (and in the store, where a decision is kept as its
    // record): Redis's cost per key grows with the value's size.
    let mut adjudicator = arus_jobs::adjudication::Adjudicator::new();
    let mut sizes: std::collections::BTreeMap<&'static str, (u64, u64)> = Default::default();
    // The decisions as the store keeps them (key, version, record): written alone below.
    let mut decisions: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for event in &ordered {
        for output in adjudicator.apply(event) {
            let bytes = wire::encode(&output).expect("encode");
            let entry = sizes.entry(output.kind().name()).or_default();
            *entry = (entry.0 + 1, entry.1 + bytes.len() as u64);
            if let Event::ClaimAdjudicated(a) = &output {
                let version = adjudicator.claim_state(&a.claim_id).map_or(1, |s| s.decisions as u64);
                decisions.push((arus_schemas::read_models::decision_key(&a.claim_id), version, bytes));
            }
        }
    }
    for (kind, (count, bytes)) in sizes {
        println!("  {kind}: {count} records, {} bytes each on average", bytes / count.max(1));
    }
    drop(adjudicator);

    // In process.
    let log = EmbeddedLog::new();
    log.create_all_topics().expect("topics");
    for event in &events {
        let bytes = wire::encode(event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
    let log = Arc::new(log);
    let mut decided = 0;
    for fold_threads in [1, 2] {
        // Each run writes its decisions next to the inputs: a copy of the inputs each time.
        let copy = EmbeddedLog::new();
        copy.create_all_topics().expect("topics");
        for topic in arus_schemas::topics::TOPICS {
            for (partition, end) in log.end_offsets(topic.name).expect("offsets").into_iter().enumerate() {
                for record in log.fetch(topic.name, partition as u32, 0, end as usize).expect("fetch") {
                    copy.produce(topic.name, record.key.as_deref(), record.value, record.timestamp).expect("copy");
                }
            }
        }
        let cpu = cpu_time();
        let started = Instant::now();
        let report = arus_jobs::adjudication::job::run_on_log_folding(
            Arc::new(copy),
            &arus_jobs::runtime::Cluster::Local { workers: 2 },
            Arc::new(MemoryStore::new()),
            fold_threads,
        )
        .expect("the job runs");
        let elapsed = started.elapsed();
        decided = report.decided.values().sum::<u64>();
        println!(
            "in process (embedded log, in-process store, 2 workers, {fold_threads} fold threads): {decided} claims decided in {elapsed:.2?}: {}/s, {:.2?} CPU, at most {} events read ahead",
            decided as u128 * 1_000 / elapsed.as_millis().max(1),
            cpu_time() - cpu,
            report.read_ahead_peak
        );
    }

    let (Ok(brokers), Ok(redis)) = (std::env::var("KAFKA_BROKERS"), std::env::var("REDIS_URL")) else {
        eprintln!(
            "KAFKA_BROKERS and REDIS_URL not set: the end-to-end figure needs them (source ~/.cache/arus/services.env)"
        );
        return;
    };
    use arus_connectors::kafka::{KafkaConfig, KafkaSink, create_topics, delete_topics};
    let config = KafkaConfig::new(brokers.clone());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-bench-adj-{nanos}.");
    let names: Vec<String> = arus_schemas::topics::TOPICS.iter().map(|t| format!("{prefix}{}", t.name)).collect();
    let specs: Vec<(&str, u32)> =
        names.iter().zip(arus_schemas::topics::TOPICS).map(|(n, t)| (n.as_str(), t.partitions.min(4))).collect();
    create_topics(&config, &specs).expect("topics");
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let produced = Instant::now();
    for event in &events {
        let bytes = wire::encode(event).expect("encode");
        producer
            .send(&format!("{prefix}{}", event.topic()), event.key().as_bytes(), &bytes, event.event_time().0)
            .expect("send");
    }
    producer.flush(std::time::Duration::from_secs(300)).expect("delivered");
    println!("{} events produced to the broker in {:.2?}", events.len(), produced.elapsed());
    let store_prefix = format!("{prefix}store:");
    // Redis alone: the decisions written as the job writes them (versioned, 4,096 at a time),
    // nothing else running. Redis has one thread: its CPU for these bounds the end-to-end rate
    // whatever the job does.
    {
        let store = arus_connectors::store::RedisStore::connect(&redis, &format!("{prefix}floor:")).expect("redis");
        let before = process_cpu_time("redis-server");
        let started = Instant::now();
        for chunk in decisions.chunks(4_096) {
            store.put_many_versioned(chunk).expect("written");
        }
        let (elapsed, cpu) = (started.elapsed(), process_cpu_time("redis-server") - before);
        println!(
            "Redis alone, the {} decisions' records: {elapsed:.2?} wall, {cpu:.2?} Redis CPU ({} ns a key): \
             at most {}/s whatever the job does",
            decisions.len(),
            cpu.as_nanos() / decisions.len().max(1) as u128,
            submitted as u128 * 1_000 / cpu.as_millis().max(1)
        );
        let _ = common::redis_cleanup(&redis, &format!("{prefix}floor:"));
    }
    let redis_store = format!("store={{kind=\"redis\", url=\"{redis}\", prefix=\"{store_prefix}\"}}");
    let runs = [
        ("first run", redis_store.as_str(), 1),
        ("rerun (everything already written)", redis_store.as_str(), 1),
        ("rerun, the store in memory (what Redis costs)", "store={kind=\"memory\"}", 1),
        ("rerun, 2 fold threads", redis_store.as_str(), 2),
    ];
    for (run, store, fold_threads) in runs {
        let (children_before, broker_before, redis_before) =
            (children_cpu_time(), process_cpu_time("tansu"), process_cpu_time("redis-server"));
        let started = Instant::now();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &format!("{}/pipelines/adjudication.toml", env!("CARGO_MANIFEST_DIR")), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}")])
            .args(["--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", store])
            .args(["--set", &format!("fold_threads={fold_threads}")])
            .output()
            .expect("arus runs");
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        println!(
            "end to end, {run} (broker, Redis, 2 workers): {decided} claims in {elapsed:.2?} wall: {}/s\n  \
             CPU: the job {:.2?}, the broker {:.2?}, Redis {:.2?}\n  {}",
            decided as u128 * 1_000 / elapsed.as_millis().max(1),
            children_cpu_time() - children_before,
            process_cpu_time("tansu") - broker_before,
            process_cpu_time("redis-server") - redis_before,
            stderr.trim()
        );
    }
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let _ = delete_topics(&config, &topics);
    let _ = common::redis_cleanup(&redis, &store_prefix);
}

/// CPU time of this process so far (user + system), from /proc (in 10 ms ticks).
fn cpu_time() -> std::time::Duration {
    stat_cpu("/proc/self/stat", 11..13)
}

/// CPU time of this process's children that have ended (the `arus` runs).
fn children_cpu_time() -> std::time::Duration {
    stat_cpu("/proc/self/stat", 13..15)
}

/// CPU time so far of the processes whose command name starts with `name` (the broker, Redis).
fn process_cpu_time(name: &str) -> std::time::Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else { return std::time::Duration::ZERO };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(name)))
        .map(|e| stat_cpu(&e.path().join("stat").to_string_lossy(), 11..13))
        .sum()
}

/// The sum of the tick fields `range` (counted after the command name) of a /proc stat file.
fn stat_cpu(path: &str, range: std::ops::Range<usize>) -> std::time::Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(range).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    std::time::Duration::from_millis(ticks * 10)
}
