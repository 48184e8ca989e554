//! The transports a job reads: a JSON-lines or Avro file (one partition), some partitions of a
//! Kafka topic, or of an embedded log topic — each opened once per process ([`Input`]) and read
//! by a worker in its share of the partitions, always in the same order for the same starting
//! positions ([`RecordReader`]); and the loop every topic-reading job runs over its readers
//! ([`read_events`]). A topic, on the broker or in the embedded log, is read through the
//! connectors' `PartitionSource` by one `TopicReader`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::embedded::{EmbeddedLog, LogPartitionReader};
use arus_connectors::files::AvroContainerReader;
use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaPartitionSource, Resume};
use arus_connectors::transport::PartitionSource;

use super::checkpoint::{OnComplete, SourceState};
use super::sinks::{DeadLetter, DeadLetterTopics};
use super::spec::{SourceSpec, TopicsSource};
use super::{RunError, Shared, fail};

/// How long a following reader's turn in [`read_events`] may last. It waits a little for each
/// record; records trickling in faster than that wait would otherwise keep the turn going
/// until `batch` of them came, holding back the watermark — and a fraud job's window closes —
/// for seconds (benches/README.md, fraud alert latency). Readers of a bounded input read whole
/// batches: fewer, larger batches for the sequencer (a store round trip each).
const TURN: Duration = Duration::from_millis(5);

/// Reads up to `batch` records from each reader in turn (a following reader's turn lasting
/// about [`TURN`] at most), decoded as events of the contract, handing each to `take` with its
/// reader's index, partition and offset; a record that is not an event goes to `letters` (its topic's
/// dead-letter topic). How many records were not events; `None` when a read failed (the run
/// then fails with that error).
pub(crate) fn read_events<R>(
    readers: &mut [Box<dyn RecordReader>],
    batch: usize,
    shared: &Mutex<Shared<R>>,
    letters: Option<&DeadLetterTopics>,
    take: impl FnMut(usize, u32, u64, arus_schemas::Event),
) -> Option<u64> {
    read_events_peeked(readers, batch, shared, letters, |_, _, _| true, take)
}

/// [`read_events`], each record first shown to `peeked` (its kind, id and time, read without
/// decoding it: [`wire::peek`](arus_schemas::wire::peek)) and decoded only if that says so —
/// a job passes over the kinds it does not read without paying for their decoding (the
/// adjudication job's own decisions on `claims.events`, on a rerun). Only records decoded
/// or not even peeked at are counted as not events (and dead-lettered).
pub(crate) fn read_events_peeked<R>(
    readers: &mut [Box<dyn RecordReader>],
    batch: usize,
    shared: &Mutex<Shared<R>>,
    letters: Option<&DeadLetterTopics>,
    mut peeked: impl FnMut(usize, u32, &arus_schemas::wire::Peek<'_>) -> bool,
    mut take: impl FnMut(usize, u32, u64, arus_schemas::Event),
) -> Option<u64> {
    let mut undecodable = 0;
    for (i, reader) in readers.iter_mut().enumerate() {
        let (turn, following) = (Instant::now(), reader.following());
        for n in 0..batch {
            if following && n > 0 && turn.elapsed() > TURN {
                break;
            }
            // A record that is not an event: why, and the record.
            let refused = match reader.next() {
                Ok(Some(Record::Bytes(partition, offset, bytes))) => match arus_schemas::wire::peek(bytes) {
                    Ok(peek) if !peeked(i, partition, &peek) => None,
                    Ok(_) => match arus_schemas::wire::decode(bytes) {
                        Ok(event) => {
                            take(i, partition, offset, event);
                            None
                        }
                        Err(error) => Some((error.without_values(), bytes.to_vec())),
                    },
                    Err(error) => Some((error.without_values(), bytes.to_vec())),
                },
                // (An Avro file's events are decoded already; the topic jobs read topics.)
                Ok(Some(Record::Event(partition, event))) => {
                    take(i, partition, 0, *event);
                    None
                }
                Ok(None) => break,
                Err(error) => {
                    fail(shared, error);
                    return None;
                }
            };
            if let Some((error, original)) = refused {
                undecodable += 1;
                if let Some(letters) = letters
                    && let Err(error) = letters.send(&reader.dead_letter("decode", error, &original))
                {
                    fail(shared, error);
                    return None;
                }
            }
        }
    }
    Some(undecodable)
}

/// This worker's readers of `inputs` (its share of their partitions), each from where
/// `starts` says for its input (a snapshot's positions) or the beginning, with the number of its
/// input; a failure to open one fails the run.
pub(crate) fn open_readers<R>(
    inputs: &[Input],
    worker: usize,
    peers: usize,
    batch: usize,
    starts: &[SourceState],
    shared: &Mutex<Shared<R>>,
) -> (Vec<Box<dyn RecordReader>>, Vec<usize>) {
    let (mut readers, mut numbers) = (Vec::new(), Vec::new());
    for (n, input) in inputs.iter().enumerate() {
        match input.reader(worker, peers, batch, starts.get(n)) {
            Ok(Some(reader)) => {
                readers.push(reader);
                numbers.push(n);
            }
            Ok(None) => {}
            Err(error) => fail(shared, error),
        }
    }
    (readers, numbers)
}

/// Partition `partition` of input (or reader) `n` as one number: `n << 20 | partition`.
pub(crate) fn origin(n: usize, partition: u32) -> u32 {
    ((n as u32) << 20) | partition
}

/// The input (or reader) and partition of an [`origin`].
pub(crate) fn origin_parts(origin: u32) -> (usize, u32) {
    ((origin >> 20) as usize, origin & 0xf_ffff)
}

/// A snapshot's `positions` (by the inputs' `names`) per input partition ([`origin`]): the
/// inverse of [`positions`].
pub(crate) fn received(names: &[String], positions: &super::snapshot::Offsets) -> foldhash::HashMap<u32, u64> {
    let mut received = foldhash::HashMap::default();
    for (n, name) in names.iter().enumerate() {
        for (partition, next) in positions.get(name).into_iter().flatten() {
            received.insert(origin(n, *partition), *next);
        }
    }
    received
}

/// Per input partition ([`origin`]) the offset after the last event received, as a snapshot
/// keeps it: by the inputs' `names`.
pub(crate) fn positions(names: &[String], received: &foldhash::HashMap<u32, u64>) -> super::snapshot::Offsets {
    let mut positions = super::snapshot::Offsets::new();
    for (at, next) in received {
        let (input, partition) = origin_parts(*at);
        let topic = names.get(input).cloned().unwrap_or_default();
        positions.entry(topic).or_default().insert(partition, *next);
    }
    positions
}

/// The inputs of `topics` of a log this process has, each read to where it ends now.
pub(crate) fn embedded_inputs(log: &Arc<EmbeddedLog>, topics: &[&str], group: &str) -> Result<Vec<Input>, RunError> {
    topics
        .iter()
        .map(|topic| {
            let ends = log.end_offsets(topic)?;
            Ok(Input::Embedded { log: log.clone(), topic: (*topic).to_owned(), group: group.to_owned(), ends })
        })
        .collect()
}

/// The inputs of `topics` (each under the source's prefix).
pub(crate) fn open_inputs(source: &TopicsSource, topics: &[&str]) -> Result<Vec<Input>, RunError> {
    match source {
        // Each topic's metadata asked for at once (a round trip each; a job reads up to six).
        TopicsSource::Kafka { brokers, topic_prefix, group, follow, idle_timeout } => {
            super::each_at_once(topics, "opening a topic", |topic| {
                Input::open(&SourceSpec::Kafka {
                    brokers: brokers.clone(),
                    topic: format!("{topic_prefix}{topic}"),
                    group: group.clone(),
                    batch_records: 4_096, // (not used by a topic input: its readers are given their batch),
                    resume: Default::default(),
                    follow: *follow,
                    idle_timeout: *idle_timeout,
                })
            })
            .into_iter()
            .collect()
        }
        TopicsSource::Embedded { dir, topic_prefix } => {
            if !dir.join("topics").is_dir() {
                return Err(RunError::Io {
                    path: dir.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no embedded log here"),
                });
            }
            let log = Arc::new(EmbeddedLog::open(dir)?);
            topics
                .iter()
                .map(|topic| {
                    let topic = format!("{topic_prefix}{topic}");
                    let ends = log.end_offsets(&topic)?;
                    Ok(Input::Embedded { log: log.clone(), topic, group: "arus-eligibility".to_owned(), ends })
                })
                .collect()
        }
    }
}

/// Where the records come from, opened once per process.
pub(crate) enum Input {
    Jsonl {
        path: PathBuf,
    },
    Avro {
        path: PathBuf,
        topic: String,
    },
    Kafka {
        config: KafkaConfig,
        topic: String,
        group: String,
        partitions: u32,
        resume: Resume,
        /// Following, with this idle timeout.
        follow: Option<Duration>,
    },
    Embedded {
        log: Arc<EmbeddedLog>,
        topic: String,
        group: String,
        ends: Vec<u64>,
    },
}

impl Input {
    /// The topic read (a file's path): how a snapshot names it.
    pub(crate) fn name(&self) -> String {
        match self {
            Input::Kafka { topic, .. } | Input::Embedded { topic, .. } | Input::Avro { topic, .. } => topic.clone(),
            Input::Jsonl { path } => path.display().to_string(),
        }
    }

    /// Checks the input is there before any worker starts.
    pub(crate) fn open(source: &SourceSpec) -> Result<Self, RunError> {
        Ok(match source {
            SourceSpec::Jsonl { path, .. } => {
                File::open(path).map_err(|source| RunError::Io { path: path.clone(), source })?;
                Input::Jsonl { path: path.clone() }
            }
            SourceSpec::Avro { path, topic, .. } => {
                let topic = match topic {
                    Some(topic) => topic.clone(),
                    None => {
                        path.file_name().and_then(|n| n.to_str()).unwrap_or("").trim_end_matches(".avro").to_owned()
                    }
                };
                AvroContainerReader::open(path, &topic, 0).map_err(|e| RunError::Invalid(e.to_string()))?;
                Input::Avro { path: path.clone(), topic }
            }
            SourceSpec::Kafka { brokers, topic, group, resume, follow, idle_timeout, .. } => {
                let config = KafkaConfig::new(brokers.clone());
                let partitions = arus_connectors::kafka::partition_count(&config, topic)?;
                let idle = idle_timeout.duration();
                Input::Kafka {
                    config,
                    topic: topic.clone(),
                    group: group.clone(),
                    partitions,
                    resume: *resume,
                    follow: follow.then_some(idle),
                }
            }
            SourceSpec::Embedded { dir, topic, group, .. } => {
                if !dir.join("topics").is_dir() {
                    return Err(RunError::Io {
                        path: dir.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no embedded log here"),
                    });
                }
                let log = EmbeddedLog::open(dir)?;
                let ends = log.end_offsets(topic)?;
                Input::Embedded { log: Arc::new(log), topic: topic.clone(), group: group.clone(), ends }
            }
        })
    }

    /// The partitions `worker` of `peers` reads.
    pub(crate) fn partitions(&self, worker: usize, peers: usize) -> Vec<u32> {
        let count = match self {
            Input::Jsonl { .. } | Input::Avro { .. } => 1,
            Input::Kafka { partitions, .. } => *partitions,
            Input::Embedded { ends, .. } => ends.len() as u32,
        };
        (0..count).filter(|p| *p as usize % peers == worker).collect()
    }

    /// A reader of `worker`'s partitions, from `restored` positions or the beginning.
    pub(crate) fn reader(
        &self,
        worker: usize,
        peers: usize,
        batch: usize,
        restored: Option<&SourceState>,
    ) -> Result<Option<Box<dyn RecordReader>>, RunError> {
        let mine = self.partitions(worker, peers);
        if mine.is_empty() {
            return Ok(None);
        }
        let from = |p: u32| restored.and_then(|s| s.positions.iter().find(|(q, _)| *q == p).and_then(|(_, o)| *o));
        let quantum = batch.div_ceil(mine.len()).max(1);
        Ok(Some(match self {
            Input::Jsonl { path } => {
                let mut file = File::open(path).map_err(|source| RunError::Io { path: path.clone(), source })?;
                let offset = from(0).unwrap_or(0);
                file.seek(std::io::SeekFrom::Start(offset))
                    .map_err(|source| RunError::Io { path: path.clone(), source })?;
                Box::new(JsonlReader {
                    path: path.clone(),
                    input: BufReader::with_capacity(1 << 20, file),
                    line: Vec::with_capacity(512),
                    line_number: restored.map_or(0, |s| s.lines),
                    offset,
                    eof: false,
                })
            }
            Input::Avro { path, topic } => {
                let skip = from(0).unwrap_or(0);
                let reader =
                    AvroContainerReader::open(path, topic, skip).map_err(|e| RunError::Invalid(e.to_string()))?;
                Box::new(AvroEventReader { path: path.clone(), reader, eof: false })
            }
            Input::Kafka { config, topic, group, resume, follow, .. } => {
                let positions: Vec<(u32, Option<u64>)> = mine.iter().map(|p| (*p, from(*p))).collect();
                let turn = restored.and_then(|s| s.turn);
                let reader =
                    BoundedPartitionReader::open_at_turn(config, group, topic, &positions, quantum, turn, *resume)?;
                let source = KafkaPartitionSource::new(reader, follow.is_some());
                Box::new(TopicReader::new(topic, Box::new(source), *follow))
            }
            Input::Embedded { log, topic, ends, .. } => {
                let partitions: Vec<(u32, u64, u64)> =
                    mine.iter().map(|p| (*p, from(*p).unwrap_or(0), ends[*p as usize])).collect();
                let turn = restored.and_then(|s| s.turn);
                let source = LogPartitionReader::open(log.clone(), topic, &partitions, quantum, turn);
                Box::new(TopicReader::new(topic, Box::new(source), None))
            }
        }))
    }

    /// Where completed checkpoints' positions are committed, for lag tools.
    pub(crate) fn on_complete(&self) -> Option<OnComplete> {
        match self {
            Input::Jsonl { .. } | Input::Avro { .. } => None,
            Input::Kafka { config, topic, group, .. } => {
                let (config, topic, group) = (config.clone(), topic.clone(), group.clone());
                Some(Box::new(move |sources: &[SourceState]| {
                    let positions: Vec<(u32, u64)> =
                        sources.iter().flat_map(|s| &s.positions).filter_map(|(p, o)| o.map(|o| (*p, o))).collect();
                    arus_connectors::kafka::commit_positions(&config, &group, &topic, &positions)
                        .map_err(|e| e.to_string())
                }))
            }
            Input::Embedded { log, topic, group, .. } => {
                let (log, topic, group) = (log.clone(), topic.clone(), group.clone());
                Some(Box::new(move |sources: &[SourceState]| {
                    for (p, o) in sources.iter().flat_map(|s| &s.positions) {
                        if let Some(o) = o {
                            log.commit(&group, &topic, *p, *o).map_err(|e| e.to_string())?;
                        }
                    }
                    log.flush().map_err(|e| e.to_string())
                }))
            }
        }
    }
}

/// A record as a reader hands it out, with its partition.
pub(crate) enum Record<'a> {
    /// As the transport carries it: a file's line, a topic record's value; with its partition
    /// and offset (a file's: the line's byte offset).
    Bytes(u32, u64, &'a [u8]),
    /// An event already decoded (an Avro container file holds events, not wire records).
    Event(u32, Box<arus_schemas::Event>),
}

/// Where a source's records come from: a transport yielding its records from one partition or
/// many, always in the same order for the same starting positions. Transport only: what the
/// records mean is for the reader's caller to decide.
pub(crate) trait RecordReader {
    /// The next record, waiting for it; `None` when every partition has been read to its end
    /// (or, following, nothing more has come for now).
    fn next(&mut self) -> Result<Option<Record<'_>>, RunError>;
    /// Whether every partition has been read to its end for good (a followed topic never is).
    fn finished(&self) -> bool;
    /// Whether it follows its topic (waits a little for each next record).
    fn following(&self) -> bool {
        false
    }
    /// Whether every partition has been read as far as it went when last asked (a followed
    /// topic is, between records).
    fn caught_up(&self) -> bool {
        self.finished()
    }
    /// Partitions read to their end, or idle (they no longer hold the watermark back).
    fn ended(&self) -> Vec<u32>;
    /// Per partition, the position of the next record (`None`: the beginning).
    fn positions(&self) -> Vec<(u32, Option<u64>)>;
    /// Lines read (files).
    fn lines(&self) -> u64 {
        0
    }
    /// Whose turn it is among the partitions, and how many records it has had in it.
    fn turn(&self) -> Option<(u32, usize)> {
        None
    }
    /// The last record's dead letter.
    fn dead_letter(&self, error_kind: &str, error: String, original: &[u8]) -> DeadLetter;
}

/// A JSON-lines file, one partition (0); positions are byte offsets.
struct JsonlReader {
    path: PathBuf,
    input: BufReader<File>,
    line: Vec<u8>,
    line_number: u64,
    offset: u64,
    eof: bool,
}

impl RecordReader for JsonlReader {
    fn next(&mut self) -> Result<Option<Record<'_>>, RunError> {
        loop {
            self.line.clear();
            let read = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|source| RunError::Io { path: self.path.clone(), source })?;
            if read == 0 {
                self.eof = true;
                return Ok(None);
            }
            self.offset += read as u64;
            self.line_number += 1;
            while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                self.line.pop();
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(Record::Bytes(0, self.offset - read as u64, &self.line)));
            }
        }
    }

    fn finished(&self) -> bool {
        self.eof
    }

    fn ended(&self) -> Vec<u32> {
        if self.eof { vec![0] } else { Vec::new() }
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        vec![(0, Some(self.offset))]
    }

    fn lines(&self) -> u64 {
        self.line_number
    }

    fn dead_letter(&self, error_kind: &str, error: String, original: &[u8]) -> DeadLetter {
        DeadLetter {
            source: self.path.display().to_string(),
            partition: None,
            offset: None,
            line: Some(self.line_number),
            timestamp_ms: None,
            error_kind: error_kind.to_owned(),
            error,
            key: None,
            original: original.to_vec(),
        }
    }
}

/// The events of an Avro container file of a topic (one partition, 0; positions are records).
struct AvroEventReader {
    path: PathBuf,
    reader: AvroContainerReader,
    eof: bool,
}

impl RecordReader for AvroEventReader {
    fn next(&mut self) -> Result<Option<Record<'_>>, RunError> {
        match self.reader.next_event().map_err(|e| RunError::Invalid(e.to_string()))? {
            None => {
                self.eof = true;
                Ok(None)
            }
            Some(event) => Ok(Some(Record::Event(0, Box::new(event)))),
        }
    }

    fn finished(&self) -> bool {
        self.eof
    }

    fn ended(&self) -> Vec<u32> {
        if self.eof { vec![0] } else { Vec::new() }
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        vec![(0, Some(self.reader.position()))]
    }

    fn dead_letter(&self, error_kind: &str, error: String, original: &[u8]) -> DeadLetter {
        DeadLetter {
            source: self.path.display().to_string(),
            partition: None,
            offset: Some(self.reader.position().saturating_sub(1)),
            line: None,
            timestamp_ms: None,
            error_kind: error_kind.to_owned(),
            error,
            key: None,
            original: original.to_vec(),
        }
    }
}

/// Some partitions of a topic, on the broker or in the embedded log, read through their
/// [`PartitionSource`]; following, each partition remembers when it last had a record, so that
/// one quiet for the idle timeout no longer holds the watermark back.
struct TopicReader {
    topic: String,
    source: Box<dyn PartitionSource>,
    /// Following, with this idle timeout.
    follow: Option<Duration>,
    /// When each partition last had a record (following).
    last_seen: std::collections::BTreeMap<u32, Instant>,
}

impl TopicReader {
    fn new(topic: &str, source: Box<dyn PartitionSource>, follow: Option<Duration>) -> Self {
        let now = Instant::now();
        let last_seen = source.positions().into_iter().map(|(p, _)| (p, now)).collect();
        TopicReader { topic: topic.to_owned(), source, follow, last_seen }
    }
}

impl RecordReader for TopicReader {
    fn next(&mut self) -> Result<Option<Record<'_>>, RunError> {
        let Some(record) = self.source.next()? else { return Ok(None) };
        if self.follow.is_some() {
            self.last_seen.insert(record.partition, Instant::now());
        }
        Ok(Some(Record::Bytes(record.partition, record.offset, record.value)))
    }

    fn finished(&self) -> bool {
        self.source.finished()
    }

    fn caught_up(&self) -> bool {
        self.source.positions().iter().all(|(p, _)| self.source.caught_up(*p))
    }

    fn following(&self) -> bool {
        self.follow.is_some()
    }

    fn ended(&self) -> Vec<u32> {
        match self.follow {
            // Caught up and quiet for the idle timeout: no longer holding the watermark back.
            Some(idle) => self
                .last_seen
                .iter()
                .filter(|(p, seen)| self.source.caught_up(**p) && seen.elapsed() >= idle)
                .map(|(p, _)| *p)
                .collect(),
            None => self.source.positions().into_iter().map(|(p, _)| p).filter(|p| self.source.caught_up(*p)).collect(),
        }
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.source.positions()
    }

    fn turn(&self) -> Option<(u32, usize)> {
        Some(self.source.turn())
    }

    fn dead_letter(&self, error_kind: &str, error: String, original: &[u8]) -> DeadLetter {
        let last = self.source.last();
        DeadLetter {
            source: self.topic.clone(),
            partition: last.map(|r| r.partition),
            offset: last.map(|r| r.offset),
            line: None,
            timestamp_ms: last.and_then(|r| r.timestamp_ms),
            error_kind: error_kind.to_owned(),
            error,
            key: last.and_then(|r| r.key.map(<[u8]>::to_vec)),
            original: original.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader reopened where another stopped, mid-turn, goes on with exactly the records the
    /// first would have read next: what makes batches after a restore the same as before.
    #[test]
    fn a_reopened_log_reader_goes_on_in_the_same_order() {
        let log = EmbeddedLog::new();
        log.create_topic("t", 3).expect("topic");
        for i in 0..60u32 {
            let key = format!("k{i}");
            log.produce("t", Some(key.as_bytes()), i.to_string().into_bytes(), arus_schemas::Timestamp(0))
                .expect("produce");
        }
        let ends = log.end_offsets("t").expect("ends");
        let input = Input::Embedded { log: Arc::new(log), topic: "t".to_owned(), group: "g".to_owned(), ends };
        let read_all = |reader: &mut Box<dyn RecordReader>| {
            let mut values = Vec::new();
            while let Some(Record::Bytes(_, _, bytes)) = reader.next().expect("read") {
                values.push(String::from_utf8_lossy(bytes).into_owned());
            }
            values
        };
        // Batches of 7 over 3 partitions: turns of 3 that end mid-batch.
        let mut whole = input.reader(0, 1, 7, None).expect("open").expect("a reader");
        let everything = read_all(&mut whole);
        assert_eq!(everything.len(), 60);
        for stop in [1, 4, 7, 23, 59] {
            let mut first = input.reader(0, 1, 7, None).expect("open").expect("a reader");
            for _ in 0..stop {
                first.next().expect("read");
            }
            let state = SourceState {
                positions: first.positions(),
                lines: 0,
                watermarks: arus_operators::Watermarks::new(0),
                next: 0,
                finished: false,
                turn: first.turn(),
            };
            let mut second = input.reader(0, 1, 7, Some(&state)).expect("open").expect("a reader");
            assert_eq!(read_all(&mut second), everything[stop..], "reopened after {stop} records");
        }
    }
}
