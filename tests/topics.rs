//! `arus topics` and `arus dlq` as an engineer uses them: the table applied to a log, events
//! loaded from the generator's files and read back, a bad file refused whole with its line
//! numbers; a record that is not an event dead-lettered by the adjudication job, shown, and a
//! letter that decodes re-driven into its topic exactly once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use arus_connectors::embedded::EmbeddedLog;
use arus_schemas::{Event, Timestamp, wire};

fn arus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arus")).args(args).output().expect("arus runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let run = arus(args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&run.stdout).into_owned(), String::from_utf8_lossy(&run.stderr).into_owned());
    assert!(run.status.success(), "arus {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// The event ids of a JSON-lines file, or of `arus topics consume`'s output.
fn ids(lines: &str) -> BTreeSet<String> {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| arus_schemas::json::from_json(l).expect("an event").event_id().to_owned())
        .collect()
}

fn consume(log: &str, topic: &str) -> String {
    ok(&["topics", "consume", topic, "--log", log]).0
}

#[test]
fn events_are_loaded_and_read_back_and_a_bad_file_is_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (generated, log) = (dir.path().join("gen"), dir.path().join("log"));
    let (generated_text, log) = (generated.to_str().expect("utf-8"), log.to_str().expect("utf-8"));
    ok(&["gen", "--claims", "200", "--days", "20", "--quiet", "--out", generated_text]);

    // The table applied: every topic created, then found as declared.
    let (created, _) = ok(&["topics", "create", "--log", log]);
    for topic in ["claims.events", "accumulator.updates", "audit.events", "claims.events.dlq"] {
        assert!(created.lines().any(|l| l.starts_with(topic) && l.ends_with("created")), "{topic} in {created}");
    }
    let (again, _) = ok(&["topics", "create", "--log", log]);
    assert!(again.lines().all(|l| l.ends_with("as declared")), "{again}");
    assert_eq!(again.lines().count(), created.lines().count());

    for topic in ["member.events", "benefit.events", "claims.events"] {
        let file = generated.join(format!("{topic}.jsonl"));
        let (_, stderr) = ok(&["topics", "produce", topic, "--file", file.to_str().expect("utf-8"), "--log", log]);
        let expected = ids(&std::fs::read_to_string(&file).expect("file"));
        assert!(stderr.contains(&format!("{} events written to {topic}", expected.len())), "{stderr}");
        assert_eq!(ids(&consume(log, topic)), expected, "{topic} read back as loaded");
    }
    // Keyed as the contract says: a member's claims in the partition its key hashes to.
    let opened = EmbeddedLog::open(Path::new(log)).expect("log");
    let partitions = opened.partitions("claims.events").expect("partitions");
    for (partition, end) in opened.end_offsets("claims.events").expect("ends").into_iter().enumerate() {
        for record in opened.fetch("claims.events", partition as u32, 0, end as usize).expect("fetch") {
            let event = wire::decode(&record.value).expect("the wire format");
            assert_eq!(record.key.as_deref(), Some(event.key().as_bytes()));
            assert_eq!(arus_schemas::topics::partition_for_key(event.key().as_bytes(), partitions), partition as u32);
        }
    }
    drop(opened);

    // A file with a line that is not JSON and one of another topic: refused whole.
    let members = std::fs::read_to_string(generated.join("member.events.jsonl")).expect("members");
    let plan = std::fs::read_to_string(generated.join("benefit.events.jsonl")).expect("plans");
    let mut nik = members.lines().next().expect("a member").to_owned();
    nik = nik.replacen("\"nik\":\"", "\"nik\":3", 1); // a NIK of the wrong type: never echoed
    let bad = dir.path().join("bad.jsonl");
    let lines = [members.lines().nth(1).expect("a member"), "{not json", plan.lines().next().expect("a plan"), &nik];
    std::fs::write(&bad, lines.join("\n")).expect("write");
    let before = consume(log, "member.events");
    let run = arus(&["topics", "produce", "member.events", "--file", bad.to_str().expect("utf-8"), "--log", log]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: not an event of the contract (column 2: not JSON)"), "{stderr}");
    assert!(stderr.contains("line 3: a PlanCreated belongs on benefit.events, not member.events"), "{stderr}");
    assert!(stderr.contains("line 4: not an event of the contract"), "{stderr}");
    assert!(stderr.contains("3 of 4 lines") && stderr.contains("nothing was written"), "{stderr}");
    let member = arus_schemas::json::from_json(members.lines().next().expect("a member")).expect("a member");
    let Event::MemberCreated(created) = member else { panic!("a MemberCreated first") };
    assert!(!stderr.contains(&created.nik), "a NIK in the error: {stderr}");
    assert_eq!(consume(log, "member.events"), before, "nothing written from a refused file");

    // Unknown topics and missing logs are the user's to fix, named.
    let run = arus(&["topics", "produce", "nope.events", "--file", bad.to_str().expect("utf-8"), "--log", log]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("nope.events is not a topic of the table"));
    let nowhere = dir.path().join("nowhere");
    let run = arus(&["topics", "consume", "claims.events", "--log", nowhere.to_str().expect("utf-8")]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no embedded log there"));
}

#[test]
fn a_record_that_is_not_an_event_is_dead_lettered_shown_and_a_fixed_one_replayed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (generated, log_dir) = (dir.path().join("gen"), dir.path().join("log"));
    let log = log_dir.to_str().expect("utf-8");
    ok(&["gen", "--claims", "100", "--days", "10", "--quiet", "--out", generated.to_str().expect("utf-8")]);
    ok(&["topics", "create", "--log", log]);
    for topic in ["member.events", "benefit.events", "provider.events", "claims.events"] {
        let file = generated.join(format!("{topic}.jsonl"));
        ok(&["topics", "produce", topic, "--file", file.to_str().expect("utf-8"), "--log", log]);
    }
    // A broken producer's record on claims.events.
    let garbage = b"\x00\x00\x00\x00\x07broken".to_vec();
    {
        let opened = EmbeddedLog::open(&log_dir).expect("log");
        opened.produce("claims.events", Some(b"M-x"), garbage.clone(), Timestamp(1_767_225_600_000)).expect("produce");
        opened.flush().expect("flush");
    }
    let adjudicate = || {
        ok(&[
            "run",
            &format!("{}/pipelines/adjudication.toml", env!("CARGO_MANIFEST_DIR")),
            "--set",
            &format!("source={{kind=\"embedded\", dir=\"{log}\"}}"),
            "--set",
            "store={kind=\"memory\"}",
        ])
    };
    adjudicate();
    adjudicate(); // a rerun does not set the letter aside again
    let (tail, stderr) = ok(&["dlq", "tail", "--log", log]);
    assert!(stderr.contains("1 dead letters"), "{stderr}\n{tail}");
    let letter: serde_json::Value = serde_json::from_str(tail.trim()).expect("one JSON line");
    assert_eq!(letter["source_topic"], "claims.events");
    assert_eq!((letter["error_kind"].as_str(), letter["decodes_now"].as_bool()), (Some("decode"), Some(false)));
    assert_eq!(letter["bytes"], garbage.len());
    assert!(letter.get("original").is_none(), "bytes only when asked: {tail}");
    let (shown, _) = ok(&["dlq", "tail", "claims.events", "--original", "--log", log]);
    let shown: serde_json::Value = serde_json::from_str(shown.trim()).expect("one JSON line");
    let hex: String = garbage.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(shown["original"], hex);

    // A letter that an older build could not read and this one can (as after a fix), behind
    // the one still broken.
    let claim = {
        let text = std::fs::read_to_string(generated.join("claims.events.jsonl")).expect("claims");
        let mut claim = arus_schemas::json::from_json(text.lines().next().expect("a claim")).expect("a claim");
        if let Event::ClaimSubmitted(c) = &mut claim {
            c.event_id = "redriven-1".to_owned();
            c.claim_id = "C-REDRIVEN".to_owned();
        }
        claim
    };
    {
        let opened = EmbeddedLog::open(&log_dir).expect("log");
        let fixed = Event::DeadLetter(arus_schemas::events::DeadLetter {
            event_id: "dlq:claims.events:0:999".to_owned(),
            event_time: claim.event_time(),
            source_topic: "claims.events".to_owned(),
            source_partition: 0,
            source_offset: 999,
            error_kind: "decode".to_owned(),
            error: "an older schema".to_owned(),
            original_key: Some(claim.key().as_bytes().to_vec()),
            original_value: wire::encode(&claim).expect("encode"),
        });
        opened
            .produce(
                "claims.events.dlq",
                Some(b"claims.events"),
                wire::encode(&fixed).expect("encode"),
                claim.event_time(),
            )
            .expect("produce");
        opened.flush().expect("flush");
    }
    let redriven = || ids(&consume(log, "claims.events")).contains("redriven-1");
    // The broken letter comes first: the replay stops there.
    let (_, stderr) = ok(&["dlq", "replay", "claims.events", "--log", log]);
    assert!(
        stderr.contains("0 dead letters went back") && stderr.contains("the replay stopped at the first"),
        "{stderr}"
    );
    assert!(!redriven());
    let (_, stderr) = ok(&["dlq", "replay", "claims.events", "--skip-undecodable", "--dry-run", "--log", log]);
    assert!(stderr.contains("1 dead letters would go back"), "{stderr}");
    assert!(!redriven(), "a dry run writes nothing");
    let (_, stderr) = ok(&["dlq", "replay", "claims.events", "--skip-undecodable", "--log", log]);
    assert!(stderr.contains("1 dead letters went back to claims.events"), "{stderr}");
    assert!(redriven());
    let (_, stderr) = ok(&["dlq", "replay", "claims.events", "--skip-undecodable", "--log", log]);
    assert!(stderr.contains("0 dead letters went back"), "a second replay sends nothing: {stderr}");
    let copies = consume(log, "claims.events").lines().filter(|l| l.contains("\"redriven-1\"")).count();
    assert_eq!(copies, 1);
}

/// The broker killed (SIGKILL) and started again while a reader is part way through a topic
/// (the broker's log kept in PostgreSQL): the reader waits for it and goes on where it was,
/// every record read once, in order; the records written after the restart are there too.
#[test]
fn a_reader_goes_on_through_a_broker_restart_each_record_once() {
    use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaSink, create_topics};
    let Some(mut broker) = common::DurableBroker::start("reader") else { return };
    let config = KafkaConfig::new(broker.brokers());
    create_topics(&config, &[("t", 2)]).expect("a topic");
    let send = |range: std::ops::Range<u32>| {
        let producer = KafkaSink::new(&config, "none").expect("producer");
        for i in range {
            producer
                .send("t", format!("k{}", i % 7).as_bytes(), format!("r{i}").as_bytes(), i64::from(i))
                .expect("send");
        }
        producer.flush(std::time::Duration::from_secs(30)).expect("delivered");
    };
    send(0..400);
    let mut reader =
        BoundedPartitionReader::open(&config, "g", "t", &[(0, None), (1, None)], 10).expect("a reader").following();
    let mut read = Vec::new();
    let mut next = |read: &mut Vec<(u32, i64, Vec<u8>)>| {
        let record = reader.next_available(std::time::Duration::from_millis(100)).expect("read through the restart");
        if let Some(record) = record {
            read.push((record.partition, record.offset, record.value));
        }
    };
    while read.len() < 100 {
        next(&mut read);
    }
    broker.restart();
    send(400..500);
    // Read until all 500 are there (each poll waits for the broker at most 100 ms; a record
    // missing would keep this going, and the test's timeout would say so).
    while read.len() < 500 {
        next(&mut read);
    }
    for _ in 0..5 {
        next(&mut read);
    }
    assert_eq!(read.len(), 500, "nothing read twice");
    for partition in 0..2 {
        let offsets: Vec<i64> = read.iter().filter(|r| r.0 == partition).map(|r| r.1).collect();
        assert!(offsets.iter().enumerate().all(|(i, o)| *o == i as i64), "partition {partition} in order: {offsets:?}");
    }
    let values: BTreeSet<Vec<u8>> = read.into_iter().map(|r| r.2).collect();
    assert_eq!(values.len(), 500);
}

/// A job's startup says which of its topics on the broker differ from the topic table, and how
/// (partitions, settings), and runs: a topic made as declared is not named.
#[test]
fn a_job_starting_names_its_topics_that_differ_from_the_table() {
    use arus_connectors::kafka::{Durability, KafkaConfig, apply_topics};
    let Some(brokers) = arus_connectors::service_address("KAFKA_BROKERS") else { return };
    let config = KafkaConfig::new(brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-startup", &["member.events"], 1);
    let benefits = arus_schemas::topics::declared("benefit.events").expect("declared");
    let declared = [(format!("{prefix}benefit.events"), benefits)];
    apply_topics(&config, &declared, Durability::default()).expect("made as declared");
    let _more = common::DropTopics(&config, vec![declared[0].0.clone()]);
    let members = arus_schemas::topics::declared("member.events").expect("declared");
    assert_ne!(members.partitions, 1, "the test's topic differs");
    let output = arus(&[
        "run",
        concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/eligibility.toml"),
        "--set",
        &format!("source.brokers={brokers}"),
        "--set",
        &format!("source.topic_prefix={prefix}"),
        "--set",
        "store={kind=\"memory\"}",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warning = format!(
        "warning: topic {prefix}member.events differs from the topic table: partitions: 1, declared {}",
        members.partitions
    );
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(!stderr.contains(&format!("{prefix}benefit.events differs")), "{stderr}");
    drop(topics);
}
