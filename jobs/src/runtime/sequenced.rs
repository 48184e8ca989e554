//! The sequenced runtime: every worker reads its share of the partitions of a job's topics and
//! decodes them; one worker, the sequencer, holds each event until the watermark (the least,
//! over all partitions, of the latest event time seen less `out_of_orderness`) has passed its
//! event time, then folds the events into the job's [`Fold`] in (event time, kind, event id)
//! order ([`order_key`]) — plans, providers, members, authorizations, claims, payments — so
//! that the same topics give the same outputs whatever the number of workers. The outputs go to
//! the topics next to the source's (each written once: a rerun reads back what is there), and
//! the fold's records to the store, versioned.
//!
//! The adjudication job (`crate::adjudication::job`) and the fraud job (`crate::fraud::job`)
//! run on it.
//!
//! The sequencer runs on a thread of its own (worker 0 hands it what it receives, so it reads
//! its partitions as fast as the others) and releases at most `RELEASE` events at a time;
//! decoding runs on every worker (only the kinds the fold reads: `wire::peek` first), at most
//! `READ_AHEAD` events ahead of the sequencer; and writing (encoding the outputs, sending them,
//! the store's writes, each of the records merged since the last, answered while the writer goes
//! on) on a writer thread, behind the sequencer. A fold may itself spread its work over threads
//! (the adjudication's shards by family).
//!
//! With snapshots ([`super::snapshot`]) the sequencer saves, between two steps, the fold's state,
//! the events it holds, how far it has released and where it has received up to in each
//! partition; the writer writes the snapshot once every output before it is durable, with the
//! output topics' positions. A restart begins from the newest: each partition read from where it
//! stopped, the outputs read back only after theirs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::StateStore;
use arus_connectors::transport::{LogTopics, TopicSink};
use arus_operators::{Time, Watermarks};
use arus_schemas::topics::names::{ACCUMULATOR_UPDATES, CLAIMS_EVENTS};
use arus_schemas::{Event, EventKind, wire};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::operator::source;

use super::checkpoint::SourceState;
use super::input::{self, Input, embedded_inputs, open_inputs, open_readers, origin, read_events_peeked};
use super::metrics::Metrics;
use super::sinks::DeadLetterTopics;
use super::snapshot::{self, Header, Offsets, SnapshotSettings};
use super::spec::{StoreSpec, TopicsSource};
use super::{Cluster, RunError, Shared, Shutdown, fail, finish, open_store, timely_config};

/// Records read per reader per step.
const BATCH: usize = 4_096;

/// Events the sources read ahead of the sequencer at most (in the workers' channels and the
/// sequencer's queue, not yet taken in order): the readers are several times faster than the
/// fold, and without a bound the queue grew with the backlog being caught up (a backlog of
/// millions of claims would not fit in memory). They wait while this many are ahead (a read
/// step may overshoot it by a step's records).
const READ_AHEAD: i64 = 131_072;

/// How the sources read: records per reader per step, and how far ahead of the sequencer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    batch: usize,
    ahead: i64,
}

/// The jobs' reading.
pub(crate) const READING: Reading = Reading { batch: BATCH, ahead: READ_AHEAD };

/// The events read and not yet taken by the sequencer, shared by the sources (which count what
/// they read, and wait while too many are ahead) and the sequencer's thread (which takes what
/// it receives off the count, and wakes the sources waiting once it is below the bound).
struct ReadAhead {
    limit: i64,
    /// Read, not yet taken (briefly below zero when the sequencer takes a worker's events
    /// before that worker has counted them).
    count: std::sync::atomic::AtomicI64,
    /// The most counted.
    peak: std::sync::atomic::AtomicI64,
    /// Whether a source is waiting to be woken.
    waiting: std::sync::atomic::AtomicBool,
    /// Each worker's source, to wake.
    sources: Mutex<Vec<timely::scheduling::SyncActivator>>,
}

impl ReadAhead {
    fn new(limit: i64) -> Self {
        ReadAhead {
            limit,
            count: Default::default(),
            peak: Default::default(),
            waiting: Default::default(),
            sources: Mutex::default(),
        }
    }

    /// Whether a source should wait instead of reading (it is woken when it may read again).
    fn wait(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if self.count.load(SeqCst) < self.limit {
            return false;
        }
        // Waiting, then counted again: either this sees what the sequencer took since, or the
        // sequencer sees it waiting and wakes it.
        self.waiting.store(true, SeqCst);
        self.count.load(SeqCst) >= self.limit
    }

    /// `n` events read.
    fn read(&self, n: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.count.fetch_add(n as i64, SeqCst) + n as i64;
        self.peak.fetch_max(now, SeqCst);
    }

    /// `n` events taken by the sequencer (or dropped, the run failed): sources waiting are woken
    /// once below the bound.
    fn taken(&self, n: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.count.fetch_sub(n as i64, SeqCst) - n as i64;
        if now < self.limit && self.waiting.load(SeqCst) && self.waiting.swap(false, SeqCst) {
            for source in self.sources.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // A worker already gone has nothing to read.
                let _ = source.activate();
            }
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequencedReport {
    /// Events folded in.
    pub events: u64,
    /// Records that were not events of the contract (passed over, each to its topic's
    /// dead-letter topic).
    pub undecodable: u64,
    /// Events that came after the watermark had passed their time (decided when they came).
    pub late: u64,
    /// Claims decided, by status.
    pub decided: BTreeMap<String, u64>,
    /// Accumulator updates written.
    pub accumulator_updates: u64,
    /// Claims paid.
    pub paid: u64,
    /// Decisions already on the output topics from an earlier run (not written again).
    pub already_written: u64,
    /// Fraud alerts raised or withdrawn (the fraud job).
    pub alerts: u64,
    /// The snapshot the run began from (its epoch), when there was one.
    pub restored_from: Option<u64>,
    /// Events refused for being older than the dedup horizon behind the event time reached
    /// (each a replay, or an event too late to be told from one): nothing decided for them.
    pub expired: u64,
    /// Events held back at the end of a bounded input by a fold that pauses there
    /// ([`Fold::pauses_at_end`]): in the snapshot, decided by the next run.
    pub held: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// The most events read and not yet taken by the sequencer at once (kept near
    /// [`READ_AHEAD`]: the sources wait while that many are ahead).
    pub read_ahead_peak: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Where the decisions go, and the ids of those already there.
struct Outputs {
    /// The topics written to (the broker's, or the embedded log's).
    sink: Box<dyn TopicSink>,
    /// Put before the topic names.
    prefix: String,
    /// Ids of decisions a run before this one wrote: not written again. The fold is
    /// deterministic, so a rerun after a crash derives the same events with the same ids, and
    /// writes only what the crash lost.
    written: foldhash::HashSet<String>,
    /// The output topics (their full names).
    topics: Vec<String>,
    /// Whether `written` has been read from them.
    read: bool,
    /// Per output topic, where a restored snapshot had written up to: read back from there, and
    /// the base of the next snapshot's positions.
    from: Offsets,
    /// Decisions not written because they were there.
    skipped: u64,
    /// Each output topic's name under the prefix, made once (not per event).
    names: foldhash::HashMap<&'static str, String>,
    /// Outputs counted per topic as they are written.
    metrics: Arc<Metrics>,
}

/// Whether a sequenced job writes this kind (what a rerun must not write twice).
fn is_output(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ClaimAdjudicated | EventKind::ClaimPaid | EventKind::AccumulatorUpdated | EventKind::FraudAlert
    )
}

/// The id of `record` if it is an output (decoded whole, so that a damaged one is written
/// again); of the other kinds only the header is read.
fn output_id(record: &[u8]) -> Option<String> {
    if !is_output(wire::kind_of(record).ok()?) {
        return None;
    }
    wire::decode(record).ok().map(|event| event.event_id().to_owned())
}

/// The topic an output goes to.
fn output_topic(event: &Event) -> &'static str {
    match event {
        Event::AccumulatorUpdated(_) => ACCUMULATOR_UPDATES,
        Event::FraudAlert(_) => arus_schemas::topics::names::FRAUD_ALERTS,
        _ => CLAIMS_EVENTS,
    }
}

impl Outputs {
    /// Outputs next to `source` (in `log` when the inputs are there), writing to `topics`
    /// (created when missing, with the partitions the topic table gives them).
    pub(crate) fn open(
        source: &TopicsSource,
        log: Option<Arc<EmbeddedLog>>,
        topics: &[&str],
        metrics: Arc<Metrics>,
    ) -> Result<Self, RunError> {
        let (sink, prefix): (Box<dyn TopicSink>, &str) = match (source, log) {
            (TopicsSource::Embedded { topic_prefix, .. }, Some(log)) => (Box::new(LogTopics(log)), topic_prefix),
            (_, Some(log)) => (Box::new(LogTopics(log)), ""),
            (TopicsSource::Kafka { brokers, topic_prefix, .. }, None) => {
                let config = arus_connectors::kafka::KafkaConfig::new(brokers.clone());
                (Box::new(arus_connectors::kafka::KafkaTopics::new(&config, "lz4")?), topic_prefix)
            }
            (TopicsSource::Embedded { dir, topic_prefix }, None) => {
                (Box::new(LogTopics(Arc::new(EmbeddedLog::open(dir)?))), topic_prefix)
            }
        };
        for topic in topics {
            let partitions = arus_schemas::topics::topic_spec(topic).map_or(1, |t| t.partitions);
            sink.ensure_topic(&format!("{prefix}{topic}"), partitions)?;
        }
        let names: Vec<String> = topics.iter().map(|t| format!("{prefix}{t}")).collect();
        Ok(Outputs {
            sink,
            prefix: prefix.to_owned(),
            written: Default::default(),
            topics: names,
            read: false,
            from: Offsets::new(),
            skipped: 0,
            names: Default::default(),
            metrics,
        })
    }

    /// Reads what an earlier run wrote (once): the writer thread does, before its first write,
    /// while the job's readers open and its first events are sequenced. The topics are read at
    /// once, each on a thread: most of a topic's reading is waiting for the broker.
    fn read_back(&mut self) -> Result<(), RunError> {
        if !self.read {
            self.read = true;
            let (sink, from) = (&*self.sink, &self.from);
            let reads = super::each_at_once(&self.topics, "a read-back", |topic| {
                let mut ids = foldhash::HashSet::default();
                let after: Vec<(u32, u64)> =
                    from.get(topic).map(|o| o.iter().map(|(p, o)| (*p, *o)).collect()).unwrap_or_default();
                sink.read_back(topic, &after, &mut |value| ids.extend(output_id(value)))?;
                Ok(ids)
            });
            for read in reads {
                self.written.extend(read?);
            }
        }
        Ok(())
    }

    /// Writes `event`, encoded as `bytes`, unless a run before this one did.
    fn write(&mut self, event: &Event, bytes: &[u8]) -> Result<(), RunError> {
        // (A first run has none: not even a hash is spent per event then.)
        if !self.written.is_empty() && self.written.remove(event.event_id()) {
            self.skipped += 1;
            return Ok(());
        }
        let topic = output_topic(event);
        let name = match self.names.get(topic) {
            Some(name) => name,
            None => self.names.entry(topic).or_insert(format!("{}{topic}", self.prefix)),
        };
        self.sink.send(name, event.key().as_bytes(), bytes, event.event_time())?;
        self.metrics.output(topic);
        Ok(())
    }

    fn flush(&self) -> Result<(), RunError> {
        Ok(self.sink.flush()?)
    }

    /// Per output topic, how far it is written (after a flush: everything sent): what the
    /// restored snapshot had, moved on by what this run delivered.
    fn positions(&self) -> Result<Offsets, RunError> {
        let mut positions = self.from.clone();
        for topic in &self.topics {
            let entry = positions.entry(topic.clone()).or_default();
            for (partition, offset) in self.sink.delivered(topic)? {
                let at = entry.entry(partition).or_default();
                *at = (*at).max(offset);
            }
        }
        Ok(positions)
    }
}

/// A sequenced job: the topics it reads, those it writes, its fold, and its metrics.
pub(crate) struct Sequenced<'a> {
    /// The topics read (under the source's prefix).
    pub topics: &'a [&'a str],
    /// The topics written, next to them.
    pub outputs: &'a [&'a str],
    /// What is done with each event, in order.
    pub fold: Box<dyn Fold>,
    /// The run's metrics.
    pub metrics: Arc<Metrics>,
    /// A request to stop early.
    pub shutdown: Shutdown,
    /// Where and how often to save snapshots (and restore the newest from).
    pub snapshots: Option<SnapshotSettings>,
}

/// Runs a job over its topics of `source` (the outputs next to them, records to `store`): the
/// machinery the adjudication and fraud jobs share.
pub(crate) fn run_sequenced(
    source: &TopicsSource,
    store: &StoreSpec,
    lateness: u64,
    job: Sequenced<'_>,
    cluster: &Cluster,
) -> Result<SequencedReport, RunError> {
    let Sequenced { topics, outputs, fold, metrics, shutdown, snapshots } = job;
    let store = open_store(store)?;
    let inputs = open_inputs(source, topics)?;
    // An embedded log is opened once: the outputs go to the inputs' log.
    let log = inputs.iter().find_map(|input| match input {
        Input::Embedded { log, .. } => Some(log.clone()),
        _ => None,
    });
    let outputs = Outputs::open(source, log, outputs, metrics)?;
    run_inputs(inputs, cluster, store, outputs, lateness, Folding { fold, reading: READING, shutdown, snapshots })
}

/// [`run_on_log`] for any fold, the sources reading as `reading` says ([`READING`]).
pub(crate) fn run_fold_on_log(
    log: Arc<EmbeddedLog>,
    cluster: &Cluster,
    store: Arc<dyn StateStore>,
    job: Sequenced<'_>,
    reading: Reading,
) -> Result<SequencedReport, RunError> {
    let Sequenced { topics, outputs, fold, metrics, shutdown, snapshots } = job;
    let inputs = embedded_inputs(&log, topics, "arus-sequenced")?;
    let source = TopicsSource::Embedded { dir: ".".into(), topic_prefix: String::new() };
    let outputs = Outputs::open(&source, Some(log), outputs, metrics)?;
    run_inputs(inputs, cluster, store, outputs, 86_400_000, Folding { fold, reading, shutdown, snapshots })
}

/// Records for the store, by key: the latest version of each, written together — serialized
/// by the writer thread, once per key and batch, not on the sequencer at every change.
pub(crate) type Writes = foldhash::HashMap<String, (u64, Box<dyn StoreRecord>)>;

/// A record kept for the store, serialized when written.
pub(crate) trait StoreRecord: Send {
    /// The record as JSON.
    fn json(&self) -> Result<Vec<u8>, serde_json::Error>;
}

impl<T: serde::Serialize + Send> StoreRecord for T {
    fn json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// What a sequenced job does with each event, in order: the events it decides, and the
/// records it keeps in the store.
pub(crate) trait Fold: Send {
    /// The events `event` decides; records for the store go to `writes`.
    fn apply(&mut self, event: &Event, writes: &mut Writes) -> Result<Vec<Event>, RunError>;
    /// After the events released together, every event before `released_below` (event time)
    /// applied but those still to come late: what the fold kept back to do at once (the fraud
    /// job closes its windows and scores their claims in one call). The end of the input is
    /// `Time::MAX`.
    fn end_of_batch(&mut self, _released_below: Time, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        Ok(Vec::new())
    }
    /// Applies the events released together, in order: what they decided (with where the store
    /// keeps each, see `stored_as`), in order. A fold may spread the work (the adjudication's
    /// shards); by default one event after the other.
    fn apply_batch(&mut self, events: Vec<Event>, writes: &mut Writes) -> Result<Vec<Decided>, RunError> {
        // About as many decided as applied: grown from nothing, the events were copied a few
        // times over per batch.
        let mut decided = Vec::with_capacity(events.len() * 2);
        for event in events {
            let outputs = self.apply(&event, writes)?;
            decided.extend(with_store_keys(self, outputs));
        }
        Ok(decided)
    }
    /// Whether an output just decided is also kept in the store, in its wire form (the bytes
    /// written to its topic, encoded once): under which key, at which version.
    fn stored_as(&self, _output: &Event) -> Option<(String, u64)> {
        None
    }
    /// The fold's state, for a snapshot; `None` when it keeps none it can save.
    fn save(&mut self) -> Result<Option<Vec<u8>>, RunError> {
        Ok(None)
    }
    /// Takes on a state [`save`](Self::save) gave.
    fn load(&mut self, _state: &[u8]) -> Result<(), RunError> {
        Err(RunError::Invalid("this job's state cannot be restored from a snapshot".to_owned()))
    }
    /// With snapshots, whether the end of a bounded input is a pause rather than the end of
    /// time: what is held back then stays undecided (in the snapshot, for the run that reads
    /// what comes next), and `end_of_batch` is not called with `Time::MAX`. The fraud job's
    /// windows: closing them at every end would let out alerts about windows that later events
    /// still fill, alerts a run over the whole history would not raise.
    fn pauses_at_end(&self) -> bool {
        false
    }
    /// Events refused so far for being older than the dedup horizon ([`super::seen`]).
    fn expired(&mut self) -> u64 {
        0
    }
}

/// `outputs` just decided by `fold`, each with where the store keeps it ([`Fold::stored_as`]).
pub(crate) fn with_store_keys<F: Fold + ?Sized>(fold: &F, outputs: Vec<Event>) -> impl Iterator<Item = Decided> {
    outputs.into_iter().map(move |output| {
        let stored = fold.stored_as(&output);
        (output, stored)
    })
}

/// Puts `value` under `key` at `version` (as JSON, when written).
pub(crate) fn record<T: serde::Serialize + Send + 'static>(writes: &mut Writes, key: String, version: u64, value: T) {
    writes.insert(key, (version, Box::new(value)));
}

/// The order the sequencer folds events in: event time, then kind (what decisions depend on
/// first), then event id.
pub fn order_key(event: &Event) -> (Time, u8, &str) {
    (event_time(event), rank(event), event.event_id())
}

/// Events the sequencer releases together at most: decided, then handed to the writer.
const RELEASE: usize = 4_096;

/// An event held for the sequencer, ordered for a max-heap to give the least [`order_key`]
/// first: its time and rank kept, its id compared in place (no key is allocated per event), the
/// event boxed (the heap moves 24 bytes per step of a sift, not the event's few hundred).
struct Held(Time, u8, Box<Event>);

impl Held {
    fn new(event: Event) -> Self {
        Held(event_time(&event), rank(&event), Box::new(event))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.0, other.1).cmp(&(self.0, self.1)).then_with(|| other.2.event_id().cmp(self.2.event_id()))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Held {}

/// The order of kinds at one event time: what decisions depend on first.
fn rank(event: &Event) -> u8 {
    match event {
        Event::PlanCreated(_) | Event::BenefitUpdated(_) => 0,
        Event::ProviderOnboarded(_) | Event::ContractUpdated(_) => 1,
        Event::MemberCreated(_) | Event::MemberUpdated(_) | Event::CoverageChanged(_) => 2,
        Event::AuthRequested(_) | Event::AuthApproved(_) | Event::AuthDenied(_) => 3,
        Event::ClaimSubmitted(_) => 4,
        _ => 5,
    }
}

/// Whether the adjudicator reads this event's kind at all (the rest is passed over at the
/// source).
pub fn wanted(event: &Event) -> bool {
    wanted_kind(event.kind())
}

/// Whether the adjudicator reads this kind at all: the source decodes no other.
pub fn wanted_kind(kind: EventKind) -> bool {
    !matches!(
        kind,
        EventKind::ClaimAdjudicated
            | EventKind::ClaimPaid
            | EventKind::AccumulatorUpdated
            | EventKind::PaymentInitiated
            | EventKind::PerformanceCalculated
            | EventKind::EligibilityRequested
            | EventKind::EligibilityResponded
            | EventKind::FraudAlert
            | EventKind::DeadLetter
            | EventKind::AccessAudited
    )
}

fn event_time(event: &Event) -> Time {
    event.event_time().0.max(0) as Time
}

/// A decided event, with the store key and version under which it is kept in its wire form,
/// if it is.
pub(crate) type Decided = (Event, Option<(String, u64)>);

/// A batch for the writer: the decided events in order, and the store's records.
type Batch = (Vec<Decided>, Vec<(String, u64, Box<dyn StoreRecord>)>);

/// A snapshot taken by the sequencer, for the writer to write once everything before it is.
struct Taken {
    positions: Offsets,
    released_below: Time,
    held: Vec<Event>,
    fold: Vec<u8>,
}

/// What the sequencer hands the writer.
enum ToWriter {
    Batch(Batch),
    Snapshot(Box<Taken>),
}

/// Where the writer writes snapshots, and the epoch of the next.
struct Saver {
    settings: SnapshotSettings,
    epoch: u64,
}

/// Batches the writer may have waiting; those waiting when it comes to write are written
/// together.
const WRITER_QUEUE: usize = 16;

/// Keeps `value` under `key` if its version is above those seen (as the store does: of two
/// writes at one version, the first stays).
pub(crate) fn keep_latest<V>(latest: &mut foldhash::HashMap<String, (u64, V)>, key: String, version: u64, value: V) {
    match latest.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut kept) => {
            if kept.get().0 < version {
                kept.insert((version, value));
            }
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert((version, value));
        }
    }
}

/// A batch taken by the writer: its outputs encoded and sent, the decisions kept in their wire
/// form for the store, the records merged into `latest`.
fn take_batch(
    (events, records): Batch,
    outputs: &mut Outputs,
    latest: &mut Writes,
    writes: &mut Vec<(String, u64, Vec<u8>)>,
    bytes: &mut Vec<u8>,
) -> Result<(), RunError> {
    for (event, stored) in events {
        bytes.clear();
        wire::encode_into(&event, bytes).map_err(|e| RunError::Internal(e.to_string()))?;
        if let Some((key, version)) = stored {
            writes.push((key, version, bytes.clone()));
        }
        outputs.write(&event, bytes)?;
    }
    for (key, version, record) in records {
        keep_latest(latest, key, version, record);
    }
    Ok(())
}

/// The store's next write: the decisions taken, then the merged records serialized.
fn pending(
    latest: &mut Writes,
    writes: &mut Vec<(String, u64, Vec<u8>)>,
) -> Result<Vec<(String, u64, Vec<u8>)>, RunError> {
    for (key, (version, record)) in latest.drain() {
        let json = record.json().map_err(|e| RunError::Internal(e.to_string()))?;
        writes.push((key, version, json));
    }
    Ok(std::mem::take(writes))
}

/// Writes the sequencer's batches on a thread of its own, in order: the outputs encoded and
/// sent, then the decisions and the records merged since the last store write in one store
/// write, answered while the writer takes the next batches — overlapping the next batch's
/// decisions on the sequencer (the job was one thread's work before: decide, encode, send,
/// write).
struct Writer {
    batches: Option<std::sync::mpsc::SyncSender<ToWriter>>,
    thread: Option<std::thread::JoinHandle<Result<(u64, u64), RunError>>>,
}

impl Writer {
    #[cfg(test)]
    fn start(outputs: Outputs, store: Arc<dyn StateStore>) -> Result<Self, RunError> {
        Self::start_saving(outputs, store, None)
    }

    /// [`start`](Self::start), writing the snapshots the sequencer takes with `saver`.
    fn start_saving(
        mut outputs: Outputs,
        store: Arc<dyn StateStore>,
        mut saver: Option<Saver>,
    ) -> Result<Self, RunError> {
        let metrics = outputs.metrics.clone();
        // Some batches in flight at most: a slow broker or store holds the sequencer back.
        let (batches, received) = std::sync::mpsc::sync_channel::<ToWriter>(WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("arus-writer".to_owned())
            .spawn(move || {
                outputs.read_back()?;
                // The records of the batches taken between two store writes, merged: the latest
                // version of each key written once (the store keeps only the latest anyway). The
                // decisions are not merged: each is a claim's next version, rarely seen twice in
                // one write (the store, taking them in order, keeps the later). While a write is
                // with the store, the writer goes on encoding and sending the next batches, and
                // merges their records for the next write; it waits for the store's answer when
                // it has nothing else to do, or `WRITER_QUEUE` batches later.
                let mut latest: Writes = Default::default();
                let mut writes: Vec<(String, u64, Vec<u8>)> = Vec::new();
                // Each output encoded into the same buffer (the producer copies it).
                let mut bytes = Vec::with_capacity(1024);
                let mut in_flight: Option<arus_connectors::store::Sent<'_>> = None;
                let answered =
                    |sent: arus_connectors::store::Sent<'_>| sent.answer().map(drop).map_err(RunError::Store);
                let mut since = 0;
                let mut snapshots = 0u64;
                // Everything taken so far made durable: the store write in flight answered, the
                // records merged since written (and answered), the outputs flushed.
                macro_rules! drain {
                    () => {
                        if let Some(sent) = in_flight.take() {
                            answered(sent)?;
                        }
                        if !writes.is_empty() || !latest.is_empty() {
                            let records = pending(&mut latest, &mut writes)?;
                            metrics.store_records(records.len() as u64);
                            answered(store.send_many_versioned(records))?;
                        }
                        outputs.flush()?;
                    };
                }
                // A batch taken; or a snapshot, written once everything before it is durable,
                // with the outputs' positions.
                macro_rules! take {
                    ($message:expr) => {
                        match $message {
                            ToWriter::Batch(batch) => {
                                take_batch(batch, &mut outputs, &mut latest, &mut writes, &mut bytes)?
                            }
                            ToWriter::Snapshot(taken) => {
                                drain!();
                                if let Some(saver) = saver.as_mut() {
                                    let Taken { positions, released_below, held, fold } = *taken;
                                    let header = Header {
                                        format: snapshot::FORMAT,
                                        identity: saver.settings.identity.clone(),
                                        epoch: saver.epoch,
                                        positions,
                                        released_below,
                                        held,
                                        outputs: outputs.positions()?,
                                        written: {
                                            let mut ids: Vec<String> = outputs.written.iter().cloned().collect();
                                            ids.sort_unstable();
                                            ids
                                        },
                                        fold_bytes: fold.len() as u64,
                                    };
                                    snapshot::write(&saver.settings, &header, &fold)?;
                                    saver.epoch += 1;
                                    snapshots += 1;
                                }
                            }
                        }
                    };
                }
                loop {
                    if since < WRITER_QUEUE {
                        match received.try_recv() {
                            Ok(message) => {
                                take!(message);
                                since += 1;
                                continue;
                            }
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                            Err(std::sync::mpsc::TryRecvError::Empty) => {}
                        }
                    }
                    if let Some(sent) = in_flight.take() {
                        answered(sent)?;
                        if since < WRITER_QUEUE {
                            continue; // what came meanwhile goes into the next write
                        }
                    }
                    if writes.is_empty() && latest.is_empty() {
                        match received.recv() {
                            Ok(message) => {
                                take!(message);
                                since += 1;
                                continue;
                            }
                            Err(_) => break,
                        }
                    }
                    let records = pending(&mut latest, &mut writes)?;
                    metrics.store_records(records.len() as u64);
                    in_flight = Some(store.send_many_versioned(records));
                    since = 0;
                }
                drain!();
                Ok((outputs.skipped, snapshots))
            })
            .map_err(|e| RunError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { batches: Some(batches), thread: Some(thread) })
    }

    /// Hands a batch over; the writer's error, if it has stopped on one.
    fn send(&mut self, batch: Batch) -> Result<(), RunError> {
        self.hand(ToWriter::Batch(batch))
    }

    /// Hands a snapshot over, to be written after the batches before it.
    fn snapshot(&mut self, taken: Taken) -> Result<(), RunError> {
        self.hand(ToWriter::Snapshot(Box::new(taken)))
    }

    fn hand(&mut self, message: ToWriter) -> Result<(), RunError> {
        let sent = self.batches.as_ref().is_some_and(|b| b.send(message).is_ok());
        if sent {
            return Ok(());
        }
        Err(self.finish().err().unwrap_or_else(|| RunError::Internal("the writer has stopped".to_owned())))
    }

    /// Waits for everything handed over to be written and flushed: how many outputs an earlier
    /// run had written already (not written again), and snapshots written; nothing more once
    /// finished.
    fn finish(&mut self) -> Result<(u64, u64), RunError> {
        self.batches = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(RunError::Internal("the writer thread panicked".to_owned())),
            None => Ok((0, 0)),
        }
    }
}

/// An event as a source hands it on: where it came from ([`origin`]), its offset there, and
/// the event.
type Sourced = (u32, u64, Event);

/// What worker 0 received in one activation, and its frontier then.
struct Step {
    events: Vec<Sourced>,
    below: Time,
    end: bool,
}

/// The sequencer on a thread of its own: it holds the events until the frontier passes them,
/// then folds them in order and hands the decisions to the writer.
struct SequencerThread {
    steps: Option<std::sync::mpsc::Sender<Step>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SequencerThread {
    /// Starts the thread; `ahead` counts the events read and not yet taken (the thread takes
    /// them off as it receives them).
    fn start(mut seq: Sequencer, shared: Arc<Mutex<Shared<SequencedReport>>>, ahead: Arc<ReadAhead>) -> Self {
        let (steps, received) = std::sync::mpsc::channel::<Step>();
        let on_thread = shared.clone();
        let thread = std::thread::Builder::new().name("arus-sequencer".to_owned()).spawn(move || {
            let shared = on_thread;
            // Held events, least (event time, rank, event id) first; released once the frontier
            // passes (a snapshot's, restored, first).
            let (mut released_below, held) = seq.restored.take().unwrap_or_default();
            let mut pending: std::collections::BinaryHeap<Held> = held.into_iter().map(Held::new).collect();
            seq.newest = pending.iter().map(|held| held.0).max().unwrap_or(0);
            // Whether this run has received anything: a run that did not (restarted with nothing
            // new) leaves the newest snapshot as it is.
            let mut fresh = false;
            for Step { events, below, end } in received {
                ahead.taken(events.len());
                if end && seq.shutdown.requested() {
                    // Stopped early: what is still held back stays undecided (a restart decides
                    // it in order, as a run that went on would have) — with snapshots, held in
                    // the one taken now, which the restart begins from.
                    if fresh && let Err(error) = seq.snapshot(&pending, released_below) {
                        fail(&shared, error);
                    }
                    pending.clear();
                    seq.finish(&shared);
                    return;
                }
                let mut late = Vec::new();
                fresh |= !events.is_empty();
                for (origin, offset, event) in events {
                    let next = seq.received.entry(origin).or_default();
                    *next = (*next).max(offset + 1);
                    let time = event_time(&event);
                    seq.newest = seq.newest.max(time);
                    if time < released_below {
                        late.push(event);
                    } else {
                        pending.push(Held::new(event));
                    }
                }
                if end && seq.snapshots.is_some() {
                    // The input ends: what lies below the newest event time less the allowed
                    // out-of-orderness is decided, then a snapshot holds the rest, which the next
                    // run decides in order with what has come meanwhile (this run decides it
                    // too, below; the next finds those decisions on the topics, not writing
                    // them twice) — or, a fold that pauses at the end, leaves undecided.
                    let cut = seq.newest.saturating_sub(seq.lateness);
                    release(&mut seq, &mut pending, &mut released_below, cut, &mut late, &shared);
                    if fresh && let Err(error) = seq.snapshot(&pending, released_below) {
                        fail(&shared, error);
                    }
                    if seq.fold.pauses_at_end() {
                        seq.report.held = pending.len() as u64;
                        pending.clear();
                        seq.finish(&shared);
                        return;
                    }
                }
                release(&mut seq, &mut pending, &mut released_below, below, &mut late, &shared);
                if !end
                    && seq.snapshot_due()
                    && let Err(error) = seq.snapshot(&pending, released_below)
                {
                    fail(&shared, error);
                }
                if end {
                    seq.finish(&shared);
                    return;
                }
            }
        });
        match thread {
            Ok(thread) => SequencerThread { steps: Some(steps), thread: Some(thread) },
            Err(e) => {
                fail(&shared, RunError::Internal(format!("cannot start the sequencer thread: {e}")));
                SequencerThread { steps: None, thread: None }
            }
        }
    }

    /// Hands a step over; whether the thread took it (if not, the run has failed).
    fn send(&mut self, step: Step, shared: &Mutex<Shared<SequencedReport>>) -> bool {
        let sent = self.steps.as_ref().is_some_and(|steps| steps.send(step).is_ok());
        if !sent && self.thread.is_some() {
            fail(shared, RunError::Internal("the sequencer thread has stopped".to_owned()));
        }
        sent
    }

    /// Waits for the last step to be folded and written.
    fn join(mut self, shared: &Mutex<Shared<SequencedReport>>) {
        self.steps = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            fail(shared, RunError::Internal("the sequencer thread panicked".to_owned()));
        }
    }
}

/// Releases the events held below `below` (and those come late) in order, in pieces of at
/// most `RELEASE` events, each handed to the writer once decided: a sequencer that fell behind
/// (everything read in the first second) then keeps the writer busy instead of deciding a third
/// of the input before it writes anything.
fn release(
    seq: &mut Sequencer,
    pending: &mut std::collections::BinaryHeap<Held>,
    released_below: &mut Time,
    below: Time,
    late: &mut Vec<Event>,
    shared: &Mutex<Shared<SequencedReport>>,
) {
    loop {
        let mut ready = Vec::with_capacity(RELEASE.min(pending.len()));
        while ready.len() < RELEASE && pending.peek().is_some_and(|held| held.0 < below) {
            ready.extend(pending.pop().map(|held| *held.2));
        }
        // Every event before the next one held has been applied (those still to come late
        // aside).
        let next = pending.peek().map(|held| held.0).filter(|next| *next < below);
        if next.is_none() {
            *released_below = (*released_below).max(below);
            seq.report.late += late.len() as u64;
            ready.extend(std::mem::take(late));
        }
        if let Err(error) = seq.apply(ready) {
            fail(shared, error);
        }
        if let Err(error) = seq.end_batch(next.unwrap_or(*released_below)) {
            fail(shared, error);
        }
        if let Err(error) = seq.write_batch() {
            fail(shared, error);
        }
        let Some(next) = next else { break };
        // Between two pieces of a long release (catching up a backlog), a snapshot when due:
        // every event before `next` applied, the rest held — unless events came late, which
        // are applied after the pieces (a snapshot holds no place for them).
        if late.is_empty()
            && seq.snapshot_due()
            && let Err(error) = seq.snapshot(pending, next)
        {
            fail(shared, error);
        }
    }
}

/// The sequencer's side: the fold, and where its decisions go.
struct Sequencer {
    fold: Box<dyn Fold>,
    writer: Writer,
    report: SequencedReport,
    /// Records to write to the store, the latest version of each key: written together.
    writes: Writes,
    /// Decided events of the batch, in order, with where the store keeps them.
    decided: Vec<Decided>,
    metrics: Arc<Metrics>,
    /// Asked to stop: what is still held at the end is dropped, undecided.
    shutdown: Shutdown,
    /// Per input partition ([`origin`]), the offset after the last event received.
    received: foldhash::HashMap<u32, u64>,
    /// Each input's topic, by its number.
    inputs: Vec<String>,
    /// With snapshots: how often, and when the last was taken.
    snapshots: Option<(Duration, Instant)>,
    /// The newest event time received.
    newest: Time,
    /// How far behind the newest an event may come and still be decided in order.
    lateness: u64,
    /// From a snapshot, until the sequencer's thread starts: how far it had released, and the
    /// events it held.
    restored: Option<(Time, Vec<Event>)>,
}

impl Sequencer {
    /// Whether a snapshot is due: its interval has passed, or a savepoint is asked for.
    fn snapshot_due(&self) -> bool {
        let asked = self.shutdown.take_savepoint();
        self.snapshots.is_some_and(|(interval, last)| asked || last.elapsed() >= interval)
    }

    /// With snapshots, takes one (between two steps: everything before `released_below` applied,
    /// `pending` held) and hands it to the writer, which writes it once everything decided
    /// before it is written.
    fn snapshot(&mut self, pending: &std::collections::BinaryHeap<Held>, released_below: Time) -> Result<(), RunError> {
        let Some((interval, _)) = self.snapshots else { return Ok(()) };
        let Some(fold) = self.fold.save()? else {
            return Err(RunError::Invalid("this job keeps no state a snapshot can hold".to_owned()));
        };
        let positions = input::positions(&self.inputs, &self.received);
        let held = pending.iter().map(|held| (*held.2).clone()).collect();
        self.snapshots = Some((interval, Instant::now()));
        self.writer.snapshot(Taken { positions, released_below, held, fold })
    }

    /// The end: waits for the writer, and hands the report over.
    fn finish(&mut self, shared: &Mutex<Shared<SequencedReport>>) {
        self.report.expired = self.fold.expired();
        match self.writer.finish() {
            Ok((skipped, snapshots)) => {
                self.report.already_written = skipped;
                self.report.snapshots = snapshots;
            }
            Err(error) => fail(shared, error),
        }
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        let undecodable = shared.report.undecodable;
        shared.report = std::mem::take(&mut self.report);
        shared.report.undecodable += undecodable;
    }

    /// Hands the batch's events and records to the writer.
    fn write_batch(&mut self) -> Result<(), RunError> {
        let writes: Vec<(String, u64, Box<dyn StoreRecord>)> =
            self.writes.drain().map(|(key, (version, record))| (key, version, record)).collect();
        let decided = std::mem::take(&mut self.decided);
        if writes.is_empty() && decided.is_empty() {
            return Ok(());
        }
        self.writer.send((decided, writes))
    }

    /// Folds the events released together, in order.
    fn apply(&mut self, events: Vec<Event>) -> Result<(), RunError> {
        self.report.events += events.len() as u64;
        self.metrics.folded(events.len() as u64, None);
        let decided = self.fold.apply_batch(events, &mut self.writes)?;
        self.emit(decided);
        Ok(())
    }

    /// The end of a batch: what the fold kept back.
    fn end_batch(&mut self, released_below: Time) -> Result<(), RunError> {
        self.metrics.folded(0, (released_below < Time::MAX).then_some(released_below));
        let outputs = self.fold.end_of_batch(released_below, &mut self.writes)?;
        let decided = with_store_keys(&*self.fold, outputs).collect();
        self.emit(decided);
        Ok(())
    }

    /// Counts decided events and keeps them for the writer.
    fn emit(&mut self, decided: Vec<Decided>) {
        for (decided, _) in &decided {
            match decided {
                Event::ClaimAdjudicated(a) => match self.report.decided.get_mut(a.status.as_str()) {
                    Some(n) => *n += 1,
                    None => _ = self.report.decided.insert(a.status.as_str().to_owned(), 1),
                },
                Event::AccumulatorUpdated(_) => self.report.accumulator_updates += 1,
                Event::ClaimPaid(_) => self.report.paid += 1,
                Event::FraudAlert(_) => self.report.alerts += 1,
                _ => {}
            }
        }
        if self.decided.is_empty() {
            self.decided = decided;
        } else {
            self.decided.extend(decided);
        }
    }
}

/// How the sequencer folds: the fold, how the sources read, when to stop early, and where
/// its snapshots go.
struct Folding {
    fold: Box<dyn Fold>,
    reading: Reading,
    shutdown: Shutdown,
    snapshots: Option<SnapshotSettings>,
}

/// Runs `fold` over `inputs` in event-time order, the sources reading `reading.batch` records
/// per reader per step, at most about `reading.ahead` events ahead of the sequencer, until the
/// inputs end or a stop is asked for.
fn run_inputs(
    inputs: Vec<Input>,
    cluster: &Cluster,
    store: Arc<dyn StateStore>,
    outputs: Outputs,
    lateness: u64,
    folding: Folding,
) -> Result<SequencedReport, RunError> {
    let Folding { mut fold, reading, shutdown, snapshots } = folding;
    let mut outputs = outputs;
    let names: Vec<String> = inputs.iter().map(Input::name).collect();
    // The newest snapshot, restored: the fold's state, what it held, where each partition
    // goes on from, and where the outputs were written up to.
    let mut restored_from = None;
    let mut restored = None;
    let mut positions = Offsets::new();
    let mut saver = None;
    if let Some(settings) = &snapshots {
        if let Some(loaded) = snapshot::latest(settings)? {
            fold.load(&loaded.fold)?;
            positions = loaded.header.positions;
            outputs.from = loaded.header.outputs;
            outputs.written.extend(loaded.header.written);
            restored_from = Some(loaded.header.epoch);
            restored = Some((loaded.header.released_below, loaded.header.held));
        }
        saver = Some(Saver { settings: settings.clone(), epoch: snapshot::next_epoch(settings)? });
    }
    // Where each worker's readers begin: the snapshot's positions, else the beginning.
    let starts: Arc<Vec<SourceState>> = Arc::new(snapshot::starts(&names, &positions, lateness));
    let received = input::received(&names, &positions);
    let metrics = outputs.metrics.clone();
    let (config, _) = timely_config(cluster);
    let letters = DeadLetterTopics::of(&inputs)?;
    let worker_letters = letters.clone();
    let inputs = Arc::new(inputs);
    let shared = Arc::new(Mutex::new(Shared::<SequencedReport>::default()));
    let started = Instant::now();
    let worker_shared = shared.clone();
    let ahead = Arc::new(ReadAhead::new(reading.ahead));
    let worker_ahead = ahead.clone();
    let interval = snapshots.as_ref().map(|s| (s.interval, Instant::now()));
    let sequencer = Arc::new(Mutex::new(Some(Sequencer {
        fold,
        writer: Writer::start_saving(outputs, store, saver)?,
        report: SequencedReport { restored_from, ..SequencedReport::default() },
        writes: Default::default(),
        decided: Vec::new(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        received,
        inputs: names,
        snapshots: interval,
        newest: 0,
        lateness,
        restored,
    })));
    let guards = timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let shared = worker_shared.clone();
        let ahead = worker_ahead.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let letters = worker_letters.clone();
        // This worker's readers, each with the number of its input.
        let (mut readers, origins) = open_readers(&inputs, index, peers, reading.batch, &starts, &shared);
        // The sequencer lives on worker 0.
        let mut sequencer = if index == 0 { sequencer.lock().unwrap_or_else(|e| e.into_inner()).take() } else { None };
        worker.dataflow::<Time, _, _>(|scope| {
            let source_shared = shared.clone();
            let source_ahead = ahead.clone();
            let events = source(scope, "SequencedSource", move |capability, info| {
                let ahead = source_ahead;
                ahead
                    .sources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(scope.worker().sync_activator_for(info.address.to_vec()));
                let activator = scope.activator_for(info.address);
                let mut capability = (!readers.is_empty()).then_some(capability);
                let shared = source_shared;
                // Partitions of all topics in one set of watermarks: reader i's partition p is
                // `origin(i, p)`.
                let mut watermarks = Watermarks::new(lateness);
                let mut newest: Time = 0;
                for (i, reader) in readers.iter().enumerate() {
                    for (p, _) in reader.positions() {
                        watermarks.add_partition(origin(i, p));
                    }
                }
                move |output| {
                    if shutdown.requested() {
                        capability = None; // stopped: the input ends here
                    }
                    let Some(cap) = capability.as_mut() else { return };
                    // Far enough ahead of the sequencer: wait to be woken (it takes what it has
                    // off the count as it receives it, so the count always comes down; a slow
                    // look besides).
                    if ahead.wait() {
                        activator.activate_after(Duration::from_millis(100));
                        return;
                    }
                    let time = *cap.time();
                    let mut sent = 0u64;
                    let read = {
                        let mut session = output.session(&*cap);
                        let peeked = |i: usize, partition: u32, peek: &wire::Peek<'_>| {
                            let time = peek.event_time.max(0) as Time;
                            watermarks.observe(origin(i, partition), time);
                            newest = newest.max(time);
                            wanted_kind(peek.kind)
                        };
                        let origins = &origins;
                        read_events_peeked(
                            &mut readers,
                            reading.batch,
                            &shared,
                            letters.as_deref(),
                            peeked,
                            |i, partition, offset, event| {
                                session.give((origin(origins[i], partition), offset, event));
                                sent += 1;
                            },
                        )
                    };
                    ahead.read(sent as usize);
                    let (failed, undecodable) = (read.is_none(), read.unwrap_or(0));
                    metrics.events_read(sent, undecodable);
                    for (i, reader) in readers.iter().enumerate() {
                        for p in reader.ended() {
                            watermarks.set_idle(origin(i, p));
                        }
                    }
                    shared.lock().unwrap_or_else(|e| e.into_inner()).report.undecodable += undecodable;
                    if failed || readers.iter().all(|r| r.finished()) {
                        capability = None;
                    } else {
                        let mut next = watermarks.current().max(time + u64::from(sent > 0));
                        // Following, with every partition of this worker quiet for the idle
                        // timeout: it holds nothing back any longer — its stamp moves past what
                        // it read and up to the clock, so the other workers' events are not
                        // held for it (what comes later with an earlier time is decided when it
                        // comes, counted late).
                        let quiet = readers.iter().all(|r| r.ended().len() == r.positions().len());
                        if sent == 0 && quiet {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as Time);
                            next = next.max(newest + 1).max(now);
                        }
                        cap.downgrade(&next);
                        if sent > 0 {
                            activator.activate();
                        } else {
                            activator.activate_after(Duration::from_millis(20));
                        }
                    }
                }
            });
            // Worker 0 hands what it receives, and how far its frontier has come, to the
            // sequencer's own thread: reading its partitions is not held up by the folding.
            let mut handoff = sequencer.take().map(|seq| SequencerThread::start(seq, shared.clone(), ahead.clone()));
            let mut told_below: Time = 0;
            let shared = shared.clone();
            events.sink(Exchange::new(|_| 0), "Sequence", move |(input, frontier)| {
                let Some(thread) = handoff.as_mut() else {
                    // No sequencer (the run has failed): nothing is ahead of it.
                    input.for_each(|_, data| {
                        ahead.taken(data.len());
                    });
                    return;
                };
                let mut events = Vec::new();
                input.for_each_stamp(|_, data| {
                    for batch in data {
                        if events.is_empty() {
                            std::mem::swap(&mut events, batch);
                        } else {
                            events.append(batch);
                        }
                    }
                });
                let below = frontier.frontier().iter().min().copied().unwrap_or(Time::MAX);
                let end = frontier.is_empty();
                if !events.is_empty() || below > told_below || end {
                    told_below = told_below.max(below);
                    let taken = events.len();
                    if !thread.send(Step { events, below, end }, &shared) {
                        ahead.taken(taken);
                    }
                }
                if end && let Some(thread) = handoff.take() {
                    thread.join(&shared);
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
    report.read_ahead_peak = ahead.peak.load(std::sync::atomic::Ordering::SeqCst).max(0) as u64;
    Ok(report)
}

/// `events` written to their topics of `log`, keyed as the contract says (the tests).
#[cfg(test)]
pub(crate) fn produce<'a>(log: &EmbeddedLog, events: impl IntoIterator<Item = &'a Event>) {
    for event in events {
        let bytes = wire::encode(event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
}

/// The generator's traffic for `claims` claims over `days` days, for the tests.
#[cfg(test)]
pub(crate) fn generated(claims: u64, days: u32) -> Vec<Event> {
    let mut events = Vec::new();
    let settings = arus_generator::GeneratorConfig { claims, days, ..Default::default() };
    arus_generator::generate(&settings, |output| -> Result<(), String> {
        if let arus_generator::Output::Event(event) = output {
            events.push(event);
        }
        Ok(())
    })
    .expect("generate");
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adjudication::job::{OUTPUT_TOPICS, TOPICS, adjudication_fold};

    /// The first `n` claims submitted in the generator's traffic.
    fn claims(n: usize) -> Vec<Event> {
        let mut claims: Vec<Event> =
            generated(n as u64 * 2, 30).into_iter().filter(|e| matches!(e, Event::ClaimSubmitted(_))).collect();
        claims.truncate(n);
        claims
    }
    use arus_connectors::store::{MemoryStore, StoreError, Versioned};

    /// The adjudication job on the sequenced runtime, one fold thread, with `snapshots`.
    fn adjudication(snapshots: Option<SnapshotSettings>) -> Sequenced<'static> {
        adjudication_on(1, snapshots)
    }

    /// The adjudication job folded on `threads` shards of families.
    fn adjudication_on(threads: usize, snapshots: Option<SnapshotSettings>) -> Sequenced<'static> {
        Sequenced {
            topics: &TOPICS,
            outputs: &OUTPUT_TOPICS,
            fold: adjudication_fold(threads).unwrap(),
            metrics: Arc::new(Metrics::new("adjudication")),
            shutdown: Shutdown::new(),
            snapshots,
        }
    }
    use std::sync::mpsc::{Receiver, Sender, channel};

    #[test]
    fn the_writer_keeps_the_latest_version_of_a_key_and_the_first_of_equal_ones() {
        let mut latest = foldhash::HashMap::default();
        for (version, value) in [(2, "b"), (1, "a"), (3, "c"), (3, "c again"), (2, "b again")] {
            keep_latest(&mut latest, "k".to_owned(), version, value.as_bytes().to_vec());
        }
        let Some((3, kept)) = latest.remove("k") else { panic!("version 3 kept") };
        assert_eq!(kept, b"c");
    }

    #[test]
    fn a_claim_decided_twice_in_one_write_is_kept_at_its_later_decision() {
        let claims = claims(2);
        let log = Arc::new(EmbeddedLog::new());
        log.create_all_topics().unwrap();
        let source = TopicsSource::Embedded { dir: ".".into(), topic_prefix: String::new() };
        let outputs = Outputs::open(&source, Some(log), &OUTPUT_TOPICS, Arc::new(Metrics::new("test"))).unwrap();
        let store = Arc::new(MemoryStore::new());
        let mut writer = Writer::start(outputs, store.clone()).unwrap();
        // Pended, then decided again in the same batch: versions 1 and 2 of `claim:x`.
        let decided = vec![
            (claims[0].clone(), Some(("claim:x".to_owned(), 1))),
            (claims[1].clone(), Some(("claim:x".to_owned(), 2))),
        ];
        writer.send((decided, Vec::new())).unwrap();
        writer.finish().unwrap();
        assert_eq!(store.get("claim:x").unwrap(), Some((2, wire::encode(&claims[1]).unwrap())));
    }

    #[test]
    fn the_sources_read_only_so_far_ahead_of_the_sequencer_and_decide_the_same() {
        let events = generated(16_000, 60);
        let run = |workers: usize, reading: Reading| {
            let log = Arc::new(EmbeddedLog::new());
            log.create_all_topics().unwrap();
            for event in &events {
                let bytes = wire::encode(event).unwrap();
                log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).unwrap();
            }
            let before = log.end_offsets(CLAIMS_EVENTS).unwrap();
            let metrics = Arc::new(Metrics::new("adjudication"));
            let job = Sequenced {
                topics: &TOPICS,
                outputs: &OUTPUT_TOPICS,
                fold: adjudication_fold(1).unwrap(),
                metrics: metrics.clone(),
                shutdown: Shutdown::new(),
                snapshots: None,
            };
            let report =
                run_fold_on_log(log.clone(), &Cluster::Local { workers }, Arc::new(MemoryStore::new()), job, reading)
                    .unwrap();
            // The run's metrics say what its report says.
            let text = metrics.render();
            let line = |name: &str| text.lines().find(|l| l.starts_with(name)).map(str::to_owned);
            let folded = format!("arus_events_folded_total{{pipeline=\"adjudication\"}} {}", report.events);
            assert_eq!(line("arus_events_folded_total"), Some(folded), "{text}");
            let accumulators = format!(
                "arus_outputs_total{{topic=\"{ACCUMULATOR_UPDATES}\",pipeline=\"adjudication\"}} {}",
                report.accumulator_updates
            );
            assert!(text.lines().any(|l| l == accumulators), "{accumulators} in {text}");
            let mut written = Vec::new();
            for (topic, from) in [(CLAIMS_EVENTS, before), (ACCUMULATOR_UPDATES, Vec::new())] {
                for (partition, end) in log.end_offsets(topic).unwrap().into_iter().enumerate() {
                    let start = from.get(partition).copied().unwrap_or(0);
                    let records = log.fetch(topic, partition as u32, start, (end - start) as usize).unwrap();
                    written.push(records.into_iter().map(|r| r.value).collect::<Vec<_>>());
                }
            }
            (report, written)
        };
        let total = events.iter().filter(|e| wanted(e)).count() as u64;
        // Small steps, so that a step's overshoot is small beside the bound.
        let (unbounded, expected) = run(1, Reading { batch: 256, ahead: i64::MAX });
        for workers in [1, 2] {
            let (bounded, written) = run(workers, Reading { batch: 256, ahead: 1_024 });
            assert_eq!(bounded.events, total);
            assert_eq!(written, expected, "{workers} workers: the same outputs, in the same order, read ahead or not");
            assert_eq!((bounded.decided.clone(), bounded.late), (unbounded.decided.clone(), 0));
            // Each worker reads at most a step (every reader's batch) past the bound.
            let bound = 1_024 + (workers * TOPICS.len() * 256) as u64;
            assert!(
                bounded.read_ahead_peak <= bound && bound < total,
                "{workers} workers: {} events read ahead at most (bound {bound}, of {total}; unbounded: {})",
                bounded.read_ahead_peak,
                unbounded.read_ahead_peak
            );
        }
    }

    /// A run that ends takes a snapshot; the next run, with more events on the topics, begins
    /// from it — folding only what came after (and what the snapshot held), not the history —
    /// and the topics then hold exactly what one uninterrupted run over everything writes,
    /// whether the snapshot taken on 2 workers is resumed on 1, 2 or 4, and with the fold on 3
    /// shards (a snapshot of 3 refused by a fold of 2, by the number).
    #[test]
    fn a_run_resumed_from_its_snapshot_folds_only_what_came_after_and_writes_what_one_run_does() {
        let events = generated(3_000, 60);
        let mut times: Vec<i64> = events.iter().map(|e| e.event_time().0).collect();
        times.sort_unstable();
        let split = times[times.len() * 2 / 3];
        let outputs_of = |log: &EmbeddedLog| {
            let mut written = Vec::new();
            for topic in [CLAIMS_EVENTS, ACCUMULATOR_UPDATES] {
                for (partition, end) in log.end_offsets(topic).unwrap().into_iter().enumerate() {
                    let records = log.fetch(topic, partition as u32, 0, end as usize).unwrap();
                    written.push(
                        records.into_iter().map(|r| r.value).filter(|v| output_id(v).is_some()).collect::<Vec<_>>(),
                    );
                }
            }
            written
        };
        let dir = tempfile::tempdir().unwrap();
        let run = |log: &Arc<EmbeddedLog>, snapshots: Option<SnapshotSettings>, (workers, threads): (usize, usize)| {
            let job = adjudication_on(threads, snapshots);
            run_fold_on_log(log.clone(), &Cluster::Local { workers }, Arc::new(MemoryStore::new()), job, READING)
                .unwrap()
        };
        // One run over everything, without snapshots.
        let whole = Arc::new(EmbeddedLog::new());
        whole.create_all_topics().unwrap();
        produce(&whole, &events);
        let uninterrupted = run(&whole, None, (2, 1));
        let expected = outputs_of(&whole);

        // The first two thirds (by event time) on 2 workers, then the rest on 1, 2 or 4: the
        // snapshot's positions are per partition, whoever reads them.
        let mut settings = None;
        let mut log = None;
        // (And folded on 3 shards of families, both times.)
        for (workers, threads) in [(1, 1), (2, 1), (4, 1), (2, 3)] {
            let snapshots = SnapshotSettings {
                dir: dir.path().join(format!("s{workers}-{threads}")),
                interval: Duration::from_millis(1),
                identity: "test".into(),
            };
            let resumed = Arc::new(EmbeddedLog::new());
            resumed.create_all_topics().unwrap();
            produce(&resumed, events.iter().filter(|e| e.event_time().0 < split));
            let first = run(&resumed, Some(snapshots.clone()), (2, threads));
            assert_eq!(first.restored_from, None);
            assert!(first.snapshots >= 1, "{first:?}");
            produce(&resumed, events.iter().filter(|e| e.event_time().0 >= split));
            let second = run(&resumed, Some(snapshots.clone()), (workers, threads));
            assert_eq!(second.restored_from, Some(first.snapshots), "the newest snapshot: {second:?}");
            let wanted_after = events.iter().filter(|e| wanted(e) && e.event_time().0 >= split).count() as u64;
            assert!(
                second.events < wanted_after + uninterrupted.events / 4,
                "{workers} workers: folded {} events, {wanted_after} came after the split, {} in all",
                second.events,
                uninterrupted.events
            );
            assert_eq!((first.late, second.late), (0, 0));
            assert_eq!(
                outputs_of(&resumed),
                expected,
                "{workers} workers, {threads} threads: the topics hold what one run writes"
            );
            (settings, log) = (Some(snapshots), Some(resumed));
        }
        let (settings, log) = (settings.unwrap(), log.unwrap());
        // The last snapshot (3 shards) refused by a fold of 2 shards, saying why.
        let refused = run_fold_on_log(
            log.clone(),
            &Cluster::Local { workers: 1 },
            Arc::new(MemoryStore::new()),
            adjudication_on(2, Some(settings.clone())),
            READING,
        );
        assert!(refused.err().is_some_and(|e| e.to_string().contains("fold_threads = 3, this run has 2")));
        // A snapshot of another job is refused, named.
        let other = SnapshotSettings { identity: "another".into(), ..settings };
        let job = adjudication(Some(other));
        let refused =
            run_fold_on_log(log.clone(), &Cluster::Local { workers: 1 }, Arc::new(MemoryStore::new()), job, READING);
        assert!(refused.err().is_some_and(|e| e.to_string().contains("was taken of \"test\"")));
    }

    /// A replay of an old event through the whole runtime: after a run over 90 days of traffic
    /// (with snapshots), the first claim written to its topic again comes late, more than the
    /// 30-day dedup horizon behind, and is refused — counted in the report, nothing decided —
    /// on one fold thread and on three.
    #[test]
    fn a_claim_replayed_from_beyond_the_dedup_horizon_is_refused_and_counted() {
        let events = generated(1_500, 90);
        let first = events.iter().find(|e| matches!(e, Event::ClaimSubmitted(_))).expect("a claim").clone();
        for threads in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let snapshots = SnapshotSettings {
                dir: dir.path().to_owned(),
                interval: Duration::from_secs(3600),
                identity: "t".into(),
            };
            let log = Arc::new(EmbeddedLog::new());
            log.create_all_topics().unwrap();
            produce(&log, &events);
            let run = |log: &Arc<EmbeddedLog>| {
                let job = adjudication_on(threads, Some(snapshots.clone()));
                run_fold_on_log(log.clone(), &Cluster::Local { workers: 2 }, Arc::new(MemoryStore::new()), job, READING)
                    .unwrap()
            };
            let once = run(&log);
            assert_eq!(once.expired, 0, "in order, nothing is older than the horizon");
            produce(&log, [&first]);
            let again = run(&log);
            assert_eq!(again.restored_from, Some(1));
            assert_eq!((again.expired, again.late), (1, 1), "{threads} threads: {again:?}");
            assert!(again.decided.is_empty(), "nothing decided for the replay: {again:?}");
        }
    }

    /// A record on a job's topic that is not an event goes to `<topic>.dlq` as a `DeadLetter`
    /// holding its bytes, key, partition and offset; the run decides the rest as if it were not
    /// there, and a rerun does not write the letter again.
    #[test]
    fn a_record_that_is_not_an_event_goes_to_its_topics_dead_letter_topic_once() {
        let events = claims(3);
        let log = Arc::new(EmbeddedLog::new());
        log.create_all_topics().unwrap();
        for event in &events[..2] {
            log.produce(&event.topic(), Some(event.key().as_bytes()), wire::encode(event).unwrap(), event.event_time())
                .unwrap();
        }
        let garbage = b"\x00\x00\x00\x00\x09not an event".to_vec();
        let (partition, offset) = log
            .produce(CLAIMS_EVENTS, Some(b"M-bad"), garbage.clone(), arus_schemas::Timestamp(1_700_000_000_000))
            .unwrap();
        let event = &events[2];
        log.produce(&event.topic(), Some(event.key().as_bytes()), wire::encode(event).unwrap(), event.event_time())
            .unwrap();
        let run = || {
            let job = adjudication(None);
            run_fold_on_log(log.clone(), &Cluster::Local { workers: 2 }, Arc::new(MemoryStore::new()), job, READING)
                .unwrap()
        };
        let letters = |log: &EmbeddedLog| {
            let dlq = arus_schemas::topics::dlq_topic(CLAIMS_EVENTS);
            let mut letters = Vec::new();
            for (p, end) in log.end_offsets(&dlq).unwrap().into_iter().enumerate() {
                for record in log.fetch(&dlq, p as u32, 0, end as usize).unwrap() {
                    let Event::DeadLetter(letter) = wire::decode(&record.value).unwrap() else {
                        panic!("a dead letter")
                    };
                    letters.push((letter, record.key));
                }
            }
            letters
        };
        let first = run();
        assert_eq!((first.undecodable, first.decided.values().sum::<u64>()), (1, 3), "{first:?}");
        let written = letters(&log);
        assert_eq!(written.len(), 1, "one letter");
        let (letter, key) = &written[0];
        assert_eq!(letter.original_value, garbage);
        assert_eq!((letter.original_key.as_deref(), key.as_deref()), (Some(&b"M-bad"[..]), Some(&b"M-bad"[..])));
        assert_eq!(
            (letter.source_topic.as_str(), letter.source_partition, letter.source_offset),
            (CLAIMS_EVENTS, partition as i32, offset as i64)
        );
        assert_eq!((letter.error_kind.as_str(), letter.event_time.0), ("decode", 1_700_000_000_000));
        let again = run();
        assert_eq!(again.undecodable, 1);
        assert_eq!(letters(&log).len(), 1, "a rerun does not write the letter again");
    }

    /// A store that holds its first batch write until let go, and keeps the keys and versions of
    /// every batch written.
    struct Gated {
        store: MemoryStore,
        entered: Mutex<Option<Sender<()>>>,
        gate: Mutex<Option<Receiver<()>>>,
        batches: Mutex<Vec<Vec<(String, u64)>>>,
    }

    impl StateStore for Gated {
        fn put_versioned(&self, key: &str, version: u64, value: &[u8]) -> Result<bool, StoreError> {
            self.store.put_versioned(key, version, value)
        }
        fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
            self.store.get(key)
        }
        fn put_many_versioned(&self, writes: &[(String, u64, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
            if let Some(entered) = self.entered.lock().unwrap().take() {
                entered.send(()).unwrap();
                let gate = self.gate.lock().unwrap().take().unwrap();
                gate.recv().unwrap();
            }
            let mut keys: Vec<(String, u64)> = writes.iter().map(|(k, v, _)| (k.clone(), *v)).collect();
            keys.sort();
            self.batches.lock().unwrap().push(keys);
            self.store.put_many_versioned(writes)
        }
        fn put_versioned_expiring(
            &self,
            key: &str,
            version: u64,
            value: &[u8],
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            self.store.put_versioned_expiring(key, version, value, ttl)
        }
    }

    #[test]
    fn batches_waiting_for_the_writer_go_to_the_store_as_one_write_of_the_latest_versions() {
        let claims = claims(5);
        let claims = &claims[..];
        let log = Arc::new(EmbeddedLog::new());
        log.create_all_topics().unwrap();
        let source = TopicsSource::Embedded { dir: ".".into(), topic_prefix: String::new() };
        let outputs =
            Outputs::open(&source, Some(log.clone()), &OUTPUT_TOPICS, Arc::new(Metrics::new("test"))).unwrap();
        let (entered, has_entered) = channel();
        let (open, gate) = channel();
        let store = Arc::new(Gated {
            store: MemoryStore::new(),
            entered: Mutex::new(Some(entered)),
            gate: Mutex::new(Some(gate)),
            batches: Mutex::default(),
        });
        let mut writer = Writer::start(outputs, store.clone()).unwrap();
        // Batch n: claim n, kept as `claim:n` at version 1, and `acc:m` at version n.
        let batch = |n: usize| -> Batch {
            let record: Box<dyn StoreRecord> = Box::new(format!("acc {n}"));
            (vec![(claims[n].clone(), Some((format!("claim:{n}"), 1)))], vec![("acc:m".to_owned(), n as u64, record)])
        };
        writer.send(batch(0)).unwrap();
        has_entered.recv().unwrap(); // the writer is in its first store write
        for n in 1..5 {
            writer.send(batch(n)).unwrap();
        }
        open.send(()).unwrap();
        writer.finish().unwrap();

        let batches = store.batches.lock().unwrap().clone();
        let claim = |n: usize| (format!("claim:{n}"), 1);
        assert_eq!(
            batches,
            vec![
                vec![("acc:m".to_owned(), 0), claim(0)],
                vec![("acc:m".to_owned(), 4), claim(1), claim(2), claim(3), claim(4)],
            ],
            "the four batches that waited were written together, acc:m once, at its latest version"
        );
        assert_eq!(store.get("acc:m").unwrap(), Some((4, b"\"acc 4\"".to_vec())));
        // Every event was still written, each partition's in the order sent.
        let mut written = 0;
        for (partition, end) in log.end_offsets(CLAIMS_EVENTS).unwrap().into_iter().enumerate() {
            let at: Vec<usize> = log
                .fetch(CLAIMS_EVENTS, partition as u32, 0, end as usize)
                .unwrap()
                .iter()
                .map(|record| {
                    let event = wire::decode(&record.value).unwrap();
                    claims.iter().position(|c| *c == event).expect("an event sent")
                })
                .collect();
            assert!(at.is_sorted(), "partition {partition}: {at:?}");
            written += at.len();
        }
        assert_eq!(written, claims.len());
    }
}
