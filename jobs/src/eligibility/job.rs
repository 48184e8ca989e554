//! Runs the eligibility job: `member.events` and `benefit.events` read by every worker (their
//! partitions dealt out) and decoded from the wire format; the events folded on worker 0 into
//! one [`EligibilityState`], and after each batch the records of the members it changed
//! written to the store at once: each member's eligibility resolved date by date
//! ([`EligibilityState::eligibility_record`], `elig:member:<id>`), its subscriber's coverage
//! and its plans' benefit versions applied, so that one store read answers a question
//! ([`arus_connectors::store::read::eligibility`]).
//!
//! The state depends only on the set of events, and the store's versioned writes ignore what it
//! already holds. Without snapshots it is rebuilt from the beginning of the topics on every
//! start; with them (`checkpoint`), worker 0 saves it with where it had received up to in each
//! partition (between two stamps, after their records are written: everything before applied,
//! nothing after), and a restart loads the newest and reads only what came after.

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
use crate::runtime::input::{Input, embedded_inputs, open_inputs, open_readers, origin, positions, read_events};
use crate::runtime::metrics::Metrics;
use crate::runtime::sinks::DeadLetterTopics;
use crate::runtime::snapshot::{self, Header, SnapshotSettings};
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
    /// The snapshot the run began from (its epoch), when there was one.
    pub restored_from: Option<u64>,
    /// Snapshots written.
    pub snapshots: u64,
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
    let snapshots = spec.checkpoint.as_ref().map(|checkpoint| {
        // (Whether it indexes NIK digests too: a state saved without them lacks those records.)
        let identity = format!(
            "eligibility of {}, nik digests {}",
            spec.source.topic_names(&TOPICS).join(", "),
            if nik_key.is_some() { "on" } else { "off" }
        );
        SnapshotSettings::of(checkpoint, identity)
    });
    let job = Job { store: store.clone(), metrics, nik_key, snapshots };
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
        let report = run_inputs(inputs, cluster, job, readiness.clone(), shutdown);
        readiness.over.store(true, Ordering::Release);
        let mut report = report?;
        report.answered =
            answering.join().map_err(|_| RunError::Internal("the answering thread panicked".into()))??;
        return Ok(report);
    }
    let mut report = run_inputs(inputs, cluster, job, Arc::default(), shutdown)?;
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
    let job = Job { store, metrics: Arc::new(Metrics::new("eligibility")), nik_key: None, snapshots: None };
    run_inputs(inputs, cluster, job, Arc::default(), &Shutdown::new())
}

/// With snapshots and something applied since the last, writes one.
fn snapshot(
    saver: &mut Option<Saver>,
    unsaved: &mut bool,
    state: &EligibilityState,
    names: &[String],
    received: &foldhash::HashMap<u32, u64>,
    shared: &Mutex<Shared<EligibilityReport>>,
) {
    let Some(saver) = saver.as_mut().filter(|_| *unsaved) else { return };
    match saver.write(state, names, received) {
        Ok(()) => shared.lock().unwrap_or_else(|e| e.into_inner()).report.snapshots += 1,
        Err(error) => fail(shared, error),
    }
    *unsaved = false;
}

/// What a run folds into, and how.
struct Job {
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    nik_key: Option<String>,
    snapshots: Option<SnapshotSettings>,
}

/// Worker 0's snapshots: where, how often, the next epoch, and when the last was written.
struct Saver {
    settings: SnapshotSettings,
    epoch: u64,
    last: Instant,
}

impl Saver {
    /// Writes the state and the positions it has received up to (from `names`' partitions).
    fn write(
        &mut self,
        state: &EligibilityState,
        names: &[String],
        received: &foldhash::HashMap<u32, u64>,
    ) -> Result<(), RunError> {
        let fold = state.save()?;
        let header = Header {
            format: snapshot::FORMAT,
            identity: self.settings.identity.clone(),
            epoch: self.epoch,
            positions: positions(names, received),
            released_below: 0,
            held: Vec::new(),
            outputs: Default::default(),
            written: Vec::new(),
            fold_bytes: fold.len() as u64,
        };
        snapshot::write(&self.settings, &header, &fold)?;
        self.epoch += 1;
        self.last = Instant::now();
        Ok(())
    }
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
    job: Job,
    readiness: Arc<Readiness>,
    shutdown: &Shutdown,
) -> Result<EligibilityReport, RunError> {
    let Job { store, metrics, nik_key, snapshots } = job;
    let mut state = match &nik_key {
        Some(key) => EligibilityState::with_nik_key(key.as_bytes()),
        None => EligibilityState::new(),
    };
    // The newest snapshot, restored: the state, and where each partition goes on from.
    let names: Vec<String> = inputs.iter().map(Input::name).collect();
    let (mut restored_from, mut positions) = (None, Default::default());
    let mut saver = None;
    if let Some(settings) = &snapshots {
        if let Some(loaded) = snapshot::latest(settings)? {
            state.load(&loaded.fold)?;
            (restored_from, positions) = (Some(loaded.header.epoch), loaded.header.positions);
        }
        saver =
            Some(Saver { settings: settings.clone(), epoch: snapshot::next_epoch(settings)?, last: Instant::now() });
    }
    let received = crate::runtime::input::received(&names, &positions);
    let starts = Arc::new(snapshot::starts(&names, &positions, 0));
    // Worker 0's: the fold is there.
    let folding = Arc::new(Mutex::new(Some((state, received, saver))));
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
        let store = store.clone();
        let letters = worker_letters.clone();
        let names = names.clone();
        let (source_metrics, metrics, shutdown) = (metrics.clone(), metrics.clone(), worker_shutdown.clone());
        let sink_shutdown = worker_shutdown.clone();
        let (mut readers, numbers) = open_readers(&inputs, index, peers, BATCH, &starts, &shared);
        if readers.is_empty() {
            readiness.caught_up(index, peers, 0);
        }
        let folding = if index == 0 { folding.lock().unwrap_or_else(|e| e.into_inner()).take() } else { None };
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
                        read_events(&mut readers, BATCH, &shared, letters.as_deref(), |i, partition, offset, event| {
                            session.give((origin(numbers[i], partition), offset, event));
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
            let (mut state, mut received, mut saver) = folding.unwrap_or_default();
            let savepoint = sink_shutdown;
            let mut applied = 0u64;
            // Applied since the last snapshot.
            let mut unsaved = false;
            let mut ready = false;
            let readiness = sink_readiness;
            // Every event to worker 0: a member's record is resolved with its subscriber's
            // coverage and its plans' benefits, so one fold holds them all (as the adjudicator
            // does); the reading and decoding stay spread over the workers. Each partition's
            // events come in the order of their offsets (one reader, one channel).
            events.sink(Exchange::new(|_: &(u32, u64, Event)| 0), "Eligibility", move |(input, frontier)| {
                input.for_each_stamp(|_, data| {
                    let (mut changed, before) = (BTreeSet::new(), applied);
                    for batch in data {
                        for (at, offset, event) in batch.drain(..) {
                            changed.extend(state.apply(&event));
                            received.insert(at, offset + 1);
                            applied += 1;
                        }
                    }
                    // The records of the stamp's members written at once, each once.
                    let writes = state.records(changed.iter().map(String::as_str));
                    metrics.folded(applied - before, None);
                    metrics.store_records(writes.len() as u64);
                    if let Err(error) = store.put_many_versioned(&writes) {
                        fail(&shared, RunError::Store(error));
                        saver = None; // (what was not written is not in a snapshot)
                    }
                    unsaved |= applied > before;
                    // After a stamp, every record of what was applied written: a snapshot when
                    // due (a backlog comes as many stamps at once).
                    let asked = savepoint.take_savepoint();
                    if saver.as_ref().is_some_and(|s| asked || s.last.elapsed() >= s.settings.interval) {
                        snapshot(&mut saver, &mut unsaved, &state, &names, &received, &shared);
                    }
                });
                // And one at the end.
                if frontier.is_empty() {
                    snapshot(&mut saver, &mut unsaved, &state, &names, &received, &shared);
                }
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
    report.restored_from = restored_from;
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sequenced::produce;
    use arus_connectors::store::MemoryStore;

    /// The state saved in snapshots: a run over the first two thirds of the member and plan
    /// events (on 2 workers), then one over the rest resumed from its snapshot — on 1, 2 or 4
    /// workers — reading only what came after, leave the store as one run over everything does
    /// (with the NIK digests); a snapshot taken without the NIK key is refused by a run with it.
    #[test]
    fn a_run_resumed_from_its_snapshot_reads_only_what_came_after_and_writes_what_one_run_does() {
        let events: Vec<Event> = crate::runtime::sequenced::generated(2_000, 30)
            .into_iter()
            .filter(|e| TOPICS.contains(&e.topic().as_ref()))
            .collect();
        let split = events.len() * 2 / 3;
        let key = "a key of NIK digests, 32 bytes or more";
        let run = |log: &Arc<EmbeddedLog>, store: &Arc<MemoryStore>, dir: Option<&std::path::Path>, workers: usize| {
            let snapshots = dir.map(|dir| SnapshotSettings {
                dir: dir.to_owned(),
                interval: Duration::from_millis(1),
                identity: "eligibility".into(),
            });
            let job = Job {
                store: store.clone(),
                metrics: Arc::new(Metrics::new("eligibility")),
                nik_key: Some(key.to_owned()),
                snapshots,
            };
            let inputs = embedded_inputs(log, &TOPICS, "arus-eligibility").unwrap();
            run_inputs(inputs, &Cluster::Local { workers }, job, Arc::default(), &Shutdown::new())
        };
        let whole = Arc::new(EmbeddedLog::new());
        whole.create_all_topics().unwrap();
        produce(&whole, &events);
        let expected = Arc::new(MemoryStore::new());
        let once = run(&whole, &expected, None, 2).unwrap();
        assert_eq!(once.events, events.len() as u64);
        let expected = expected.contents();
        assert!(expected.keys().any(|k| k.starts_with("nik:")), "NIK digests indexed");
        let dir = tempfile::tempdir().unwrap();
        for workers in [1, 2, 4] {
            let snapshots = dir.path().join(format!("s{workers}"));
            let (log, store) = (Arc::new(EmbeddedLog::new()), Arc::new(MemoryStore::new()));
            log.create_all_topics().unwrap();
            produce(&log, &events[..split]);
            let first = run(&log, &store, Some(&snapshots), 2).unwrap();
            assert!(first.snapshots >= 1 && first.restored_from.is_none(), "{first:?}");
            produce(&log, &events[split..]);
            let second = run(&log, &store, Some(&snapshots), workers).unwrap();
            assert_eq!(second.restored_from, Some(first.snapshots), "the newest: {second:?}");
            assert_eq!(second.events, (events.len() - split) as u64, "only what came after");
            let got = store.contents();
            let differ = expected.iter().filter(|(key, value)| got.get(*key) != Some(value)).count();
            assert!(
                got.len() == expected.len() && differ == 0,
                "{workers} workers: {} records, {} from one run, {differ} differ",
                got.len(),
                expected.len()
            );
        }
        // Another job's snapshot (here: without NIK digests) is refused, saying which.
        let other = SnapshotSettings {
            dir: dir.path().join("s1"),
            interval: Duration::from_secs(1),
            identity: "eligibility, nik digests off".into(),
        };
        let job = Job {
            store: Arc::new(MemoryStore::new()),
            metrics: Arc::new(Metrics::new("eligibility")),
            nik_key: None,
            snapshots: Some(other),
        };
        let inputs = embedded_inputs(&whole, &TOPICS, "arus-eligibility").unwrap();
        let refused = run_inputs(inputs, &Cluster::Local { workers: 1 }, job, Arc::default(), &Shutdown::new());
        assert!(refused.err().is_some_and(|e| e.to_string().contains("was taken of \"eligibility\"")));
    }
}
