//! Topics on a Kafka cluster as a [`TopicSink`]: the idempotent (optionally transactional)
//! producer, topic creation where missing, delivered positions, and read-back through the
//! bounded reader.

use std::time::Duration;

use arus_schemas::Timestamp;

use super::{BoundedPartitionReader, KafkaConfig, KafkaError, KafkaSink, create_topics, partition_count};
use crate::transport::{TopicSink, TransportError};

/// How long a flush waits for every record sent to be delivered, by default.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A Kafka cluster's topics, written by one producer.
pub struct KafkaTopics {
    config: KafkaConfig,
    sink: KafkaSink,
    /// How long a flush waits for delivery before it fails.
    flush_timeout: Duration,
}

impl KafkaTopics {
    /// An idempotent producer to the cluster of `config`, compressing with `compression`.
    pub fn new(config: &KafkaConfig, compression: &str) -> Result<Self, KafkaError> {
        Ok(KafkaTopics {
            config: config.clone(),
            sink: KafkaSink::new(config, compression)?,
            flush_timeout: FLUSH_TIMEOUT,
        })
    }

    /// Flushes wait at most `timeout` for delivery (default a minute).
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// A transactional producer (`transactional.id` = `id`): what it sends becomes visible at
    /// each [`flush`](TopicSink::flush), and its read-back sees committed records only. Needs a
    /// broker with transactions (Apache Kafka; not Tansu 0.6).
    pub fn transactional(config: &KafkaConfig, compression: &str, id: &str) -> Result<Self, KafkaError> {
        let mut config = config.clone();
        config.read_committed = true;
        let sink = KafkaSink::transactional(&config, compression, id)?;
        Ok(KafkaTopics { config, sink, flush_timeout: FLUSH_TIMEOUT })
    }
}

impl TopicSink for KafkaTopics {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        // Created only when missing: a cluster may allow writing to a topic but not creating one.
        match partition_count(&self.config, topic) {
            Ok(count) => Ok(count),
            Err(_) => {
                create_topics(&self.config, &[(topic, partitions)])?;
                Ok(partition_count(&self.config, topic)?)
            }
        }
    }

    fn send(&self, topic: &str, key: &[u8], value: &[u8], timestamp: Timestamp) -> Result<(), TransportError> {
        Ok(self.sink.send(topic, key, value, timestamp.0)?)
    }

    fn flush(&self) -> Result<(), TransportError> {
        self.sink.commit(self.flush_timeout)?;
        Ok(())
    }

    fn delivered(&self, topic: &str) -> Result<Vec<(u32, u64)>, TransportError> {
        Ok(self.sink.delivered_positions(topic))
    }

    fn read_back(&self, topic: &str, from: &[(u32, u64)], each: &mut dyn FnMut(&[u8])) -> Result<(), TransportError> {
        let partitions = partition_count(&self.config, topic)?;
        let from: Vec<(u32, Option<u64>)> =
            (0..partitions).map(|p| (p, from.iter().find(|(q, _)| *q == p).map(|(_, o)| *o))).collect();
        let group = format!("arus-read-back-{topic}");
        let mut reader = BoundedPartitionReader::open(&self.config, &group, topic, &from, 1024)?;
        while let Some(record) = reader.next_record()? {
            each(&record.value);
        }
        Ok(())
    }
}
