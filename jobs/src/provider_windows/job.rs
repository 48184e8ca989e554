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
//! see [`crate::runtime::checkpoint`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::kafka::{KafkaConfig, KafkaTopics};
use arus_connectors::transport::LogTopics;
use arus_operators::{StateCheckpoints, Time, Watermarks, WindowSpec};
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::spec::{ProviderWindowsSpec, SinkKind, SinkSpec};
use super::{Claim, ClaimError, LateClaim, ProviderWindow, ProviderWindowsConfig, claim_from_event, claim_of};
use crate::runtime::checkpoint::{CheckpointError, Coordinator, SinkPosition, SourceState};
use crate::runtime::input::{Input, Record, RecordReader};
use crate::runtime::metrics::Metrics;
use crate::runtime::sinks::{self, DeadLetter, FileSink, LineFile, Sink, TopicDeadLetters, WorkerContext};
use crate::runtime::spec::SourceSpec;
use crate::runtime::{Cluster, RunContext, RunError, Shared, Shutdown, fail, finish, report, timely_config};
use arus_schemas::Event;

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

/// Runs the pipeline to the end of its input, or until `context` asks it to stop (a stopped
/// run with checkpoints resumes from its last one: what it wrote after is cut back then).
pub fn run(spec: &ProviderWindowsSpec, context: &RunContext) -> Result<RunReport, RunError> {
    // Fail before starting workers when the input is missing.
    let input = Input::open(&spec.source)?;
    let metrics = Some(context.metrics.clone());
    run_input(spec, &context.cluster, metrics, context.shutdown.clone(), input)
}

/// Runs the pipeline over a topic of an embedded log this process already has (as `arus demo`
/// does); the spec's source must be `embedded` (its `dir` is not used).
pub fn run_on_log(spec: &ProviderWindowsSpec, cluster: &Cluster, log: Arc<EmbeddedLog>) -> Result<RunReport, RunError> {
    let SourceSpec::Embedded { topic, group, .. } = &spec.source else {
        return Err(RunError::Invalid("run_on_log needs an embedded source".to_owned()));
    };
    let ends = log.end_offsets(topic)?;
    let input = Input::Embedded { log, topic: topic.clone(), group: group.clone(), ends };
    run_input(spec, cluster, None, Shutdown::new(), input)
}

fn run_input(
    spec: &ProviderWindowsSpec,
    cluster: &Cluster,
    metrics: Option<Arc<Metrics>>,
    shutdown: Shutdown,
    input: Input,
) -> Result<RunReport, RunError> {
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
        allowed_lateness_ms: spec.windows.allowed_lateness.ms(),
    };
    let out_of_orderness = spec.windows.out_of_orderness.ms();
    let (config, total_workers) = timely_config(cluster);
    let coordinator = match spec.checkpoint_settings() {
        Some(settings) => {
            if matches!(cluster, Cluster::Process { addresses, .. } if addresses.len() > 1) {
                return Err(RunError::Invalid(
                    "checkpoints need a single process: run with more --workers instead of --processes, or \
                     without [checkpoint]"
                        .to_owned(),
                ));
            }
            let operators = [super::OPERATOR];
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
            let context = WorkerContext {
                leader,
                coordinator: coordinator.clone(),
                metrics,
                shared: shared.clone(),
                follow,
                shutdown: shutdown.clone(),
            };
            let (claims, dead) = claims_source(scope, reader, partitions, settings, restored, &context);
            let checkpoints = coordinator.clone().map(|c| c as Arc<dyn StateCheckpoints>);
            let (changes, late) = super::build(claims, &job, checkpoints);
            let csv = open_sink(&context, SINKS[0], |restored| {
                let (header, format): (_, fn(&ProviderWindow, &mut String) -> bool) = match (sink_kind, job.windows) {
                    (SinkKind::Jsonl, _) => (None, jsonl_line),
                    (SinkKind::Csv, WindowSpec::Session { .. }) => (Some(super::SESSION_CSV_HEADER), session_csv_line),
                    (SinkKind::Csv, _) => (Some(super::CSV_HEADER), csv_line),
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

/// The next claim a reader has.
enum Next {
    /// A claim, and its partition.
    Claim(u32, Claim),
    /// A record that should have been a claim and is not: why, and the record.
    Refused(ClaimError, Vec<u8>),
    /// Nothing more (for now, following).
    None,
}

/// The next record of `reader` that is a claim, or should have been one (the topic's other
/// events are passed over).
fn next_claim(reader: &mut dyn RecordReader) -> Result<Next, RunError> {
    loop {
        return Ok(match reader.next()? {
            None => Next::None,
            Some(Record::Bytes(partition, _, bytes)) => match claim_of(bytes) {
                Some(Ok(claim)) => Next::Claim(partition, claim),
                Some(Err(error)) => Next::Refused(error, bytes.to_vec()),
                None => continue,
            },
            Some(Record::Event(partition, event)) => match *event {
                Event::ClaimSubmitted(event) => match claim_from_event(&event) {
                    Ok(claim) => Next::Claim(partition, claim),
                    Err(error) => Next::Refused(error, serde_json::to_vec(&event).unwrap_or_default()),
                },
                _ => continue,
            },
        });
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
    reader: Option<Box<dyn RecordReader>>,
    partitions: Vec<u32>,
    settings: SourceSettings,
    restored: Option<SourceState>,
    context: &WorkerContext<RunReport>,
) -> (timely::dataflow::StreamVec<'scope, Time, Claim>, timely::dataflow::StreamVec<'scope, Time, DeadLetter>) {
    let (coordinator, metrics, shared) = (context.coordinator.clone(), context.metrics.clone(), context.shared.clone());
    let shutdown = context.shutdown.clone();
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
            move |reader: &Option<Box<dyn RecordReader>>, watermarks: &Watermarks, next: Time, finished: bool| {
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
                    let next = match next_claim(&mut **input) {
                        Ok(next) => next,
                        Err(error) => {
                            fail(&shared, error);
                            failed = true;
                            break;
                        }
                    };
                    match next {
                        Next::Claim(partition, claim) => {
                            watermarks.observe(partition, claim.1);
                            claims_session.give(claim);
                            records += 1;
                        }
                        Next::Refused(error, original) => {
                            let letter = input.dead_letter(error_kind(&error), error.to_string(), &original);
                            dead_session.give(letter);
                            dead += 1;
                        }
                        Next::None => {
                            // The end, or (following) nothing more for now.
                            finished = input.finished();
                            break;
                        }
                    }
                }
            }
            input.ended().into_iter().for_each(|p| watermarks.set_idle(p));
            dead_letters += dead;
            if let Some(m) = &metrics {
                m.source_batch(worker, records - before, dead, watermarks.current(), &input.positions());
            }
            // Asked to stop: the input ends here, unfinished (no checkpoint says it was read
            // to its end; a restart resumes from the last one).
            let stopped = shutdown.requested();
            if failed || finished || stopped {
                report(&shared, |r| {
                    r.records += records;
                    r.dead_letters += dead_letters;
                });
                if let Some(c) = &coordinator
                    && !failed
                    && !stopped
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
    context: &WorkerContext<RunReport>,
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
    fn of(spec: &ProviderWindowsSpec, input: &Input) -> Self {
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
                let compression = arus_schemas::topics::DLQ_SPEC.compression;
                let sink = match transactional_id {
                    Some(id) => KafkaTopics::transactional(config, compression, id)?,
                    None => KafkaTopics::new(config, compression)?,
                };
                Box::new(TopicDeadLetters::open(Box::new(sink), topic.clone(), restored)?)
            }
            DeadLetterTarget::Log(log, topic) => {
                Box::new(TopicDeadLetters::open(Box::new(LogTopics(log.clone())), topic.clone(), restored)?)
            }
        })
    }
}

/// A window change as a JSON line: the change log, retractions included.
fn jsonl_line(change: &ProviderWindow, out: &mut String) -> bool {
    super::json_change(change, out);
    true
}

fn session_csv_line(change: &ProviderWindow, out: &mut String) -> bool {
    if change.diff > 0 {
        super::session_csv_row(change, out);
    }
    change.diff > 0
}

fn csv_line(change: &ProviderWindow, out: &mut String) -> bool {
    if change.diff > 0 {
        super::csv_row(change, out);
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
