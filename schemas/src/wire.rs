//! The Confluent wire format: `0x00`, a 4-byte big-endian schema id, then the Avro binary
//! body. This is what Kafka records carry and what every consumer of our topics decodes.

use foldhash::HashMap;
use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, EncodeError};
use crate::kinds::{Event, EventKind};
use crate::registry::registry;

/// The magic byte that starts every Confluent-framed record.
pub const MAGIC: u8 = 0;
/// Length of the header before the Avro body.
pub const HEADER_LEN: usize = 5;

struct Codecs {
    /// The latest schema id of each kind (indexed by [`EventKind::index`]): what records are
    /// written with, straight from serde (`avro_binary`), and read back the same way.
    latest: Vec<u32>,
    /// One reader per older schema id, resolving to the latest schema of its kind; built once
    /// because resolving a schema's names costs more than decoding a record.
    older: HashMap<u32, GenericDatumReader<'static>>,
}

fn codecs() -> &'static Codecs {
    static CODECS: OnceLock<Codecs> = OnceLock::new();
    CODECS.get_or_init(|| {
        let registry = registry();
        let latest = EventKind::ALL.iter().map(|&kind| registry.latest(kind).bundled.id).collect();
        let mut older = HashMap::default();
        for entry in registry.all() {
            let latest = registry.latest(entry.bundled.kind);
            if entry.bundled.id == latest.bundled.id {
                continue;
            }
            let reader =
                GenericDatumReader::builder(&entry.schema).reader_schema(&latest.schema).human_readable(false).build();
            let reader = reader.unwrap_or_else(|e| panic!("reader for bundled schema id {}: {e}", entry.bundled.id));
            older.insert(entry.bundled.id, reader);
        }
        Codecs { latest, older }
    })
}

/// Appends `event` in the wire format to `out`, with the latest schema of its kind.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    macro_rules! write_body {
        ($($kind:ident),+) => {
            match event { $(Event::$kind(e) => write_body(EventKind::$kind, e, out),)+ }
        };
    }
    crate::for_each_kind!(write_body)
}

/// The body straight from serde ([`avro_binary`](crate::avro_binary): the structs mirror their
/// schemas), about a tenth of the work of apache-avro's schema-aware writer.
fn write_body<T: Serialize>(kind: EventKind, event: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let id = codecs().latest[kind.index()];
    let start = out.len();
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    crate::avro_binary::write(event, out).map_err(|source| {
        out.truncate(start);
        EncodeError::Binary { kind: kind.name(), source }
    })
}

/// `event` in the wire format as apache-avro's schema-aware writer encodes it: what
/// [`encode`] must equal, byte for byte (the contract tests compare them for every kind).
#[doc(hidden)]
pub fn encode_with_apache_avro(event: &Event) -> Result<Vec<u8>, EncodeError> {
    fn body<T: Serialize>(kind: EventKind, event: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Built at each call: a reference for tests, not a path records take.
        let latest = registry().latest(kind);
        let writer = GenericDatumWriter::builder(&latest.schema)
            .human_readable(false)
            .build()
            .map_err(|source| EncodeError::Avro { kind: kind.name(), source: Box::new(source) })?;
        out.push(MAGIC);
        out.extend_from_slice(&latest.bundled.id.to_be_bytes());
        writer
            .write_ser(out, event)
            .map(|_| ())
            .map_err(|source| EncodeError::Avro { kind: kind.name(), source: Box::new(source) })
    }
    let mut out = Vec::with_capacity(256);
    macro_rules! write_body {
        ($($kind:ident),+) => {
            match event { $(Event::$kind(e) => body(EventKind::$kind, e, &mut out),)+ }
        };
    }
    crate::for_each_kind!(write_body)?;
    Ok(out)
}

/// `event` in the wire format, with the latest schema of its kind.
pub fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_into(event, &mut out)?;
    Ok(out)
}

/// The schema id in a record's header, without decoding the body.
pub fn schema_id(bytes: &[u8]) -> Result<u32, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    if bytes[0] != MAGIC {
        return Err(DecodeError::BadMagic { found: bytes[0] });
    }
    Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

/// What a record is, read without decoding its body past the first two fields: every schema,
/// in every version, begins with `event_id` and `event_time` (the contract tests hold them to
/// it). A reader that passes over most kinds (a job reading a topic its outputs share) looks
/// here first; the body past these fields is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek<'a> {
    /// The record's kind.
    pub kind: EventKind,
    /// Its event id.
    pub event_id: &'a str,
    /// Its event time (ms since the epoch).
    pub event_time: i64,
}

/// The schema id in a record's header and the kind it is a schema of.
fn schema_of(bytes: &[u8]) -> Result<(u32, EventKind), DecodeError> {
    let id = schema_id(bytes)?;
    let entry = registry().by_id(id).ok_or(DecodeError::UnknownSchemaId { id })?;
    Ok((id, entry.bundled.kind))
}

/// A record's kind, from its header alone (the body not read at all).
pub fn kind_of(bytes: &[u8]) -> Result<EventKind, DecodeError> {
    schema_of(bytes).map(|(_, kind)| kind)
}

/// A record's [`Peek`].
pub fn peek(bytes: &[u8]) -> Result<Peek<'_>, DecodeError> {
    let (id, kind) = schema_of(bytes)?;
    let mut body = &bytes[HEADER_LEN..];
    let malformed = |source| DecodeError::Binary { id, kind: kind.name(), source };
    let event_id = crate::avro_binary::read_str(&mut body).map_err(malformed)?;
    let event_time = crate::avro_binary::read_long(&mut body).map_err(malformed)?;
    Ok(Peek { kind, event_id, event_time })
}

/// Decodes a wire-format record written with any bundled schema version.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let (id, kind) = schema_of(bytes)?;
    let older = codecs().older.get(&id);
    let mut body = &bytes[HEADER_LEN..];
    macro_rules! read_body {
        ($($kind:ident),+) => {
            match kind { $(EventKind::$kind => read_body(older, &mut body, id, kind).map(Event::$kind),)+ }
        };
    }
    let event = crate::for_each_kind!(read_body)?;
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes { id, left: body.len() });
    }
    Ok(event)
}

/// A body of schema `id`: an older version's resolved by apache-avro (`older`, its reader),
/// the latest straight into the Rust type, which mirrors it (`avro_binary`).
fn read_body<T: DeserializeOwned>(
    older: Option<&GenericDatumReader<'static>>,
    body: &mut &[u8],
    id: u32,
    kind: EventKind,
) -> Result<T, DecodeError> {
    let avro = |source: apache_avro::Error| DecodeError::Avro { id, kind: kind.name(), source: Box::new(source) };
    match older {
        None => crate::avro_binary::read(body).map_err(|source| DecodeError::Binary { id, kind: kind.name(), source }),
        Some(reader) => {
            let value = reader.read_value(body).map_err(avro)?;
            apache_avro::from_value(&value).map_err(avro)
        }
    }
}
