//! Runs a pipeline spec on timely workers.
//!
//! A source reads its partitions in a fixed order, in batches: each batch's records are sent at
//! the watermark reached before it (bounded out-of-orderness per partition, partitions read to
//! their end excluded), which is the timely time, so the frontier carries the watermark. A JSON
//! file is read by worker 0; the partitions of a Kafka topic or an embedded log topic are dealt
//! round-robin over all workers. Records are exchanged by key to every worker for windowing;
//! results, late records and dead letters come back to worker 0, which writes each stamp once the
//! frontier has passed it, sorted, so the files are the same for any number of workers.
//!
//! With `[checkpoint]` in the spec, the run saves source positions, window state and file
//! lengths together every interval and resumes from the latest checkpoint when started again;
//! see [`crate::checkpoint`].

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaError};
use arus_operators::{StateCheckpoints, Time, Watermarks};
use serde::{Deserialize, Serialize};
use timely::ExchangeData;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::checkpoint::{CheckpointError, Coordinator, OnComplete, SourceState};
use crate::metrics::Metrics;
use crate::provider_windows::{self, Claim, LateClaim, ProviderWindow, ProviderWindowsConfig, parse_claim};
use crate::spec::{JobKind, PipelineSpec, SinkSpec, SourceSpec};

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
    /// Input records decoded into claims in this run.
    pub records: u64,
    /// Input records that could not be decoded (in the dead-letter file).
    pub dead_letters: u64,
    /// Rows written to the sink (window results and corrections).
    pub rows: u64,
    /// Records too late to count.
    pub late: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// The checkpoint the run resumed from: epoch and timely time.
    pub resumed_from: Option<(u64, Time)>,
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
    /// The embedded log failed.
    #[error(transparent)]
    Log(#[from] arus_connectors::embedded::LogError),
    /// Checkpoints could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The run cannot be done as asked.
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Default)]
struct Shared {
    report: RunReport,
    error: Option<RunError>,
}

fn fail(shared: &Mutex<Shared>, error: RunError) {
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.error.get_or_insert(error);
}

fn report(shared: &Mutex<Shared>, update: impl FnOnce(&mut RunReport)) {
    update(&mut shared.lock().unwrap_or_else(|e| e.into_inner()).report);
}

/// A record that could not be decoded, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetter {
    /// File or topic.
    pub source: String,
    /// Partition (topics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Offset (topics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Line number, from 1 (files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Why it was refused.
    pub error: String,
    /// The record, as text (invalid UTF-8 replaced).
    pub original: String,
}

/// Where the records come from, opened once per process.
enum Input {
    Jsonl { path: PathBuf },
    Kafka { config: KafkaConfig, topic: String, group: String, partitions: u32 },
    Embedded { log: Arc<EmbeddedLog>, topic: String, group: String, ends: Vec<u64> },
}

impl Input {
    /// Checks the input is there before any worker starts.
    fn open(source: &SourceSpec) -> Result<Self, RunError> {
        Ok(match source {
            SourceSpec::Jsonl { path, .. } => {
                File::open(path).map_err(|source| RunError::Io { path: path.clone(), source })?;
                Input::Jsonl { path: path.clone() }
            }
            SourceSpec::Kafka { brokers, topic, group, .. } => {
                let config = KafkaConfig::new(brokers.clone());
                let partitions = arus_connectors::kafka::partition_count(&config, topic)?;
                Input::Kafka { config, topic: topic.clone(), group: group.clone(), partitions }
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
    fn partitions(&self, worker: usize, peers: usize) -> Vec<u32> {
        let count = match self {
            Input::Jsonl { .. } => 1,
            Input::Kafka { partitions, .. } => *partitions,
            Input::Embedded { ends, .. } => ends.len() as u32,
        };
        (0..count).filter(|p| *p as usize % peers == worker).collect()
    }

    /// A reader of `worker`'s partitions, from `restored` positions or the beginning.
    fn reader(
        &self,
        worker: usize,
        peers: usize,
        batch: usize,
        restored: Option<&SourceState>,
    ) -> Result<Option<Box<dyn ClaimReader>>, RunError> {
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
            Input::Kafka { config, topic, group, .. } => {
                let positions: Vec<(u32, Option<u64>)> = mine.iter().map(|p| (*p, from(*p))).collect();
                let reader = BoundedPartitionReader::open(config, group, topic, &positions, quantum)?;
                Box::new(KafkaReader { topic: topic.clone(), reader, last: None })
            }
            Input::Embedded { log, topic, ends, .. } => Box::new(LogReader {
                log: log.clone(),
                topic: topic.clone(),
                partitions: mine.iter().map(|p| (*p, from(*p).unwrap_or(0), ends[*p as usize])).collect(),
                quantum,
                turn: (0, 0),
                buffer: std::collections::VecDeque::new(),
                last: None,
            }),
        }))
    }

    /// Where completed checkpoints' positions are committed, for lag tools.
    fn on_complete(&self) -> Option<OnComplete> {
        match self {
            Input::Jsonl { .. } => None,
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

/// The names of the sinks, for checkpoints.
const SINKS: [&str; 3] = ["csv", "late", "dead-letters"];

/// Runs the pipeline to the end of its input.
pub fn run(spec: &PipelineSpec, cluster: &Cluster) -> Result<RunReport, RunError> {
    run_with(spec, cluster, None)
}

/// Runs the pipeline to the end of its input, keeping `metrics` up to date.
pub fn run_with(spec: &PipelineSpec, cluster: &Cluster, metrics: Option<Arc<Metrics>>) -> Result<RunReport, RunError> {
    let JobKind::ProviderWindows = spec.job;
    let SinkSpec::Csv { path: sink_path, late_path, .. } = spec.sink.clone();
    let dead_letter_path = spec_dead_letter_path(spec);
    // Fail before starting workers when the input is missing.
    let input = Arc::new(Input::open(&spec.source)?);
    let batch = match &spec.source {
        SourceSpec::Jsonl { batch_lines, .. } => *batch_lines,
        SourceSpec::Kafka { batch_records, .. } | SourceSpec::Embedded { batch_records, .. } => *batch_records,
    };
    let job = ProviderWindowsConfig {
        windows: spec.window_spec().expect("validated spec"),
        allowed_lateness_ms: spec.allowed_lateness_ms(),
    };
    let out_of_orderness = spec.out_of_orderness_ms();
    let (config, total_workers) = match cluster.clone() {
        Cluster::Local { workers } => (timely::Config::process(workers.max(1)), workers.max(1)),
        Cluster::Process { workers, process, addresses } => {
            let total = workers.max(1) * addresses.len();
            let config = timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: workers.max(1),
                    process,
                    addresses,
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            };
            (config, total)
        }
    };
    let coordinator = match spec.checkpoint_settings() {
        Some(settings) => {
            if matches!(cluster, Cluster::Process { addresses, .. } if addresses.len() > 1) {
                return Err(RunError::Unsupported(
                    "checkpoints need a single process: run with more --workers instead of --processes, or \
                     without [checkpoint]"
                        .to_owned(),
                ));
            }
            let operators = [provider_windows::OPERATOR];
            let coordinator =
                Coordinator::open(settings, total_workers, spec.identity(), &operators, &SINKS, input.on_complete())?
                    .with_metrics(metrics.clone());
            Some(Arc::new(coordinator))
        }
        None => None,
    };
    if let (Some(metrics), Input::Embedded { ends, .. }) = (&metrics, &*input) {
        ends.iter().enumerate().for_each(|(p, end)| metrics.partition_end(p as u32, *end));
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    report(&shared, |r| r.resumed_from = coordinator.as_ref().and_then(|c| c.restored_at()));
    let started = Instant::now();
    let (worker_shared, worker_coordinator, worker_metrics) = (shared.clone(), coordinator.clone(), metrics.clone());
    let guards = timely::execute(config, move |worker| {
        let shared = worker_shared.clone();
        let coordinator = worker_coordinator.clone();
        let metrics = worker_metrics.clone();
        let (index, peers) = (worker.index(), worker.peers());
        let leader = index == 0;
        let restored = coordinator.as_ref().and_then(|c| c.restored_source(index));
        let reader = match input.reader(index, peers, batch, restored.as_ref()) {
            Ok(reader) => reader,
            Err(error) => {
                fail(&shared, error);
                None
            }
        };
        let settings = SourceSettings { batch, out_of_orderness_ms: out_of_orderness };
        let sinks = (sink_path.clone(), late_path.clone(), dead_letter_path.clone());
        worker.dataflow::<Time, _, _>(|scope| {
            let partitions = input.partitions(index, peers);
            let context = WorkerContext { leader, coordinator: coordinator.clone(), metrics, shared: shared.clone() };
            let (claims, dead) = claims_source(scope, reader, partitions, settings, restored, &context);
            let checkpoints = coordinator.clone().map(|c| c as Arc<dyn StateCheckpoints>);
            let (changes, late) = provider_windows::build(claims, &job, checkpoints);
            let csv = LineFile {
                name: SINKS[0],
                path: Some(sinks.0),
                header: Some(provider_windows::CSV_HEADER),
                lazy: false,
            };
            line_sink(changes, csv, csv_line, |r, n| r.rows += n, &context);
            let late_file = LineFile { name: SINKS[1], path: sinks.1, header: None, lazy: false };
            line_sink(late, late_file, late_line, |r, n| r.late += n, &context);
            let dead_file = LineFile { name: SINKS[2], path: Some(sinks.2), header: None, lazy: true };
            line_sink(dead, dead_file, dead_letter_line, |r, n| r.dead_letters += n, &context);
        });
        while worker.step_or_park(None) {}
    })
    .map_err(RunError::Timely)?;
    drop(guards);
    let mut shared =
        Arc::try_unwrap(shared).ok().expect("workers finished").into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(error) = shared.error.take() {
        return Err(error);
    }
    if let Some(coordinator) = &coordinator {
        if let Some(message) = coordinator.error() {
            return Err(RunError::Checkpoint(CheckpointError::Io {
                path: spec.checkpoint.as_ref().map(|c| c.dir.clone()).unwrap_or_default(),
                source: std::io::Error::other(message),
            }));
        }
        shared.report.checkpoints = coordinator.completed();
    }
    shared.report.elapsed = started.elapsed();
    Ok(shared.report)
}

/// Where a source's records come from: a transport yielding raw bytes from one partition or
/// many, always in the same order for the same starting positions.
trait ClaimReader {
    /// The next record's partition and bytes, waiting for it; `None` when every partition has
    /// been read to its end.
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError>;
    /// Partitions read to their end (they no longer hold the watermark back).
    fn ended(&self) -> Vec<u32>;
    /// Per partition, the position of the next record (`None`: the beginning).
    fn positions(&self) -> Vec<(u32, Option<u64>)>;
    /// Lines read (files).
    fn lines(&self) -> u64 {
        0
    }
    /// The last record's dead letter.
    fn dead_letter(&self, error: String, original: String) -> DeadLetter;
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
            self.offset += read as u64;
            self.line_number += 1;
            while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                self.line.pop();
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((0, &self.line)));
            }
        }
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

    fn dead_letter(&self, error: String, original: String) -> DeadLetter {
        DeadLetter {
            source: self.path.display().to_string(),
            partition: None,
            offset: None,
            line: Some(self.line_number),
            error,
            original,
        }
    }
}

/// Some partitions of a Kafka topic.
struct KafkaReader {
    topic: String,
    reader: BoundedPartitionReader,
    last: Option<arus_connectors::kafka::RawRecord>,
}

impl ClaimReader for KafkaReader {
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        self.last = self.reader.next_record()?;
        Ok(self.last.as_ref().map(|r| (r.partition, r.value.as_slice())))
    }

    fn ended(&self) -> Vec<u32> {
        let unfinished: Vec<u32> = self.reader.unfinished().collect();
        self.reader.positions().into_iter().map(|(p, _)| p).filter(|p| !unfinished.contains(p)).collect()
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.reader.positions()
    }

    fn dead_letter(&self, error: String, original: String) -> DeadLetter {
        let (partition, offset) = self.last.as_ref().map_or((0, 0), |r| (r.partition, r.offset as u64));
        DeadLetter {
            source: self.topic.clone(),
            partition: Some(partition),
            offset: Some(offset),
            line: None,
            error,
            original,
        }
    }
}

/// Some partitions of an embedded log topic, up to where they ended when the run began, taking
/// turns like [`BoundedPartitionReader`].
struct LogReader {
    log: Arc<EmbeddedLog>,
    topic: String,
    /// Partition, next offset, end offset.
    partitions: Vec<(u32, u64, u64)>,
    quantum: usize,
    /// Index into `partitions` whose turn it is, and records it has had.
    turn: (usize, usize),
    buffer: std::collections::VecDeque<arus_connectors::embedded::Record>,
    last: Option<arus_connectors::embedded::Record>,
}

impl ClaimReader for LogReader {
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        let n = self.partitions.len();
        for _ in 0..=n {
            let (index, taken) = self.turn;
            let (partition, next, end) = self.partitions[index];
            if taken < self.quantum && next < end {
                if self.buffer.is_empty() {
                    let want = (self.quantum - taken).min((end - next) as usize);
                    self.buffer.extend(self.log.fetch(&self.topic, partition, next, want)?);
                }
                if let Some(record) = self.buffer.pop_front() {
                    self.partitions[index].1 = record.offset + 1;
                    self.turn.1 += 1;
                    self.last = Some(record);
                    return Ok(self.last.as_ref().map(|r| (r.partition, r.value.as_slice())));
                }
            }
            self.buffer.clear();
            self.turn = ((index + 1) % n, 0);
        }
        Ok(None)
    }

    fn ended(&self) -> Vec<u32> {
        self.partitions.iter().filter(|(_, next, end)| next >= end).map(|(p, _, _)| *p).collect()
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.partitions.iter().map(|(p, next, _)| (*p, Some(*next))).collect()
    }

    fn dead_letter(&self, error: String, original: String) -> DeadLetter {
        let (partition, offset) = self.last.as_ref().map_or((0, 0), |r| (r.partition, r.offset));
        DeadLetter {
            source: self.topic.clone(),
            partition: Some(partition),
            offset: Some(offset),
            line: None,
            error,
            original,
        }
    }
}

/// Settings every source shares.
#[derive(Clone, Copy)]
struct SourceSettings {
    batch: usize,
    out_of_orderness_ms: u64,
}

/// A source of claims from a reader: each step reads up to `batch` records and sends them at
/// the watermark reached before the step, which is the timely time. Undecodable records go to
/// the second output. A worker without a reader sends nothing. With checkpoints, the source
/// tells the coordinator where it is each time it moves on, and starts where `restored` says.
fn claims_source<'scope>(
    scope: timely::dataflow::Scope<'scope, Time>,
    reader: Option<Box<dyn ClaimReader>>,
    partitions: Vec<u32>,
    settings: SourceSettings,
    restored: Option<SourceState>,
    context: &WorkerContext,
) -> (timely::dataflow::StreamVec<'scope, Time, Claim>, timely::dataflow::StreamVec<'scope, Time, DeadLetter>) {
    let (coordinator, metrics, shared) = (context.coordinator.clone(), context.metrics.clone(), context.shared.clone());
    let mut builder = OperatorBuilder::new("ClaimsSource".to_owned(), scope);
    let (claims_output, claims) = builder.new_output::<Vec<Claim>>();
    let (dead_output, dead) = builder.new_output::<Vec<DeadLetter>>();
    let mut claims_output = OutputBuilder::from(claims_output);
    let mut dead_output = OutputBuilder::from(dead_output);
    let activator = scope.activator_for(builder.operator_info().address);
    let worker = scope.index();
    builder.build(move |mut capabilities| {
        let mut watermarks = restored.as_ref().map_or_else(
            || {
                let mut w = Watermarks::new(settings.out_of_orderness_ms);
                partitions.iter().for_each(|p| w.add_partition(*p));
                w
            },
            |s| s.watermarks.clone(),
        );
        let start = restored.as_ref().map_or(0, |s| s.next);
        let mut reader = reader.filter(|_| !restored.as_ref().is_some_and(|s| s.finished));
        let restored = restored.clone();
        let state =
            move |reader: &Option<Box<dyn ClaimReader>>, watermarks: &Watermarks, next: Time, finished: bool| {
                SourceState {
                    positions: reader.as_ref().map_or_else(
                        || restored.as_ref().map(|s| s.positions.clone()).unwrap_or_default(),
                        |r| r.positions(),
                    ),
                    lines: reader.as_ref().map_or(restored.as_ref().map_or(0, |s| s.lines), |r| r.lines()),
                    watermarks: watermarks.clone(),
                    next,
                    finished,
                }
            };
        let mut held = None;
        if reader.is_some() {
            let dead_capability = capabilities.pop().expect("two outputs");
            let mut claims_capability = capabilities.pop().expect("two outputs");
            claims_capability.downgrade(&start);
            let mut dead_capability = dead_capability;
            dead_capability.downgrade(&start);
            if let Some(c) = &coordinator {
                c.source_at(worker, start, || state(&reader, &watermarks, start, false));
            }
            held = Some((claims_capability, dead_capability));
        } else if let Some(c) = &coordinator {
            c.source_finished(worker, state(&None, &watermarks, start, true));
        }
        let mut records = 0u64;
        move |_frontiers| {
            let (Some((claims_capability, dead_capability)), Some(input)) = (held.as_mut(), reader.as_mut()) else {
                return;
            };
            let time = *claims_capability.time();
            let mut failed = false;
            let mut finished = false;
            let (before, mut dead) = (records, 0u64);
            {
                let mut claims_output = claims_output.activate();
                let mut dead_output = dead_output.activate();
                let mut claims_session = claims_output.session(&*claims_capability);
                let mut dead_session = dead_output.session(&*dead_capability);
                for _ in 0..settings.batch {
                    let (partition, bytes) = match input.next() {
                        Ok(Some(record)) => record,
                        Ok(None) => {
                            finished = true;
                            break;
                        }
                        Err(error) => {
                            fail(&shared, error);
                            failed = true;
                            break;
                        }
                    };
                    match parse_claim(bytes) {
                        Ok(claim) => {
                            watermarks.observe(partition, claim.1);
                            claims_session.give(claim);
                            records += 1;
                        }
                        Err(error) => {
                            let original = String::from_utf8_lossy(bytes).into_owned();
                            dead_session.give(input.dead_letter(error.to_string(), original));
                            dead += 1;
                        }
                    }
                }
            }
            input.ended().into_iter().for_each(|p| watermarks.set_idle(p));
            if let Some(m) = &metrics {
                m.source_batch(worker, records - before, dead, watermarks.current(), &input.positions());
            }
            if failed || finished {
                report(&shared, |r| r.records += records);
                if let Some(c) = &coordinator
                    && !failed
                {
                    c.source_finished(worker, state(&reader, &watermarks, time + 1, true));
                }
                held = None;
                reader = None;
            } else {
                let next = watermarks.current().max(time + 1);
                if let Some(c) = &coordinator {
                    c.source_at(worker, next, || state(&reader, &watermarks, next, false));
                }
                claims_capability.downgrade(&next);
                dead_capability.downgrade(&next);
                activator.activate();
            }
        }
    });
    (claims, dead)
}

/// A file of lines a sink writes.
struct LineFile {
    /// The sink's name in checkpoints.
    name: &'static str,
    /// No file: lines are only counted.
    path: Option<PathBuf>,
    /// First line of a new file.
    header: Option<&'static str>,
    /// Created only once there is a line to write.
    lazy: bool,
}

/// What the operators of a worker share.
struct WorkerContext {
    leader: bool,
    coordinator: Option<Arc<Coordinator>>,
    metrics: Option<Arc<Metrics>>,
    shared: Arc<Mutex<Shared>>,
}

/// An open sink file and how many bytes it holds.
struct Output {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    bytes: u64,
    header: Option<&'static str>,
}

impl Output {
    /// Opens the sink's file: cut back to the restored length, or new.
    fn open(file: &LineFile, restored: Option<u64>) -> Result<Option<Self>, RunError> {
        let Some(path) = file.path.clone() else { return Ok(None) };
        let io = |source| RunError::Io { path: path.clone(), source };
        let mut output = Output { path: path.clone(), writer: None, bytes: 0, header: file.header };
        match restored {
            Some(bytes) if bytes > 0 || path.exists() => {
                let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                if len < bytes {
                    return Err(RunError::Unsupported(format!(
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

/// Writes a stream to a file on worker 0: each stamp once the frontier has passed it, its
/// records sorted, one line each (`format` says whether a record makes a line). With
/// checkpoints, the file's length is saved once everything stamped before a checkpoint's time
/// is written and durable.
fn line_sink<T: ExchangeData + Ord>(
    stream: timely::dataflow::StreamVec<'_, Time, T>,
    file: LineFile,
    format: fn(&T, &mut String) -> bool,
    count: fn(&mut RunReport, u64),
    context: &WorkerContext,
) {
    let WorkerContext { leader, coordinator, metrics, shared } = context;
    let (leader, shared, metrics) = (*leader, shared.clone(), metrics.clone());
    let coordinator = coordinator.clone().filter(|_| leader);
    let mut output = if leader {
        match Output::open(&file, coordinator.as_ref().and_then(|c| c.restored_sink(file.name))) {
            Ok(output) => output,
            Err(error) => {
                fail(&shared, error);
                None
            }
        }
    } else {
        None
    };
    let mut pending: std::collections::BTreeMap<Time, Vec<T>> = Default::default();
    let mut text = String::with_capacity(1 << 16);
    let mut lines = 0u64;
    let name = file.name;
    stream.sink(Exchange::new(|_: &T| 0), name, move |(input, frontier)| {
        input.for_each_stamp(|capability, data| {
            let time = *capability.least().expect("a totally ordered stamp has a least element");
            let entry = pending.entry(time).or_default();
            for batch in data {
                entry.append(batch);
            }
        });
        let mut due = coordinator.as_ref().and_then(|c| c.sink_due(name));
        let save = |output: &mut Option<Output>, (epoch, _at): (u64, Time)| {
            let Some(c) = &coordinator else { return };
            let bytes = match output.as_mut().map(|o| o.flush(true).map(|()| o.bytes)).transpose() {
                Ok(bytes) => bytes.unwrap_or(0),
                Err(error) => {
                    c.fail(error.to_string());
                    return;
                }
            };
            c.sink_saved(epoch, name, bytes);
        };
        while let Some(entry) = pending.first_entry() {
            let time = *entry.key();
            if frontier.less_equal(&time) {
                break;
            }
            if let Some(checkpoint) = due.filter(|(_, at)| *at <= time) {
                save(&mut output, checkpoint);
                due = None;
            }
            let mut records = entry.remove();
            records.sort_unstable();
            text.clear();
            let before = lines;
            for record in &records {
                lines += u64::from(format(record, &mut text));
            }
            if let Some(m) = &metrics {
                m.sink_lines(name, lines - before);
            }
            if let Some(o) = output.as_mut()
                && let Err(error) = o.write(&text)
            {
                fail(&shared, error);
                output = None;
            }
        }
        if let Some(checkpoint) = due.filter(|(_, at)| !frontier.less_than(at)) {
            save(&mut output, checkpoint);
        }
        if frontier.is_empty() && leader {
            if let Some(mut o) = output.take()
                && let Err(error) = o.flush(false)
            {
                fail(&shared, error);
            }
            report(&shared, |r| count(r, lines));
            lines = 0;
        }
    });
}

fn csv_line(change: &ProviderWindow, out: &mut String) -> bool {
    if change.diff > 0 {
        provider_windows::csv_row(change, out);
    }
    change.diff > 0
}

fn late_line(record: &LateClaim, out: &mut String) -> bool {
    let line = serde_json::json!({
        "provider_id": record.key,
        "event_time_ms": record.event_time,
        "member_id": record.value.0,
        "billed_cents": record.value.1,
        "watermark_ms": record.watermark,
        "reason": record.reason,
    });
    out.push_str(&line.to_string());
    out.push('\n');
    true
}

fn dead_letter_line(letter: &DeadLetter, out: &mut String) -> bool {
    out.push_str(&serde_json::to_string(letter).expect("a dead letter serializes"));
    out.push('\n');
    true
}

fn spec_dead_letter_path(spec: &PipelineSpec) -> PathBuf {
    let SinkSpec::Csv { path, dead_letter_path, .. } = &spec.sink;
    dead_letter_path.clone().unwrap_or_else(|| path.with_extension("dlq.jsonl"))
}
