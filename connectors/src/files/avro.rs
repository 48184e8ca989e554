//! Avro object container files (Avro 1.11 spec, "Object Container Files"), written directly
//! from the wire encoder's datum bytes, so an event is encoded once whatever the output.
//!
//! The file schema of a topic is the union of its kinds' latest schemas; each datum is the
//! union branch index followed by the record. Named types that several records define (an
//! enum or nested record shared by two events) are defined once and referenced by name after,
//! as the Avro spec requires within one schema. Files are deterministic: the sync marker is
//! derived from the schema, not drawn at random.

use std::collections::BTreeMap;
use std::io::{self, Write};

use arus_schemas::registry::registry;
use arus_schemas::{EncodeError, Event, EventKind, wire};
use serde_json::Value;

/// Block size at which records are flushed: large enough to compress well, small enough for
/// readers to skip through.
const BLOCK_BYTES: usize = 64 * 1024;

/// The event kinds a topic carries, in registry order (dead-letter topics carry `DeadLetter`).
pub fn topic_kinds(topic: &str) -> Vec<EventKind> {
    if topic.ends_with(".dlq") {
        return vec![EventKind::DeadLetter];
    }
    EventKind::ALL.iter().copied().filter(|k| k.topic() == Some(topic)).collect()
}

/// The container schema of a topic: a union of its kinds' latest schemas.
pub fn topic_union_schema(topic: &str) -> Value {
    let mut defined = BTreeMap::new();
    let branches = topic_kinds(topic)
        .into_iter()
        .map(|kind| {
            let text = registry().latest(kind).bundled.text;
            let mut schema: Value = serde_json::from_str(text).expect("bundled schemas are JSON");
            define_once(&mut schema, "", &mut defined);
            schema
        })
        .collect();
    Value::Array(branches)
}

/// Replaces every repeated definition of a named type by a reference to its first one.
fn define_once(schema: &mut Value, namespace: &str, defined: &mut BTreeMap<String, Value>) {
    match schema {
        Value::Array(branches) => branches.iter_mut().for_each(|b| define_once(b, namespace, defined)),
        Value::Object(object) => {
            let named = matches!(object.get("type").and_then(Value::as_str), Some("record" | "enum" | "fixed"));
            let name = object.get("name").and_then(Value::as_str).map(str::to_owned);
            let namespace = object.get("namespace").and_then(Value::as_str).unwrap_or(namespace).to_owned();
            if let (true, Some(name)) = (named, name) {
                let full =
                    if name.contains('.') || namespace.is_empty() { name } else { format!("{namespace}.{name}") };
                if let Some(first) = defined.get(&full) {
                    assert_eq!(strip_docs(first), strip_docs(schema), "two different definitions of {full}");
                    *schema = Value::String(full);
                    return;
                }
                defined.insert(full, schema.clone());
            }
            let Value::Object(object) = schema else {
                return;
            };
            if let Some(Value::Array(fields)) = object.get_mut("fields") {
                for field in fields {
                    if let Some(t) = field.get_mut("type") {
                        define_once(t, &namespace, defined);
                    }
                }
            }
            for key in ["items", "values"] {
                if let Some(t) = object.get_mut(key) {
                    define_once(t, &namespace, defined);
                }
            }
        }
        _ => {}
    }
}

fn strip_docs(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => {
            Value::Object(o.iter().filter(|(k, _)| *k != "doc").map(|(k, v)| (k.clone(), strip_docs(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_docs).collect()),
        other => other.clone(),
    }
}

fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The event could not be encoded, or does not belong to this file's topic.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Writes one topic's events into an Avro object container.
pub struct AvroContainerWriter<W: Write> {
    out: W,
    kinds: Vec<EventKind>,
    sync: [u8; 16],
    block: Vec<u8>,
    block_count: i64,
    datum: Vec<u8>,
}

impl<W: Write> AvroContainerWriter<W> {
    /// Starts a container for `topic`, writing its header.
    pub fn new(mut out: W, topic: &str) -> io::Result<Self> {
        let schema = topic_union_schema(topic).to_string();
        let sync = sync_marker(&schema);
        let mut header = Vec::with_capacity(schema.len() + 64);
        header.extend_from_slice(b"Obj\x01");
        write_long(&mut header, 2);
        write_bytes(&mut header, b"avro.codec");
        write_bytes(&mut header, b"null");
        write_bytes(&mut header, b"avro.schema");
        write_bytes(&mut header, schema.as_bytes());
        write_long(&mut header, 0);
        header.extend_from_slice(&sync);
        out.write_all(&header)?;
        Ok(AvroContainerWriter {
            out,
            kinds: topic_kinds(topic),
            sync,
            block: Vec::with_capacity(BLOCK_BYTES * 2),
            block_count: 0,
            datum: Vec::with_capacity(1024),
        })
    }

    /// Appends an event; returns the bytes its datum took.
    pub fn append(&mut self, event: &Event) -> Result<u64, AppendError> {
        let branch = self.kinds.iter().position(|k| *k == event.kind()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not belong in this file", event.kind().name()))
        })?;
        self.datum.clear();
        wire::encode_into(event, &mut self.datum)?;
        let start = self.block.len();
        write_long(&mut self.block, branch as i64);
        self.block.extend_from_slice(&self.datum[wire::HEADER_LEN..]);
        self.block_count += 1;
        let bytes = (self.block.len() - start) as u64;
        if self.block.len() >= BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(bytes)
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block_count == 0 {
            return Ok(());
        }
        let mut prefix = Vec::with_capacity(20);
        write_long(&mut prefix, self.block_count);
        write_long(&mut prefix, self.block.len() as i64);
        self.out.write_all(&prefix)?;
        self.out.write_all(&self.block)?;
        self.out.write_all(&self.sync)?;
        self.block.clear();
        self.block_count = 0;
        Ok(())
    }

    /// Writes the last block and hands back the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_block()?;
        Ok(self.out)
    }
}

/// 16 bytes derived from the schema (two FNV-1a hashes), so identical input gives identical
/// files.
fn sync_marker(schema: &str) -> [u8; 16] {
    let fnv = |seed: u64| schema.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut sync = [0u8; 16];
    sync[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_le_bytes());
    sync[8..].copy_from_slice(&fnv(0x8422_2325_cbf2_9ce4).to_le_bytes());
    sync
}

/// Reads the events of an Avro object container file of a topic (as `arus gen --format avro`
/// writes them, or any writer using the topic's union schema), in order.
pub struct AvroContainerReader {
    path: std::path::PathBuf,
    reader: apache_avro::Reader<'static, io::BufReader<std::fs::File>>,
    kinds: Vec<EventKind>,
    /// Per kind, a writer of its latest schema (re-encoding what was read) and that schema's id.
    writers: Vec<(u32, apache_avro::writer::datum::GenericDatumWriter<'static>)>,
    read: u64,
    buffer: Vec<u8>,
}

/// A container file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: record {record}: {message}")]
pub struct ContainerError {
    /// File.
    pub path: std::path::PathBuf,
    /// Records read before the problem (0-based index of the failing one).
    pub record: u64,
    /// What is wrong.
    pub message: String,
}

impl AvroContainerReader {
    /// Opens `path`, holding `topic`'s events, and skips its first `skip` records (to resume).
    pub fn open(path: &std::path::Path, topic: &str, skip: u64) -> Result<Self, ContainerError> {
        let error = |record, message: String| ContainerError { path: path.to_owned(), record, message };
        let kinds = topic_kinds(topic);
        if kinds.is_empty() {
            return Err(error(0, format!("{topic:?} is not a topic of the contract")));
        }
        let file = std::fs::File::open(path).map_err(|e| error(0, e.to_string()))?;
        let reader = apache_avro::Reader::new(io::BufReader::with_capacity(1 << 20, file))
            .map_err(|e| error(0, format!("not an Avro container: {e}")))?;
        let writers = kinds
            .iter()
            .map(|kind| {
                let latest = registry().latest(*kind);
                let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&latest.schema)
                    .build()
                    .map_err(|e| error(0, e.to_string()))?;
                Ok((latest.bundled.id, writer))
            })
            .collect::<Result<Vec<_>, ContainerError>>()?;
        let mut this =
            AvroContainerReader { path: path.to_owned(), reader, kinds, writers, read: 0, buffer: Vec::new() };
        for _ in 0..skip {
            if this.reader.next().is_none() {
                return Err(error(this.read, format!("has fewer than the {skip} records to skip")));
            }
            this.read += 1;
        }
        Ok(this)
    }

    /// Records read so far (the position to resume from).
    pub fn position(&self) -> u64 {
        self.read
    }

    /// The next event, or `None` at the end of the file.
    pub fn next_event(&mut self) -> Result<Option<Event>, ContainerError> {
        let record = self.read;
        let error = |message: String| ContainerError { path: self.path.clone(), record, message };
        let Some(value) = self.reader.next() else { return Ok(None) };
        self.read += 1;
        let value = value.map_err(|e| error(e.to_string()))?;
        let apache_avro::types::Value::Union(branch, datum) = value else {
            return Err(error("not a union of the topic's events".to_owned()));
        };
        let (id, writer) = self
            .writers
            .get(branch as usize)
            .ok_or_else(|| error(format!("union branch {branch} of {} kinds", self.kinds.len())))?;
        self.buffer.clear();
        self.buffer.push(0);
        self.buffer.extend_from_slice(&id.to_be_bytes());
        let body = writer.write_value_to_vec(*datum).map_err(|e| error(e.to_string()))?;
        self.buffer.extend_from_slice(&body);
        wire::decode(&self.buffer).map(Some).map_err(|e| error(e.to_string()))
    }
}
