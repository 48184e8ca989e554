//! Against the real broker the test command starts (`KAFKA_BROKERS`, Tansu on 127.0.0.1:9092).
//! Without `KAFKA_BROKERS` these tests say so and pass, unless `ARUS_REQUIRE_SERVICES` is set
//! (as `deploy/test.sh` does), in which case they fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arus_generator::{GeneratorConfig, Output, generate};
use arus_schemas::topics::partition_for_key;
use arus_schemas::{Event, wire};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::*;

fn brokers() -> Option<String> {
    crate::service_address("KAFKA_BROKERS")
}

/// A topic of its own, deleted when the test ends.
struct TestTopic {
    config: KafkaConfig,
    name: String,
}

impl TestTopic {
    fn new(config: &KafkaConfig, partitions: u32) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("arus-test-{}-{nanos}", std::process::id());
        create_topics(config, &[(&name, partitions)]).expect("create topic");
        TestTopic { config: config.clone(), name }
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let _ = delete_topics(&self.config, &[&self.name]);
    }
}

#[test]
fn produced_events_come_back_decodable_in_key_order_and_on_kafkas_partitions() {
    let Some(brokers) = brokers() else { return };
    let config = KafkaConfig::new(brokers);
    let partitions = 4;
    let topic = TestTopic::new(&config, partitions);
    let mut events = Vec::new();
    generate(&GeneratorConfig { claims: 400, days: 5, ..GeneratorConfig::default() }, |o| {
        if let Output::Event(e @ Event::ClaimSubmitted(_)) = o {
            events.push(e);
        }
        Ok::<(), ()>(())
    })
    .expect("generate");
    let sink = KafkaSink::new(&config, "lz4").expect("producer");
    for event in &events {
        let bytes = wire::encode(event).expect("encode");
        sink.send(&topic.name, event.key().as_bytes(), &bytes, event.event_time().millis()).expect("send");
    }
    let report = sink.flush(Duration::from_secs(30)).expect("every record delivered");
    assert_eq!(report.delivered, events.len() as u64);

    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", format!("{}-reader", topic.name))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(&topic.name, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut read: Vec<(i32, i64, Event)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.len() < events.len() && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a record");
            let event = wire::decode(message.payload().expect("a value")).expect("decodes");
            let key = message.key().expect("a key");
            assert_eq!(key, event.key().as_bytes());
            assert_eq!(
                message.partition() as u32,
                partition_for_key(key, partitions),
                "Kafka and the embedded log disagree"
            );
            read.push((message.partition(), message.offset(), event));
        }
    }
    assert_eq!(read.len(), events.len(), "not every record came back in time");
    // Per key, the order produced is the order read.
    let mut produced: BTreeMap<std::borrow::Cow<'_, str>, Vec<&str>> = BTreeMap::new();
    for e in &events {
        produced.entry(e.key()).or_default().push(e.event_id());
    }
    read.sort_by_key(|(p, o, _)| (*p, *o));
    let mut consumed: BTreeMap<std::borrow::Cow<'_, str>, Vec<&str>> = BTreeMap::new();
    for (_, _, e) in &read {
        consumed.entry(e.key()).or_default().push(e.event_id());
    }
    assert_eq!(consumed, produced);
}

#[test]
fn creating_a_topic_twice_is_harmless_and_bad_brokers_are_refused_early() {
    let Some(brokers) = brokers() else { return };
    let config = KafkaConfig::new(brokers);
    let topic = TestTopic::new(&config, 2);
    create_topics(&config, &[(&topic.name, 2)]).expect("already exists is fine");
    assert!(matches!(KafkaSink::new(&KafkaConfig::new("nowhere"), "lz4"), Err(KafkaError::Config(_))));
}

/// librdkafka's mock cluster: the transactional producer protocol, which the local broker
/// lacks. (The mock does not hide aborted records from `read_committed` readers, so isolation
/// itself is Apache Kafka's to keep; what is checked here is the producer's side.)
mod mock {
    use rdkafka::mocking::MockCluster;

    use super::*;

    fn cluster() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, KafkaConfig) {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", 1, 1).expect("topic");
        let config = KafkaConfig::new(cluster.bootstrap_servers());
        (cluster, config)
    }

    fn read(config: &KafkaConfig, from: Option<u64>, resume: Resume) -> Vec<(i64, Vec<u8>)> {
        let mut reader = BoundedPartitionReader::open_at_turn(config, "readers", "t", &[(0, from)], 10, None, resume)
            .expect("reader");
        let mut records = Vec::new();
        while let Some(record) = reader.next_record().expect("read") {
            records.push((record.offset, record.value));
        }
        records
    }

    #[test]
    fn transactions_commit_abort_and_go_on_under_the_same_id() {
        let (_cluster, config) = cluster();
        let timeout = Duration::from_secs(10);
        let sink = KafkaSink::transactional(&config, "none", "arus-dlq").expect("transactional producer");
        assert!(sink.is_transactional());
        for i in 0..3u8 {
            sink.send("t", b"k", &[i], 0).expect("send");
        }
        assert_eq!(sink.commit(timeout).expect("commit").delivered, 3);
        sink.send("t", b"k", b"aborted", 0).expect("send");
        sink.abort(timeout).expect("abort");
        sink.send("t", b"k", &[3], 0).expect("send");
        sink.commit(timeout).expect("commit");

        // A restarted process takes the same id over (fencing the old producer off is the
        // broker's part; the mock does not do it).
        drop(sink);
        let newer = KafkaSink::transactional(&config, "none", "arus-dlq").expect("the newer producer");
        newer.send("t", b"k", &[4], 0).expect("send");
        newer.commit(timeout).expect("commit");
        let values: Vec<Vec<u8>> = read(&config, None, Resume::Scan).into_iter().map(|(_, v)| v).collect();
        for committed in [[0u8], [1], [2], [3], [4]] {
            assert!(values.contains(&committed.to_vec()), "committed record {committed:?} is there");
        }

        let plain = KafkaSink::new(&config, "none").expect("producer");
        assert!(plain.abort(timeout).is_err(), "abort needs transactions");
        assert!(KafkaSink::transactional(&config, "none", "").is_err(), "an empty id is refused");
    }

    #[test]
    fn a_reader_resumes_by_seeking_or_by_scanning_to_the_same_records() {
        let (_cluster, config) = cluster();
        let sink = KafkaSink::new(&config, "none").expect("producer");
        for i in 0..30u8 {
            sink.send("t", b"k", &[i], 0).expect("send");
            if i % 10 == 9 {
                sink.flush(Duration::from_secs(10)).expect("flush");
            }
        }
        let all = read(&config, None, Resume::Scan);
        assert_eq!(all.len(), 30);
        for from in [0u64, 5, 21, 29, 30] {
            let expected: Vec<(i64, Vec<u8>)> = all[from as usize..].to_vec();
            assert_eq!(read(&config, Some(from), Resume::Seek), expected, "seek to {from}");
            assert_eq!(read(&config, Some(from), Resume::Scan), expected, "scan to {from}");
        }
    }
}

/// The topic table applied: missing topics created with their partitions and settings, found
/// as declared the next time; a topic made otherwise (other partitions, no settings) reported
/// with each difference, and left as it is.
#[test]
fn the_topic_table_is_applied_and_a_topic_made_otherwise_is_reported() {
    use arus_schemas::topics::{TOPICS, names};
    let Some(brokers) = brokers() else { return };
    let config = KafkaConfig::new(brokers);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-table-{}-{nanos}-", std::process::id());
    let spec = |name: &str| *TOPICS.iter().find(|t| t.name == name).expect("in the table");
    let declared: Vec<(String, arus_schemas::topics::TopicSpec)> = [names::CLAIMS_EVENTS, names::ACCUMULATOR_UPDATES]
        .iter()
        .map(|name| (format!("{prefix}{name}"), spec(name)))
        .collect();
    let otherwise = format!("{prefix}{}", names::FRAUD_ALERTS);
    create_topics(&config, &[(&otherwise, 2)]).expect("a topic made by hand");
    let mut all = declared.clone();
    all.push((otherwise.clone(), spec(names::FRAUD_ALERTS)));
    let first = apply_topics(&config, &all, Durability::default()).expect("applied");
    let second = apply_topics(&config, &all, Durability::default()).expect("applied again");
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let _ = delete_topics(&config, &names);

    assert_eq!(first[0], (declared[0].0.clone(), Applied::Created));
    assert_eq!(first[1], (declared[1].0.clone(), Applied::Created));
    assert_eq!(second[0], (declared[0].0.clone(), Applied::AsDeclared));
    assert_eq!(second[1], (declared[1].0.clone(), Applied::AsDeclared), "compacted, as declared: {second:?}");
    assert_eq!(partition_count(&config, &declared[0].0).ok(), None, "deleted after the test");
    for applied in [&first[2], &second[2]] {
        let Applied::Differs(differences) = &applied.1 else { panic!("{otherwise} reported: {applied:?}") };
        assert!(differences.contains(&"partitions: 2, declared 6".to_owned()), "{differences:?}");
        assert!(
            differences
                .iter()
                .any(|d| d.starts_with("retention.ms:") && d.ends_with(&format!("declared {}", 730 * 86_400_000i64))),
            "{differences:?}"
        );
    }
}
