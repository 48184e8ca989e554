//! The metrics of a real run (embedded log in, CSV out, checkpoints on) say what the run did.

use arus_connectors::embedded::EmbeddedLog;
use arus_jobs::provider_windows::job::run;
use arus_jobs::provider_windows::spec::ProviderWindowsSpec;
use arus_jobs::runtime::RunContext;

#[test]
fn a_run_reports_records_lines_lag_and_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("log");
    {
        let log = EmbeddedLog::open(&log_dir).expect("log");
        log.create_topic("claims", 2).expect("topic");
        for i in 0..1_000u64 {
            let line = format!(
                "{{\"claim_id\":\"C{i}\",\"member_id\":\"M{}\",\"provider_id\":\"P{}\",\"billed_amount\":{i}.5,\"service_ts\":{}}}",
                i % 7,
                i % 3,
                1_767_225_600 + i * 30
            );
            log.produce(
                "claims",
                Some(format!("P{}", i % 3).as_bytes()),
                line.into_bytes(),
                arus_schemas::Timestamp(0),
            )
            .expect("produce");
        }
        log.produce("claims", None, b"not a claim".to_vec(), arus_schemas::Timestamp(0)).expect("produce");
        log.flush().expect("flush");
    }
    let pipeline = format!("{}/../pipelines/provider-windows.toml", env!("CARGO_MANIFEST_DIR"));
    let overrides = vec![
        format!("source={{kind=\"embedded\", dir=\"{}\", topic=\"claims\", batch_records=100}}", log_dir.display()),
        format!("sink.path={}", dir.path().join("out.csv").display()),
        format!("checkpoint.dir={}", dir.path().join("checkpoints").display()),
        "checkpoint.interval=\"0s\"".to_owned(),
    ];
    let spec = ProviderWindowsSpec::load(std::path::Path::new(&pipeline), &overrides).expect("spec");
    let context = RunContext::local(2, "provider-windows");
    let metrics = context.metrics.clone();
    let report = run(&spec, &context).expect("run");
    let text = metrics.render();
    // The sample of `name` whose labels include `labels` (in any order).
    let sample = |name: &str, labels: &[&str]| -> f64 {
        let line = text
            .lines()
            .find(|l| {
                l.split_once('{').is_some_and(|(n, rest)| n == name && labels.iter().all(|label| rest.contains(label)))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    let value = |name: &str, labels: &[&str]| sample(name, labels) as u64;
    let pipeline = "pipeline=\"provider-windows\"";
    assert_eq!(value("arus_source_records_total", &[pipeline]), 1_000);
    assert_eq!(value("arus_dead_letters_total", &[pipeline]), 1);
    assert_eq!(value("arus_sink_lines_total", &[pipeline, "sink=\"csv\""]), report.rows);
    assert!(report.rows > 0);
    assert_eq!(value("arus_consumer_lag_records", &[pipeline, "partition=\"0\""]), 0);
    assert_eq!(value("arus_consumer_lag_records", &[pipeline, "partition=\"1\""]), 0);
    assert_eq!(value("arus_checkpoints_total", &[pipeline]), report.checkpoints);
    assert_eq!(value("arus_checkpoint_duration_seconds_count", &[pipeline]), report.checkpoints);
    assert!(report.checkpoints >= 1, "at least the final checkpoint");
    assert!(value("arus_checkpoint_bytes", &[pipeline]) > 0);
    // The pipeline allows a day of out-of-orderness: the watermark (seconds) trails the newest
    // claim by it.
    let watermark = sample("arus_watermark_seconds", &[pipeline]);
    assert!((1_767_225_600.0 - 86_400.0..1_767_225_600.0).contains(&watermark), "{text}");
    assert_eq!(value("arus_sink_lines_total", &[pipeline, "sink=\"dead-letters\""]), 1);
}
