//! The JSON form of events, for files, fixtures and humans.
//!
//! One object per event: its schema fields under their schema names, plus `"type"` naming
//! the kind. Money is a JSON integer of whole rupiah; dates are `"YYYY-MM-DD"`; timestamps
//! are UTC `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (integers — days or epoch millis — are accepted on
//! input); optional fields may be omitted or `null`; `bytes` are lowercase hex. Unknown
//! fields are rejected, so a typo is an error rather than silently dropped data.

use crate::error::DecodeError;
use crate::kinds::Event;

/// The event as one line of JSON (no trailing newline).
pub fn to_json(event: &Event) -> String {
    // Serializing plain data structs to a String cannot fail.
    serde_json::to_string(event).expect("events serialize to JSON")
}

/// Appends the event as one JSON line, newline included.
pub fn write_json_line(event: &Event, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, event).expect("events serialize to JSON");
    out.push(b'\n');
}

/// Bytes as the JSON form writes them: lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses one event in the JSON form.
pub fn from_json(text: &str) -> Result<Event, DecodeError> {
    Ok(serde_json::from_str(text)?)
}
