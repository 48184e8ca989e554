//! One way to read and write topics, whatever carries them. A [`PartitionSource`] hands out
//! the records of some partitions of a topic in the fixed order of [`crate::turns`], from given
//! positions, saying where it is; a [`TopicSink`] sends keyed records to topics, makes them
//! durable, says how far they reached, and reads back what a topic holds after given offsets
//! (what a rerun must not write again). Both are implemented by a Kafka cluster (feature
//! `kafka`: [`KafkaTopics`](crate::kafka::KafkaTopics), the
//! [`BoundedPartitionReader`](crate::kafka::BoundedPartitionReader)) and by the embedded log
//! ([`LogTopics`], [`LogPartitionReader`](crate::embedded::LogPartitionReader)); the jobs'
//! readers, output writer and dead-letter sinks and the gateway's command publisher all go
//! through them. Transport only: what the bytes mean is the business of `arus-schemas`.

use std::sync::Arc;

use arus_schemas::Timestamp;

use crate::embedded::{EmbeddedLog, LogError};

/// A transport that failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker failed or refused.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    /// The embedded log failed or refused.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A record as a [`PartitionSource`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRecord<'a> {
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// The producer's timestamp (ms), where the transport keeps one.
    pub timestamp_ms: Option<i64>,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: &'a [u8],
}

/// Reads some partitions of a topic from given positions, partitions taking turns
/// ([`crate::turns`]): the same positions and turn give the same records in the same order.
pub trait PartitionSource: Send {
    /// The next record. Bounded, it waits for it and says `None` once every partition has
    /// been read to its end; following, it waits a little and says `None` when nothing came.
    fn next(&mut self) -> Result<Option<SourceRecord<'_>>, TransportError>;
    /// The record [`next`](Self::next) handed out last.
    fn last(&self) -> Option<SourceRecord<'_>>;
    /// Per partition, the position of the next record (`None`: the beginning).
    fn positions(&self) -> Vec<(u32, Option<u64>)>;
    /// Whose turn it is, and how many records that partition has had in it.
    fn turn(&self) -> (u32, usize);
    /// Whether `partition` has been read as far as it goes (for now, following).
    fn caught_up(&self, partition: u32) -> bool;
    /// Whether every partition has been read to its end for good (never, following).
    fn finished(&self) -> bool;
}

/// Writes keyed records to topics.
pub trait TopicSink: Send + Sync {
    /// The partitions of `topic`, creating it with `partitions` when it is missing.
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError>;
    /// Queues a record for `topic` (partitioned by `key` as Kafka's Java clients do).
    fn send(&self, topic: &str, key: &[u8], value: &[u8], timestamp: Timestamp) -> Result<(), TransportError>;
    /// Makes everything sent durable: delivered (and, on a transactional sink, committed).
    fn flush(&self) -> Result<(), TransportError>;
    /// Per partition of `topic`, the offset after the last record this sink has delivered there
    /// (after [`flush`](Self::flush): a position covering everything sent).
    fn delivered(&self, topic: &str) -> Result<Vec<(u32, u64)>, TransportError>;
    /// Hands `each` the value of every record of `topic` after `from` (per partition; a
    /// partition not named from its start) up to where the topic ends now.
    fn read_back(&self, topic: &str, from: &[(u32, u64)], each: &mut dyn FnMut(&[u8])) -> Result<(), TransportError>;
}

/// The topics of an embedded log.
pub struct LogTopics(pub Arc<EmbeddedLog>);

impl TopicSink for LogTopics {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        if !self.0.has_topic(topic) {
            self.0.create_topic(topic, partitions)?;
        }
        Ok(self.0.partitions(topic)?)
    }

    fn send(&self, topic: &str, key: &[u8], value: &[u8], timestamp: Timestamp) -> Result<(), TransportError> {
        self.0.produce(topic, Some(key), value.to_vec(), timestamp)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), TransportError> {
        Ok(self.0.flush()?)
    }

    fn delivered(&self, topic: &str) -> Result<Vec<(u32, u64)>, TransportError> {
        Ok(self.0.end_offsets(topic)?.into_iter().enumerate().map(|(p, end)| (p as u32, end)).collect())
    }

    fn read_back(&self, topic: &str, from: &[(u32, u64)], each: &mut dyn FnMut(&[u8])) -> Result<(), TransportError> {
        if !self.0.has_topic(topic) {
            return Ok(());
        }
        for (partition, end) in self.0.end_offsets(topic)?.into_iter().enumerate() {
            let partition = partition as u32;
            let start = from.iter().find(|(p, _)| *p == partition).map_or(0, |(_, o)| *o);
            for record in self.0.fetch(topic, partition, start, end.saturating_sub(start) as usize)? {
                each(&record.value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_sink_creates_writes_reports_and_reads_back() {
        let log = Arc::new(EmbeddedLog::new());
        let sink = LogTopics(log.clone());
        assert_eq!(sink.ensure_topic("t", 3).expect("created"), 3);
        assert_eq!(sink.ensure_topic("t", 5).expect("there already"), 3);
        for i in 0..30u32 {
            let key = format!("k{i}");
            sink.send("t", key.as_bytes(), i.to_string().as_bytes(), Timestamp(i64::from(i))).expect("sent");
        }
        sink.flush().expect("flushed");
        let delivered = sink.delivered("t").expect("positions");
        assert_eq!(delivered.iter().map(|(_, o)| o).sum::<u64>(), 30);
        let mut all = Vec::new();
        sink.read_back("t", &[], &mut |value| all.push(String::from_utf8_lossy(value).into_owned())).expect("read");
        all.sort_by_key(|v| v.parse::<u32>().expect("a number"));
        assert_eq!(all, (0..30).map(|i| i.to_string()).collect::<Vec<_>>());
        // After the delivered offsets: nothing; after partition 0's start only: the others' whole.
        let mut after = 0;
        sink.read_back("t", &delivered, &mut |_| after += 1).expect("read");
        assert_eq!(after, 0);
        let mut rest = 0;
        sink.read_back("t", &delivered[..1], &mut |_| rest += 1).expect("read");
        assert_eq!(rest, 30 - delivered[0].1 as usize);
        sink.read_back("absent", &[], &mut |_| panic!("nothing there")).expect("an absent topic reads empty");
    }
}
