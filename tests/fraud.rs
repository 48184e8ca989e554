//! `arus run pipelines/fraud.toml` on a persisted embedded log, and `arus alerts tail` reading
//! the alerts back for an analyst, filtered by subject and score.

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

#[test]
fn alerts_are_raised_and_tailed_for_analysts() {
    let dir = tempfile::tempdir().expect("a folder");
    {
        let log = EmbeddedLog::open(dir.path()).expect("a log");
        log.create_all_topics().expect("topics");
        let settings = GeneratorConfig { claims: 4_000, days: 60, ..GeneratorConfig::default() };
        generate(&settings, |output| -> Result<(), String> {
            if let Output::Event(event) = output {
                let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
                log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .expect("generate");
        log.flush().expect("flush");
    }
    let source = format!("source={{kind=\"embedded\", dir=\"{}\"}}", dir.path().display());
    let pipeline = format!("{}/pipelines/fraud.toml", env!("CARGO_MANIFEST_DIR"));
    let (ok, _, stderr) = arus(&["run", &pipeline, "--workers", "2", "--set", &source]);
    assert!(ok, "{stderr}");
    let raised: u64 = stderr
        .split(" alerts to fraud.alerts")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no count in {stderr}"));
    assert!(raised > 10, "{stderr}");
    // The alerts on the log, by subject.
    let log = EmbeddedLog::open(dir.path()).expect("the log");
    let mut members = 0;
    let mut total = 0;
    for (partition, end) in log.end_offsets("fraud.alerts").expect("offsets").into_iter().enumerate() {
        for record in log.fetch("fraud.alerts", partition as u32, 0, end as usize).expect("fetch") {
            let Event::FraudAlert(alert) = wire::decode(&record.value).expect("an alert") else {
                panic!("not an alert")
            };
            total += 1;
            members += usize::from(alert.subject_type == SubjectType::MEMBER);
        }
    }
    drop(log);
    assert_eq!(total as u64, raised);

    let log_dir = dir.path().display().to_string();
    let (ok, stdout, stderr) = arus(&["alerts", "tail", "--log", &log_dir]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), total);
    assert!(stdout.lines().all(|l| l.contains("(claims ") && l.contains("[R-")), "{stdout}");
    let (ok, stdout, _) = arus(&["alerts", "tail", "--log", &log_dir, "--subject", "member"]);
    assert!(ok);
    assert_eq!(stdout.lines().count(), members);
    assert!(members > 0 && stdout.lines().all(|l| l.contains(" member M")), "{stdout}");
    // No model has scored these: a score filter leaves none.
    let (ok, stdout, stderr) = arus(&["alerts", "tail", "--log", &log_dir, "--min-score", "0.5"]);
    assert!(ok && stdout.is_empty(), "{stdout}{stderr}");
    // A rerun raises nothing twice.
    let (ok, _, stderr) = arus(&["run", &pipeline, "--set", &source]);
    assert!(ok && stderr.contains("already there"), "{stderr}");
    let (_, stdout, _) = arus(&["alerts", "tail", "--log", &log_dir]);
    assert_eq!(stdout.lines().count(), total);
    // Mistakes get a clear error.
    let (ok, _, stderr) = arus(&["alerts", "tail"]);
    assert!(!ok && stderr.contains("--kafka BROKERS or --log DIR"), "{stderr}");
    let (ok, _, stderr) = arus(&["alerts", "tail", "--log", &log_dir, "--min-score", "7"]);
    assert!(!ok && stderr.contains("between 0 and 1"), "{stderr}");
}
