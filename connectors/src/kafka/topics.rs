//! Topics on a Kafka cluster as a [`TopicSink`]: idempotent producers, one per codec, each
//! topic written with the codec the topic table gives it (optionally one transactional
//! producer), topic creation where missing with the table's settings, delivered positions, and
//! read-back through the bounded reader.

use std::time::Duration;

use arus_schemas::Timestamp;

use super::{
    BoundedPartitionReader, Durability, KafkaConfig, KafkaError, KafkaSink, apply_topics, create_topics,
    partition_count,
};
use crate::transport::{TopicSink, TransportError};

/// How long a flush waits for every record sent to be delivered, by default.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A Kafka cluster's topics: a topic of the table is written with its codec
/// ([`declared`](arus_schemas::topics::declared)) by that codec's producer (made when first
/// needed), any other with the default codec.
pub struct KafkaTopics {
    config: KafkaConfig,
    /// The producer of topics not in the table (and of every topic, transactional).
    sink: KafkaSink,
    /// Its codec.
    codec: String,
    /// The producers of the other codecs.
    others: std::sync::Mutex<Vec<(&'static str, std::sync::Arc<KafkaSink>)>>,
    /// Transactional: one producer for every topic (a transaction spans one producer).
    transactional: bool,
    /// How long a flush waits for delivery before it fails.
    flush_timeout: Duration,
}

impl KafkaTopics {
    /// Idempotent producers to the cluster of `config`: each topic of the table compressed with
    /// its own codec, any other with `compression`.
    pub fn new(config: &KafkaConfig, compression: &str) -> Result<Self, KafkaError> {
        Ok(KafkaTopics {
            config: config.clone(),
            sink: KafkaSink::new(config, compression)?,
            codec: compression.to_owned(),
            others: Default::default(),
            transactional: false,
            flush_timeout: FLUSH_TIMEOUT,
        })
    }

    /// What writes `topic`: the default producer, or its codec's.
    fn producer(&self, topic: &str) -> Result<Option<std::sync::Arc<KafkaSink>>, KafkaError> {
        let codec = match arus_schemas::topics::declared(topic) {
            Some(spec) if !self.transactional && spec.compression != self.codec => spec.compression,
            _ => return Ok(None),
        };
        let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, sink)) = others.iter().find(|(c, _)| *c == codec) {
            return Ok(Some(sink.clone()));
        }
        let sink = std::sync::Arc::new(KafkaSink::new(&self.config, codec)?);
        others.push((codec, sink.clone()));
        Ok(Some(sink))
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
        Ok(KafkaTopics {
            config,
            sink,
            codec: compression.to_owned(),
            others: Default::default(),
            transactional: true,
            flush_timeout: FLUSH_TIMEOUT,
        })
    }
}

impl TopicSink for KafkaTopics {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        // Created only when missing: a cluster may allow writing to a topic but not creating one.
        match partition_count(&self.config, topic) {
            Ok(count) => Ok(count),
            Err(_) => {
                // A topic of the table with its settings; any other with the partitions asked for.
                match arus_schemas::topics::declared(topic) {
                    Some(spec) => {
                        let spec = arus_schemas::topics::TopicSpec { partitions, ..spec };
                        apply_topics(&self.config, &[(topic.to_owned(), spec)], Durability::default())?;
                    }
                    None => create_topics(&self.config, &[(topic, partitions)])?,
                }
                Ok(partition_count(&self.config, topic)?)
            }
        }
    }

    fn send(&self, topic: &str, key: &[u8], value: &[u8], timestamp: Timestamp) -> Result<(), TransportError> {
        match self.producer(topic)? {
            Some(sink) => Ok(sink.send(topic, key, value, timestamp.0)?),
            None => Ok(self.sink.send(topic, key, value, timestamp.0)?),
        }
    }

    fn flush(&self) -> Result<(), TransportError> {
        let others: Vec<_> =
            self.others.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, s)| s.clone()).collect();
        for sink in others {
            sink.commit(self.flush_timeout)?;
        }
        self.sink.commit(self.flush_timeout)?;
        Ok(())
    }

    fn delivered(&self, topic: &str) -> Result<Vec<(u32, u64)>, TransportError> {
        match self.producer(topic)? {
            Some(sink) => Ok(sink.delivered_positions(topic)),
            None => Ok(self.sink.delivered_positions(topic)),
        }
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
