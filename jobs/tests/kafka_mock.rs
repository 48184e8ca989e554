//! A run with its dead letters written in Kafka transactions, against librdkafka's mock
//! cluster (the local broker has no transactions): the job reads its topic, commits a
//! transaction at each checkpoint, and the dead letters arrive once each.

use std::time::Duration;

use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaSink};
use arus_jobs::provider_windows::job::run;
use arus_jobs::provider_windows::spec::ProviderWindowsSpec;
use arus_jobs::runtime::RunContext;
use rdkafka::mocking::MockCluster;

#[test]
fn dead_letters_are_written_in_transactions_committed_at_checkpoints() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("claims", 2, 1).expect("topic");
    // The mock has no admin API: the dead-letter topic is there beforehand.
    cluster.create_topic("claims.dlq", 1, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let config = KafkaConfig::new(brokers.clone());
    let sink = KafkaSink::new(&config, "none").expect("producer");
    for i in 0..500u64 {
        let line = format!(
            "{{\"claim_id\":\"C{i}\",\"member_id\":\"M{}\",\"provider_id\":\"P{}\",\"billed_amount\":{i}.25,\"service_ts\":{}}}",
            i % 7,
            i % 3,
            1_767_225_600 + i * 60
        );
        sink.send("claims", format!("C{i}").as_bytes(), line.as_bytes(), 0).expect("send");
    }
    sink.send("claims", b"bad-1", b"not a claim", 0).expect("send");
    sink.send("claims", b"bad-2", b"{\"claim_id\":\"X\"}", 0).expect("send");
    sink.flush(Duration::from_secs(10)).expect("delivered");

    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("{}/../pipelines/provider-windows.toml", env!("CARGO_MANIFEST_DIR"));
    let overrides = vec![
        format!("source={{kind=\"kafka\", brokers=\"{brokers}\", topic=\"claims\", batch_records=50}}"),
        format!("sink.path={}", dir.path().join("out.csv").display()),
        "sink.kafka_transactional_id=\"arus-provider-windows\"".to_owned(),
        format!("checkpoint.dir={}", dir.path().join("checkpoints").display()),
        "checkpoint.interval=\"0s\"".to_owned(),
    ];
    let spec = ProviderWindowsSpec::load(std::path::Path::new(&pipeline), &overrides).expect("spec");
    let report = run(&spec, &RunContext::local(2, "provider-windows")).expect("run");
    assert_eq!((report.records, report.dead_letters), (500, 2));
    assert!(report.checkpoints >= 1);

    let mut reader =
        BoundedPartitionReader::open(&config, "check", "claims.dlq", &[(0, None)], 10).expect("read the dead letters");
    let mut ids = Vec::new();
    while let Some(record) = reader.next_record().expect("read") {
        match arus_schemas::wire::decode(&record.value).expect("a DeadLetter event") {
            arus_schemas::Event::DeadLetter(letter) => ids.push(letter.event_id),
            other => panic!("not a dead letter: {other:?}"),
        }
    }
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("dlq:claims:")), "{ids:?}");
}
