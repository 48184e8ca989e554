//! `arus run pipelines/fraud.toml` (rules and the ONNX model) on a persisted embedded log, and
//! `arus alerts tail` reading the alerts back for an analyst, filtered by subject and score.

mod common;

use std::process::Command;

use arus_connectors::embedded::EmbeddedLog;
use arus_generator::{GeneratorConfig, Output, generate};
use arus_schemas::events::SubjectType;
use arus_schemas::{Event, wire};

fn arus(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_arus")).args(args).output().expect("arus runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The version of the newest model in `models/`, the one the job scores with.
fn model_version() -> String {
    let models = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"));
    arus_jobs::fraud::model::newest(models).expect("a model in models/").0.to_string()
}

#[test]
fn alerts_are_raised_and_tailed_for_analysts() {
    let dir = tempfile::tempdir().expect("a folder");
    common::generated_log(dir.path(), &GeneratorConfig { claims: 4_000, days: 60, ..GeneratorConfig::default() });
    let source = format!("source={{kind=\"embedded\", dir=\"{}\"}}", dir.path().display());
    let pipeline = format!("{}/pipelines/fraud.toml", env!("CARGO_MANIFEST_DIR"));
    let models = format!("model.dir=\"{}/models\"", env!("CARGO_MANIFEST_DIR"));
    // Without ONNX Runtime (none named, none in the cache), a model is a clear error, not a
    // crash.
    let empty_cache = tempfile::tempdir().expect("a folder");
    let output = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["run", &pipeline, "--set", &source, "--set", &models])
        .env_remove("ORT_DYLIB_PATH")
        .env("ARUS_CACHE", empty_cache.path())
        .output()
        .expect("arus runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
    assert!(stderr.contains("no ONNX Runtime"), "{stderr}");
    assert_eq!(output.status.code(), Some(2), "the user's to fix: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The rules and the model (ONNX Runtime from ORT_DYLIB_PATH, installed by the test command).
    if arus_connectors::service_address("ORT_DYLIB_PATH").is_none() {
        return;
    }
    let (ok, _, stderr) = arus(&["run", &pipeline, "--workers", "2", "--set", &source, "--set", &models]);
    assert!(ok, "{stderr}");
    // Not named, the runtime the test command installed into the cache is found there.
    let output = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["run", &pipeline, "--set", &source, "--set", &models])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("arus runs");
    let found = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && found.contains(" alerts to fraud.alerts"), "{found}");
    let raised: u64 = stderr
        .split(" alerts to fraud.alerts")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no count in {stderr}"));
    assert!(raised > 10, "{stderr}");
    // The alerts on the log, by subject.
    let log = EmbeddedLog::open(dir.path()).expect("the log");
    let (mut members, mut total, mut high) = (0, 0, 0);
    for (partition, end) in log.end_offsets("fraud.alerts").expect("offsets").into_iter().enumerate() {
        for record in log.fetch("fraud.alerts", partition as u32, 0, end as usize).expect("fetch") {
            let Event::FraudAlert(alert) = wire::decode(&record.value).expect("an alert") else {
                panic!("not an alert")
            };
            total += 1;
            members += usize::from(alert.subject_type == SubjectType::MEMBER);
            assert!(alert.score.is_some() && alert.model_version == Some(model_version()), "scored: {alert:?}");
            high += usize::from(alert.score.is_some_and(|s| s >= 0.9));
        }
    }
    drop(log);
    assert_eq!(total as u64, raised);

    let log_dir = dir.path().display().to_string();
    let (ok, stdout, stderr) = arus(&["alerts", "tail", "--log", &log_dir]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), total);
    assert!(
        stdout
            .lines()
            .all(|l| l.contains("(claims ")
                && (l.contains("[R-") || l.contains(&format!("[model v{}]", model_version())))),
        "{stdout}"
    );
    let (ok, stdout, _) = arus(&["alerts", "tail", "--log", &log_dir, "--subject", "member"]);
    assert!(ok);
    assert_eq!(stdout.lines().count(), members);
    assert!(members > 0 && stdout.lines().all(|l| l.contains(" member M")), "{stdout}");
    // The analyst's score filter.
    let (ok, stdout, stderr) = arus(&["alerts", "tail", "--log", &log_dir, "--min-score", "0.9"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), high);
    assert!(high > 0 && high < total, "{high} of {total}");
    assert!(stdout.lines().all(|l| l.contains(" score ")), "{stdout}");
    // A rerun raises nothing twice.
    let (ok, _, stderr) = arus(&["run", &pipeline, "--set", &source, "--set", &models]);
    assert!(ok && stderr.contains("already there"), "{stderr}");
    let (_, stdout, _) = arus(&["alerts", "tail", "--log", &log_dir]);
    assert_eq!(stdout.lines().count(), total);
    // Mistakes get a clear error.
    let (ok, _, stderr) = arus(&["alerts", "tail"]);
    assert!(!ok && stderr.contains("--kafka BROKERS or --log DIR"), "{stderr}");
    let (ok, _, stderr) = arus(&["alerts", "tail", "--log", &log_dir, "--min-score", "7"]);
    assert!(!ok && stderr.contains("between 0 and 1"), "{stderr}");
}

#[test]
fn through_the_broker_the_job_raises_what_the_rules_and_model_raise() {
    let (Some(brokers), Some(_)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("ORT_DYLIB_PATH"))
    else {
        return;
    };
    use arus_connectors::kafka::{KafkaConfig, KafkaSink};
    let config = KafkaConfig::new(brokers.clone());
    let (prefix, topics) = common::broker_topics(
        &config,
        "arus-test-fraud",
        &["member.events", "benefit.events", "provider.events", "claims.events", "fraud.alerts"],
        2,
    );
    let topics = &topics.1;

    let mut events = Vec::new();
    let settings = GeneratorConfig { seed: 13, claims: 3_000, days: 45, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        if let Output::Event(event) = output {
            events.push(event);
        }
        Ok(())
    })
    .expect("generate");
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    for event in &events {
        let topic = format!("{prefix}{}", event.topic());
        if topics.contains(&topic) {
            let bytes = wire::encode(event).expect("encode");
            producer.send(&topic, event.key().as_bytes(), &bytes, event.event_time().0).expect("send");
        }
    }
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");

    // The alerts the rules and the model raise, folded directly in the job's order.
    let models = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models"));
    let spec = arus_jobs::fraud::spec::ModelSpec { dir: models.clone(), threshold: 0.5, shadow: false };
    let mut fold =
        arus_jobs::fraud::job::FraudFold::new(Some(arus_jobs::fraud::job::ModelWatch::open(&spec).expect("model")));
    let mut ordered: Vec<&Event> = events.iter().collect();
    ordered
        .sort_by(|a, b| arus_jobs::runtime::sequenced::order_key(a).cmp(&arus_jobs::runtime::sequenced::order_key(b)));
    let mut expected: Vec<String> =
        ordered.into_iter().flat_map(|e| fold.alerts(e).expect("scored")).map(|a| a.event_id().to_owned()).collect();
    expected.extend(fold.finish().expect("scored").iter().map(|a| a.event_id().to_owned()));
    expected.sort();
    assert!(expected.len() > 20);

    let pipeline = format!("{}/pipelines/fraud.toml", env!("CARGO_MANIFEST_DIR"));
    let (ok, _, stderr) = arus(&[
        "run",
        &pipeline,
        "--workers",
        "2",
        "--set",
        &format!("source.brokers={brokers}"),
        "--set",
        &format!("source.topic_prefix={prefix}"),
        "--set",
        &format!("model.dir=\"{}\"", models.display()),
    ]);
    assert!(ok, "{stderr}");
    let from: Vec<(u32, Option<u64>)> = (0..2).map(|p| (p, None)).collect();
    let mut reader =
        arus_connectors::kafka::BoundedPartitionReader::open(&config, "check", &topics[4], &from, 100).expect("read");
    let mut written = Vec::new();
    while let Some(record) = reader.next_record().expect("read") {
        let Event::FraudAlert(alert) = wire::decode(&record.value).expect("an alert") else { panic!("not an alert") };
        assert_eq!(alert.model_version, Some(model_version()));
        written.push(alert.event_id);
    }
    written.sort();
    assert_eq!(written, expected);
    // An analyst reads them from the broker.
    let (ok, stdout, stderr) = arus(&["alerts", "tail", "--kafka", &brokers, "--topic-prefix", &prefix]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), expected.len());
}

/// The rules alone (no model), on the embedded log in `log`, with snapshots in `snapshots`.
fn rules_on(root: &std::path::Path, log: &std::path::Path, snapshots: &std::path::Path) -> Command {
    let spec = root.join("fraud-rules.toml");
    if !spec.exists() {
        let text = "job = \"fraud\"\nout_of_orderness = \"1d\"\n[source]\nkind = \"embedded\"\ndir = \".\"\n";
        std::fs::write(&spec, text).expect("a spec");
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
    command
        .args(["run", spec.to_str().expect("a path"), "--workers", "2"])
        .args(["--set", &format!("source={{kind=\"embedded\", dir=\"{}\"}}", log.display())])
        .args(["--set", &format!("checkpoint={{dir=\"{}\", interval=\"20ms\"}}", snapshots.display())]);
    command
}

/// The alerts on the log in `dir`, per partition.
fn alerts_on(dir: &std::path::Path) -> Vec<Vec<Vec<u8>>> {
    let log = EmbeddedLog::open(dir).expect("the log");
    let ends = log.end_offsets("fraud.alerts").expect("offsets");
    let fetch = |(p, end): (usize, u64)| log.fetch("fraud.alerts", p as u32, 0, end as usize).expect("fetch");
    ends.into_iter().enumerate().map(|e| fetch(e).into_iter().map(|r| r.value).collect()).collect()
}

/// Killed with SIGKILL at twenty random moments and started again each time, the job taking
/// snapshots (each run killed within a quarter of an uninterrupted run's time, of its start or of
/// its first snapshot): each restart begins from the newest, and `fraud.alerts` ends up holding exactly
/// what one uninterrupted run writes; a run after that writes nothing.
#[test]
fn killed_and_restarted_from_its_snapshots_the_job_raises_what_an_uninterrupted_run_does() {
    let root = tempfile::tempdir().expect("a folder");
    let (reference, recovered) = (root.path().join("reference"), root.path().join("recovered"));
    let settings = GeneratorConfig { claims: 12_000, days: 60, ..GeneratorConfig::default() };
    for dir in [&reference, &recovered] {
        common::generated_log(dir, &settings);
    }
    let started = std::time::Instant::now();
    let run = rules_on(root.path(), &reference, &root.path().join("reference-snapshots")).output().expect("runs");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && stderr.contains("snapshots taken"), "{stderr}");
    let want = alerts_on(&reference);
    assert!(want.iter().map(Vec::len).sum::<usize>() > 50, "alerts raised: {stderr}");
    let snapshots = root.path().join("snapshots");
    let killed =
        common::kill_at_random_moments(20, took / 4, &snapshots, || rules_on(root.path(), &recovered, &snapshots));
    assert_eq!(killed, 20, "kills that landed while the job ran");
    let last = rules_on(root.path(), &recovered, &snapshots).output().expect("runs");
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success() && stderr.contains("resumed from snapshot"), "{stderr}");
    let got = alerts_on(&recovered);
    for (partition, (got, want)) in got.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "partition {partition}: {} alerts after {killed} kills, {} uninterrupted",
            got.len(),
            want.len()
        );
    }
    let again = rules_on(root.path(), &recovered, &snapshots).output().expect("runs");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(alerts_on(&recovered) == want, "a run after the end wrote again");
}
