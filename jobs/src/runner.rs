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
use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, KafkaError};

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
    let SinkSpec::Csv { path: sink_path, late_path, dead_letter_path } = spec.sink.clone();
    let dead_letter_path = dead_letter_path.unwrap_or_else(|| sink_path.with_extension("dlq.jsonl"));
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
                    claims_source(scope, leader, path, dead_letter_path, batch_lines, out_of_orderness, shared.clone())
                }
                SourceSpec::Kafka { brokers, topic, group, batch_records } => {
                    // Partitions are dealt round-robin over every worker of every process.
                    let mine: Vec<u32> = (0..kafka_partitions).filter(|p| *p as usize % peers == index).collect();
                    let kafka =
                        KafkaSourceSettings { config: KafkaConfig::new(brokers), topic, group, partitions: mine };
                    kafka_claims_source(scope, kafka, dead_letter_path, batch_records, out_of_orderness, shared.clone())
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

fn claims_source<'scope>(
    scope: timely::dataflow::Scope<'scope, Time>,
    leader: bool,
    path: PathBuf,
    dead_letter_path: PathBuf,
    batch_lines: usize,
    out_of_orderness_ms: u64,
    shared: Arc<Mutex<Shared>>,
) -> timely::dataflow::StreamVec<'scope, Time, Claim> {
    source(scope, "ClaimsJsonlSource", move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability).filter(|_| leader);
        let mut reader = None;
        if capability.is_some() {
            match File::open(&path) {
                Ok(file) => reader = Some(BufReader::with_capacity(1 << 20, file)),
                Err(source) => {
                    fail(&shared, RunError::Io { path: path.clone(), source });
                    capability = None;
                }
            }
        }
        let mut watermarks = Watermarks::new(out_of_orderness_ms);
        watermarks.add_partition(0);
        let mut line = Vec::with_capacity(512);
        let mut line_number = 0u64;
        let mut records = 0u64;
        move |output| {
            let (Some(cap), Some(input)) = (capability.as_mut(), reader.as_mut()) else { return };
            let time = *cap.time();
            let mut finished = false;
            {
                let mut session = output.session(&*cap);
                for _ in 0..batch_lines {
                    line.clear();
                    match input.read_until(b'\n', &mut line) {
                        Ok(0) => {
                            finished = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(source) => {
                            fail(&shared, RunError::Io { path: path.clone(), source });
                            finished = true;
                            break;
                        }
                    }
                    line_number += 1;
                    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        line.pop();
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_claim(&line) {
                        Ok(claim) => {
                            watermarks.observe(0, claim.1);
                            session.give(claim);
                            records += 1;
                        }
                        Err(error) => {
                            let letter = serde_json::json!({
                                "source": path.display().to_string(),
                                "line": line_number,
                                "error": error.to_string(),
                                "original": String::from_utf8_lossy(&line),
                            });
                            dead_letter(&shared, &dead_letter_path, letter);
                        }
                    }
                }
            }
            if finished {
                shared.lock().unwrap_or_else(|e| e.into_inner()).report.records += records;
                capability = None;
            } else {
                let watermark = watermarks.current().max(time + 1);
                cap.downgrade(&watermark);
                activator.activate();
            }
        }
    })
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

/// What one worker's Kafka source reads.
struct KafkaSourceSettings {
    config: KafkaConfig,
    topic: String,
    group: String,
    /// This worker's partitions.
    partitions: Vec<u32>,
}

/// Reads this worker's partitions to their end at start. Each step's records are sent at the
/// watermark reached before the step: the minimum over this worker's partitions of the highest
/// event time seen minus the out-of-orderness, a partition read to its end no longer counting.
fn kafka_claims_source<'scope>(
    scope: timely::dataflow::Scope<'scope, Time>,
    settings: KafkaSourceSettings,
    dead_letter_path: PathBuf,
    batch_records: usize,
    out_of_orderness_ms: u64,
    shared: Arc<Mutex<Shared>>,
) -> timely::dataflow::StreamVec<'scope, Time, Claim> {
    source(scope, "ClaimsKafkaSource", move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability).filter(|_| !settings.partitions.is_empty());
        let mut reader = None;
        if capability.is_some() {
            match BoundedPartitionReader::open(&settings.config, &settings.group, &settings.topic, &settings.partitions)
            {
                Ok(r) => reader = Some(r),
                Err(e) => {
                    fail(&shared, e.into());
                    capability = None;
                }
            }
        }
        let mut watermarks = Watermarks::new(out_of_orderness_ms);
        for p in &settings.partitions {
            watermarks.add_partition(*p);
        }
        let mut records = 0u64;
        move |output| {
            let (Some(cap), Some(input)) = (capability.as_mut(), reader.as_mut()) else { return };
            let time = *cap.time();
            let mut failed = false;
            {
                let mut session = output.session(&*cap);
                for _ in 0..batch_records {
                    match input.poll(std::time::Duration::from_millis(if input.finished() { 0 } else { 10 })) {
                        Ok(Some(record)) => match parse_claim(&record.value) {
                            Ok(claim) => {
                                watermarks.observe(record.partition, claim.1);
                                session.give(claim);
                                records += 1;
                            }
                            Err(error) => {
                                let letter = serde_json::json!({
                                    "source": settings.topic,
                                    "partition": record.partition,
                                    "offset": record.offset,
                                    "error": error.to_string(),
                                    "original": String::from_utf8_lossy(&record.value),
                                });
                                dead_letter(&shared, &dead_letter_path, letter);
                            }
                        },
                        Ok(None) => break,
                        Err(e) => {
                            fail(&shared, e.into());
                            failed = true;
                            break;
                        }
                    }
                }
            }
            let finished: Vec<u32> =
                settings.partitions.iter().copied().filter(|p| !input.unfinished().any(|u| u == *p)).collect();
            for p in finished {
                watermarks.set_idle(p);
            }
            if failed || input.finished() {
                shared.lock().unwrap_or_else(|e| e.into_inner()).report.records += records;
                capability = None;
            } else {
                let watermark = watermarks.current().max(time + 1);
                cap.downgrade(&watermark);
                activator.activate();
            }
        }
    })
}
