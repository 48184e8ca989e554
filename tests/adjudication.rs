//! `arus run pipelines/adjudication.toml` end to end: on a persisted embedded log killed with
//! SIGKILL at random points and restarted (outputs identical to an uninterrupted run, nothing
//! written twice), and against the real broker and Redis (every claim decided on
//! `claims.events`, the records in Redis, a rerun writing nothing new).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use arus_connectors::embedded::EmbeddedLog;
use arus_schemas::{Event, wire};

fn pipeline() -> String {
    format!("{}/pipelines/adjudication.toml", env!("CARGO_MANIFEST_DIR"))
}

fn run_on_dir(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
    command
        .args(["run", &pipeline(), "--workers", "2"])
        .args(["--set", &format!("source={{kind=\"embedded\", dir=\"{}\"}}", dir.display())])
        .args(["--set", "store={kind=\"memory\"}"]);
    command
}

/// Whether a record is one the job writes.
fn is_output(record: &[u8]) -> bool {
    matches!(wire::decode(record), Ok(Event::ClaimAdjudicated(_) | Event::ClaimPaid(_) | Event::AccumulatorUpdated(_)))
}

/// The job's outputs on the log in `dir`, per topic and partition.
fn outputs(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let log = EmbeddedLog::open(dir).expect("the log");
    let mut all = Vec::new();
    for topic in ["claims.events", "accumulator.updates"] {
        for (partition, end) in log.end_offsets(topic).expect("offsets").into_iter().enumerate() {
            let records = log.fetch(topic, partition as u32, 0, end as usize).expect("fetch");
            all.push(records.into_iter().filter(|r| is_output(&r.value)).map(|r| r.value).collect());
        }
    }
    all
}

#[test]
fn killed_and_restarted_the_job_writes_what_an_uninterrupted_run_does() {
    killed_and_restarted(false);
}

/// As above, the job taking snapshots: each restart begins from the newest (reading only what
/// came after it), and the outputs are still those of one uninterrupted run.
#[test]
fn killed_and_restarted_from_its_snapshots_the_job_writes_what_an_uninterrupted_run_does() {
    killed_and_restarted(true);
}

fn killed_and_restarted(snapshots: bool) {
    let events = common::generated_events(6_000);
    let root = tempfile::tempdir().expect("a temporary directory");
    let (reference, recovered) = (root.path().join("reference"), root.path().join("recovered"));
    for dir in [&reference, &recovered] {
        let log = EmbeddedLog::open(dir).expect("a log");
        log.create_all_topics().expect("topics");
        for event in &events {
            let bytes = wire::encode(event).expect("encode");
            log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
        }
        log.flush().expect("flush");
    }
    let run = run_on_dir(&reference).output().expect("arus runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("claims decided"), "{stderr}");
    let want = outputs(&reference);
    let final_size = common::size_of(&reference.join("topics/accumulator.updates"));
    assert!(final_size > 0);

    let snapshot_dir = root.path().join("snapshots");
    let checkpoint = format!("checkpoint={{dir=\"{}\", interval=\"20ms\"}}", snapshot_dir.display());
    let run_recovered = || {
        let mut command = run_on_dir(&recovered);
        if snapshots {
            command.args(["--set", &checkpoint]);
        }
        command
    };
    if snapshots {
        // Asked to stop (SIGTERM) part way: it takes a last snapshot, holding what it had not
        // decided, and exits cleanly; the runs after go on from there.
        // (No snapshot but the stop's: a long interval.)
        let hourly = format!("checkpoint={{dir=\"{}\", interval=\"1h\"}}", snapshot_dir.display());
        let child = run_on_dir(&recovered)
            .args(["--set", &hourly])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("arus starts");
        let pid = child.id().to_string();
        while common::size_of(&recovered.join("topics/accumulator.updates")) < final_size / 3 {
            // Polling the files until a third is written.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let term = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(term.success());
        let stopped = child.wait_with_output().expect("reaped");
        let stderr = String::from_utf8_lossy(&stopped.stderr);
        assert!(stopped.status.success(), "{stderr}");
        assert!(stderr.contains("stopped on request") && stderr.contains("\n1 snapshots taken"), "{stderr}");
    }
    let mut dice = common::Dice::new();
    let mut killed = 0;
    // With snapshots a restart is quick to resume: twenty faults (some land while a snapshot
    // loads, or as one is written).
    let attempts = if snapshots { 20 } else { 3 };
    for _ in 0..attempts {
        let point = 1 + dice.below(final_size * 9 / 10);
        let mut child = run_recovered().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("arus starts");
        loop {
            if child.try_wait().expect("status").is_some() {
                break;
            }
            if common::size_of(&recovered.join("topics/accumulator.updates")) >= point {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                killed += 1;
                break;
            }
            // Polling the files; any moment must do for the kill.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    assert!(killed >= attempts * 2 / 3, "only {killed} kills landed while the job ran: make the input larger");
    let last = run_recovered().output().expect("arus runs");
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    if snapshots {
        assert!(stderr.contains("resumed from snapshot"), "{stderr}");
    }
    let got = outputs(&recovered);
    assert_eq!(got.len(), want.len());
    for (partition, (got, want)) in got.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "output partition {partition}: {} records after {killed} kills, {} uninterrupted",
            got.len(),
            want.len()
        );
    }
    // And once more: everything is there already (from a snapshot, nothing is decided again
    // but what it held).
    let again = run_recovered().output().expect("arus runs");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    if !snapshots {
        assert!(stderr.contains("already written"), "{stderr}");
    }
    let after: Vec<usize> = outputs(&recovered).iter().map(Vec::len).collect();
    let wanted: Vec<usize> = want.iter().map(Vec::len).collect();
    assert!(after == wanted, "a rerun wrote again: {after:?}, {wanted:?}\n{stderr}");
    assert!(outputs(&recovered) == want, "a rerun changed the outputs");
}

#[test]
fn against_the_broker_and_redis_every_claim_is_decided_once() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    use arus_connectors::kafka::{KafkaConfig, KafkaSink};
    let config = KafkaConfig::new(brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-adj", &common::ADJUDICATION_TOPICS, 2);
    let topics = &topics.1;

    let events = common::generated_events(1_500);
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    common::produce_to(&producer, &prefix, topics, &events);
    // A broken producer's record among the claims: set aside on claims.events.dlq.
    let dead = common::DropTopics(&config, vec![format!("{prefix}claims.events.dlq")]);
    producer.send(&format!("{prefix}claims.events"), b"M-x", b"\x00\x00\x00\x00\x07broken", 0).expect("send");
    producer.flush(std::time::Duration::from_secs(30)).expect("flush");
    let dead_letters = || {
        let tail = Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["dlq", "tail", "claims.events", "--kafka", &brokers, "--topic-prefix", &prefix])
            .output()
            .expect("arus runs");
        assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
        let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&tail.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        letters
    };
    let claims: Vec<&arus_schemas::events::ClaimSubmitted> = events
        .iter()
        .filter_map(|e| match e {
            Event::ClaimSubmitted(c) => Some(c),
            _ => None,
        })
        .collect();

    let store_prefix = format!("{prefix}store:");
    let run = || {
        let output = Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &pipeline(), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}")])
            .args(["--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", &format!("store.url={redis}")])
            .args(["--set", &format!("store.prefix={store_prefix}")])
            .output()
            .expect("arus runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let stderr = run();
    assert!(stderr.replace(',', "").contains(&format!("{} claims decided", claims.len())), "{stderr}");

    // Every claim decided exactly once on claims.events.
    let read_decisions = || common::decisions_per_claim(&config, &format!("{prefix}claims.events"));
    let decided = read_decisions();
    assert_eq!(decided.len(), claims.len());
    assert!(decided.values().all(|n| *n == 1), "a claim decided twice");

    // The records in Redis.
    let store = arus_connectors::store::RedisStore::connect(&redis, &store_prefix).expect("redis");
    let first = claims[0];
    let view =
        arus_connectors::store::read::claim(&store, &first.claim_id).expect("read Redis").expect("the claim's record");
    assert_eq!(view.adjudication.member_id, first.member_id);
    assert_eq!(view.adjudication.total_billed_idr, first.total_charge_idr);

    let letters = dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["source_topic"], format!("{prefix}claims.events"));
    assert_eq!(letters[0]["bytes"], 11);

    // A rerun derives the same decisions and writes none of them again, nor the letter.
    let stderr = run();
    assert!(stderr.contains("already written"), "{stderr}");
    assert_eq!(read_decisions(), decided);
    assert_eq!(dead_letters().len(), 1);
    drop(dead);
}

#[test]
fn following_the_broker_new_claims_are_decided_as_they_come() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaSink};
    let config = KafkaConfig::new(brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-adj-follow", &common::ADJUDICATION_TOPICS, 2);
    let topics = &topics.1;
    let events = common::generated_events(600);
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let send = |event: &Event| {
        let bytes = wire::encode(event).expect("encode");
        producer
            .send(&format!("{prefix}{}", event.topic()), event.key().as_bytes(), &bytes, event.event_time().0)
            .expect("send");
    };
    common::produce_to(&producer, &prefix, topics, &events);
    let claims: Vec<&arus_schemas::events::ClaimSubmitted> = events
        .iter()
        .filter_map(|e| match e {
            Event::ClaimSubmitted(c) => Some(c),
            _ => None,
        })
        .collect();

    let mut job = common::KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &pipeline(), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}"), "--set", &format!("source.topic_prefix={prefix}")])
            .args([
                "--set",
                "source.follow=true",
                "--set",
                "source.idle_timeout=\"1s\"",
                "--set",
                "out_of_orderness=\"0s\"",
            ])
            .args(["--set", &format!("store.url={redis}"), "--set", &format!("store.prefix={prefix}store:")])
            .stderr(Stdio::null())
            .spawn()
            .expect("arus runs"),
    ));
    let from: Vec<(u32, Option<u64>)> = (0..2).map(|p| (p, None)).collect();
    let mut decisions =
        BoundedPartitionReader::open(&config, "check", &topics[4], &from, 100).expect("read").following();
    // Waits for the decision of each claim in `ids`.
    let wait_for = |decided: &mut std::collections::BTreeMap<String, arus_schemas::events::ClaimAdjudicated>,
                    decisions: &mut BoundedPartitionReader,
                    ids: &[String]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while ids.iter().any(|id| !decided.contains_key(id)) {
            assert!(std::time::Instant::now() < deadline, "{} of {} decided in two minutes", decided.len(), ids.len());
            if let Some(record) = decisions.next_available(std::time::Duration::from_millis(200)).expect("read")
                && let Ok(Event::ClaimAdjudicated(a)) = wire::decode(&record.value)
            {
                decided.insert(a.claim_id.clone(), a);
            }
        }
    };
    let mut decided = std::collections::BTreeMap::new();
    let ids: Vec<String> = claims.iter().map(|c| c.claim_id.clone()).collect();
    wait_for(&mut decided, &mut decisions, &ids);

    // A claim submitted while the job runs: a copy of a covered one for another day, later.
    let model = claims
        .iter()
        .find(|c| decided[&c.claim_id].status == arus_schemas::events::ClaimStatus::APPROVED)
        .expect("an approved claim");
    let mut new = (*model).clone();
    new.claim_id = format!("{prefix}late-claim");
    new.event_id = format!("{prefix}late-claim-event");
    new.event_time = arus_schemas::Timestamp(claims.iter().map(|c| c.event_time.0).max().unwrap_or(0) + 60_000);
    for line in &mut new.lines {
        line.units += 1; // not a duplicate of the original
    }
    send(&Event::ClaimSubmitted(new.clone()));
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");
    wait_for(&mut decided, &mut decisions, std::slice::from_ref(&new.claim_id));
    let late = &decided[&new.claim_id];
    assert_eq!(late.member_id, new.member_id);
    assert!(
        late.lines
            .iter()
            .all(|l| l.billed_idr.0 == l.plan_paid_idr.0 + l.adjustments.iter().map(|a| a.amount_idr.0).sum::<i64>())
    );
    assert!(job.0.as_mut().expect("running").try_wait().expect("status").is_none(), "the job still follows");
    job.kill();
}

/// Following the broker, SIGTERM stops the job cleanly: it exits 0 with its report, what it
/// decided written and flushed, what it still held back undecided; a run after it decides the
/// rest, and every claim ends up decided exactly once. (Without the stop, SIGTERM ends the
/// process with the signal: no success, no report.)
#[test]
fn a_stopped_job_flushes_what_it_decided_and_a_restart_decides_the_rest() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaSink};
    let config = KafkaConfig::new(brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-adj-stop", &common::ADJUDICATION_TOPICS, 2);
    let topics = &topics.1;
    let events = common::generated_events(800);
    common::produce_to(&KafkaSink::new(&config, "lz4").expect("producer"), &prefix, topics, &events);
    let claims = events.iter().filter(|e| matches!(e, Event::ClaimSubmitted(_))).count();
    let job = |follow: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
        command
            .args(["run", &pipeline(), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}"), "--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", &format!("store.url={redis}"), "--set", &format!("store.prefix={prefix}store:")]);
        if follow {
            command.args(["--set", "source.follow=true", "--set", "source.idle_timeout=1s"]);
        }
        command
    };
    let decided = || common::decisions_per_claim(&config, &topics[4]);

    let mut following = common::KillOnDrop(Some(job(true).stderr(Stdio::piped()).spawn().expect("arus runs")));
    let mut decisions = BoundedPartitionReader::open(&config, "watch", &topics[4], &[(0, None), (1, None)], 100)
        .expect("read")
        .following();
    // Its first decisions written: it is well under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "no decision within two minutes");
        if let Some(record) = decisions.next_available(std::time::Duration::from_millis(200)).expect("read")
            && matches!(wire::decode(&record.value), Ok(Event::ClaimAdjudicated(_)))
        {
            break;
        }
    }
    let child = following.0.as_mut().expect("running");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the job did not stop within two minutes of SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50)); // between looks at its status
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    following.0 = None;
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped on request") && stderr.contains("claims decided"), "{stderr}");
    let before = decided();
    // (How many: whatever it had decided when the signal came; what it still held back, if
    // anything, it left undecided.)
    assert!(!before.is_empty() && before.len() <= claims, "{} of {claims} decided before the stop", before.len());
    assert!(before.values().all(|n| *n == 1), "a claim decided twice before the stop");

    // A run after it decides the rest; nothing is decided twice.
    let output = job(false).output().expect("arus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let after = decided();
    assert_eq!(after.len(), claims, "every claim decided");
    assert!(after.values().all(|n| *n == 1), "a claim decided twice");
}

/// A broker restart and a Redis restart during a run: the broker's log kept in PostgreSQL
/// (Tansu), Redis persisting every write, each killed (SIGKILL) and started again while the job
/// decides (its writes then wait for them: reading through a restart is
/// `tests/topics.rs`'s); the job goes on, and the topics and the store then hold exactly
/// what a run without faults leaves (on the embedded log, into the shared Redis): nothing lost,
/// nothing twice.
#[test]
fn a_broker_restart_and_a_redis_restart_mid_run_lose_and_duplicate_nothing() {
    use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaSink, partition_count};
    let Some(redis_url) = arus_connectors::service_address("REDIS_URL") else { return };
    let Some(mut broker) = common::DurableBroker::start("restart") else { return };
    let events = common::generated_events(3_000);
    let root = tempfile::tempdir().expect("a folder");
    let reference = root.path().join("reference");
    let log = EmbeddedLog::open(&reference).expect("a log");
    log.create_all_topics().expect("topics");
    for event in &events {
        let bytes = wire::encode(event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
    log.flush().expect("flush");
    drop(log);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-test-restarts-{}-{nanos}:", std::process::id());
    let store = |url: &str, prefix: &str| format!("store={{kind=\"redis\", url=\"{url}\", prefix=\"{prefix}\"}}");
    let run = run_on_dir(&reference).args(["--set", &store(&redis_url, &prefix)]).output().expect("arus runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (want, want_store) = (outputs(&reference), common::redis_contents(&redis_url, &prefix));
    common::redis_forget(&redis_url, &prefix);

    // The same events on the durable broker, its topics as the table declares them.
    let create = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["topics", "create", "--kafka", &broker.brokers()])
        .output()
        .expect("arus runs");
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));
    let config = KafkaConfig::new(broker.brokers());
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    for event in &events {
        let bytes = wire::encode(event).expect("encode");
        producer.send(&event.topic(), event.key().as_bytes(), &bytes, event.event_time().0).expect("send");
    }
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");
    drop(producer);

    let mut redis = common::OwnRedis::start();
    let job = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["run", &pipeline(), "--workers", "2"])
        .args(["--set", &format!("source.brokers={}", broker.brokers())])
        .args(["--set", &store(&redis.url(), "r:")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("arus starts");
    let keys = |url: &str| -> usize {
        // (While Redis restarts: nothing yet.)
        let connection = redis::Client::open(url).and_then(|c| c.get_connection());
        connection.and_then(|mut c| redis::cmd("DBSIZE").query(&mut c)).unwrap_or(0)
    };
    let mut job = job;
    let url = redis.url();
    let mut wait_for = |tenths: usize, what: &str| {
        // Polling the store until that share of the records is written.
        while keys(&url) < want_store.len() * tenths / 10 {
            assert!(job.try_wait().expect("status").is_none(), "the job ended before {what}: make the input larger");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    };
    wait_for(3, "the broker's restart");
    broker.restart();
    wait_for(6, "Redis's restart");
    redis.restart();
    let ended = job.wait_with_output().expect("reaped");
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert!(ended.status.success(), "{stderr}");

    let mut got = Vec::new();
    for topic in ["claims.events", "accumulator.updates"] {
        let partitions = partition_count(&config, topic).expect("partitions");
        for partition in 0..partitions {
            let mut reader =
                BoundedPartitionReader::open(&config, "check", topic, &[(partition, None)], 1_000).expect("read back");
            let mut records = Vec::new();
            while let Some(record) = reader.next_record().expect("read") {
                if is_output(&record.value) {
                    records.push(record.value);
                }
            }
            got.push(records);
        }
    }
    assert_eq!(got.len(), want.len(), "partitions");
    for (n, (got, want)) in got.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "output partition {n}: {} records, {} without the restarts\n{stderr}",
            got.len(),
            want.len()
        );
    }
    let got_store = common::redis_contents(&redis.url(), "r:");
    let differ = want_store.iter().filter(|(key, value)| got_store.get(*key) != Some(value)).count();
    assert!(
        got_store.len() == want_store.len() && differ == 0,
        "{} records, {} wanted, {differ} differ",
        got_store.len(),
        want_store.len()
    );
}

/// A savepoint on demand: a following run with snapshots an hour apart, sent SIGUSR1 once it has
/// decided what the topics hold, writes a snapshot at once and goes on; SIGTERM then stops it
/// with a last one, and a restart resumes from that.
#[test]
fn sigusr1_takes_a_savepoint_and_the_run_goes_on() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    use arus_connectors::kafka::{KafkaConfig, KafkaSink};
    let config = KafkaConfig::new(brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-adj-savepoint", &common::ADJUDICATION_TOPICS, 2);
    let events = common::generated_events(300);
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    common::produce_to(&producer, &prefix, &topics.1, &events);
    let snapshots = tempfile::tempdir().expect("a folder");
    let store_prefix = format!("{prefix}store:");
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
        command
            .args(["run", &pipeline()])
            .args(["--set", &format!("source.brokers={brokers}"), "--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", "source.follow=true", "--set", "source.idle_timeout=\"1s\""])
            .args(["--set", &format!("store.url={redis}"), "--set", &format!("store.prefix={store_prefix}")])
            .args(["--set", &format!("checkpoint={{dir=\"{}\", interval=\"1h\"}}", snapshots.path().display())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let child = run().spawn().expect("arus starts");
    let store = arus_connectors::store::RedisStore::connect(&redis, &store_prefix).expect("redis");
    let last = events.iter().rev().find_map(|e| match e {
        Event::ClaimSubmitted(c) => Some(c.claim_id.clone()),
        _ => None,
    });
    let last = last.expect("a claim");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // Polling the store until the last claim is decided, then the folder until the savepoint
    // is there (bounded: a failure, not a hang).
    while arus_connectors::store::read::claim(&store, &last).expect("read").is_none() {
        assert!(std::time::Instant::now() < deadline, "the last claim was not decided");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(common::newest_snapshot(snapshots.path()), 0, "none before it is asked for");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().expect("kill runs").success());
    while common::newest_snapshot(snapshots.path()) == 0 {
        assert!(std::time::Instant::now() < deadline, "no savepoint written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let stopped = child.wait_with_output().expect("reaped");
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stopped.status.success() && stderr.contains("\n2 snapshots taken"), "{stderr}");
    // Restarted, it resumes from the stop's (asked to stop once it has begun: it says where its
    // snapshots go, after any warning about its topics).
    let mut again = run().spawn().expect("arus starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(again.stderr.take().expect("stderr")));
    let begun = lines.by_ref().map(|l| l.expect("read")).find(|l| l.starts_with("snapshots: "));
    assert!(begun.is_some(), "it never said where its snapshots go");
    let pid = again.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let stderr: Vec<String> = lines.map(|l| l.expect("read")).collect();
    let stderr = stderr.join("\n");
    assert!(again.wait().expect("reaped").success(), "{stderr}");
    assert!(stderr.contains("resumed from snapshot 2"), "{stderr}");
    drop(topics);
}
