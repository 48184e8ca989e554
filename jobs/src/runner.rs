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
use std::io::{BufRead, BufReader, Seek};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::files::AvroContainerReader;
use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaError, Resume};
use arus_operators::{StateCheckpoints, Time, Watermarks, WindowSpec};
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::checkpoint::{CheckpointError, Coordinator, OnComplete, SinkPosition, SourceState};
use crate::metrics::Metrics;
use crate::provider_windows::{self, Claim, ClaimError, LateClaim, ProviderWindow, ProviderWindowsConfig, parse_claim};
pub use crate::sinks::DeadLetter;
use crate::sinks::{self, FileSink, KafkaDeadLetters, LineFile, LogDeadLetters, Sink};
use crate::spec::{JobKind, PipelineSpec, SinkKind, SinkSpec, SourceSpec};

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

/// What a run's workers share: the report they add to, and the first error.
#[derive(Default)]
pub(crate) struct Shared<R = RunReport> {
    pub(crate) report: R,
    error: Option<RunError>,
}

/// Records `error` as the run's, unless one came first.
pub(crate) fn fail<R>(shared: &Mutex<Shared<R>>, error: RunError) {
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.error.get_or_insert(error);
}

pub(crate) fn report<R>(shared: &Mutex<Shared<R>>, update: impl FnOnce(&mut R)) {
    update(&mut shared.lock().unwrap_or_else(|e| e.into_inner()).report);
}

/// Waits for the workers: the report they made, or the first error.
pub(crate) fn finish<R>(
    guards: timely::communication::WorkerGuards<()>,
    shared: Arc<Mutex<Shared<R>>>,
) -> Result<R, RunError> {
    drop(guards);
    let mut shared =
        Arc::try_unwrap(shared).ok().expect("workers finished").into_inner().unwrap_or_else(|e| e.into_inner());
    match shared.error.take() {
        Some(error) => Err(error),
        None => Ok(shared.report),
    }
}

/// How long a following reader's turn in [`read_events`] may last. It waits a little for each
/// record; records trickling in faster than that wait would otherwise keep the turn going
/// until `batch` of them came, holding back the watermark — and a fraud job's window closes —
/// for seconds (benches/README.md, fraud alert latency). Readers of a bounded input read whole
/// batches: fewer, larger batches for the sequencer (a store round trip each).
const TURN: Duration = Duration::from_millis(5);

/// Reads up to `batch` records from each reader in turn (a following reader's turn lasting
/// about [`TURN`] at most), decoded as events of the contract, handing each to `take` with its
/// reader's index and partition. How many records were not events; `None` when a read failed (the run then fails
/// with that error).
pub(crate) fn read_events<R>(
    readers: &mut [Box<dyn ClaimReader>],
    batch: usize,
    shared: &Mutex<Shared<R>>,
    take: impl FnMut(usize, u32, arus_schemas::Event),
) -> Option<u64> {
    read_events_peeked(readers, batch, shared, |_, _, _| true, take)
}

/// [`read_events`], each record first shown to `peeked` (its kind, id and time, read without
/// decoding it: [`wire::peek`](arus_schemas::wire::peek)) and decoded only if that says so —
/// a job passes over the kinds it does not read without paying for their decoding (the
/// adjudication job's own decisions on `claims.events`, on a rerun). Only records decoded
/// or not even peeked at are counted as not events.
pub(crate) fn read_events_peeked<R>(
    readers: &mut [Box<dyn ClaimReader>],
    batch: usize,
    shared: &Mutex<Shared<R>>,
    mut peeked: impl FnMut(usize, u32, &arus_schemas::wire::Peek<'_>) -> bool,
    mut take: impl FnMut(usize, u32, arus_schemas::Event),
) -> Option<u64> {
    let mut undecodable = 0;
    for (i, reader) in readers.iter_mut().enumerate() {
        let (turn, following) = (Instant::now(), reader.following());
        for n in 0..batch {
            if following && n > 0 && turn.elapsed() > TURN {
                break;
            }
            match reader.next_record() {
                Ok(Some((partition, bytes))) => match arus_schemas::wire::peek(bytes) {
                    Ok(peek) if !peeked(i, partition, &peek) => {}
                    Ok(_) => match arus_schemas::wire::decode(bytes) {
                        Ok(event) => take(i, partition, event),
                        Err(_) => undecodable += 1,
                    },
                    Err(_) => undecodable += 1,
                },
                Ok(None) => break,
                Err(error) => {
                    fail(shared, error);
                    return None;
                }
            }
        }
    }
    Some(undecodable)
}

/// `work` done for each of `items` at once, a thread each (for work that is mostly waiting for
/// the broker): the results in the items' order, a panic as an error naming `what`.
pub(crate) fn each_at_once<T: Sync, R: Send>(
    items: &[T],
    what: &str,
    work: impl Fn(&T) -> Result<R, RunError> + Sync,
) -> Vec<Result<R, RunError>> {
    std::thread::scope(|scope| {
        let work = &work;
        let running: Vec<_> = items.iter().map(|item| scope.spawn(move || work(item))).collect();
        running
            .into_iter()
            .map(|done| done.join().unwrap_or_else(|_| Err(RunError::Unsupported(format!("{what} panicked")))))
            .collect()
    })
}

/// This worker's readers of `inputs` (its share of their partitions); a failure to open one
/// fails the run.
pub(crate) fn open_readers<R>(
    inputs: &[Input],
    worker: usize,
    peers: usize,
    batch: usize,
    shared: &Mutex<Shared<R>>,
) -> Vec<Box<dyn ClaimReader>> {
    let mut readers = Vec::new();
    for input in inputs {
        match input.reader(worker, peers, batch, None) {
            Ok(Some(reader)) => readers.push(reader),
            Ok(None) => {}
            Err(error) => fail(shared, error),
        }
    }
    readers
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
                AvroContainerReader::open(path, &topic, 0).map_err(|e| RunError::Unsupported(e.to_string()))?;
                Input::Avro { path: path.clone(), topic }
            }
            SourceSpec::Kafka { brokers, topic, group, resume, follow, idle_timeout, .. } => {
                let config = KafkaConfig::new(brokers.clone());
                let partitions = arus_connectors::kafka::partition_count(&config, topic)?;
                let idle = Duration::from_millis(crate::spec::parse_duration_ms(idle_timeout).unwrap_or(5_000));
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
            Input::Avro { path, topic } => {
                let skip = from(0).unwrap_or(0);
                let reader =
                    AvroContainerReader::open(path, topic, skip).map_err(|e| RunError::Unsupported(e.to_string()))?;
                Box::new(AvroClaimReader { path: path.clone(), reader, line: String::new(), eof: false })
            }
            Input::Kafka { config, topic, group, resume, follow, .. } => {
                let positions: Vec<(u32, Option<u64>)> = mine.iter().map(|p| (*p, from(*p))).collect();
                let turn = restored.and_then(|s| s.turn);
                let mut reader =
                    BoundedPartitionReader::open_at_turn(config, group, topic, &positions, quantum, turn, *resume)?;
                if follow.is_some() {
                    reader = reader.following();
                }
                let now = Instant::now();
                let last_seen = mine.iter().map(|p| (*p, now)).collect();
                Box::new(KafkaReader {
                    topic: topic.clone(),
                    reader,
                    last: None,
                    follow: *follow,
                    line: String::new(),
                    last_seen,
                })
            }
            Input::Embedded { log, topic, ends, .. } => Box::new(LogReader {
                line: String::new(),
                log: log.clone(),
                topic: topic.clone(),
                partitions: mine.iter().map(|p| (*p, from(*p).unwrap_or(0), ends[*p as usize])).collect(),
                quantum,
                turn: restored
                    .and_then(|s| s.turn)
                    .and_then(|(p, taken)| mine.iter().position(|q| *q == p).map(|index| (index, taken)))
                    .unwrap_or((0, 0)),
                buffer: std::collections::VecDeque::new(),
                last: None,
            }),
        }))
    }

    /// Where completed checkpoints' positions are committed, for lag tools.
    fn on_complete(&self) -> Option<OnComplete> {
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

/// Whether a claim was not a claim at all, or a claim with a bad field.
fn error_kind(error: &ClaimError) -> &'static str {
    match error {
        ClaimError::Json(_) => "decode",
        ClaimError::Amount(_) | ClaimError::Timestamp(_) => "validate",
    }
}

fn dlq_topic(topic: &str) -> String {
    arus_schemas::topics::dlq_topic(topic)
}

/// The names of the sinks, for checkpoints.
const SINKS: [&str; 3] = ["csv", "late", "dead-letters"];

/// Runs the pipeline to the end of its input.
pub fn run(spec: &PipelineSpec, cluster: &Cluster) -> Result<RunReport, RunError> {
    run_with(spec, cluster, None)
}

/// Runs the pipeline to the end of its input, keeping `metrics` up to date.
pub fn run_with(spec: &PipelineSpec, cluster: &Cluster, metrics: Option<Arc<Metrics>>) -> Result<RunReport, RunError> {
    // Fail before starting workers when the input is missing.
    let input = Input::open(&spec.source)?;
    run_input(spec, cluster, metrics, input)
}

/// Runs the pipeline over a topic of an embedded log this process already has (as `arus demo`
/// does); the spec's source must be `embedded` (its `dir` is not used).
pub fn run_on_log(spec: &PipelineSpec, cluster: &Cluster, log: Arc<EmbeddedLog>) -> Result<RunReport, RunError> {
    let SourceSpec::Embedded { topic, group, .. } = &spec.source else {
        return Err(RunError::Unsupported("run_on_log needs an embedded source".to_owned()));
    };
    let ends = log.end_offsets(topic)?;
    run_input(spec, cluster, None, Input::Embedded { log, topic: topic.clone(), group: group.clone(), ends })
}

fn run_input(
    spec: &PipelineSpec,
    cluster: &Cluster,
    metrics: Option<Arc<Metrics>>,
    input: Input,
) -> Result<RunReport, RunError> {
    if spec.job != JobKind::ProviderWindows {
        return Err(RunError::Unsupported(format!("{:?} is not a windowed job", spec.job)));
    }
    let SinkSpec { kind: sink_kind, path: sink_path, late_path, .. } = spec.sink.clone();
    let input = Arc::new(input);
    let batch = match &spec.source {
        SourceSpec::Jsonl { batch_lines, .. } => *batch_lines,
        SourceSpec::Kafka { batch_records, .. }
        | SourceSpec::Embedded { batch_records, .. }
        | SourceSpec::Avro { batch_records, .. } => *batch_records,
    };
    let job = ProviderWindowsConfig {
        windows: spec.window_spec().expect("validated spec"),
        allowed_lateness_ms: spec.allowed_lateness_ms(),
    };
    let out_of_orderness = spec.out_of_orderness_ms();
    let (config, total_workers) = timely_config(cluster);
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
    report(&shared, |r: &mut RunReport| r.resumed_from = coordinator.as_ref().and_then(|c| c.restored_at()));
    let started = Instant::now();
    let dead_letters = Arc::new(DeadLetterTarget::of(spec, &input));
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
        let (sink_path, late_path) = (sink_path.clone(), late_path.clone());
        let dead_letters = dead_letters.clone();
        worker.dataflow::<Time, _, _>(|scope| {
            let partitions = input.partitions(index, peers);
            let follow = matches!(&*input, Input::Kafka { follow: Some(_), .. });
            let context =
                WorkerContext { leader, coordinator: coordinator.clone(), metrics, shared: shared.clone(), follow };
            let (claims, dead) = claims_source(scope, reader, partitions, settings, restored, &context);
            let checkpoints = coordinator.clone().map(|c| c as Arc<dyn StateCheckpoints>);
            let (changes, late) = provider_windows::build(claims, &job, checkpoints);
            let csv = open_sink(&context, SINKS[0], |restored| {
                let (header, format): (_, fn(&ProviderWindow, &mut String) -> bool) = match (sink_kind, job.windows) {
                    (SinkKind::Jsonl, _) => (None, jsonl_line),
                    (SinkKind::Csv, WindowSpec::Session { .. }) => {
                        (Some(provider_windows::SESSION_CSV_HEADER), session_csv_line)
                    }
                    (SinkKind::Csv, _) => (Some(provider_windows::CSV_HEADER), csv_line),
                };
                let file = LineFile { path: Some(sink_path), header, lazy: false };
                Ok(Box::new(FileSink::open(&file, format, restored)?))
            });
            sinks::sink(changes, SINKS[0], csv, |r, n| r.rows += n, &context);
            let late_sink = open_sink(&context, SINKS[1], |restored| {
                let file = LineFile { path: late_path, header: None, lazy: false };
                Ok(Box::new(FileSink::open(&file, late_line, restored)?))
            });
            sinks::sink(late, SINKS[1], late_sink, |r, n| r.late += n, &context);
            let dead_sink = open_sink(&context, SINKS[2], |restored| dead_letters.open(restored));
            sinks::sink(dead, SINKS[2], dead_sink, |_, _| {}, &context);
        });
        while worker.step_or_park(None) {}
    })
    .map_err(RunError::Timely)?;
    let mut report = finish(guards, shared)?;
    if let Some(coordinator) = &coordinator {
        if let Some(message) = coordinator.error() {
            return Err(RunError::Checkpoint(CheckpointError::Io {
                path: spec.checkpoint.as_ref().map(|c| c.dir.clone()).unwrap_or_default(),
                source: std::io::Error::other(message),
            }));
        }
        report.checkpoints = coordinator.completed();
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The timely configuration of a cluster, and its number of workers in all.
pub(crate) fn timely_config(cluster: &Cluster) -> (timely::Config, usize) {
    match cluster.clone() {
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
    }
}

/// Where a source's records come from: a transport yielding raw bytes from one partition or
/// many, always in the same order for the same starting positions.
pub(crate) trait ClaimReader {
    /// The next record's partition and bytes, waiting for it; `None` when every partition has
    /// been read to its end.
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError>;
    /// The next record as it is on the topic (no claim conversion), for jobs that decode events
    /// themselves; only topic readers have it.
    fn next_record(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        Err(RunError::Unsupported("this source holds claims, not topic records".to_owned()))
    }
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
    fn dead_letter(&self, error: &ClaimError, original: &[u8]) -> DeadLetter;
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

    fn dead_letter(&self, error: &ClaimError, original: &[u8]) -> DeadLetter {
        DeadLetter {
            source: self.path.display().to_string(),
            partition: None,
            offset: None,
            line: Some(self.line_number),
            timestamp_ms: None,
            error_kind: error_kind(error).to_owned(),
            error: error.to_string(),
            key: None,
            original: original.to_vec(),
        }
    }
}

/// A `ClaimSubmitted` event as the claim line the job reads: provider, member, total charge
/// (whole rupiah), and the event time (when it was submitted) as the claim's time.
fn claim_line(claim: &arus_schemas::events::ClaimSubmitted, line: &mut String) {
    use std::fmt::Write;
    line.clear();
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let _ = write!(
        line,
        "{{\"claim_id\":{},\"member_id\":{},\"provider_id\":{},\"billed_amount\":{},\"service_ts\":{}}}",
        text(&claim.claim_id),
        text(&claim.member_id),
        text(&claim.provider_id),
        claim.total_charge_idr.0,
        claim.event_time.0.div_euclid(1000)
    );
}

/// What a topic record holds, for the claims job.
enum WireClaim {
    /// Not in the wire format: a claim line (or not; the parser says).
    Json,
    /// A `ClaimSubmitted` event, now a claim line.
    Claim,
    /// Another event of the topic: not a claim.
    Other,
}

/// Reads records in the contract's wire format (magic byte 0): a `ClaimSubmitted` event becomes
/// a claim line in `line`, other events are passed over. Anything else, an undecodable wire
/// record included, goes to the parser as it is (and to the dead letters if it is no claim).
fn wire_claim(value: &[u8], line: &mut String) -> WireClaim {
    if value.first() != Some(&0) {
        return WireClaim::Json;
    }
    match arus_schemas::wire::decode(value) {
        Ok(arus_schemas::Event::ClaimSubmitted(claim)) => {
            claim_line(&claim, line);
            WireClaim::Claim
        }
        Ok(_) => WireClaim::Other,
        Err(_) => WireClaim::Json,
    }
}

/// The claims of an Avro container file of events (one partition, 0; positions are records).
struct AvroClaimReader {
    path: PathBuf,
    reader: AvroContainerReader,
    /// The current claim as a JSON line, for the one claim parser.
    line: String,
    eof: bool,
}

impl ClaimReader for AvroClaimReader {
    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        loop {
            let event = self.reader.next_event().map_err(|e| RunError::Unsupported(e.to_string()))?;
            match event {
                None => {
                    self.eof = true;
                    return Ok(None);
                }
                Some(arus_schemas::Event::ClaimSubmitted(claim)) => {
                    claim_line(&claim, &mut self.line);
                    return Ok(Some((0, self.line.as_bytes())));
                }
                Some(_) => continue,
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
        vec![(0, Some(self.reader.position()))]
    }

    fn dead_letter(&self, error: &ClaimError, original: &[u8]) -> DeadLetter {
        DeadLetter {
            source: self.path.display().to_string(),
            partition: None,
            offset: Some(self.reader.position().saturating_sub(1)),
            line: None,
            timestamp_ms: None,
            error_kind: error_kind(error).to_owned(),
            error: error.to_string(),
            key: None,
            original: original.to_vec(),
        }
    }
}

/// Some partitions of a Kafka topic.
struct KafkaReader {
    topic: String,
    reader: BoundedPartitionReader,
    last: Option<arus_connectors::kafka::RawRecord>,
    /// Following, with this idle timeout.
    follow: Option<Duration>,
    /// A `ClaimSubmitted` event turned into a claim line.
    line: String,
    /// When each partition last had a record (following).
    last_seen: std::collections::BTreeMap<u32, Instant>,
}

impl ClaimReader for KafkaReader {
    fn next_record(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        self.last = match self.follow {
            None => self.reader.next_record()?,
            Some(_) => self.reader.next_available(Duration::from_millis(10))?,
        };
        let Some(record) = &self.last else { return Ok(None) };
        if self.follow.is_some() {
            self.last_seen.insert(record.partition, Instant::now());
        }
        Ok(Some((record.partition, &record.value)))
    }

    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        let kind = loop {
            self.last = match self.follow {
                None => self.reader.next_record()?,
                Some(_) => self.reader.next_available(Duration::from_millis(10))?,
            };
            let Some(record) = &self.last else { return Ok(None) };
            if self.follow.is_some() {
                self.last_seen.insert(record.partition, Instant::now());
            }
            match wire_claim(&record.value, &mut self.line) {
                WireClaim::Other => continue,
                kind => break kind,
            }
        };
        let record = self.last.as_ref().expect("just read");
        Ok(Some(match kind {
            WireClaim::Claim => (record.partition, self.line.as_bytes()),
            _ => (record.partition, &record.value),
        }))
    }

    fn finished(&self) -> bool {
        self.follow.is_none() && self.reader.finished()
    }

    fn caught_up(&self) -> bool {
        self.reader.finished()
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
                .filter(|(p, seen)| self.reader.caught_up(**p) && seen.elapsed() >= idle)
                .map(|(p, _)| *p)
                .collect(),
            None => {
                let unfinished: Vec<u32> = self.reader.unfinished().collect();
                self.reader.positions().into_iter().map(|(p, _)| p).filter(|p| !unfinished.contains(p)).collect()
            }
        }
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.reader.positions()
    }

    fn turn(&self) -> Option<(u32, usize)> {
        Some(self.reader.turn())
    }

    fn dead_letter(&self, error: &ClaimError, original: &[u8]) -> DeadLetter {
        let last = self.last.as_ref();
        DeadLetter {
            source: self.topic.clone(),
            partition: last.map(|r| r.partition),
            offset: last.map(|r| r.offset as u64),
            line: None,
            timestamp_ms: last.and_then(|r| r.timestamp_ms),
            error_kind: error_kind(error).to_owned(),
            error: error.to_string(),
            key: last.and_then(|r| r.key.clone()),
            original: original.to_vec(),
        }
    }
}

/// Some partitions of an embedded log topic, up to where they ended when the run began, taking
/// turns like [`BoundedPartitionReader`].
struct LogReader {
    /// A `ClaimSubmitted` event turned into a claim line.
    line: String,
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

impl LogReader {
    /// The next record in turn order (kept in `last`): its partition.
    fn next_raw(&mut self) -> Result<Option<u32>, RunError> {
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
                    return Ok(self.last.as_ref().map(|r| r.partition));
                }
            }
            self.buffer.clear();
            self.turn = ((index + 1) % n, 0);
        }
        Ok(None)
    }
}

impl ClaimReader for LogReader {
    fn next_record(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        let Some(partition) = self.next_raw()? else { return Ok(None) };
        Ok(Some((partition, &self.last.as_ref().expect("just read").value)))
    }

    fn next(&mut self) -> Result<Option<(u32, &[u8])>, RunError> {
        let (partition, kind) = loop {
            let Some(partition) = self.next_raw()? else { return Ok(None) };
            match wire_claim(&self.last.as_ref().expect("just read").value, &mut self.line) {
                WireClaim::Other => continue,
                kind => break (partition, kind),
            }
        };
        Ok(Some(match kind {
            WireClaim::Claim => (partition, self.line.as_bytes()),
            _ => (partition, &self.last.as_ref().expect("just read").value),
        }))
    }

    fn finished(&self) -> bool {
        self.partitions.iter().all(|(_, next, end)| next >= end)
    }

    fn ended(&self) -> Vec<u32> {
        self.partitions.iter().filter(|(_, next, end)| next >= end).map(|(p, _, _)| *p).collect()
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        self.partitions.iter().map(|(p, next, _)| (*p, Some(*next))).collect()
    }

    fn turn(&self) -> Option<(u32, usize)> {
        Some((self.partitions[self.turn.0].0, self.turn.1))
    }

    fn dead_letter(&self, error: &ClaimError, original: &[u8]) -> DeadLetter {
        let last = self.last.as_ref();
        DeadLetter {
            source: self.topic.clone(),
            partition: last.map(|r| r.partition),
            offset: last.map(|r| r.offset),
            line: None,
            timestamp_ms: last.map(|r| r.timestamp.0),
            error_kind: error_kind(error).to_owned(),
            error: error.to_string(),
            key: last.and_then(|r| r.key.clone()),
            original: original.to_vec(),
        }
    }
}

/// What the operators of a worker share.
pub(crate) struct WorkerContext {
    pub leader: bool,
    pub coordinator: Option<Arc<Coordinator>>,
    pub metrics: Option<Arc<Metrics>>,
    pub shared: Arc<Mutex<Shared>>,
    /// The source follows its topic: outputs are handed on as they are written.
    pub follow: bool,
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
                    turn: reader.as_ref().map_or(restored.as_ref().and_then(|s| s.turn), |r| r.turn()),
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
        let (mut records, mut dead_letters) = (0u64, 0u64);
        let partitions_count = partitions.len();
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
                            // The end, or (following) nothing more for now.
                            finished = input.finished();
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
                            let original = bytes.to_vec();
                            let letter = input.dead_letter(&error, &original);
                            dead_session.give(letter);
                            dead += 1;
                        }
                    }
                }
            }
            input.ended().into_iter().for_each(|p| watermarks.set_idle(p));
            dead_letters += dead;
            if let Some(m) = &metrics {
                m.source_batch(worker, records - before, dead, watermarks.current(), &input.positions());
            }
            if failed || finished {
                report(&shared, |r| {
                    r.records += records;
                    r.dead_letters += dead_letters;
                });
                if let Some(c) = &coordinator
                    && !failed
                {
                    c.source_finished(worker, state(&reader, &watermarks, time + 1, true));
                }
                held = None;
                reader = None;
            } else {
                let sent = records > before || dead > 0;
                // A batch moves the stamp on; an empty one (following) only as far as the
                // watermark — or, with every partition idle, to a checkpoint in flight, which
                // it may cross as it holds nothing back.
                let mut next = watermarks.current().max(time + u64::from(sent));
                let idle = !sent && input.ended().len() == partitions_count;
                if let (true, Some(at)) = (idle, coordinator.as_ref().and_then(|c| c.pending_at())) {
                    next = next.max(at);
                }
                if let Some(c) = &coordinator {
                    c.source_at(worker, next, || state(&reader, &watermarks, next, false));
                }
                claims_capability.downgrade(&next);
                dead_capability.downgrade(&next);
                if sent {
                    activator.activate();
                } else {
                    activator.activate_after(Duration::from_millis(20));
                }
            }
        }
    });
    (claims, dead)
}

/// Opens a sink on worker 0, from its restored position; `None` elsewhere or when it fails
/// (the run then reports the failure).
fn open_sink<T: 'static>(
    context: &WorkerContext,
    name: &str,
    open: impl FnOnce(Option<SinkPosition>) -> Result<Box<dyn Sink<T>>, RunError>,
) -> Option<Box<dyn Sink<T>>> {
    if !context.leader {
        return None;
    }
    match open(context.coordinator.as_ref().and_then(|c| c.restored_sink(name))) {
        Ok(sink) => Some(sink),
        Err(error) => {
            fail(&context.shared, error);
            None
        }
    }
}

/// Where dead letters go: the file `sink.dead_letter_path` when given; otherwise
/// `<topic>.dlq` next to a topic source, or `<sink path>.dlq.jsonl` for a file source.
enum DeadLetterTarget {
    File(PathBuf),
    Kafka(KafkaConfig, String, Option<String>),
    Log(Arc<EmbeddedLog>, String),
}

impl DeadLetterTarget {
    fn of(spec: &PipelineSpec, input: &Input) -> Self {
        let SinkSpec { path, dead_letter_path, kafka_transactional_id, .. } = &spec.sink;
        match (dead_letter_path, input) {
            (Some(path), _) => DeadLetterTarget::File(path.clone()),
            (None, Input::Jsonl { .. } | Input::Avro { .. }) => {
                DeadLetterTarget::File(path.with_extension("dlq.jsonl"))
            }
            (None, Input::Kafka { config, topic, .. }) => {
                DeadLetterTarget::Kafka(config.clone(), dlq_topic(topic), kafka_transactional_id.clone())
            }
            (None, Input::Embedded { log, topic, .. }) => DeadLetterTarget::Log(log.clone(), dlq_topic(topic)),
        }
    }

    fn open(&self, restored: Option<SinkPosition>) -> Result<Box<dyn Sink<DeadLetter>>, RunError> {
        Ok(match self {
            DeadLetterTarget::File(path) => {
                let file = LineFile { path: Some(path.clone()), header: None, lazy: true };
                Box::new(FileSink::open(&file, dead_letter_line, restored)?)
            }
            DeadLetterTarget::Kafka(config, topic, transactional_id) => {
                Box::new(KafkaDeadLetters::open(config, topic.clone(), restored, transactional_id.as_deref())?)
            }
            DeadLetterTarget::Log(log, topic) => Box::new(LogDeadLetters::open(log.clone(), topic.clone(), restored)?),
        })
    }
}

/// A window change as a JSON line: the change log, retractions included.
fn jsonl_line(change: &ProviderWindow, out: &mut String) -> bool {
    provider_windows::json_change(change, out);
    true
}

fn session_csv_line(change: &ProviderWindow, out: &mut String) -> bool {
    if change.diff > 0 {
        provider_windows::session_csv_row(change, out);
    }
    change.diff > 0
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

/// A dead letter as a JSON line: where it came from, why, and the record as text.
fn dead_letter_line(letter: &DeadLetter, out: &mut String) -> bool {
    let mut line = serde_json::json!({
        "source": letter.source,
        "error_kind": letter.error_kind,
        "error": letter.error,
        "original": String::from_utf8_lossy(&letter.original),
    });
    for (key, value) in
        [("partition", letter.partition.map(u64::from)), ("offset", letter.offset), ("line", letter.line)]
    {
        if let Some(value) = value {
            line[key] = value.into();
        }
    }
    out.push_str(&line.to_string());
    out.push('\n');
    true
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
        let read_all = |reader: &mut Box<dyn ClaimReader>| {
            let mut values = Vec::new();
            while let Some((_, bytes)) = reader.next().expect("read") {
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
                watermarks: Watermarks::new(0),
                next: 0,
                finished: false,
                turn: first.turn(),
            };
            let mut second = input.reader(0, 1, 7, Some(&state)).expect("open").expect("a reader");
            assert_eq!(read_all(&mut second), everything[stop..], "reopened after {stop} records");
        }
    }
}
