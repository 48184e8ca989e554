//! Files written here are read back with independent readers: serde_json for JSON lines and
//! apache-avro's container `Reader` for Avro.

use std::collections::BTreeMap;

use apache_avro::Reader;
use apache_avro::types::Value as AvroValue;
use apache_avro::writer::datum::GenericDatumWriter;
use arus_generator::{GeneratorConfig, Output, generate};
use arus_schemas::registry::registry;
use arus_schemas::{Event, json, wire};

use super::*;

fn events() -> Vec<Event> {
    let config = GeneratorConfig { claims: 600, days: 20, ..GeneratorConfig::default() };
    let mut events = Vec::new();
    generate(&config, |o| {
        if let Output::Event(e) = o {
            events.push(e);
        }
        Ok::<(), ()>(())
    })
    .expect("generate");
    events
}

fn by_topic(events: &[Event]) -> BTreeMap<String, Vec<Event>> {
    let mut map: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in events {
        map.entry(e.topic().into_owned()).or_default().push(e.clone());
    }
    map
}

#[test]
fn json_lines_files_hold_each_topics_events_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = events();
    let mut sink = TopicFilesSink::create(dir.path(), FileFormat::JsonLines).expect("sink");
    events.iter().for_each(|e| sink.write(e).expect("write"));
    let written = sink.finish().expect("finish");
    let expected = by_topic(&events);
    assert_eq!(written.len(), expected.len());
    for (topic, topic_events) in expected {
        let text = std::fs::read_to_string(dir.path().join(format!("{topic}.jsonl"))).expect("file");
        let read: Vec<Event> = text.lines().map(|l| json::from_json(l).expect("line parses")).collect();
        assert_eq!(read, topic_events, "{topic}");
    }
}

#[test]
fn avro_containers_are_readable_by_apache_avro_and_keep_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = events();
    let mut sink = TopicFilesSink::create(dir.path(), FileFormat::Avro).expect("sink");
    events.iter().for_each(|e| sink.write(e).expect("write"));
    sink.finish().expect("finish");
    for (topic, topic_events) in by_topic(&events) {
        let file = std::fs::File::open(dir.path().join(format!("{topic}.avro"))).expect("file");
        let reader = Reader::new(file).expect("a valid container header");
        let kinds = avro::topic_kinds(&topic);
        let mut read = Vec::new();
        for value in reader {
            let AvroValue::Union(branch, record) = value.expect("a valid datum") else { panic!("union expected") };
            let kind = kinds[branch as usize];
            assert!(read.len() < topic_events.len(), "more records than written");
            let expected = &topic_events[read.len()];
            assert_eq!(kind, expected.kind());
            // What apache-avro read, encoded again with the kind's own schema, is exactly the
            // datum of the event we wrote: every field survived.
            let schema = &registry().latest(kind).schema;
            let writer = GenericDatumWriter::builder(schema).build().expect("writer");
            let datum = writer.write_value_to_vec(*record).expect("the record fits its schema");
            assert_eq!(
                datum,
                wire::encode(expected).expect("encode")[wire::HEADER_LEN..],
                "{topic} record {}",
                read.len()
            );
            read.push(kind);
        }
        assert_eq!(read.len(), topic_events.len(), "{topic}");
    }
}

#[test]
fn the_same_events_give_the_same_bytes() {
    let events = events();
    let write = |format| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = TopicFilesSink::create(dir.path(), format).expect("sink");
        events.iter().for_each(|e| sink.write(e).expect("write"));
        sink.finish().expect("finish").into_iter().map(|f| std::fs::read(&f.path).expect("read")).collect::<Vec<_>>()
    };
    assert_eq!(write(FileFormat::Avro), write(FileFormat::Avro));
    assert_eq!(write(FileFormat::JsonLines), write(FileFormat::JsonLines));
}

#[test]
fn union_schemas_define_shared_types_once() {
    let schema = topic_union_schema("provider.events").to_string();
    assert_eq!(schema.matches(r#""name":"NetworkStatus""#).count(), 1, "{schema}");
    apache_avro::Schema::parse_str(&schema).expect("a valid union schema");
    let benefits = topic_union_schema("benefit.events").to_string();
    apache_avro::Schema::parse_str(&benefits).expect("a valid union schema");
}

#[test]
fn avro_containers_read_back_into_the_same_events_and_resume_at_a_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = events();
    let mut sink = TopicFilesSink::create(dir.path(), FileFormat::Avro).expect("sink");
    events.iter().for_each(|e| sink.write(e).expect("write"));
    sink.finish().expect("finish");
    for (topic, topic_events) in by_topic(&events) {
        let path = dir.path().join(format!("{topic}.avro"));
        let mut reader = AvroContainerReader::open(&path, &topic, 0).expect("open");
        let mut read = Vec::new();
        while let Some(event) = reader.next_event().expect("read") {
            read.push(event);
        }
        assert_eq!(read, topic_events, "{topic}");
        assert_eq!(reader.position(), topic_events.len() as u64);
        let skip = topic_events.len() as u64 / 2;
        let mut resumed = AvroContainerReader::open(&path, &topic, skip).expect("open");
        assert_eq!(resumed.next_event().expect("read").as_ref(), topic_events.get(skip as usize), "{topic}");
    }
    let claims = dir.path().join("claims.events.avro");
    let err = AvroContainerReader::open(&claims, "claims.events", 1 << 40).err().expect("too far");
    assert!(err.to_string().contains("fewer than"), "{err}");
    let not_avro = dir.path().join("x.avro");
    std::fs::write(&not_avro, b"{\"json\": true}").expect("write");
    let err = AvroContainerReader::open(&not_avro, "claims.events", 0).err().expect("not a container");
    assert!(err.to_string().contains("not an Avro container"), "{err}");
}
