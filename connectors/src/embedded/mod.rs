//! The embedded log: topics of partitions of records, with offsets, in process memory.
//!
//! It follows Kafka's semantics where jobs can observe them: a record's partition is chosen
//! by Kafka's murmur2 partitioner from its key (so a key lands in the same partition number
//! here and on a broker with the same partition count), offsets within a partition start at
//! zero and grow by one, a fetch returns records in offset order, and producing to a topic
//! that was never created is an error (Tansu does not auto-create topics either).
//!
//! [`EmbeddedLog::open`] persists it to a folder, so a restarted process resumes: each
//! partition is an append-only file of length-prefixed frames, and consumer groups' committed
//! positions are a JSON file replaced atomically. Appends are buffered; [`EmbeddedLog::flush`]
//! makes everything appended and committed so far durable against a process crash (a torn
//! frame at the end of a file, from a crash mid-write, is dropped when the log is reopened).

mod reader;

pub use reader::LogPartitionReader;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
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
    /// A topic name Kafka would refuse (and that could escape the log's folder).
    #[error("invalid topic name {0:?}: use 1-249 of a-z, A-Z, 0-9, '.', '_', '-' (not '.' or '..')")]
    InvalidTopicName(String),
    /// Reading or writing the log's files failed.
    #[error("{path}: {message}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// A log file that is not one of ours.
    #[error("{path}: {message}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_error(path: &Path, error: std::io::Error) -> LogError {
    LogError::Io { path: path.to_owned(), message: error.to_string() }
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let valid = (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid { Ok(()) } else { Err(LogError::InvalidTopicName(name.to_owned())) }
}

struct Partition {
    records: Vec<Record>,
    /// The partition's file, when the log is persisted.
    file: Option<(PathBuf, BufWriter<File>)>,
}

struct Topic {
    name: Arc<str>,
    partitions: Vec<Mutex<Partition>>,
}

/// Committed positions: (group, topic, partition) → next offset to read.
type Positions = BTreeMap<(String, String, u32), u64>;

/// An in-process log. Cheap to share: clone the `Arc` it is usually held in.
#[derive(Default)]
pub struct EmbeddedLog {
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// The folder it persists to, if any.
    dir: Option<PathBuf>,
    positions: Mutex<Positions>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog").field("topics", &self.topic_names()).finish()
    }
}

impl EmbeddedLog {
    /// An empty log in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log persisted in `dir` (created if missing), with whatever an earlier process left there.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let topics_dir = dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(|e| io_error(&topics_dir, e))?;
        let mut topics = BTreeMap::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&topics_dir)
            .map_err(|e| io_error(&topics_dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| io_error(&topics_dir, e)))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for topic_dir in entries.into_iter().filter(|p| p.is_dir()) {
            let name = topic_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            validate_topic_name(&name)?;
            let count = std::fs::read_dir(&topic_dir).map_err(|e| io_error(&topic_dir, e))?.count() as u32;
            let name_arc: Arc<str> = Arc::from(name.as_str());
            let partitions = (0..count)
                .map(|p| load_partition(&topic_dir.join(format!("{p}.log")), &name_arc, p).map(Mutex::new))
                .collect::<Result<Vec<_>, _>>()?;
            if partitions.is_empty() {
                return Err(LogError::Corrupt {
                    path: topic_dir,
                    message: "a topic folder without partitions".to_owned(),
                });
            }
            topics.insert(name, Arc::new(Topic { name: name_arc, partitions }));
        }
        let positions_path = dir.join("positions.json");
        let positions = match std::fs::read_to_string(&positions_path) {
            Ok(text) => {
                let rows: Vec<(String, String, u32, u64)> = serde_json::from_str(&text)
                    .map_err(|e| LogError::Corrupt { path: positions_path.clone(), message: e.to_string() })?;
                rows.into_iter().map(|(g, t, p, o)| ((g, t, p), o)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Positions::new(),
            Err(e) => return Err(io_error(&positions_path, e)),
        };
        Ok(EmbeddedLog { topics: RwLock::new(topics), dir: Some(dir.to_owned()), positions: Mutex::new(positions) })
    }

    /// Makes everything appended and committed so far durable: flushes every partition file
    /// and replaces the positions file. Does nothing for a log in memory.
    pub fn flush(&self) -> Result<(), LogError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let topics: Vec<Arc<Topic>> = self.topics.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for topic in topics {
            for partition in &topic.partitions {
                let mut partition = partition.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((path, file)) = partition.file.as_mut() {
                    file.flush().map_err(|e| io_error(path, e))?;
                }
            }
        }
        let rows: Vec<(String, String, u32, u64)> = self
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((g, t, p), o)| (g.clone(), t.clone(), *p, *o))
            .collect();
        let path = dir.join("positions.json");
        let tmp = dir.join("positions.json.tmp");
        let text = serde_json::to_string(&rows)
            .map_err(|e| LogError::Corrupt { path: path.clone(), message: e.to_string() })?;
        std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))
    }

    /// Records that `group` has consumed `topic`'s `partition` up to (not including) `offset`.
    pub fn commit(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        let partitions = self.partitions(topic)?;
        if partition >= partitions {
            return Err(LogError::UnknownPartition { topic: topic.to_owned(), partition, partitions });
        }
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((group.to_owned(), topic.to_owned(), partition), offset);
        Ok(())
    }

    /// Where `group` resumes reading `topic`'s `partition`, if it committed a position.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// Creates a topic; creating it again with the same partition count does nothing.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), LogError> {
        validate_topic_name(name)?;
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
        let mut new = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let file = match &self.dir {
                Some(dir) => {
                    let topic_dir = dir.join("topics").join(name);
                    std::fs::create_dir_all(&topic_dir).map_err(|e| io_error(&topic_dir, e))?;
                    let path = topic_dir.join(format!("{p}.log"));
                    let file =
                        OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_error(&path, e))?;
                    Some((path, BufWriter::new(file)))
                }
                None => None,
            };
            new.push(Mutex::new(Partition { records: Vec::new(), file }));
        }
        topics.insert(name.to_owned(), Arc::new(Topic { name: Arc::from(name), partitions: new }));
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

    /// Whether the log has a topic (without listing them all).
    pub fn has_topic(&self, topic: &str) -> bool {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).contains_key(topic)
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
        let mut guard = t.partitions[partition as usize].lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let offset = state.records.len() as u64;
        if let Some((path, file)) = state.file.as_mut() {
            write_frame(file, timestamp, key, &value).map_err(|e| io_error(path, e))?;
        }
        state.records.push(Record {
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
        let records = &records.records;
        let start = (offset as usize).min(records.len());
        Ok(records[start..].iter().take(max).cloned().collect())
    }

    /// The next offset of every partition of a topic (its high-water marks).
    pub fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).records.len() as u64).collect())
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Best effort: an explicit flush() reports errors; dropping should not lose appends.
        let _ = self.flush();
    }
}

/// Frame: u32 length of the rest, i64 timestamp, i32 key length (−1: no key), key, value.
fn write_frame(out: &mut impl Write, timestamp: Timestamp, key: Option<&[u8]>, value: &[u8]) -> std::io::Result<()> {
    let key_len = key.map_or(-1, |k| k.len() as i32);
    let len = 8 + 4 + key.map_or(0, <[u8]>::len) + value.len();
    let len =
        u32::try_from(len).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&timestamp.0.to_le_bytes())?;
    out.write_all(&key_len.to_le_bytes())?;
    if let Some(k) = key {
        out.write_all(k)?;
    }
    out.write_all(value)
}

/// Reads a partition file, dropping a torn frame at its end, and opens it for appending.
fn load_partition(path: &Path, topic: &Arc<str>, partition: u32) -> Result<Partition, LogError> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_error(path, e))?;
    let corrupt = |message: String| LogError::Corrupt { path: path.to_owned(), message };
    let mut records = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 4 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if bytes.len() - at - 4 < len {
            break; // torn frame at the end: the process died mid-append
        }
        let frame = &bytes[at + 4..at + 4 + len];
        if len < 12 {
            return Err(corrupt(format!("frame at byte {at} is {len} bytes, shorter than its header")));
        }
        let timestamp = Timestamp(i64::from_le_bytes(frame[0..8].try_into().expect("8 bytes")));
        let key_len = i32::from_le_bytes(frame[8..12].try_into().expect("4 bytes"));
        let (key, value) = match key_len {
            -1 => (None, frame[12..].to_vec()),
            n if n >= 0 && 12 + n as usize <= len => {
                (Some(frame[12..12 + n as usize].to_vec()), frame[12 + n as usize..].to_vec())
            }
            n => return Err(corrupt(format!("frame at byte {at} has key length {n}"))),
        };
        records.push(Record { topic: topic.clone(), partition, offset: records.len() as u64, timestamp, key, value });
        at += 4 + len;
    }
    let file = OpenOptions::new().write(true).open(path).map_err(|e| io_error(path, e))?;
    file.set_len(at as u64).map_err(|e| io_error(path, e))?;
    let file = OpenOptions::new().append(true).open(path).map_err(|e| io_error(path, e))?;
    Ok(Partition { records, file: Some((path.to_owned(), BufWriter::new(file))) })
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
        assert!(!log.has_topic("t"));
        log.create_topic("t", 2).expect("create");
        assert!(log.has_topic("t") && !log.has_topic("nope"));
        assert!(matches!(log.fetch("t", 2, 0, 1), Err(LogError::UnknownPartition { .. })));
        assert!(matches!(log.create_topic("t", 3), Err(LogError::PartitionMismatch { .. })));
        assert_eq!(log.create_topic("t", 2), Ok(()));
        assert_eq!(log.create_topic("z", 0), Err(LogError::NoPartitions));
        for bad in ["", ".", "..", "../etc", "a/b", "a b", &"x".repeat(250)] {
            assert!(matches!(log.create_topic(bad, 1), Err(LogError::InvalidTopicName(_))), "{bad:?}");
        }
    }

    fn fill(log: &EmbeddedLog, from: u64, to: u64) {
        for i in from..to {
            let key = format!("k{}", i % 7);
            log.produce("claims", Some(key.as_bytes()), format!("v{i}").into_bytes(), Timestamp(i as i64))
                .expect("produce");
        }
        log.produce("claims", None, b"keyless".to_vec(), Timestamp(-1)).expect("keyless");
    }

    fn everything(log: &EmbeddedLog) -> Vec<Record> {
        (0..log.partitions("claims").expect("topic"))
            .flat_map(|p| log.fetch("claims", p, 0, usize::MAX).expect("fetch"))
            .collect()
    }

    #[test]
    fn a_persisted_log_resumes_where_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = {
            let log = EmbeddedLog::open(dir.path()).expect("open");
            log.create_topic("claims", 3).expect("create");
            fill(&log, 0, 100);
            log.commit("adjudication", "claims", 1, 5).expect("commit");
            log.flush().expect("flush");
            everything(&log)
        };
        let log = EmbeddedLog::open(dir.path()).expect("reopen");
        assert_eq!(log.topic_names(), vec!["claims".to_owned()]);
        assert_eq!(everything(&log), before);
        assert_eq!(log.committed("adjudication", "claims", 1), Some(5));
        assert_eq!(log.committed("adjudication", "claims", 0), None);
        let ends = log.end_offsets("claims").expect("offsets");
        let (p, o) = log.produce("claims", Some(b"k1"), b"after".to_vec(), Timestamp(0)).expect("produce");
        assert_eq!(o, ends[p as usize], "offsets continue after a restart");
    }

    #[test]
    fn a_torn_frame_at_the_end_is_dropped_on_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = {
            let log = EmbeddedLog::open(dir.path()).expect("open");
            log.create_topic("claims", 2).expect("create");
            fill(&log, 0, 50);
            log.flush().expect("flush");
            everything(&log)
        };
        let file = dir.path().join("topics/claims/0.log");
        let mut f = OpenOptions::new().append(true).open(&file).expect("partition file");
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).expect("a torn frame");
        drop(f);
        let log = EmbeddedLog::open(dir.path()).expect("reopen");
        assert_eq!(everything(&log), before);
        let end = log.end_offsets("claims").expect("offsets")[0];
        log.produce("claims", None, b"next".to_vec(), Timestamp(0)).expect("produce to partition 0");
        log.flush().expect("flush");
        drop(log);
        let log = EmbeddedLog::open(dir.path()).expect("reopen again");
        let partition0 = log.fetch("claims", 0, end, 10).expect("fetch");
        assert_eq!(partition0.len(), 1);
        assert_eq!((partition0[0].offset, partition0[0].value.as_slice()), (end, &b"next"[..]));
    }
}
