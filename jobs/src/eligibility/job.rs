//! Runs the eligibility job: `member.events` and `benefit.events` read by every worker (their
//! partitions dealt out) and decoded from the wire format; the events folded on worker 0 into
//! one [`EligibilityState`], and after each batch the records of the members it changed
//! written to the store at once: each member's eligibility resolved date by date
//! ([`EligibilityState::eligibility_record`], `elig:member:<id>`), its subscriber's coverage
//! and its plans' benefit versions applied, so that one store read answers a question
//! ([`arus_connectors::store::read::eligibility`]).
//!
//! The state is rebuilt from the beginning of the topics on every start: it depends only on the
//! set of events, and the store's versioned writes ignore what it already holds, so a restart
//! costs reading the topics again and nothing else.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::StateStore;
use arus_connectors::transport::{LogTopics, TopicSink};
use arus_operators::Time;
use arus_schemas::topics::names::{BENEFIT_EVENTS, MEMBER_EVENTS};
use arus_schemas::{Event, wire};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::operator::source;

use super::EligibilityState;
use super::spec::EligibilitySpec;
use crate::runtime::input::{Input, embedded_inputs, open_inputs, open_readers, read_events};
use crate::runtime::metrics::Metrics;
use crate::runtime::sinks::DeadLetterTopics;
use crate::runtime::spec::TopicsSource;
use crate::runtime::{Cluster, RunContext, RunError, Shared, Shutdown, fail, finish, open_store, timely_config};

/// The topics the job reads.
pub const TOPICS: [&str; 2] = [BENEFIT_EVENTS, MEMBER_EVENTS];

/// Records read per reader per step.
const BATCH: usize = 4_096;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EligibilityReport {
    /// Events folded in.
    pub events: u64,
    /// Records that were not events of the contract (counted, passed over).
    pub undecodable: u64,
    /// Requests answered on `eligibility.responses`.
    pub answered: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Runs the job with the store the spec names, until its input ends or `context` asks it to
/// stop.
pub fn run(spec: &EligibilitySpec, context: &RunContext) -> Result<EligibilityReport, RunError> {
    run_with_store(spec, context, open_store(&spec.store)?)
}

/// [`run`] into `store`.
pub fn run_with_store(
    spec: &EligibilitySpec,
    context: &RunContext,
    store: Arc<dyn StateStore>,
) -> Result<EligibilityReport, RunError> {
    let (cluster, metrics, shutdown) = (&context.cluster, context.metrics.clone(), &context.shutdown);
    let nik_key = match &spec.nik_key_env {
        None => None,
        Some(name) => Some(std::env::var(name).ok().filter(|k| k.len() >= 32).ok_or_else(|| {
            RunError::Invalid(format!("nik_key_env: {name} is not set to a key of at least 32 characters"))
        })?),
    };
    let inputs = open_inputs(&spec.source, &TOPICS)?;
    let following = match &spec.source {
        TopicsSource::Kafka { follow: true, idle_timeout, .. } => Some(idle_timeout.duration()),
        _ => None,
    };
    if let (true, Some(idle)) = (spec.answer_requests, following) {
        // Following: requests are answered as they come, from the store as it is then, while
        // the job keeps it up to date; the answering stops once the requests topic has been
        // quiet for `idle` (the job itself follows until stopped).
        // Answers start once the store holds everything the topics held when the job began.
        let readiness = Arc::new(Readiness::default());
        let (source, answering_store, ready) = (spec.source.clone(), store.clone(), readiness.clone());
        let stopping = shutdown.clone();
        let answering = std::thread::spawn(move || {
            while !ready.ready.load(Ordering::Acquire) {
                if ready.over.load(Ordering::Acquire) {
                    return Ok(0);
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
            answer_requests(&source, &*answering_store, Some(idle), &stopping)
        });
        let report = run_inputs(inputs, cluster, store, readiness.clone(), metrics, shutdown, nik_key);
        readiness.over.store(true, Ordering::Release);
        let mut report = report?;
        report.answered =
            answering.join().map_err(|_| RunError::Internal("the answering thread panicked".into()))??;
        return Ok(report);
    }
    let mut report = run_inputs(inputs, cluster, store.clone(), Arc::default(), metrics, shutdown, nik_key)?;
    if spec.answer_requests && !shutdown.requested() {
        let started = Instant::now();
        report.answered = answer_requests(&spec.source, &*store, None, shutdown)?;
        report.elapsed += started.elapsed();
    }
    Ok(report)
}

/// Answers the requests on the source's `eligibility.requests` from `store`, writing
/// `EligibilityResponded` events to `eligibility.responses` next to it: those there now, or
/// (`follow` with an idle timeout) also those that come, until none has come for that long or a
/// stop is asked for.
fn answer_requests(
    source: &TopicsSource,
    store: &dyn StateStore,
    follow: Option<Duration>,
    shutdown: &Shutdown,
) -> Result<u64, RunError> {
    use arus_schemas::topics::names::{ELIGIBILITY_REQUESTS, ELIGIBILITY_RESPONSES};
    let (requests, responses) = match source {
        TopicsSource::Kafka { topic_prefix, .. } | TopicsSource::Embedded { topic_prefix, .. } => {
            (format!("{topic_prefix}{ELIGIBILITY_REQUESTS}"), format!("{topic_prefix}{ELIGIBILITY_RESPONSES}"))
        }
    };
    let respond = |request: &arus_schemas::events::EligibilityRequested| -> Result<Event, RunError> {
        let answer = arus_connectors::store::read::eligibility(
            store,
            &request.member_id,
            request.service_date,
            &request.service_type,
        )?;
        Ok(Event::EligibilityResponded(EligibilityState::response(request, &answer, request.event_time)))
    };
    // Each request on the topic answered through `sink`: the broker's, or the log's.
    let answer = |sink: &dyn TopicSink, value: &[u8]| -> Result<u64, RunError> {
        let Ok(Event::EligibilityRequested(request)) = wire::decode(value) else { return Ok(0) };
        let response = respond(&request)?;
        let bytes = wire::encode(&response).map_err(|e| RunError::Internal(e.to_string()))?;
        sink.send(&responses, response.key().as_bytes(), &bytes, request.event_time)?;
        Ok(1)
    };
    let mut answered = 0;
    match source {
        TopicsSource::Kafka { brokers, group, .. } => {
            let config = arus_connectors::kafka::KafkaConfig::new(brokers.clone());
            let partitions = arus_connectors::kafka::partition_count(&config, &requests)?;
            let from: Vec<(u32, Option<u64>)> = (0..partitions).map(|p| (p, None)).collect();
            let mut reader =
                arus_connectors::kafka::BoundedPartitionReader::open(&config, group, &requests, &from, BATCH)?;
            let sink = arus_connectors::kafka::KafkaTopics::new(&config, "lz4")?;
            sink.ensure_topic(&responses, partitions)?;
            match follow {
                None => {
                    while let Some(record) = reader.next_record()? {
                        answered += answer(&sink, &record.value)?;
                    }
                }
                Some(idle) => {
                    let mut reader = reader.following();
                    let mut last = Instant::now();
                    while last.elapsed() < idle && !shutdown.requested() {
                        if let Some(record) = reader.next_available(Duration::from_millis(50))? {
                            answered += answer(&sink, &record.value)?;
                            last = Instant::now();
                        }
                    }
                }
            }
            sink.flush()?;
        }
        TopicsSource::Embedded { dir, .. } => {
            let sink = LogTopics(Arc::new(EmbeddedLog::open(dir)?));
            sink.ensure_topic(&responses, sink.0.partitions(&requests)?)?;
            let mut requested = Vec::new();
            sink.read_back(&requests, &[], &mut |value| requested.push(value.to_vec()))?;
            for value in requested {
                answered += answer(&sink, &value)?;
            }
            sink.flush()?;
        }
    }
    Ok(answered)
}

/// Runs the job over topics of a log this process already has (as `arus demo` does).
pub fn run_on_log(
    log: Arc<EmbeddedLog>,
    cluster: &Cluster,
    store: Arc<dyn StateStore>,
) -> Result<EligibilityReport, RunError> {
    let inputs = embedded_inputs(&log, &TOPICS, "arus-eligibility")?;
    run_inputs(inputs, cluster, store, Arc::default(), Arc::new(Metrics::new("eligibility")), &Shutdown::new(), None)
}

/// When the store holds everything the topics held when the job began: each worker's source
/// notes the stamp at which its readers first caught up; each worker's fold notes when its
/// frontier has passed the latest of those; once all have, the job is `ready`.
#[derive(Default)]
struct Readiness {
    caught_up: Mutex<Vec<Option<Time>>>,
    applied: Mutex<Vec<bool>>,
    ready: AtomicBool,
    /// The job has ended.
    over: AtomicBool,
}

impl Readiness {
    fn caught_up(&self, worker: usize, peers: usize, at: Time) {
        let mut caught_up = self.caught_up.lock().unwrap_or_else(|e| e.into_inner());
        caught_up.resize(peers, None);
        caught_up[worker].get_or_insert(at);
    }

    /// The stamp past which every worker's caught-up records lie, once all have caught up.
    fn all_caught_up(&self, peers: usize) -> Option<Time> {
        let caught_up = self.caught_up.lock().unwrap_or_else(|e| e.into_inner());
        if caught_up.len() < peers {
            return None;
        }
        caught_up.iter().try_fold(0, |latest: Time, at| at.map(|at| latest.max(at)))
    }

    fn applied(&self, worker: usize, peers: usize) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied.resize(peers, false);
        applied[worker] = true;
        if applied.iter().all(|a| *a) {
            self.ready.store(true, Ordering::Release);
        }
    }
}

fn run_inputs(
    inputs: Vec<Input>,
    cluster: &Cluster,
    store: Arc<dyn StateStore>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    shutdown: &Shutdown,
    nik_key: Option<String>,
) -> Result<EligibilityReport, RunError> {
    let (config, _) = timely_config(cluster);
    let letters = DeadLetterTopics::of(&inputs)?;
    let worker_letters = letters.clone();
    let inputs = Arc::new(inputs);
    let shared = Arc::new(Mutex::new(Shared::<EligibilityReport>::default()));
    let started = Instant::now();
    let (worker_shared, worker_shutdown) = (shared.clone(), shutdown.clone());
    let guards = timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let shared = worker_shared.clone();
        let nik_key = nik_key.clone();
        let store = store.clone();
        let letters = worker_letters.clone();
        let (source_metrics, metrics, shutdown) = (metrics.clone(), metrics.clone(), worker_shutdown.clone());
        let mut readers = open_readers(&inputs, index, peers, BATCH, &shared);
        if readers.is_empty() {
            readiness.caught_up(index, peers, 0);
        }
        let (source_readiness, sink_readiness) = (readiness.clone(), readiness.clone());
        worker.dataflow::<Time, _, _>(|scope| {
            let source_shared = shared.clone();
            let events = source(scope, "TopicsSource", move |capability, info| {
                let activator = scope.activator_for(info.address);
                let mut capability = (!readers.is_empty()).then_some(capability);
                let shared = source_shared;
                let readiness = source_readiness;
                move |output| {
                    if shutdown.requested() {
                        capability = None; // stopped: the input ends here
                    }
                    let Some(cap) = capability.as_mut() else { return };
                    let mut got = 0u64;
                    let read = {
                        let mut session = output.session(&*cap);
                        read_events(&mut readers, BATCH, &shared, letters.as_deref(), |_, _, _, event| {
                            session.give(event);
                            got += 1;
                        })
                    };
                    let (failed, undecodable) = (read.is_none(), read.unwrap_or(0));
                    source_metrics.events_read(got, undecodable);
                    shared.lock().unwrap_or_else(|e| e.into_inner()).report.undecodable += undecodable;
                    if readers.iter().all(|r| r.caught_up()) {
                        readiness.caught_up(index, peers, *cap.time());
                    }
                    if failed || readers.iter().all(|r| r.finished()) {
                        capability = None;
                    } else {
                        let next = *cap.time() + 1;
                        cap.downgrade(&next);
                        if got > 0 {
                            activator.activate();
                        } else {
                            activator.activate_after(Duration::from_millis(20));
                        }
                    }
                }
            });
            let mut state = match &nik_key {
                Some(key) => EligibilityState::with_nik_key(key.as_bytes()),
                None => EligibilityState::new(),
            };
            let mut applied = 0u64;
            let mut ready = false;
            let readiness = sink_readiness;
            // Every event to worker 0: a member's record is resolved with its subscriber's
            // coverage and its plans' benefits, so one fold holds them all (as the adjudicator
            // does); the reading and decoding stay spread over the workers.
            events.sink(Exchange::new(|_: &Event| 0), "Eligibility", move |(input, frontier)| {
                input.for_each_stamp(|_, data| {
                    let (mut changed, before) = (BTreeSet::new(), applied);
                    for batch in data {
                        for event in batch.drain(..) {
                            changed.extend(state.apply(&event));
                            applied += 1;
                        }
                    }
                    // The records of the stamp's members written at once, each once.
                    let writes = state.records(changed.iter().map(String::as_str));
                    metrics.folded(applied - before, None);
                    metrics.store_records(writes.len() as u64);
                    if let Err(error) = store.put_many_versioned(&writes) {
                        fail(&shared, RunError::Store(error));
                    }
                });
                if !ready
                    && let Some(at) = readiness.all_caught_up(peers)
                    && !frontier.less_equal(&at)
                {
                    readiness.applied(index, peers);
                    ready = true;
                }
                if frontier.is_empty() {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).report.events += applied;
                    applied = 0;
                }
            });
        });
        while worker.step_or_park(None) {}
    })
    .map_err(RunError::Timely)?;
    let mut report = finish(guards, shared)?;
    if let Some(letters) = &letters {
        letters.flush()?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
