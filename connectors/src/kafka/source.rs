//! Reading assigned partitions of a topic from their beginning until each is caught up (a
//! bounded read, for jobs over what a topic holds now). The end of a partition is librdkafka's
//! partition-EOF event rather than the high watermark, which Tansu 0.6 reports per batch.
//!
//! Records come out in a fixed order: partitions take turns in ascending order, `quantum`
//! records each, and a turn waits for its partition's records (or its end), however the broker
//! interleaves fetches. The same partitions from the same offsets therefore give the same
//! sequence, which is what makes a job's output reproducible after a restart.
//!
//! Delivery guarantee: at-least-once by itself; exactly-once with the runner's checkpoints,
//! which save [`positions`](BoundedPartitionReader::positions), reopen the reader there, and
//! commit the positions to the consumer group once the outputs depending on them are durable.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{KafkaConfig, KafkaError};
use crate::transport::{PartitionSource, SourceRecord, TransportError};
use crate::turns::{PartitionBuffers, Turns};

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

/// How a reader goes back to a saved offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resume {
    /// Read the partition from its start and skip what lies before the offset. Works with every
    /// broker; Tansu 0.6 needs it, as it returns nothing for a fetch that starts inside a record
    /// batch (a consumer seeking there waits forever).
    #[default]
    Scan,
    /// Fetch from the offset itself: faster on Apache Kafka, which serves a fetch from any offset.
    Seek,
}

/// Reads some partitions of a topic from given offsets until each is caught up.
pub struct BoundedPartitionReader {
    fetched: Fetched,
    /// Whose turn it is ([`crate::turns`]).
    turns: Turns,
}

/// The consumer and what it has fetched of each assigned partition.
struct Fetched {
    consumer: BaseConsumer,
    /// Per assigned partition: whether it has been read to its end, records fetched but not yet
    /// handed out, and the offset of the next record to hand out (`None`: from the beginning,
    /// nothing handed out yet).
    partitions: BTreeMap<u32, PartitionState>,
    /// Records per partition per turn (a partition's buffer holds a few turns' worth at most).
    quantum: usize,
    /// Following: a partition at its end is only caught up for now.
    follow: bool,
    /// Since when the brokers have been out of reach (librdkafka reconnects by itself; the
    /// reading waits for it, up to [`OUTAGE`]).
    outage: Option<std::time::Instant>,
}

/// How long a reader waits for the brokers to come back (a broker restart takes seconds)
/// before the run fails saying so.
pub const OUTAGE: Duration = Duration::from_secs(120);

/// Whether a consumer's error says only that the brokers are out of reach for now: librdkafka
/// goes on reconnecting, and the reading goes on where it was once they answer.
pub(crate) fn transient(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::AllBrokersDown
                | Code::BrokerTransportFailure
                | Code::BrokerNotAvailable
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::Resolve
        )
    )
}

#[derive(Default)]
struct PartitionState {
    done: bool,
    buffered: VecDeque<RawRecord>,
    next: Option<u64>,
    /// Records below this offset are skipped (resuming by scanning).
    skip_below: u64,
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

/// A consumer of `group` that commits only when told to.
fn group_client(config: &KafkaConfig, group: &str) -> Result<BaseConsumer, KafkaError> {
    config.validate().map_err(|e| KafkaError::Config(e.to_string()))?;
    config
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| KafkaError::Config(e.to_string()))
}

/// Commits `positions` (partition, next offset to read) of `topic` for `group`, so lag tools
/// show how far the group has durably got.
pub fn commit_positions(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    positions: &[(u32, u64)],
) -> Result<(), KafkaError> {
    if positions.is_empty() {
        return Ok(());
    }
    let consumer = group_client(config, group)?;
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in positions {
        let offset = i64::try_from(offset).map_err(|e| KafkaError::broker("commit", e))?;
        list.add_partition_offset(topic, partition as i32, Offset::Offset(offset))
            .map_err(|e| KafkaError::broker("commit", e))?;
    }
    consumer.commit(&list, rdkafka::consumer::CommitMode::Sync).map_err(|e| KafkaError::broker("commit", e))
}

/// The offsets `group` has committed for `partitions` of `topic` (`None` where nothing is).
pub fn committed_positions(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    partitions: &[u32],
) -> Result<Vec<(u32, Option<u64>)>, KafkaError> {
    let consumer = group_client(config, group)?;
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p as i32);
    }
    let timeout = Duration::from_millis(u64::from(config.request_timeout_ms));
    let committed = consumer.committed_offsets(list, timeout).map_err(|e| KafkaError::broker("committed", e))?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let offset = committed.find_partition(topic, p as i32).and_then(|e| match e.offset() {
                Offset::Offset(o) => u64::try_from(o).ok(),
                _ => None,
            });
            (p, offset)
        })
        .collect())
}

impl BoundedPartitionReader {
    /// Opens a reader of some partitions of `topic`, each from the given offset (`None`: from
    /// the beginning), handing out up to `quantum` records of a partition per turn.
    pub fn open(
        config: &KafkaConfig,
        group: &str,
        topic: &str,
        partitions: &[(u32, Option<u64>)],
        quantum: usize,
    ) -> Result<Self, KafkaError> {
        Self::open_at_turn(config, group, topic, partitions, quantum, None, Resume::Scan)
    }

    /// [`open`](Self::open), going on in the middle of a turn (`turn` is what
    /// [`turn`](Self::turn) said where the reading stopped), going back to the offsets as
    /// `resume` says.
    pub fn open_at_turn(
        config: &KafkaConfig,
        group: &str,
        topic: &str,
        partitions: &[(u32, Option<u64>)],
        quantum: usize,
        turn: Option<(u32, usize)>,
        resume: Resume,
    ) -> Result<Self, KafkaError> {
        config.validate().map_err(|e| KafkaError::Config(e.to_string()))?;
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // The broker answers a fetch with nothing new after this long: a following reader
            // sees a new record within it (librdkafka's default, 500 ms, set the freshness of
            // eligibility answers; benches/README.md).
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| KafkaError::Config(e.to_string()))?;
        let mut assignment = TopicPartitionList::new();
        for &(p, from) in partitions {
            let offset = match (from, resume) {
                (Some(o), Resume::Seek) => {
                    Offset::Offset(i64::try_from(o).map_err(|e| KafkaError::broker("assign", e))?)
                }
                _ => Offset::Beginning,
            };
            assignment.add_partition_offset(topic, p as i32, offset).map_err(|e| KafkaError::broker("assign", e))?;
        }
        // The topic's leaders first: assigned before it knows them, librdkafka retries the
        // query for the partitions' first offsets on a fixed 500 ms timer, and every reader
        // then started half a second late (measured against Tansu: first record after 530 ms,
        // 35 ms with the metadata fetched first).
        let timeout = Duration::from_millis(u64::from(config.request_timeout_ms));
        consumer.fetch_metadata(Some(topic), timeout).map_err(|e| KafkaError::broker("metadata", e))?;
        consumer.assign(&assignment).map_err(|e| KafkaError::broker("assign", e))?;
        let partitions: BTreeMap<u32, PartitionState> = partitions
            .iter()
            .map(|&(p, next)| (p, PartitionState { next, skip_below: next.unwrap_or(0), ..PartitionState::default() }))
            .collect();
        let turns = Turns::new(partitions.keys().copied().collect(), quantum, turn);
        let fetched = Fetched { consumer, partitions, quantum: turns.quantum(), follow: false, outage: None };
        Ok(BoundedPartitionReader { fetched, turns })
    }

    /// Follows the partitions instead of stopping at their ends: records written later are
    /// read too, with [`next_available`](Self::next_available).
    pub fn following(mut self) -> Self {
        self.fetched.follow = true;
        self
    }

    /// Following: the next record there is, partitions taking turns as far as records are
    /// there (the order then depends on arrival), waiting up to `wait` for the broker; `None`
    /// when nothing came.
    pub fn next_available(&mut self, wait: Duration) -> Result<Option<RawRecord>, KafkaError> {
        let keys = self.turns.partitions().to_vec();
        if keys.is_empty() {
            return Ok(None);
        }
        for attempt in 0..2 {
            let (current, taken) = self.turns.turn();
            let start = keys.iter().position(|p| *p == current).unwrap_or(0);
            for i in 0..=keys.len() {
                let partition = keys[(start + i) % keys.len()];
                if i == 0 && taken >= self.turns.quantum() {
                    continue; // its turn is over
                }
                if let Some(record) = self.fetched.pop(partition) {
                    if i > 0 {
                        self.turns.begin(partition);
                    }
                    self.turns.took_one();
                    return Ok(Some(record));
                }
            }
            if attempt == 0 {
                self.fetched.fetch(wait)?;
            }
        }
        Ok(None)
    }

    /// Following: whether a partition is caught up (at its end, as far as the reader knows).
    pub fn caught_up(&self, partition: u32) -> bool {
        self.fetched.partitions.contains_key(&partition) && self.fetched.exhausted(partition)
    }

    /// Whose turn it is, and how many records that partition has had in it.
    pub fn turn(&self) -> (u32, usize) {
        self.turns.turn()
    }

    /// Partitions still to be read to their end.
    pub fn unfinished(&self) -> impl Iterator<Item = u32> + '_ {
        self.fetched.partitions.keys().copied().filter(|p| !self.fetched.exhausted(*p))
    }

    /// Whether every partition has been read to its end.
    pub fn finished(&self) -> bool {
        self.unfinished().next().is_none()
    }

    /// Per partition, the offset of the next record to hand out (`None`: the beginning).
    pub fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.fetched.partitions.iter().map(|(p, s)| (*p, s.next)).collect()
    }

    /// The next record in the reader's fixed order, waiting for it as long as it takes; `None`
    /// once every partition has been read to its end.
    pub fn next_record(&mut self) -> Result<Option<RawRecord>, KafkaError> {
        self.turns.next(&mut self.fetched)
    }
}

/// A [`BoundedPartitionReader`] as a [`PartitionSource`]: bounded, or following (each
/// [`next`](PartitionSource::next) waiting 10 ms at most for a record).
pub struct KafkaPartitionSource {
    reader: BoundedPartitionReader,
    follow: bool,
    last: Option<RawRecord>,
}

impl KafkaPartitionSource {
    /// A source over `reader` (made [`following`](BoundedPartitionReader::following) when `follow`).
    pub fn new(reader: BoundedPartitionReader, follow: bool) -> Self {
        let reader = if follow { reader.following() } else { reader };
        KafkaPartitionSource { reader, follow, last: None }
    }
}

impl PartitionSource for KafkaPartitionSource {
    fn next(&mut self) -> Result<Option<SourceRecord<'_>>, TransportError> {
        self.last = if self.follow {
            self.reader.next_available(Duration::from_millis(10))?
        } else {
            self.reader.next_record()?
        };
        Ok(self.last())
    }

    fn last(&self) -> Option<SourceRecord<'_>> {
        self.last.as_ref().map(|r| SourceRecord {
            partition: r.partition,
            offset: r.offset as u64,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: &r.value,
        })
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.reader.positions()
    }

    fn turn(&self) -> (u32, usize) {
        self.reader.turn()
    }

    fn caught_up(&self, partition: u32) -> bool {
        self.reader.caught_up(partition)
    }

    fn finished(&self) -> bool {
        !self.follow && self.reader.finished()
    }
}

impl PartitionBuffers for Fetched {
    type Record = RawRecord;
    type Error = KafkaError;

    fn pop(&mut self, partition: u32) -> Option<RawRecord> {
        let state = self.partitions.get_mut(&partition)?;
        let record = state.buffered.pop_front()?;
        state.next = Some(record.offset as u64 + 1);
        Some(record)
    }

    fn exhausted(&self, partition: u32) -> bool {
        self.partitions.get(&partition).is_none_or(|s| s.done && s.buffered.is_empty())
    }

    fn fill(&mut self, _partition: u32) -> Result<(), KafkaError> {
        self.fetch(Duration::from_millis(100))
    }
}

impl Fetched {
    /// Buffers what the consumer has, waiting up to `timeout` for the first message.
    fn fetch(&mut self, timeout: Duration) -> Result<(), KafkaError> {
        let mut wait = timeout;
        loop {
            let message = match self.consumer.poll(wait) {
                None => return Ok(()),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    if let Some(state) = self.partitions.get_mut(&(p as u32)) {
                        state.done = true;
                    }
                    return Ok(());
                }
                Some(Err(error)) if transient(&error) => {
                    let since = *self.outage.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > OUTAGE {
                        let waited = since.elapsed().as_secs();
                        return Err(KafkaError::broker("consume", format!("{error}, for {waited} s")));
                    }
                    // Nothing now: asked again after a pause (the error comes back at once
                    // while the brokers are down), librdkafka reconnecting meanwhile.
                    std::thread::sleep(timeout.min(Duration::from_millis(50)));
                    return Ok(());
                }
                Some(result) => result.map_err(|e| KafkaError::broker("consume", e))?,
            };
            self.outage = None;
            wait = Duration::ZERO;
            let partition = message.partition() as u32;
            let follow = self.follow;
            let Some(state) = self.partitions.get_mut(&partition).filter(|s| follow || !s.done) else {
                continue; // not ours, or written after the partition was caught up
            };
            state.done = false;
            if (message.offset() as u64) < state.skip_below {
                continue; // before the offset resumed from
            }
            state.buffered.push_back(RawRecord {
                partition,
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
            });
            if state.buffered.len() >= 4 * self.quantum {
                return Ok(());
            }
        }
    }
}
