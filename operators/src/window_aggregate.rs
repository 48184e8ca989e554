//! Keyed event-time windows, with corrections for late data.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use timely::ExchangeData;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::Time;
use crate::aggregate::{Aggregate, LateRecord, WindowChange};
use crate::checkpoint::StateCheckpoints;
use crate::session::Sessions;
use crate::window::{Window, WindowSpec};

/// Groups `(key, event time, value)` records into event-time windows per key and aggregates
/// each window.
pub trait WindowAggregate<'scope, K, V> {
    /// Windows the stream and aggregates each window of each key with `aggregate`.
    ///
    /// Records are partitioned across workers by key. A window `[start, end)` is emitted, at
    /// timely time `end`, once the frontier has passed a stamp `t >= end` (the watermark
    /// reached its end). A record stamped `t` whose window ended at or before `t` is late: if
    /// `t - end <= allowed_lateness_ms`, the window's result is corrected (a −1 for the value
    /// emitted before, a +1 for the new one, at time `t`); otherwise the record goes to the
    /// second output with the reason. When the input ends, every open window is emitted.
    ///
    /// ```
    /// use arus_operators::{Aggregate, WindowAggregate, WindowSpec};
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    ///
    /// struct Count;
    /// impl Aggregate for Count {
    ///     type Input = ();
    ///     type State = u64;
    ///     type Output = u64;
    ///     fn add(&self, state: &mut u64, _: &()) { *state += 1; }
    ///     fn merge(&self, into: &mut u64, from: u64) { *into += from; }
    ///     fn output(&self, state: &u64) -> u64 { *state }
    /// }
    ///
    /// let (changes, _late) = timely::example(|scope| {
    ///     let records = vec![("p1".to_owned(), 1_000u64, ()), ("p1".to_owned(), 61_000, ())];
    ///     let (changes, late) = records.to_stream(scope).container::<Vec<_>>()
    ///         .window_aggregate("Count", WindowSpec::Tumbling { size_ms: 60_000 }, 0, Count);
    ///     (changes.capture(), late.capture())
    /// });
    /// let changes: Vec<_> = changes.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(changes.len(), 2);
    /// assert_eq!((changes[0].window.start, changes[0].value), (0, 1));
    /// ```
    #[allow(clippy::type_complexity)]
    fn window_aggregate<A>(
        self,
        name: &str,
        windows: WindowSpec,
        allowed_lateness_ms: u64,
        aggregate: A,
    ) -> (StreamVec<'scope, Time, WindowChange<K, A::Output>>, StreamVec<'scope, Time, LateRecord<K, V>>)
    where
        A: Aggregate<Input = V>,
        Self: Sized,
    {
        self.window_aggregate_checkpointed(name, windows, allowed_lateness_ms, aggregate, None)
    }

    /// [`window_aggregate`](Self::window_aggregate), saving each worker's windows at the
    /// checkpoints `checkpoints` asks for (under the operator's `name`) and starting from the
    /// state it restores.
    #[allow(clippy::type_complexity)]
    fn window_aggregate_checkpointed<A>(
        self,
        name: &str,
        windows: WindowSpec,
        allowed_lateness_ms: u64,
        aggregate: A,
        checkpoints: Option<Arc<dyn StateCheckpoints>>,
    ) -> (StreamVec<'scope, Time, WindowChange<K, A::Output>>, StreamVec<'scope, Time, LateRecord<K, V>>)
    where
        A: Aggregate<Input = V>;
}

/// The worker a key belongs to: a fixed hash, so placement is the same in every run.
pub fn key_hash<K: Hash>(key: &K) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl<'scope, K, V> WindowAggregate<'scope, K, V> for StreamVec<'scope, Time, (K, Time, V)>
where
    K: ExchangeData + Hash + Ord + Clone,
    V: ExchangeData,
{
    fn window_aggregate_checkpointed<A>(
        self,
        name: &str,
        windows: WindowSpec,
        allowed_lateness_ms: u64,
        aggregate: A,
        checkpoints: Option<Arc<dyn StateCheckpoints>>,
    ) -> (StreamVec<'scope, Time, WindowChange<K, A::Output>>, StreamVec<'scope, Time, LateRecord<K, V>>)
    where
        A: Aggregate<Input = V>,
    {
        let worker = self.scope().index();
        let operator = name.to_owned();
        let mut builder = OperatorBuilder::new(name.to_owned(), self.scope());
        let mut input = builder.new_input(self, Exchange::new(|(key, _, _): &(K, Time, V)| key_hash(key)));
        let (changes_output, changes) = builder.new_output::<Vec<WindowChange<K, A::Output>>>();
        let (late_output, late) = builder.new_output::<Vec<LateRecord<K, V>>>();
        let mut changes_output = OutputBuilder::from(changes_output);
        let mut late_output = OutputBuilder::from(late_output);

        builder.build(move |mut capabilities| {
            // Late records are sent under the capability of the stamp they came with; the
            // initial capability of that output is not needed.
            capabilities.truncate(1);
            let mut windows = State::new(windows, allowed_lateness_ms, aggregate);
            if let Some(saved) = checkpoints.as_ref().and_then(|c| c.restore(&operator, worker)) {
                // The runner validated the checkpoint; state it wrote itself that no longer
                // reads is a bug, not an input error.
                windows.restore(&saved).expect("window state saved by this operator reads back");
            }
            // A capability no later than the earliest open window's end, where window results
            // are emitted; none while no window is open (a stamp's own capability serves the
            // windows it opens).
            let mut retained: Option<Capability<Time>> = capabilities.pop();
            // Records by stamp, waiting for the frontier to pass it, with capabilities for
            // both outputs.
            let mut pending: BTreeMap<Time, Pending<K, V>> = BTreeMap::new();
            let mut closed = Vec::new();
            let mut corrections = Vec::new();
            let mut late_records = Vec::new();

            move |frontiers| {
                input.for_each_stamp(|capability, data| {
                    let time = *capability.least().expect("a totally ordered stamp has a least element");
                    let entry = pending
                        .entry(time)
                        .or_insert_with(|| (capability.delayed(&time, 0), capability.delayed(&time, 1), Vec::new()));
                    for batch in data {
                        entry.2.append(batch);
                    }
                });

                let frontier = &frontiers[0];
                let mut changes_output = changes_output.activate();
                let mut late_output = late_output.activate();
                let mut due = checkpoints.as_ref().map(|c| c.due(&operator, worker)).unwrap_or_default().into_iter();
                let mut next_due = due.next();
                while let Some(entry) = pending.first_entry() {
                    let time = *entry.key();
                    if frontier.less_equal(&time) {
                        break;
                    }
                    while let Some(due_now) = next_due.filter(|(_, at)| *at <= time) {
                        if let Some(c) = checkpoints.as_deref() {
                            let state = windows.checkpoint(due_now.1, &mut closed);
                            if let Some(retained) = &retained {
                                emit_closed(&mut closed, retained, &mut changes_output);
                            }
                            c.save(&operator, worker, due_now.0, state);
                        }
                        next_due = due.next();
                    }
                    let (changes_capability, late_capability, records) = entry.remove();
                    windows.close_until(time, &mut closed);
                    if let Some(retained) = &retained {
                        emit_closed(&mut closed, retained, &mut changes_output);
                    }
                    debug_assert!(closed.is_empty(), "open windows without a capability to emit them");
                    windows.apply(time, records, &mut corrections, &mut late_records);
                    if !corrections.is_empty() {
                        changes_output.session(&changes_capability).give_iterator(corrections.drain(..));
                    }
                    if !late_records.is_empty() {
                        late_output.session(&late_capability).give_iterator(late_records.drain(..));
                    }
                    retained = Some(changes_capability);
                }
                // Checkpoints the frontier has passed (every stamp before them applied).
                while let Some(due_now) = next_due.filter(|(_, at)| !frontier.less_than(at)) {
                    if let Some(c) = checkpoints.as_deref() {
                        let state = windows.checkpoint(due_now.1, &mut closed);
                        if let Some(retained) = &retained {
                            emit_closed(&mut closed, retained, &mut changes_output);
                        }
                        c.save(&operator, worker, due_now.0, state);
                    }
                    next_due = due.next();
                }
                // Windows ending before the frontier are complete even if this worker saw no
                // stamp since: every record stamped before their end has been applied, and any
                // record still to come is stamped at or after the frontier, so a correction.
                // (When the input is done, the frontier is empty and every window closes.)
                let watermark = frontier.frontier().first().map_or(Time::MAX, |f| f.saturating_sub(1));
                windows.close_until(watermark, &mut closed);
                if let Some(retained) = &retained {
                    emit_closed(&mut closed, retained, &mut changes_output);
                }
                // Hold the output back only as far as the earliest open window's end, the next
                // time a result can appear: downstream progress is not held at an old stamp.
                match (windows.earliest_open_end(), retained.as_mut()) {
                    (Some(end), Some(capability)) => capability.downgrade(&end),
                    _ => retained = None,
                }
            }
        });
        (changes, late)
    }
}

/// Records of one stamp, with capabilities for the changes and the late output.
type Pending<K, V> = (Capability<Time>, Capability<Time>, Vec<(K, Time, V)>);

/// Emits closed windows, each at its end time, in (end, key) order.
fn emit_closed<K: ExchangeData, O: ExchangeData>(
    closed: &mut Vec<WindowChange<K, O>>,
    retained: &Capability<Time>,
    output: &mut timely::dataflow::operators::generic::OutputBuilderSession<
        '_,
        Time,
        timely::container::CapacityContainerBuilder<Vec<WindowChange<K, O>>>,
    >,
) {
    // One pass: draining runs from the front would shift the rest each time.
    let mut changes = closed.drain(..).peekable();
    while let Some(end) = changes.peek().map(|c| c.window.end) {
        let capability = retained.delayed(&end);
        let mut session = output.session(&capability);
        while let Some(change) = changes.next_if(|c| c.window.end == end) {
            session.give(change);
        }
    }
}

/// The windows of one worker's keys.
struct Windows<K, A: Aggregate> {
    spec: WindowSpec,
    allowed_lateness_ms: u64,
    aggregate: A,
    /// Open windows by end, then key.
    open: BTreeMap<Time, HashMap<K, A::State>>,
    /// Emitted windows still correctable (ended within the allowed lateness), by end, then key.
    emitted: BTreeMap<Time, HashMap<K, A::State>>,
}

/// Fixed windows or sessions, behind one face for the operator.
enum State<K, A: Aggregate> {
    Fixed(Windows<K, A>),
    Sessions(Sessions<K, A>),
}

impl<K: Hash + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned, A: Aggregate> State<K, A> {
    fn new(spec: WindowSpec, allowed_lateness_ms: u64, aggregate: A) -> Self {
        match spec {
            WindowSpec::Session { gap_ms } => State::Sessions(Sessions::new(gap_ms, allowed_lateness_ms, aggregate)),
            fixed => State::Fixed(Windows::new(fixed, allowed_lateness_ms, aggregate)),
        }
    }

    fn earliest_open_end(&self) -> Option<Time> {
        match self {
            State::Fixed(w) => w.earliest_open_end(),
            State::Sessions(s) => s.earliest_open_end(),
        }
    }

    fn close_until(&mut self, watermark: Time, closed: &mut Vec<WindowChange<K, A::Output>>) {
        match self {
            State::Fixed(w) => w.close_until(watermark, closed),
            State::Sessions(s) => s.close_until(watermark, closed),
        }
    }

    fn apply<V>(
        &mut self,
        time: Time,
        records: Vec<(K, Time, V)>,
        corrections: &mut Vec<WindowChange<K, A::Output>>,
        late: &mut Vec<LateRecord<K, V>>,
    ) where
        A: Aggregate<Input = V>,
    {
        match self {
            State::Fixed(w) => w.apply(time, records, corrections, late),
            State::Sessions(s) => s.apply(time, records, corrections, late),
        }
    }

    /// The state for a checkpoint at `at` (every stamp before it applied, none after): windows
    /// ending before `at` are closed first (into `closed`, to emit), as the frontier allows.
    fn checkpoint(&mut self, at: Time, closed: &mut Vec<WindowChange<K, A::Output>>) -> Vec<u8> {
        self.close_until(at.saturating_sub(1), closed);
        match self {
            State::Fixed(w) => w.snapshot(),
            State::Sessions(s) => s.snapshot(),
        }
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        match self {
            State::Fixed(w) => w.restore(bytes),
            State::Sessions(s) => s.restore(bytes),
        }
    }
}

/// Windows as saved: by end, then key.
type SavedWindows<K, S> = Vec<(Time, Vec<(K, S)>)>;

/// The windows of one worker as saved: open and emitted.
type Snapshot<K, S> = (SavedWindows<K, S>, SavedWindows<K, S>);

impl<K: Hash + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned, A: Aggregate> Windows<K, A> {
    fn new(spec: WindowSpec, allowed_lateness_ms: u64, aggregate: A) -> Self {
        Windows { spec, allowed_lateness_ms, aggregate, open: BTreeMap::new(), emitted: BTreeMap::new() }
    }

    /// The windows as bytes, keys in order so equal state gives equal bytes.
    fn snapshot(&self) -> Vec<u8> {
        fn sorted<K: Ord, S>(windows: &BTreeMap<Time, HashMap<K, S>>) -> Vec<(Time, Vec<(&K, &S)>)> {
            windows
                .iter()
                .map(|(end, states)| {
                    let mut states: Vec<(&K, &S)> = states.iter().collect();
                    states.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    (*end, states)
                })
                .collect()
        }
        serde_json::to_vec(&(sorted(&self.open), sorted(&self.emitted))).expect("window state serializes")
    }

    /// Replaces the windows with a snapshot's.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        let (open, emitted): Snapshot<K, A::State> = serde_json::from_slice(bytes)?;
        let rebuild = |windows: SavedWindows<K, A::State>| -> BTreeMap<Time, HashMap<K, A::State>> {
            windows.into_iter().map(|(end, states)| (end, states.into_iter().collect())).collect()
        };
        self.open = rebuild(open);
        self.emitted = rebuild(emitted);
        Ok(())
    }

    /// The end of the earliest open window.
    fn earliest_open_end(&self) -> Option<Time> {
        self.open.keys().next().copied()
    }

    /// Closes every open window ending at or before `watermark`, appending its result to
    /// `closed` in (end, key) order, and forgets emitted windows past the allowed lateness.
    fn close_until(&mut self, watermark: Time, closed: &mut Vec<WindowChange<K, A::Output>>) {
        while let Some(entry) = self.open.first_entry() {
            let end = *entry.key();
            if end > watermark {
                break;
            }
            let states = entry.remove();
            let size = self.spec.size_ms();
            let mut entries: Vec<(&K, &A::State)> = states.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let window = Window { start: end - size, end };
            closed.extend(entries.into_iter().map(|(key, state)| WindowChange {
                window,
                key: key.clone(),
                value: self.aggregate.output(state),
                diff: 1,
            }));
            // Kept even with no allowed lateness: a record stamped exactly at the end is still
            // within it.
            self.emitted.insert(end, states);
        }
        while let Some(entry) = self.emitted.first_entry() {
            if entry.key().saturating_add(self.allowed_lateness_ms) >= watermark {
                break;
            }
            entry.remove();
        }
    }

    /// Folds the records stamped `time` in; windows already emitted get corrections.
    fn apply<V>(
        &mut self,
        time: Time,
        records: Vec<(K, Time, V)>,
        corrections: &mut Vec<WindowChange<K, A::Output>>,
        late: &mut Vec<LateRecord<K, V>>,
    ) where
        A: Aggregate<Input = V>,
    {
        // Old results of the emitted windows these records change, to retract once each.
        let mut touched: BTreeMap<(Time, K), Option<A::Output>> = BTreeMap::new();
        for (key, event_time, value) in records {
            let mut too_late: Option<Window> = None;
            let (spec, lateness) = (self.spec, self.allowed_lateness_ms);
            spec.for_each_window(event_time, |window| {
                if window.end > time {
                    let state = self.open.entry(window.end).or_default().entry(key.clone()).or_default();
                    self.aggregate.add(state, &value);
                } else if time - window.end <= lateness {
                    let states = self.emitted.entry(window.end).or_default();
                    let old = states.get(&key).map(|s| self.aggregate.output(s));
                    touched.entry((window.end, key.clone())).or_insert(old);
                    self.aggregate.add(states.entry(key.clone()).or_default(), &value);
                } else {
                    too_late.get_or_insert(window);
                }
            });
            if let Some(window) = too_late {
                let reason = format!(
                    "window [{}, {}) closed at watermark {} and the watermark is now {}: more than the allowed \
                     lateness of {} ms",
                    window.start, window.end, window.end, time, lateness
                );
                late.push(LateRecord { key, event_time, value, watermark: time, reason });
            }
        }
        let size = self.spec.size_ms();
        for ((end, key), old) in touched {
            let window = Window { start: end - size, end };
            let new = self.aggregate.output(&self.emitted[&end][&key]);
            if old.as_ref() == Some(&new) {
                continue;
            }
            if let Some(old) = old {
                corrections.push(WindowChange { key: key.clone(), window, value: old, diff: -1 });
            }
            corrections.push(WindowChange { key, window, value: new, diff: 1 });
        }
    }
}
