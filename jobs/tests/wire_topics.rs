//! provider-windows reads the contract's own topic: `ClaimSubmitted` events in the wire format
//! on `claims.events` give the same windows as the flat claim lines of the same claims.

use std::io::Write;
use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::provider_windows::job::{run, run_on_log};
use arus_jobs::provider_windows::spec::ProviderWindowsSpec;
use arus_jobs::runtime::{Cluster, RunContext};
use arus_schemas::{Event, wire};

#[test]
fn claim_events_on_the_log_give_the_windows_of_the_flat_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::new();
    log.create_all_topics().expect("topics");
    let flat_path = dir.path().join("flat.jsonl");
    let mut flat = std::io::BufWriter::new(std::fs::File::create(&flat_path).expect("flat file"));
    let config = GeneratorConfig { claims: 3_000, days: 20, ..GeneratorConfig::default() };
    generate(&config, |output| -> Result<(), std::io::Error> {
        let Output::Event(event) = output else { return Ok(()) };
        if let Event::ClaimSubmitted(c) = &event {
            writeln!(
                flat,
                r#"{{"claim_id":"{}","member_id":"{}","provider_id":"{}","billed_amount":{},"service_ts":{}}}"#,
                c.claim_id,
                c.member_id,
                c.provider_id,
                c.total_charge_idr.0,
                c.event_time.0.div_euclid(1000)
            )?;
        }
        let bytes = wire::encode(&event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
        Ok(())
    })
    .expect("generate");
    flat.flush().expect("flush");
    drop(flat);

    let pipeline = format!("{}/../pipelines/provider-windows.toml", env!("CARGO_MANIFEST_DIR"));
    let load =
        |overrides: Vec<String>| ProviderWindowsSpec::load(std::path::Path::new(&pipeline), &overrides).expect("spec");
    let from_flat = dir.path().join("from-flat.csv");
    let flat_spec =
        load(vec![format!("source.path={}", flat_path.display()), format!("sink.path={}", from_flat.display())]);
    let flat_report = run(&flat_spec, &RunContext::local(2, "provider-windows")).expect("run on the file");
    let from_log = dir.path().join("from-log.csv");
    let log_spec = load(vec![
        "source={kind=\"embedded\", dir=\"-\", topic=\"claims.events\"}".to_owned(),
        format!("sink.path={}", from_log.display()),
    ]);
    let log_report = run_on_log(&log_spec, &Cluster::Local { workers: 2 }, Arc::new(log)).expect("run on the log");
    assert_eq!(log_report.records, flat_report.records);
    assert_eq!(log_report.dead_letters, 0, "other events of the topic are passed over, not refused");
    assert!(flat_report.rows > 100);
    // Windows are the same; a topic's partitions are read in turns, so within a window's
    // stamp the same rows come out (the order of stamps may differ only for corrections).
    let sorted = |path: &std::path::Path| {
        let mut rows: Vec<String> = std::fs::read_to_string(path).expect("csv").lines().map(str::to_owned).collect();
        rows.sort();
        rows
    };
    assert_eq!(sorted(&from_log), sorted(&from_flat));
}
