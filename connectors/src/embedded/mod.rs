//! The embedded log: topics of partitions of records, with offsets, in process memory.
//!
//! It follows Kafka's semantics where jobs can observe them: a record's partition is chosen
//! by Kafka's murmur2 partitioner from its key (so a key lands in the same partition number
//! here and on a broker with the same partition count), offsets within a partition start at
//! zero and grow by one, a fetch returns records in offset order, and producing to a topic
//! that was never created is an error (Tansu does not auto-create topics either).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use arus_schemas::Timestamp;
use arus_schemas::topics::{partition_for_key, topic_spec};

/// One record, as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// Event time given by the producer.
    pub timestamp: Timestamp,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// What the log refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The topic was never created.
    #[error("unknown topic {0:?}: create it first (topics are never created implicitly)")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("topic {topic:?} has {partitions} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: u32,
        /// Partitions it has.
        partitions: u32,
    },
    /// Creating a topic that exists with another partition count.
    #[error("topic {topic:?} already exists with {existing} partitions, not {requested}")]
    PartitionMismatch {
        /// Topic.
        topic: String,
        /// Partitions it has.
        existing: u32,
        /// Partitions asked for.
        requested: u32,
    },
    /// Zero partitions asked for.
    #[error("a topic needs at least one partition")]
    NoPartitions,
}

struct Topic {
    name: Arc<str>,
    partitions: Vec<Mutex<Vec<Record>>>,
}

/// An in-process log. Cheap to share: clone the `Arc` it is usually held in.
#[derive(Default)]
pub struct EmbeddedLog {
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog").field("topics", &self.topic_names()).finish()
    }
}

impl EmbeddedLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a topic; creating it again with the same partition count does nothing.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), LogError> {
        if partitions == 0 {
            return Err(LogError::NoPartitions);
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = topics.get(name) {
            let existing = existing.partitions.len() as u32;
            return if existing == partitions {
                Ok(())
            } else {
                Err(LogError::PartitionMismatch { topic: name.to_owned(), existing, requested: partitions })
            };
        }
        let topic =
            Topic { name: Arc::from(name), partitions: (0..partitions).map(|_| Mutex::new(Vec::new())).collect() };
        topics.insert(name.to_owned(), Arc::new(topic));
        Ok(())
    }

    /// Creates a topic with the partition count of its spec in `arus_schemas::topics`.
    pub fn create_known_topic(&self, name: &str) -> Result<(), LogError> {
        let spec = topic_spec(name).ok_or_else(|| LogError::UnknownTopic(name.to_owned()))?;
        self.create_topic(name, spec.partitions)
    }

    /// Creates every topic of `arus_schemas::topics::TOPICS`.
    pub fn create_all_topics(&self) -> Result<(), LogError> {
        for spec in arus_schemas::topics::TOPICS {
            self.create_topic(spec.name, spec.partitions)?;
        }
        Ok(())
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(name).cloned().ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    /// Names of all topics, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// Partition count of a topic.
    pub fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    /// Appends a record; the partition comes from the key (murmur2), or is 0 without a key.
    /// Returns the partition and offset it got.
    pub fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Vec<u8>,
        timestamp: Timestamp,
    ) -> Result<(u32, u64), LogError> {
        let t = self.topic(topic)?;
        let partition = key.map_or(0, |k| partition_for_key(k, t.partitions.len() as u32));
        let mut records = t.partitions[partition as usize].lock().unwrap_or_else(|e| e.into_inner());
        let offset = records.len() as u64;
        records.push(Record {
            topic: t.name.clone(),
            partition,
            offset,
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value,
        });
        Ok((partition, offset))
    }

    /// Up to `max` records of a partition from `offset` on, in offset order.
    pub fn fetch(&self, topic: &str, partition: u32, offset: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let t = self.topic(topic)?;
        let records = t
            .partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: t.partitions.len() as u32,
            })?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let start = (offset as usize).min(records.len());
        Ok(records[start..].iter().take(max).cloned().collect())
    }

    /// The next offset of every partition of a topic (its high-water marks).
    pub fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).len() as u64).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_grow_per_partition_and_keys_stick_to_partitions() {
        let log = EmbeddedLog::new();
        log.create_topic("t", 4).expect("create");
        let mut seen = BTreeMap::new();
        for i in 0..100u64 {
            let key = format!("member-{}", i % 10);
            let (p, o) = log.produce("t", Some(key.as_bytes()), vec![i as u8], Timestamp(i as i64)).expect("produce");
            assert_eq!(*seen.entry(key).or_insert(p), p, "a key moved partition");
            let end = log.end_offsets("t").expect("offsets")[p as usize];
            assert_eq!(o + 1, end);
        }
        let total: u64 = log.end_offsets("t").expect("offsets").iter().sum();
        assert_eq!(total, 100);
        let p0 = log.fetch("t", 0, 0, usize::MAX).expect("fetch");
        assert!(p0.iter().enumerate().all(|(i, r)| r.offset == i as u64 && r.partition == 0));
        assert_eq!(log.fetch("t", 0, 2, 1).expect("fetch").first().map(|r| r.offset), p0.get(2).map(|r| r.offset));
    }

    #[test]
    fn refuses_unknown_topics_and_partitions() {
        let log = EmbeddedLog::new();
        assert_eq!(log.produce("nope", None, vec![], Timestamp(0)), Err(LogError::UnknownTopic("nope".into())));
        log.create_topic("t", 2).expect("create");
        assert!(matches!(log.fetch("t", 2, 0, 1), Err(LogError::UnknownPartition { .. })));
        assert!(matches!(log.create_topic("t", 3), Err(LogError::PartitionMismatch { .. })));
        assert_eq!(log.create_topic("t", 2), Ok(()));
        assert_eq!(log.create_topic("z", 0), Err(LogError::NoPartitions));
    }
}
