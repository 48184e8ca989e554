//! Reading assigned partitions of a topic from their beginning until each is caught up (a
//! bounded read, for jobs over what a topic holds now). The end of a partition is librdkafka's
//! partition-EOF event rather than the high watermark, which Tansu 0.6 reports per batch.
//!
//! Delivery guarantee: at-least-once from the start of each partition (offsets are not
//! committed yet; that waits for checkpoints).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{KafkaConfig, KafkaError};

/// A record as read: transport only, decoding is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Producer timestamp (ms), if any.
    pub timestamp_ms: Option<i64>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
}

/// Reads some partitions of a topic from their beginning until each is caught up.
pub struct BoundedPartitionReader {
    consumer: BaseConsumer,
    /// Whether each assigned partition has been read to its end.
    done: BTreeMap<u32, bool>,
}

/// Partition count of a topic.
pub fn partition_count(config: &KafkaConfig, topic: &str) -> Result<u32, KafkaError> {
    config.validate().map_err(|e| KafkaError::Config(e.to_string()))?;
    let consumer: BaseConsumer = config.client_config().create().map_err(|e| KafkaError::Config(e.to_string()))?;
    let timeout = Duration::from_millis(u64::from(config.request_timeout_ms));
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| KafkaError::broker("metadata", e))?;
    let partitions = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len() as u32);
    if partitions == 0 {
        return Err(KafkaError::broker("metadata", format!("topic {topic:?} does not exist")));
    }
    Ok(partitions)
}

impl BoundedPartitionReader {
    /// Opens a reader of `partitions` of `topic`.
    pub fn open(config: &KafkaConfig, group: &str, topic: &str, partitions: &[u32]) -> Result<Self, KafkaError> {
        config.validate().map_err(|e| KafkaError::Config(e.to_string()))?;
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| KafkaError::Config(e.to_string()))?;
        let mut assignment = TopicPartitionList::new();
        for &p in partitions {
            assignment
                .add_partition_offset(topic, p as i32, Offset::Beginning)
                .map_err(|e| KafkaError::broker("assign", e))?;
        }
        consumer.assign(&assignment).map_err(|e| KafkaError::broker("assign", e))?;
        Ok(BoundedPartitionReader { consumer, done: partitions.iter().map(|p| (*p, false)).collect() })
    }

    /// Partitions still to be read to their end.
    pub fn unfinished(&self) -> impl Iterator<Item = u32> + '_ {
        self.done.iter().filter(|(_, done)| !**done).map(|(p, _)| *p)
    }

    /// Whether every partition has been read to its end.
    pub fn finished(&self) -> bool {
        self.unfinished().next().is_none()
    }

    /// The next record, waiting up to `timeout`; `None` if none arrived in time.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<RawRecord>, KafkaError> {
        loop {
            let message = match self.consumer.poll(timeout) {
                None => return Ok(None),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    self.done.insert(p as u32, true);
                    continue;
                }
                Some(result) => result.map_err(|e| KafkaError::broker("consume", e))?,
            };
            let partition = message.partition() as u32;
            if self.done.get(&partition).is_none_or(|done| *done) {
                continue; // not ours, or written after the partition was caught up
            }
            return Ok(Some(RawRecord {
                partition,
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
            }));
        }
    }
}
