//! The contract's promises: every event round-trips through Avro and JSON, the Rust types
//! and the `.avsc` files agree, schema versions stay backward compatible and are never edited
//! in place, and garbage bytes are an error, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use apache_avro::schema::{RecordSchema, Schema, UnionSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use arus_schemas::registry::{BUNDLED, RegisteredSchema, registry};
use arus_schemas::{DecodeError, EventKind, json, wire};
use proptest::prelude::*;

/// Days from 0001-01-01 to 9999-12-31: the dates the JSON form can write as text.
const MIN_DAY: i32 = -719_162;
const MAX_DAY: i32 = 2_932_896;
const MS_PER_DAY: i64 = 86_400_000;

/// Any Avro value of `schema`: the strategy is derived from the schema itself, so a field
/// the Rust type lacks (or types differently) breaks the round trip below.
fn arb_value(schema: &Schema) -> BoxedStrategy<Value> {
    match schema {
        Schema::Null => Just(Value::Null).boxed(),
        Schema::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        Schema::Int => any::<i32>().prop_map(Value::Int).boxed(),
        Schema::Long => any::<i64>().prop_map(Value::Long).boxed(),
        Schema::Double => (-1e12f64..1e12).prop_map(Value::Double).boxed(),
        Schema::String => ".{0,12}".prop_map(Value::String).boxed(),
        Schema::Bytes => proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes).boxed(),
        Schema::Date => (MIN_DAY..=MAX_DAY).prop_map(Value::Date).boxed(),
        Schema::TimestampMillis => (i64::from(MIN_DAY) * MS_PER_DAY..i64::from(MAX_DAY + 1) * MS_PER_DAY)
            .prop_map(Value::TimestampMillis)
            .boxed(),
        Schema::Array(array) => proptest::collection::vec(arb_value(&array.items), 0..3).prop_map(Value::Array).boxed(),
        Schema::Enum(e) => {
            let symbols = e.symbols.clone();
            (0..symbols.len()).prop_map(move |i| Value::Enum(i as u32, symbols[i].clone())).boxed()
        }
        Schema::Union(union) => arb_union(union),
        Schema::Record(record) => arb_record(record),
        other => panic!("the contract uses no {other:?}; add a strategy for it"),
    }
}

fn arb_union(union: &UnionSchema) -> BoxedStrategy<Value> {
    let variants: Vec<BoxedStrategy<Value>> = union
        .variants()
        .iter()
        .enumerate()
        .map(|(i, s)| arb_value(s).prop_map(move |v| Value::Union(i as u32, Box::new(v))).boxed())
        .collect();
    proptest::strategy::Union::new(variants).boxed()
}

fn arb_record(record: &RecordSchema) -> BoxedStrategy<Value> {
    let names: Vec<String> = record.fields.iter().map(|f| f.name.clone()).collect();
    let fields: Vec<BoxedStrategy<Value>> = record.fields.iter().map(|f| arb_value(&f.schema)).collect();
    fields.prop_map(move |values| Value::Record(names.iter().cloned().zip(values).collect())).boxed()
}

fn framed(entry: &RegisteredSchema, value: Value) -> Vec<u8> {
    let writer = GenericDatumWriter::builder(&entry.schema).build().expect("writer");
    let mut bytes = vec![0];
    bytes.extend_from_slice(&entry.bundled.id.to_be_bytes());
    writer.write_value(&mut bytes, value).expect("a value made from the schema fits it");
    bytes
}

/// Avro bytes written with any schema version → Rust → Avro (latest) → Rust, and
/// Rust → JSON → Rust, without loss.
fn check_round_trip(entry: &RegisteredSchema, value: Value) -> Result<(), TestCaseError> {
    let bytes = framed(entry, value);
    let event = wire::decode(&bytes).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(event.kind(), entry.bundled.kind);
    // A peek at the first two fields says what the whole decoding does.
    let peek = wire::peek(&bytes).map_err(|e| TestCaseError::fail(format!("peek: {e}")))?;
    prop_assert_eq!(
        peek,
        wire::Peek { kind: event.kind(), event_id: event.event_id(), event_time: event.event_time().0 }
    );
    prop_assert_eq!(wire::kind_of(&bytes).ok(), Some(event.kind()), "the header names the kind");
    let reencoded = wire::encode(&event).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    // The serde-driven encoder writes what apache-avro's schema-aware one does, byte for byte.
    let reference = wire::encode_with_apache_avro(&event).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    prop_assert_eq!(&reencoded, &reference, "{} encoded otherwise than apache-avro does", entry.bundled.kind.name());
    if registry().latest(entry.bundled.kind).bundled.id == entry.bundled.id {
        prop_assert_eq!(&reencoded, &bytes, "Rust type loses or alters fields of {}", entry.bundled.kind.name());
    }
    prop_assert_eq!(wire::decode(&reencoded).map_err(|e| TestCaseError::fail(e.to_string()))?, event.clone());
    let text = json::to_json(&event);
    let object: serde_json::Value = serde_json::from_str(&text).expect("JSON form is an object");
    let mut keys: Vec<&str> = object.as_object().expect("object").keys().map(String::as_str).collect();
    keys.retain(|k| *k != "type");
    keys.sort_unstable();
    let Schema::Record(latest) = &registry().latest(entry.bundled.kind).schema else { panic!("records only") };
    let mut fields: Vec<&str> = latest.fields.iter().map(|f| f.name.as_str()).collect();
    fields.sort_unstable();
    prop_assert_eq!(keys, fields, "Rust fields of {} differ from its schema", entry.bundled.kind.name());
    let back = json::from_json(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert_eq!(back, event);
    Ok(())
}

#[test]
fn every_schema_version_round_trips() {
    for entry in registry().all() {
        // A runner counts successes across runs, so each schema gets its own.
        let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
        proptest::test_runner::TestRunner::new(config)
            .run(&arb_value(&entry.schema), |value| check_round_trip(entry, value))
            .unwrap_or_else(|e| panic!("{} v{}: {e}", entry.bundled.kind.name(), entry.bundled.version));
    }
}

#[test]
fn every_schema_begins_with_the_event_id_and_time_a_peek_reads() {
    for entry in registry().all() {
        let Schema::Record(record) = &entry.schema else { panic!("records only") };
        let first: Vec<(&str, &Schema)> = record.fields.iter().take(2).map(|f| (f.name.as_str(), &f.schema)).collect();
        assert!(
            matches!(first[..], [("event_id", Schema::String), ("event_time", Schema::TimestampMillis)]),
            "{} v{} begins with {first:?}",
            entry.bundled.kind.name(),
            entry.bundled.version
        );
    }
    assert!(matches!(wire::peek(&[0, 0, 0, 0, 1, 9]), Err(DecodeError::Binary { .. })), "a truncated id");
}

#[test]
fn every_newer_version_reads_every_older_one() {
    for &kind in EventKind::ALL {
        let versions = registry().versions(kind);
        for (i, newer) in versions.iter().enumerate() {
            for older in &versions[..i] {
                SchemaCompatibility::can_read(&older.schema, &newer.schema).unwrap_or_else(|e| {
                    panic!(
                        "{} v{} cannot read data written with v{} (BACKWARD compatibility): {e}",
                        kind.name(),
                        newer.bundled.version,
                        older.bundled.version
                    )
                });
            }
        }
    }
}

#[test]
fn the_compatibility_check_rejects_a_field_added_without_default() {
    let v1 = &registry().versions(EventKind::ClaimSubmitted)[0].schema;
    let mut incompatible: serde_json::Value =
        serde_json::from_str(BUNDLED.iter().find(|b| b.id == 12).expect("ClaimSubmitted v1").text).expect("json");
    incompatible["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "place_of_service", "type": "string"}));
    let incompatible = Schema::parse_str(&incompatible.to_string()).expect("still a valid schema");
    assert!(SchemaCompatibility::can_read(v1, &incompatible).is_err());
}

/// FNV-1a over the file with line endings normalized: changes when a single byte of a
/// released schema (docs and defaults included) changes.
fn fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.replace("\r\n", "\n").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[test]
fn released_schema_files_are_never_edited_in_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let lock_text = std::fs::read_to_string(root.join("versions.lock")).expect("schemas/avro/versions.lock");
    let locked: BTreeMap<String, String> = lock_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, hash) = l.split_once(' ').expect("`<file> <fingerprint>` lines");
            (file.to_owned(), hash.trim().to_owned())
        })
        .collect();
    let mut on_disk = BTreeMap::new();
    for dir in std::fs::read_dir(&root).expect("schemas/avro") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).expect("kind folder") {
            let file = file.expect("entry").path();
            let rel = file.strip_prefix(&root).expect("under root").to_string_lossy().replace('\\', "/");
            on_disk.insert(rel, fingerprint(&std::fs::read_to_string(&file).expect("avsc")));
        }
    }
    let expected: String = on_disk.iter().map(|(f, h)| format!("{f} {h}\n")).collect();
    assert_eq!(
        locked, on_disk,
        "schema files differ from schemas/avro/versions.lock. A released version must not change: \
         add a new vN+1.avsc instead. If you added a version, append its line:\n{expected}"
    );
    let bundled: Vec<String> = BUNDLED.iter().map(|b| format!("{}/v{}.avsc", b.kind.name(), b.version)).collect();
    for file in on_disk.keys() {
        assert!(bundled.contains(file), "{file} is not registered in schemas/src/registry.rs");
    }
}

#[test]
fn decode_errors_name_what_is_wrong() {
    assert!(matches!(wire::decode(&[]), Err(DecodeError::TooShort { len: 0 })));
    assert!(matches!(wire::decode(&[1, 0, 0, 0, 1]), Err(DecodeError::BadMagic { found: 1 })));
    assert!(matches!(wire::decode(&[0, 0, 0, 3, 0xe7]), Err(DecodeError::UnknownSchemaId { id: 999 })));
    let sample = json::from_json(
        r#"{"type":"AuthDenied","event_id":"e","event_time":"2026-01-02T03:04:05.000Z","auth_id":"A",
            "member_id":"M","reason_code":"X","reason":"y"}"#,
    )
    .expect("valid JSON event");
    let mut bytes = wire::encode(&sample).expect("encode");
    for cut in 5..bytes.len() {
        assert!(wire::decode(&bytes[..cut]).is_err(), "truncated at {cut} still decoded");
    }
    bytes.push(0);
    assert!(matches!(wire::decode(&bytes), Err(DecodeError::TrailingBytes { left: 1, .. })));
    let typo = r#"{"type":"AuthDenied","event_id":"e","event_time":0,"auth_id":"A","member_id":"M","reason_code":"X","reasn":"y"}"#;
    assert!(json::from_json(typo).is_err(), "an unknown field must be rejected");
    assert!(json::from_json(r#"{"type":"NoSuchEvent"}"#).is_err());
}

proptest! {
    #[test]
    fn garbage_bytes_are_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn garbage_bodies_under_every_schema_id_are_an_error_never_a_panic(
        id in 1u32..=BUNDLED.len() as u32,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn garbage_text_is_an_error_never_a_panic(text in ".{0,64}") {
        let _ = json::from_json(&text);
    }
}
