//! Where events come from and go to. Transport is kept apart from format: a transport moves
//! bytes with topic, partition, offset and timestamp; encoding and decoding them is the
//! business of `arus-schemas`.
//!
//! # Layout
//! - [`embedded`]: an in-process log with Kafka's semantics (topics, partitions, offsets),
//!   the transport of `arus demo` and of tests that need no servers.
//! - [`files`]: event files, one per topic, as JSON lines or Avro object container files.
//! - [`kafka`] (feature `kafka`): topics on a broker through rdkafka; an idempotent producer.

pub mod embedded;
pub mod files;
#[cfg(feature = "kafka")]
pub mod kafka;
