//! Exactly-once across crashes: `arus run` with checkpoints, killed with SIGKILL at random
//! moments and started again until it finishes, writes the same files, byte for byte, as a run
//! that was never interrupted — from a JSON-lines file, from the embedded log, and from the real
//! broker.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{claim_line, claims, expected_csv, write_claims};

fn pipeline() -> String {
    format!("{}/pipelines/provider-windows.toml", env!("CARGO_MANIFEST_DIR"))
}

/// The files a run writes.
struct Outputs {
    csv: PathBuf,
    late: PathBuf,
    /// `None`: dead letters go to the source topic's `.dlq` topic.
    dead: Option<PathBuf>,
}

impl Outputs {
    fn in_dir(dir: &Path, name: &str) -> Self {
        Outputs {
            csv: dir.join(format!("{name}.csv")),
            late: dir.join(format!("{name}.late.jsonl")),
            dead: Some(dir.join(format!("{name}.dlq.jsonl"))),
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--set".to_owned(),
            format!("sink.path={}", self.csv.display()),
            "--set".to_owned(),
            format!("sink.late_path={}", self.late.display()),
        ];
        if let Some(dead) = &self.dead {
            args.extend(["--set".to_owned(), format!("sink.dead_letter_path={}", dead.display())]);
        }
        args
    }

    fn read(&self) -> (String, String, String) {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (read(&self.csv), read(&self.late), self.dead.as_deref().map(read).unwrap_or_default())
    }
}

/// The pipeline, made sensitive to how records are batched: no out-of-orderness allowed, so
/// claims up to ten minutes behind are corrections when within five minutes of lateness and
/// late records past that — what gets written then depends on exactly which records share a
/// batch, and a restart that batched differently would show.
fn command(source: &[String], outputs: &Outputs, extra: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
    command
        .args(["run", &pipeline(), "--workers", "2"])
        .args(["--set", "windows.out_of_orderness=\"0s\"", "--set", "windows.allowed_lateness=\"5m\""])
        .args(source)
        .args(outputs.args())
        .args(extra);
    command
}

/// Runs the pipeline uninterrupted, without checkpoints: the reference.
fn reference(dir: &Path, source: &[String]) -> (String, String, String) {
    let outputs = Outputs::in_dir(dir, "reference");
    let run = command(source, &outputs, &[]).output().expect("arus runs");
    assert!(run.status.success(), "reference run failed: {}", String::from_utf8_lossy(&run.stderr));
    outputs.read()
}

/// Runs the pipeline with checkpoints, killing it with SIGKILL once its CSV has grown past each
/// of several random points (the first kill comes before anything is written), then lets it
/// finish. Returns the outputs and the last run's stderr.
fn crash_and_recover(
    dir: &Path,
    source: &[String],
    final_csv_len: u64,
    dead_letters_to_topic: bool,
) -> ((String, String, String), String) {
    let mut outputs = Outputs::in_dir(dir, "recovered");
    if dead_letters_to_topic {
        outputs.dead = None;
    }
    let checkpoint = vec![
        "--set".to_owned(),
        format!("checkpoint.dir={}", dir.join("checkpoints").display()),
        "--set".to_owned(),
        "checkpoint.interval=\"5ms\"".to_owned(),
    ];
    let mut dice = common::Dice::new();
    let mut points: Vec<u64> = (0..4).map(|_| final_csv_len / 10 + dice.below(final_csv_len * 8 / 10)).collect();
    points.sort_unstable();
    points.insert(0, 0);
    let mut killed_mid_run = 0;
    for point in points {
        let mut child = command(source, &outputs, &checkpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("arus starts");
        loop {
            if child.try_wait().expect("child status").is_some() {
                break; // finished before the kill point
            }
            let written = std::fs::metadata(&outputs.csv).map_or(0, |m| m.len());
            if written >= point {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                killed_mid_run += 1;
                break;
            }
            // Polling the file; the kill point needs no timing to be right, any moment must do.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(killed_mid_run >= 3, "only {killed_mid_run} kills landed while the job ran: make the input larger");
    let last = command(source, &outputs, &checkpoint).output().expect("arus runs");
    let stderr = String::from_utf8_lossy(&last.stderr).into_owned();
    assert!(last.status.success(), "the run after the kills failed: {stderr}");
    (outputs.read(), stderr)
}

fn assert_same(recovered: &(String, String, String), reference: &(String, String, String), stderr: &str) {
    for (name, got, want) in [
        ("CSV", &recovered.0, &reference.0),
        ("late records", &recovered.1, &reference.1),
        ("dead letters", &recovered.2, &reference.2),
    ] {
        if got != want {
            let first = got.lines().zip(want.lines()).position(|(a, b)| a != b);
            panic!(
                "{name} after kills differ from the uninterrupted run: {} vs {} lines, first difference at line \
                 {first:?}\n{stderr}",
                got.lines().count(),
                want.lines().count()
            );
        }
    }
    assert!(stderr.contains("resumed from checkpoint"), "the last run started over instead of resuming: {stderr}");
}

/// Claims with a few bad lines among them, so dead letters are part of what must match.
fn lines_with_dead_letters(claims: &[(String, String, String, String, u64)]) -> Vec<String> {
    let mut lines: Vec<String> = claims.iter().map(claim_line).collect();
    for (i, bad) in ["not json", "{\"claim_id\":\"X\"}", "{\"billed_amount\":1.005}"].iter().enumerate() {
        let at = (i + 1) * lines.len() / 4;
        lines.insert(at, (*bad).to_owned());
    }
    lines
}

/// Dead letters from the reference run's file, one line each: where from, why, what.
fn letters_in_file(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON dead letter");
            format!("{}:{}:{}:{}:{}", v["partition"], v["offset"], v["error_kind"], v["error"], v["original"])
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Dead letters from a `.dlq` topic (the contract's `DeadLetter` events), in the same form.
fn letters_in_topic(values: Vec<Vec<u8>>) -> String {
    let mut lines: Vec<String> = values
        .iter()
        .map(|bytes| match arus_schemas::wire::decode(bytes).expect("a DeadLetter event") {
            arus_schemas::Event::DeadLetter(d) => format!(
                "{}:{}:{}:{}:{}",
                d.source_partition,
                d.source_offset,
                serde_json::Value::from(d.error_kind),
                serde_json::Value::from(d.error),
                serde_json::Value::from(String::from_utf8_lossy(&d.original_value).into_owned())
            ),
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

const CLAIMS: u64 = 60_000;

#[test]
fn a_file_source_recovers_from_sigkill_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let claims = claims(CLAIMS);
    write_claims(&input, &[], &(lines_with_dead_letters(&claims).join("\n") + "\n"));
    let source = vec![
        "--set".to_owned(),
        format!("source.path={}", input.display()),
        "--set".to_owned(),
        "source.batch_lines=2000".to_owned(),
    ];
    let reference = reference(dir.path(), &source);
    let last_rows = |csv: &str| -> String {
        // The last row of each window is its final value.
        let mut last = std::collections::BTreeMap::new();
        for line in csv.lines().skip(1) {
            let mut fields = line.splitn(3, ',');
            let key = (fields.next().unwrap_or("").to_owned(), fields.next().unwrap_or("").to_owned());
            last.insert(key, line.to_owned());
        }
        last.into_values().collect::<Vec<_>>().join("\n")
    };
    assert!(!reference.1.is_empty(), "some claims are too late to count");
    assert!(reference.0.lines().count() > expected_csv(&claims).lines().count(), "some windows are corrected");
    let _ = last_rows;
    assert_eq!(reference.2.lines().count(), 3, "three dead letters");
    let (recovered, stderr) = crash_and_recover(dir.path(), &source, reference.0.len() as u64, false);
    assert_same(&recovered, &reference, &stderr);
}

#[test]
fn an_embedded_log_source_recovers_from_sigkill_exactly() {
    use arus_connectors::embedded::EmbeddedLog;
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("log");
    let claims = claims(CLAIMS);
    {
        let log = EmbeddedLog::open(&log_dir).expect("log");
        log.create_topic("claims", 3).expect("topic");
        for (i, line) in lines_with_dead_letters(&claims).into_iter().enumerate() {
            let claim = &claims[i.min(claims.len() - 1)];
            let timestamp = arus_schemas::Timestamp(claim.4 as i64 * 1000);
            // Keyed by claim: partitions move through event time together, so every one of
            // them takes turns holding the watermark back.
            log.produce("claims", Some(claim.0.as_bytes()), line.into_bytes(), timestamp).expect("produce");
        }
        log.flush().expect("flush");
    }
    let source = vec![
        "--set".to_owned(),
        format!("source={{kind=\"embedded\", dir=\"{}\", topic=\"claims\", batch_records=1001}}", log_dir.display()),
    ];
    let reference = reference(dir.path(), &source);
    assert_eq!(reference.2.lines().count(), 3, "three dead letters");
    let (mut recovered, stderr) = crash_and_recover(dir.path(), &source, reference.0.len() as u64, true);
    let log = EmbeddedLog::open(&log_dir).expect("log");
    let dlq = log.fetch("claims.dlq", 0, 0, 1_000).expect("claims.dlq");
    assert_eq!(
        dlq.len(),
        3,
        "each dead letter once in claims.dlq, whatever the kills: {}",
        letters_in_topic(dlq.iter().map(|r| r.value.clone()).collect())
    );
    recovered.2 = letters_in_topic(dlq.into_iter().map(|r| r.value).collect());
    assert_same(&recovered, &(reference.0, reference.1, letters_in_file(&reference.2)), &stderr);
    let committed: u64 = (0..3).filter_map(|p| log.committed("arus-provider-windows", "claims", p)).sum();
    assert_eq!(committed, claims.len() as u64 + 3, "the group's positions are committed at the end of every partition");
}

/// Against the real broker (`KAFKA_BROKERS`; required when `ARUS_REQUIRE_SERVICES` is set).
#[test]
fn a_kafka_source_recovers_from_sigkill_exactly() {
    use arus_connectors::kafka::committed_positions;
    let Some(kafka) = common::TestTopic::new("recovery", 3) else { return };
    let (brokers, topic, config) = (&kafka.brokers, &kafka.name, &kafka.config);
    let claims = claims(CLAIMS);
    let lines = lines_with_dead_letters(&claims);
    kafka.send(lines.iter().enumerate().map(|(i, line)| {
        let claim = &claims[i.min(claims.len() - 1)];
        (claim.0.as_bytes(), line.as_bytes(), (claim.4 * 1000) as i64)
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let group = format!("{topic}-group");
    let source = vec![
        "--set".to_owned(),
        format!(
            "source={{kind=\"kafka\", brokers=\"{brokers}\", topic=\"{topic}\", group=\"{group}\", batch_records=2000}}"
        ),
    ];
    let reference = reference(dir.path(), &source);
    assert_eq!(reference.2.lines().count(), 3, "three dead letters");
    let (mut recovered, stderr) = crash_and_recover(dir.path(), &source, reference.0.len() as u64, true);
    let dlq = format!("{topic}.dlq");
    let mut reader =
        arus_connectors::kafka::BoundedPartitionReader::open(config, "arus-test-read", &dlq, &[(0, None)], 100)
            .expect("read the dead letters");
    let mut values = Vec::new();
    while let Some(record) = reader.next_record().expect("read") {
        values.push(record.value);
    }
    assert_eq!(values.len(), 3, "each dead letter once in {dlq}, whatever the kills");
    recovered.2 = letters_in_topic(values);
    assert_same(&recovered, &(reference.0, reference.1, letters_in_file(&reference.2)), &stderr);
    let committed = committed_positions(config, &group, topic, &[0, 1, 2]).expect("committed offsets");
    let total: u64 = committed.iter().filter_map(|(_, o)| *o).sum();
    assert_eq!(total, claims.len() as u64 + 3, "the group's offsets are committed at the end of every partition");
}

#[test]
fn an_avro_container_source_recovers_from_sigkill_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let generated = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["gen", "--claims", &CLAIMS.to_string(), "--days", "20", "--format", "avro", "--quiet", "--out"])
        .arg(&data)
        .output()
        .expect("arus gen runs");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let source = vec![
        "--set".to_owned(),
        format!("source={{kind=\"avro\", path=\"{}\", batch_records=1000}}", data.join("claims.events.avro").display()),
    ];
    let reference = reference(dir.path(), &source);
    assert!(reference.0.lines().count() > 1_000, "the claims make windows");
    let (recovered, stderr) = crash_and_recover(dir.path(), &source, reference.0.len() as u64, false);
    assert_same(&recovered, &reference, &stderr);
}
