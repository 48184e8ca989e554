//! Runs a pipeline spec on timely workers.
//!
//! The JSON-lines source is read, in order, by worker 0, in batches: each batch's records are
//! sent at the watermark reached before it (bounded out-of-orderness over the file), which is
//! the timely time, so the frontier carries the watermark. Records are exchanged by key to
//! every worker for windowing; results come back to worker 0, which writes them in timely-time
//! order, sorted within a time, so the output file is the same for any number of workers.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_operators::{Time, Watermarks};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::operator::source;

use crate::provider_windows::{self, Claim, LateClaim, ProviderWindow, ProviderWindowsConfig, parse_claim};
use crate::spec::{JobKind, PipelineSpec, SinkSpec, SourceSpec};
use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaError, RawRecord};

/// How to spread the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// Worker threads in this process.
    Local {
        /// Threads.
        workers: usize,
    },
    /// One process of a timely cluster.
    Process {
        /// Threads per process.
        workers: usize,
        /// This process's index in `addresses`.
        process: usize,
        /// `host:port` of every process, in order.
        addresses: Vec<String>,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Input lines decoded into records.
    pub records: u64,
    /// Input lines that could not be decoded (in the dead-letter file).
    pub dead_letters: u64,
    /// Rows written to the sink (window results and corrections).
    pub rows: u64,
    /// Records too late to count.
    pub late: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// A run that failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Timely could not start.
    #[error("starting workers: {0}")]
    Timely(String),
    /// The Kafka source failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

#[derive(Default)]
struct Shared {
    report: RunReport,
    error: Option<RunError>,
    /// Dead letters of every source worker of this process, in one file.
    dead_letters: Option<BufWriter<File>>,
}

/// Appends an undecodable record, with its error, to the dead-letter file.
fn dead_letter(shared: &Mutex<Shared>, path: &std::path::Path, letter: serde_json::Value) {
    let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
    let state = &mut *guard;
    state.report.dead_letters += 1;
    if state.dead_letters.is_none() {
        match File::create(path) {
            Ok(file) => state.dead_letters = Some(BufWriter::new(file)),
            Err(source) => {
                state.error.get_or_insert(RunError::Io { path: path.to_owned(), source });
                return;
            }
        }
    }
    if let Some(writer) = state.dead_letters.as_mut()
        && let Err(source) = writeln!(writer, "{letter}")
    {
        state.error.get_or_insert(RunError::Io { path: path.to_owned(), source });
    }
}

fn fail(shared: &Mutex<Shared>, error: RunError) {
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.error.get_or_insert(error);
}

/// Runs the pipeline to the end of its input.
pub fn run(spec: &PipelineSpec, cluster: &Cluster) -> Result<RunReport, RunError> {
    let JobKind::ProviderWindows = spec.job;
    let SinkSpec::Csv { path: sink_path, late_path, .. } = spec.sink.clone();
    let dead_letter_path = spec_dead_letter_path(spec);
    // Fail before starting workers when the input is missing.
    let kafka_partitions = match &spec.source {
        SourceSpec::Jsonl { path, .. } => {
            File::open(path).map_err(|source| RunError::Io { path: path.clone(), source })?;
            0
        }
        SourceSpec::Kafka { brokers, topic, .. } => {
            arus_connectors::kafka::partition_count(&KafkaConfig::new(brokers.clone()), topic)?
        }
    };
    let source_spec = spec.source.clone();
    let job = ProviderWindowsConfig {
        windows: spec.window_spec().expect("validated spec"),
        allowed_lateness_ms: spec.allowed_lateness_ms(),
    };
    let out_of_orderness = spec.out_of_orderness_ms();
    let config = match cluster.clone() {
        Cluster::Local { workers } => timely::Config::process(workers.max(1)),
        Cluster::Process { workers, process, addresses } => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers.max(1),
                process,
                addresses,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
    };
    let shared = Arc::new(Mutex::new(Shared::default()));
    let started = Instant::now();
    let worker_shared = shared.clone();
    let guards = timely::execute(config, move |worker| {
        let shared = worker_shared.clone();
        let leader = worker.index() == 0;
        let (sink_path, late_path, dead_letter_path) = (sink_path.clone(), late_path.clone(), dead_letter_path.clone());
        let (index, peers) = (worker.index(), worker.peers());
        let source_spec = source_spec.clone();
        worker.dataflow::<Time, _, _>(|scope| {
            let claims = match source_spec {
                SourceSpec::Jsonl { path, batch_lines } => {
                    let settings =
                        SourceSettings { batch: batch_lines, out_of_orderness_ms: out_of_orderness, dead_letter_path };
                    // Worker 0 reads the file; the records are exchanged by key.
                    let reader = if leader {
                        match File::open(&path) {
                            Ok(file) => {
                                let input = BufReader::with_capacity(1 << 20, file);
                                Some((
                                    JsonlReader {
                                        path,
                                        input,
                                        line: Vec::with_capacity(512),
                                        line_number: 0,
                                        eof: false,
                                    },
                                    vec![0],
                                ))
                            }
                            Err(source) => {
                                fail(&shared, RunError::Io { path, source });
                                None
                            }
                        }
                    } else {
                        None
                    };
                    claims_source(scope, "ClaimsJsonlSource", reader, settings, shared.clone())
                }
                SourceSpec::Kafka { brokers, topic, group, batch_records } => {
                    let settings = SourceSettings {
                        batch: batch_records,
                        out_of_orderness_ms: out_of_orderness,
                        dead_letter_path,
                    };
                    // Partitions are dealt round-robin over every worker of every process.
                    let mine: Vec<u32> = (0..kafka_partitions).filter(|p| *p as usize % peers == index).collect();
                    let reader = if mine.is_empty() {
                        None
                    } else {
                        match BoundedPartitionReader::open(&KafkaConfig::new(brokers), &group, &topic, &mine) {
                            Ok(reader) => {
                                Some((KafkaReader { topic, reader, partitions: mine.clone(), last: None }, mine))
                            }
                            Err(error) => {
                                fail(&shared, error.into());
                                None
                            }
                        }
                    };
                    claims_source(scope, "ClaimsKafkaSource", reader, settings, shared.clone())
                }
            };
            let (changes, late) = provider_windows::build(claims, &job);
            csv_sink(changes, leader, sink_path, shared.clone());
            late_sink(late, leader, late_path, shared.clone());
        });
        while worker.step_or_park(None) {}
    })
    .map_err(RunError::Timely)?;
    drop(guards);
    let mut shared =
        Arc::try_unwrap(shared).ok().expect("workers finished").into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(mut writer) = shared.dead_letters.take()
        && let Err(source) = writer.flush()
    {
        shared.error.get_or_insert(RunError::Io { path: spec_dead_letter_path(spec), source });
    }
    if let Some(error) = shared.error.take() {
        return Err(error);
    }
    shared.report.elapsed = started.elapsed();
    Ok(shared.report)
}

/// Where a source's records come from: a transport yielding raw bytes, one partition or many.
trait ClaimReader {
    /// The next record's partition and bytes, or `None` when nothing is there right now.
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError>;
    /// Whether every partition has been read to its end.
    fn finished(&self) -> bool;
    /// Partitions read to their end (they no longer hold the watermark back).
    fn ended(&self) -> Vec<u32>;
    /// Where the last record came from, for its dead letter.
    fn position(&self) -> serde_json::Value;
}

/// A JSON-lines file, one partition (0).
struct JsonlReader {
    path: PathBuf,
    input: BufReader<File>,
    line: Vec<u8>,
    line_number: u64,
    eof: bool,
}

impl ClaimReader for JsonlReader {
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
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
            self.line_number += 1;
            while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                self.line.pop();
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((0, &self.line)));
            }
        }
    }

    fn finished(&self) -> bool {
        self.eof
    }

    fn ended(&self) -> Vec<u32> {
        if self.eof { vec![0] } else { Vec::new() }
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "source": self.path.display().to_string(), "line": self.line_number })
    }
}

/// Some partitions of a Kafka topic.
struct KafkaReader {
    topic: String,
    reader: BoundedPartitionReader,
    partitions: Vec<u32>,
    last: Option<RawRecord>,
}

impl ClaimReader for KafkaReader {
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        // Wait a little for data while partitions are still being read, so an idle worker
        // does not spin; once all are done, return at once.
        let wait = std::time::Duration::from_millis(if self.reader.finished() { 0 } else { 10 });
        self.last = self.reader.poll(wait)?;
        Ok(self.last.as_ref().map(|r| (r.partition, r.value.as_slice())))
    }

    fn finished(&self) -> bool {
        self.reader.finished()
    }

    fn ended(&self) -> Vec<u32> {
        self.partitions.iter().copied().filter(|p| !self.reader.unfinished().any(|u| u == *p)).collect()
    }

    fn position(&self) -> serde_json::Value {
        let (partition, offset) = self.last.as_ref().map_or((0, -1), |r| (r.partition, r.offset));
        serde_json::json!({ "source": self.topic, "partition": partition, "offset": offset })
    }
}

/// A source of claims from a reader: each step reads up to `batch` records and sends them at
/// the watermark reached before the step (the minimum over the reader's partitions of the
/// highest event time seen minus the out-of-orderness, partitions read to their end excluded),
/// which is the timely time, so the frontier carries the watermark. Undecodable records go to
/// the dead-letter file. A worker without a reader sends nothing.
fn claims_source<'scope, R: ClaimReader + 'static>(
    scope: timely::dataflow::Scope<'scope, Time>,
    name: &str,
    reader: Option<(R, Vec<u32>)>,
    settings: SourceSettings,
    shared: Arc<Mutex<Shared>>,
) -> timely::dataflow::StreamVec<'scope, Time, Claim> {
    source(scope, name, move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut watermarks = Watermarks::new(settings.out_of_orderness_ms);
        let mut capability = Some(capability);
        let mut reader = match reader {
            Some((reader, partitions)) if !partitions.is_empty() => {
                partitions.iter().for_each(|p| watermarks.add_partition(*p));
                Some(reader)
            }
            _ => {
                capability = None;
                None
            }
        };
        let mut records = 0u64;
        move |output| {
            let (Some(cap), Some(input)) = (capability.as_mut(), reader.as_mut()) else { return };
            let time = *cap.time();
            let mut failed = false;
            {
                let mut session = output.session(&*cap);
                for _ in 0..settings.batch {
                    let (partition, bytes) = match input.next() {
                        Ok(Some(record)) => record,
                        Ok(None) => break,
                        Err(error) => {
                            fail(&shared, error);
                            failed = true;
                            break;
                        }
                    };
                    match parse_claim(bytes) {
                        Ok(claim) => {
                            watermarks.observe(partition, claim.1);
                            session.give(claim);
                            records += 1;
                        }
                        Err(error) => {
                            let original = String::from_utf8_lossy(bytes).into_owned();
                            let mut letter = input.position();
                            letter["error"] = error.to_string().into();
                            letter["original"] = original.into();
                            dead_letter(&shared, &settings.dead_letter_path, letter);
                        }
                    }
                }
            }
            input.ended().into_iter().for_each(|p| watermarks.set_idle(p));
            if failed || input.finished() {
                shared.lock().unwrap_or_else(|e| e.into_inner()).report.records += records;
                capability = None;
                reader = None;
            } else {
                cap.downgrade(&watermarks.current().max(time + 1));
                activator.activate();
            }
        }
    })
}

/// Settings every source shares.
#[derive(Clone)]
struct SourceSettings {
    batch: usize,
    out_of_orderness_ms: u64,
    dead_letter_path: PathBuf,
}

fn csv_sink(
    changes: timely::dataflow::StreamVec<'_, Time, ProviderWindow>,
    leader: bool,
    path: PathBuf,
    shared: Arc<Mutex<Shared>>,
) {
    let mut writer = None;
    if leader {
        match File::create(&path) {
            Ok(file) => {
                let mut w = BufWriter::with_capacity(1 << 20, file);
                if let Err(source) = writeln!(w, "{}", provider_windows::CSV_HEADER) {
                    fail(&shared, RunError::Io { path: path.clone(), source });
                }
                writer = Some(w);
            }
            Err(source) => fail(&shared, RunError::Io { path: path.clone(), source }),
        }
    }
    let mut pending: std::collections::BTreeMap<Time, Vec<ProviderWindow>> = Default::default();
    let mut text = String::with_capacity(1 << 16);
    let mut rows = 0u64;
    changes.sink(Exchange::new(|_: &ProviderWindow| 0), "CsvSink", move |(input, frontier)| {
        input.for_each_stamp(|capability, data| {
            let time = *capability.least().expect("a totally ordered stamp has a least element");
            let entry = pending.entry(time).or_default();
            for batch in data {
                entry.append(batch);
            }
        });
        while let Some(entry) = pending.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let mut changes = entry.remove();
            changes.sort_by(|a, b| (a.window, &a.key, a.diff).cmp(&(b.window, &b.key, b.diff)));
            text.clear();
            for change in changes.iter().filter(|c| c.diff > 0) {
                provider_windows::csv_row(change, &mut text);
                rows += 1;
            }
            if let Some(w) = writer.as_mut()
                && let Err(source) = w.write_all(text.as_bytes())
            {
                fail(&shared, RunError::Io { path: path.clone(), source });
                writer = None;
            }
        }
        if frontier.is_empty()
            && let Some(mut w) = writer.take()
        {
            if let Err(source) = w.flush() {
                fail(&shared, RunError::Io { path: path.clone(), source });
            }
            shared.lock().unwrap_or_else(|e| e.into_inner()).report.rows = rows;
        }
    });
}

fn late_sink(
    late: timely::dataflow::StreamVec<'_, Time, LateClaim>,
    leader: bool,
    path: Option<PathBuf>,
    shared: Arc<Mutex<Shared>>,
) {
    let mut writer = match (leader, &path) {
        (true, Some(p)) => match File::create(p) {
            Ok(f) => Some(BufWriter::new(f)),
            Err(source) => {
                fail(&shared, RunError::Io { path: p.clone(), source });
                None
            }
        },
        _ => None,
    };
    let mut count = 0u64;
    late.sink(
        Exchange::new(|_: &arus_operators::LateRecord<String, (String, i64)>| 0),
        "LateSink",
        move |(input, frontier)| {
            input.for_each_stamp(|_, data| {
                for batch in data {
                    for record in batch.drain(..) {
                        count += 1;
                        if let Some(w) = writer.as_mut() {
                            let line = serde_json::json!({
                                "provider_id": record.key,
                                "event_time_ms": record.event_time,
                                "member_id": record.value.0,
                                "billed_cents": record.value.1,
                                "watermark_ms": record.watermark,
                                "reason": record.reason,
                            });
                            let _ = writeln!(w, "{line}");
                        }
                    }
                }
            });
            if frontier.is_empty() {
                if let Some(mut w) = writer.take()
                    && let Err(source) = w.flush()
                    && let Some(p) = &path
                {
                    fail(&shared, RunError::Io { path: p.clone(), source });
                }
                if leader {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).report.late = count;
                }
            }
        },
    );
}

fn spec_dead_letter_path(spec: &PipelineSpec) -> PathBuf {
    let SinkSpec::Csv { path, dead_letter_path, .. } = &spec.sink;
    dead_letter_path.clone().unwrap_or_else(|| path.with_extension("dlq.jsonl"))
}
