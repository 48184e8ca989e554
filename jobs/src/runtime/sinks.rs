//! Where a run's outputs go: files of lines (CSV, JSON lines) and topics (dead letters to
//! `<topic>.dlq`, on the broker or in the embedded log), all effectively-once with checkpoints.
//!
//! Every sink runs on worker 0 and writes a stamp once the frontier has passed it, its records
//! sorted, so what it writes depends only on the input. At a checkpoint it makes what it wrote
//! durable and reports how far it got ([`SinkPosition`]); on restore it goes back there: a file
//! is cut back to its saved length; a topic cannot be cut, so the sink reads back what it wrote
//! after the saved offsets and does not write those records again (they carry stable event
//! ids; ids read back but not met again by the next checkpoint are saved in it, so they stay
//! skipped). That is exactly-once without Kafka transactions, which the local broker lacks.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arus_connectors::transport::TopicSink;
use arus_operators::Time;
use arus_schemas::{Event, Timestamp};
use timely::ExchangeData;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;

use super::checkpoint::SinkPosition;
use super::{RunError, Shared, fail, report};

/// What the operators of a worker share.
pub(crate) struct WorkerContext<R> {
    pub leader: bool,
    pub coordinator: Option<Arc<super::checkpoint::Coordinator>>,
    pub metrics: Option<Arc<super::metrics::Metrics>>,
    pub shared: Arc<std::sync::Mutex<Shared<R>>>,
    /// The source follows its topic: outputs are handed on as they are written.
    pub follow: bool,
    /// A request to stop early (the sources end their input).
    pub shutdown: super::Shutdown,
}

/// A record that could not be decoded or validated, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// File or topic.
    pub source: String,
    /// Partition (topics).
    pub partition: Option<u32>,
    /// Offset (topics).
    pub offset: Option<u64>,
    /// Line number, from 1 (files).
    pub line: Option<u64>,
    /// The record's timestamp (ms), where the transport has one.
    pub timestamp_ms: Option<i64>,
    /// `decode` (not a claim at all) or `validate` (a claim with a bad field).
    pub error_kind: String,
    /// Why it was refused.
    pub error: String,
    /// The record's key, untouched.
    pub key: Option<Vec<u8>>,
    /// The record, untouched.
    pub original: Vec<u8>,
}

impl DeadLetter {
    /// A stable id: the same bad record always gets the same one.
    pub fn event_id(&self) -> String {
        match (self.partition, self.offset, self.line) {
            (Some(p), Some(o), _) => format!("dlq:{}:{p}:{o}", self.source),
            (_, _, Some(line)) => format!("dlq:{}:line:{line}", self.source),
            _ => format!("dlq:{}", self.source),
        }
    }

    /// The `DeadLetter` envelope of the contract.
    pub fn to_event(&self) -> Event {
        Event::DeadLetter(arus_schemas::events::DeadLetter {
            event_id: self.event_id(),
            event_time: Timestamp(self.timestamp_ms.unwrap_or(0)),
            source_topic: self.source.clone(),
            source_partition: self.partition.map_or(-1, |p| p as i32),
            source_offset: self.offset.map_or(-1, |o| o as i64),
            error_kind: self.error_kind.clone(),
            error: self.error.clone(),
            original_key: self.key.clone(),
            original_value: self.original.clone(),
        })
    }
}

/// The sink end of an output: writes stamps' records, saves and finishes.
pub(crate) trait Sink<T>: 'static {
    /// Writes one stamp's records (sorted); returns how many lines or records that made.
    fn write(&mut self, records: &[T]) -> Result<u64, RunError>;
    /// Makes everything written so far durable and says how far that is.
    fn checkpoint(&mut self) -> Result<SinkPosition, RunError>;
    /// Makes everything written durable at the end of the run.
    fn finish(&mut self) -> Result<(), RunError>;
    /// Hands what was written on to readers now (a run that follows its input never ends).
    fn flush_now(&mut self) -> Result<(), RunError> {
        Ok(())
    }
}

/// A file of lines a sink writes.
pub(crate) struct LineFile {
    /// No file: lines are only counted.
    pub path: Option<PathBuf>,
    /// First line of a new file.
    pub header: Option<&'static str>,
    /// Created only once there is a line to write.
    pub lazy: bool,
}

/// Lines to a file; `format` turns a record into a line, or says it makes none.
pub(crate) struct FileSink<T> {
    output: Option<Output>,
    format: fn(&T, &mut String) -> bool,
    text: String,
}

impl<T> FileSink<T> {
    /// Opens the file: cut back to the restored position, or new.
    pub fn open(
        file: &LineFile,
        format: fn(&T, &mut String) -> bool,
        restored: Option<SinkPosition>,
    ) -> Result<Self, RunError> {
        let restored = match restored {
            None => None,
            Some(SinkPosition::Bytes(bytes)) => Some(bytes),
            Some(other) => {
                return Err(RunError::Invalid(format!(
                    "the checkpoint holds {other:?} for a file sink: it was taken with another sink; delete the \
                     checkpoint directory to start over"
                )));
            }
        };
        Ok(FileSink { output: Output::open(file, restored)?, format, text: String::with_capacity(1 << 16) })
    }
}

impl<T: 'static> Sink<T> for FileSink<T> {
    fn write(&mut self, records: &[T]) -> Result<u64, RunError> {
        self.text.clear();
        let mut lines = 0;
        for record in records {
            lines += u64::from((self.format)(record, &mut self.text));
        }
        if let Some(output) = self.output.as_mut() {
            output.write(&self.text)?;
        }
        Ok(lines)
    }

    fn checkpoint(&mut self) -> Result<SinkPosition, RunError> {
        let Some(output) = self.output.as_mut() else { return Ok(SinkPosition::Bytes(0)) };
        output.flush(true)?;
        Ok(SinkPosition::Bytes(output.bytes))
    }

    fn finish(&mut self) -> Result<(), RunError> {
        self.output.as_mut().map_or(Ok(()), |o| o.flush(false))
    }

    fn flush_now(&mut self) -> Result<(), RunError> {
        self.output.as_mut().map_or(Ok(()), |o| o.flush(false))
    }
}

/// An open sink file and how many bytes it holds.
struct Output {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    bytes: u64,
    header: Option<&'static str>,
}

impl Output {
    fn open(file: &LineFile, restored: Option<u64>) -> Result<Option<Self>, RunError> {
        let Some(path) = file.path.clone() else { return Ok(None) };
        let io = |source| RunError::Io { path: path.clone(), source };
        let mut output = Output { path: path.clone(), writer: None, bytes: 0, header: file.header };
        match restored {
            Some(bytes) if bytes > 0 || path.exists() => {
                let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                if len < bytes {
                    return Err(RunError::Invalid(format!(
                        "{}: {len} bytes, but the checkpoint says it had {bytes}: the output was changed since; \
                         delete the checkpoint directory to start over",
                        path.display()
                    )));
                }
                f.set_len(bytes).map_err(io)?;
                f.seek(std::io::SeekFrom::Start(bytes)).map_err(io)?;
                output.writer = Some(BufWriter::with_capacity(1 << 20, f));
                output.bytes = bytes;
                output.header = None;
            }
            _ if file.lazy => {
                // Nothing from an earlier run may stay behind.
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
            }
            _ => output.create()?,
        }
        Ok(Some(output))
    }

    fn create(&mut self) -> Result<(), RunError> {
        let io = |source| RunError::Io { path: self.path.clone(), source };
        let mut writer = BufWriter::with_capacity(1 << 20, File::create(&self.path).map_err(io)?);
        if let Some(header) = self.header.take() {
            writeln!(writer, "{header}").map_err(io)?;
            self.bytes = header.len() as u64 + 1;
        }
        self.writer = Some(writer);
        Ok(())
    }

    fn write(&mut self, text: &str) -> Result<(), RunError> {
        if text.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            self.create()?;
        }
        let writer = self.writer.as_mut().expect("created above");
        writer.write_all(text.as_bytes()).map_err(|source| RunError::Io { path: self.path.clone(), source })?;
        self.bytes += text.len() as u64;
        Ok(())
    }

    /// Flushes and, when `durable`, syncs to disk.
    fn flush(&mut self, durable: bool) -> Result<(), RunError> {
        let io = |source| RunError::Io { path: self.path.clone(), source };
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().map_err(io)?;
            if durable {
                writer.get_ref().sync_data().map_err(io)?;
            }
        }
        Ok(())
    }
}

/// Ids of dead letters already in a topic after the restored positions: not to be sent again.
fn read_back_ids(records: impl IntoIterator<Item = Vec<u8>>) -> HashSet<String> {
    records
        .into_iter()
        .filter_map(|value| match arus_schemas::wire::decode(&value) {
            Ok(Event::DeadLetter(letter)) => Some(letter.event_id),
            _ => None,
        })
        .collect()
}

/// Encodes a dead letter into `buffer` unless it was read back as already written (then it is
/// skipped, once): whether to send it.
fn encode_new(letter: &DeadLetter, already: &mut HashSet<String>, buffer: &mut Vec<u8>) -> Result<bool, RunError> {
    if already.remove(&letter.event_id()) {
        return Ok(false);
    }
    buffer.clear();
    arus_schemas::wire::encode_into(&letter.to_event(), buffer)
        .map_err(|e| RunError::Internal(format!("encoding a dead letter: {e}")))?;
    Ok(true)
}

/// Ids read back and not yet met again, in order (they stay skipped after the next restore).
fn pending(already: &HashSet<String>) -> Vec<String> {
    let mut ids: Vec<String> = already.iter().cloned().collect();
    ids.sort_unstable();
    ids
}

/// A topic sink's restored offsets per partition and pending ids.
type RestoredTopic = (Vec<(u32, u64)>, Vec<String>);

fn restored_offsets(restored: Option<SinkPosition>) -> Result<RestoredTopic, RunError> {
    match restored {
        None => Ok((Vec::new(), Vec::new())),
        Some(SinkPosition::Topic { offsets, pending }) => Ok((offsets, pending)),
        Some(other) => Err(RunError::Invalid(format!(
            "the checkpoint holds {other:?} for a topic sink: it was taken with another sink; delete the checkpoint \
             directory to start over"
        ))),
    }
}

/// Dead letters to `<topic>.dlq` as `DeadLetter` events in the wire format, through a
/// [`TopicSink`] (the broker, or the embedded log).
pub(crate) struct TopicDeadLetters {
    topic: String,
    sink: Box<dyn TopicSink>,
    /// Written before a crash, after the checkpoint: skipped once each.
    already: HashSet<String>,
    /// Positions of the restored checkpoint, for partitions not written since.
    restored: Vec<(u32, u64)>,
    buffer: Vec<u8>,
}

impl TopicDeadLetters {
    /// Creates the topic if needed and reads back what was written after `restored`
    /// (everything, for partitions without a position). A transactional sink makes what is
    /// written visible at each checkpoint, and reads back committed records only.
    pub fn open(sink: Box<dyn TopicSink>, topic: String, restored: Option<SinkPosition>) -> Result<Self, RunError> {
        let (restored, pending) = restored_offsets(restored)?;
        sink.ensure_topic(&topic, arus_schemas::topics::DLQ_SPEC.partitions)?;
        let mut values = Vec::new();
        sink.read_back(&topic, &restored, &mut |value| values.push(value.to_vec()))?;
        let mut already = read_back_ids(values);
        already.extend(pending);
        Ok(TopicDeadLetters { topic, sink, already, restored, buffer: Vec::new() })
    }
}

impl Sink<DeadLetter> for TopicDeadLetters {
    fn write(&mut self, records: &[DeadLetter]) -> Result<u64, RunError> {
        let mut written = 0;
        for letter in records {
            if !encode_new(letter, &mut self.already, &mut self.buffer)? {
                continue;
            }
            let key = letter.key.as_deref().unwrap_or(letter.source.as_bytes());
            let timestamp = Timestamp(letter.timestamp_ms.unwrap_or(0));
            self.sink.send(&self.topic, key, &self.buffer, timestamp)?;
            written += 1;
        }
        Ok(written)
    }

    fn checkpoint(&mut self) -> Result<SinkPosition, RunError> {
        self.sink.flush()?;
        let mut positions = self.restored.clone();
        for (partition, offset) in self.sink.delivered(&self.topic)? {
            match positions.iter_mut().find(|(p, _)| *p == partition) {
                Some(entry) => entry.1 = entry.1.max(offset),
                None => positions.push((partition, offset)),
            }
        }
        positions.sort_unstable();
        Ok(SinkPosition::Topic { offsets: positions, pending: pending(&self.already) })
    }

    fn finish(&mut self) -> Result<(), RunError> {
        Ok(self.sink.flush()?)
    }
}

/// Writes a stream through `sink` on worker 0 (other workers pass `None`): each stamp once the
/// frontier has passed it, its records sorted. With checkpoints, the sink saves its position
/// once everything stamped before a checkpoint's time is written and durable.
pub(crate) fn sink<T: ExchangeData + Ord, R: 'static>(
    stream: timely::dataflow::StreamVec<'_, Time, T>,
    name: &'static str,
    mut sink: Option<Box<dyn Sink<T>>>,
    count: fn(&mut R, u64),
    context: &WorkerContext<R>,
) {
    let WorkerContext { leader, coordinator, metrics, shared, follow, .. } = context;
    let (leader, shared, metrics, follow) = (*leader, shared.clone(), metrics.clone(), *follow);
    let coordinator = coordinator.clone().filter(|_| leader);
    let mut pending: std::collections::BTreeMap<Time, Vec<T>> = Default::default();
    let mut written = 0u64;
    stream.sink(Exchange::new(|_: &T| 0), name, move |(input, frontier)| {
        input.for_each_stamp(|capability, data| {
            let time = *capability.least().expect("a totally ordered stamp has a least element");
            let entry = pending.entry(time).or_default();
            for batch in data {
                entry.append(batch);
            }
        });
        let mut due = coordinator.as_ref().and_then(|c| c.sink_due(name));
        let mut wrote = false;
        let save = |sink: &mut Option<Box<dyn Sink<T>>>, (epoch, _at): (u64, Time)| {
            let Some(c) = &coordinator else { return };
            match sink.as_mut().map(|s| s.checkpoint()).transpose() {
                Ok(position) => c.sink_saved(epoch, name, position.unwrap_or(SinkPosition::Bytes(0))),
                Err(error) => c.fail(format!("sink {name}: {error}")),
            }
        };
        while let Some(entry) = pending.first_entry() {
            let time = *entry.key();
            if frontier.less_equal(&time) {
                break;
            }
            if let Some(checkpoint) = due.filter(|(_, at)| *at <= time) {
                save(&mut sink, checkpoint);
                due = None;
            }
            let mut records = entry.remove();
            records.sort_unstable();
            wrote = true;
            let Some(s) = sink.as_mut() else { continue };
            match s.write(&records) {
                Ok(n) => {
                    written += n;
                    if let Some(m) = &metrics {
                        m.sink_lines(name, n);
                    }
                }
                Err(error) => {
                    fail(&shared, error);
                    sink = None;
                }
            }
        }
        if let Some(checkpoint) = due.filter(|(_, at)| !frontier.less_than(at)) {
            save(&mut sink, checkpoint);
        }
        if follow
            && wrote
            && let Some(s) = sink.as_mut()
            && let Err(error) = s.flush_now()
        {
            fail(&shared, error);
            sink = None;
        }
        if frontier.is_empty() && leader {
            if let Some(mut s) = sink.take()
                && let Err(error) = s.finish()
            {
                fail(&shared, error);
            }
            report(&shared, |r| count(r, written));
            written = 0;
        }
    });
}

/// The dead letters of a job that reads topics: each record that is not an event of the
/// contract goes to `<its topic>.dlq`, next to the topic it came from (on the broker, or in the
/// embedded log), as the contract's `DeadLetter`. Shared by the workers of a process; a
/// dead-letter topic is opened (created if missing, and read back) when its first letter
/// comes. The jobs that read topics read them again from the start on every run, and a dead
/// letter's id names the record it holds (topic, partition, offset): a letter already in its
/// topic is not written again, so each bad record is there once however often the job reruns.
pub(crate) struct DeadLetterTopics {
    /// A sink for each dead-letter topic, made when it is first needed.
    open: Box<dyn Fn() -> Result<Box<dyn TopicSink>, RunError> + Send + Sync>,
    topics: std::sync::Mutex<std::collections::BTreeMap<String, TopicDeadLetters>>,
}

impl DeadLetterTopics {
    /// The dead-letter topics of `inputs` (none for inputs that are not topics).
    pub fn of(inputs: &[super::input::Input]) -> Result<Option<Arc<Self>>, RunError> {
        use super::input::Input;
        let open: Box<dyn Fn() -> Result<Box<dyn TopicSink>, RunError> + Send + Sync> = match inputs
            .iter()
            .find(|i| matches!(i, Input::Kafka { .. } | Input::Embedded { .. }))
        {
            Some(Input::Kafka { config, .. }) => {
                let config = config.clone();
                let codec = arus_schemas::topics::DLQ_SPEC.compression;
                Box::new(move || {
                    let topics = arus_connectors::kafka::KafkaTopics::new(&config, codec)?;
                    Ok(Box::new(topics) as Box<dyn TopicSink>)
                })
            }
            Some(Input::Embedded { log, .. }) => {
                let log = log.clone();
                Box::new(move || Ok(Box::new(arus_connectors::transport::LogTopics(log.clone())) as Box<dyn TopicSink>))
            }
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(DeadLetterTopics { open, topics: Default::default() })))
    }

    /// Sends `letter` to the dead-letter topic of its source (unless it is there already).
    pub fn send(&self, letter: &DeadLetter) -> Result<(), RunError> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let topic = arus_schemas::topics::dlq_topic(&letter.source);
        let sink = match topics.entry(topic) {
            std::collections::btree_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let sink = TopicDeadLetters::open((self.open)()?, slot.key().clone(), None)?;
                slot.insert(sink)
            }
        };
        sink.write(std::slice::from_ref(letter))?;
        Ok(())
    }

    /// Makes every letter sent durable.
    pub fn flush(&self) -> Result<(), RunError> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        for sink in topics.values_mut() {
            sink.finish()?;
        }
        Ok(())
    }
}
