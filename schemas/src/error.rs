//! Errors at the crate's boundary. Bad input is an error value, never a panic.

/// A record that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the wire-format header.
    #[error("record of {len} bytes is shorter than the 5-byte Confluent wire-format header")]
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// The first byte is not the wire format's magic byte.
    #[error("first byte {found:#04x} is not the Confluent wire-format magic byte 0x00")]
    BadMagic {
        /// Byte found.
        found: u8,
    },
    /// The schema id is not one arus knows.
    #[error("schema id {id} is not in the bundled registry")]
    UnknownSchemaId {
        /// Id found.
        id: u32,
    },
    /// The Avro body does not match its schema.
    #[error("Avro body does not match schema {kind} (id {id}): {source}")]
    Avro {
        /// Schema id.
        id: u32,
        /// Record name.
        kind: &'static str,
        /// What apache-avro saw.
        source: Box<apache_avro::Error>,
    },
    /// The body does not read as its schema (the latest of its kind) says.
    #[error("Avro body does not match schema {kind} (id {id}): {source}")]
    Binary {
        /// Schema id.
        id: u32,
        /// Record name.
        kind: &'static str,
        /// What was wrong.
        source: crate::avro_binary::Error,
    },
    /// Bytes left after a complete body: the record is not what its header says.
    #[error("{left} bytes left over after the Avro body of schema id {id}")]
    TrailingBytes {
        /// Schema id.
        id: u32,
        /// Bytes left.
        left: usize,
    },
    /// A JSON-form record that is not valid.
    #[error("invalid JSON event: {0}")]
    Json(#[from] serde_json::Error),
}

/// An event that could not be encoded (a bug in the producer, or a schema mismatch).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The event does not fit its schema.
    #[error("event {kind} does not fit its schema: {source}")]
    Avro {
        /// Record name.
        kind: &'static str,
        /// What apache-avro saw.
        source: Box<apache_avro::Error>,
    },
    /// The event has a value the contract's encoding has no place for.
    #[error("event {kind} cannot be encoded: {source}")]
    Binary {
        /// Record name.
        kind: &'static str,
        /// What was found.
        source: crate::avro_binary::Error,
    },
}

impl DecodeError {
    /// What is wrong, without anything the record holds: the framing, the schema id, the
    /// schema's name — never the decoder's detail, which may quote a value (a dead letter's
    /// reason is shown to whoever reads the dead-letter topic; the record may carry a NIK).
    pub fn without_values(&self) -> String {
        match self {
            DecodeError::Avro { id, kind, .. } | DecodeError::Binary { id, kind, .. } => {
                format!("Avro body does not match schema {kind} (id {id})")
            }
            DecodeError::Json(error) => {
                format!("invalid JSON event (line {}, column {})", error.line(), error.column())
            }
            other => other.to_string(),
        }
    }

    /// Short class of the error, for dead letters and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } | DecodeError::BadMagic { .. } => "framing",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema",
            DecodeError::Avro { .. } | DecodeError::Binary { .. } | DecodeError::TrailingBytes { .. } => "avro",
            DecodeError::Json(_) => "json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder's detail may quote what the record holds: the reason given without values keeps
    /// the schema and the class, and drops it.
    #[test]
    fn a_decode_error_without_values_names_the_schema_but_not_what_the_record_held() {
        let quoted = <crate::avro_binary::Error as serde::de::Error>::custom("unknown variant `3201234567890001`");
        let error = DecodeError::Binary { id: 4, kind: "MemberCreated", source: quoted };
        assert!(error.to_string().contains("3201234567890001"), "the detail quotes it: {error}");
        let shown = error.without_values();
        assert_eq!(shown, "Avro body does not match schema MemberCreated (id 4)");
        let json = DecodeError::Json(serde_json::from_str::<u8>("\"3201234567890001\"").unwrap_err());
        assert!(!json.without_values().contains("3201"), "{}", json.without_values());
        assert_eq!(
            DecodeError::UnknownSchemaId { id: 99 }.without_values(),
            "schema id 99 is not in the bundled registry"
        );
    }
}
