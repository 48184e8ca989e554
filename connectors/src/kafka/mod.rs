//! Kafka through rdkafka (bundled librdkafka): configuration, topic administration, and an
//! idempotent keyed producer. Values are bytes: encoding (the Confluent wire format) is the
//! caller's business, as everywhere in this crate.
//!
//! Keys are partitioned with `murmur2_random`, Kafka's Java default, so a key lands in the
//! same partition number here, in Java clients and in the embedded log.

mod admin;
mod config;
mod sink;
mod source;
mod topics;

pub use admin::{Applied, Durability, apply_topics, check_topics, create_topics, declared_configs, delete_topics};
pub use config::{KafkaConfig, KafkaConfigError};
pub use sink::{KafkaSink, SinkReport};
pub use source::{
    BoundedPartitionReader, KafkaPartitionSource, RawRecord, Resume, commit_positions, committed_positions,
    partition_count,
};
pub use topics::KafkaTopics;

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The configuration was refused (by validation or by librdkafka).
    #[error("kafka configuration: {0}")]
    Config(String),
    /// The broker or client reported an error.
    #[error("kafka {operation}: {message}")]
    Broker {
        /// What was being done.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl KafkaError {
    pub(crate) fn broker(operation: &'static str, error: impl std::fmt::Display) -> Self {
        KafkaError::Broker { operation, message: error.to_string() }
    }
}

#[cfg(test)]
mod tests;
