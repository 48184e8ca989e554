//! The window operator against a sequential oracle that states the semantics directly, on
//! 1, 2 and 4 workers, with out-of-order and late input.

// Tuples of (stamp, record) read better here than a type per shape.
#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use arus_operators::{
    Aggregate, LateRecord, StateCheckpoints, Time, Window, WindowAggregate, WindowChange, WindowSpec,
};
use proptest::prelude::*;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Inspect, Probe};

/// Count, sum and distinct members: the provider-windows aggregate, in miniature.
struct Stats;

impl Aggregate for Stats {
    type Input = (u32, i64);
    type State = (u64, i64, BTreeSet<u32>);
    type Output = (u64, i64, u64);

    fn add(&self, state: &mut Self::State, (member, amount): &(u32, i64)) {
        state.0 += 1;
        state.1 += amount;
        state.2.insert(*member);
    }

    fn merge(&self, into: &mut Self::State, from: Self::State) {
        into.0 += from.0;
        into.1 += from.1;
        into.2.extend(from.2);
    }

    fn output(&self, state: &Self::State) -> Self::Output {
        (state.0, state.1, state.2.len() as u64)
    }
}

type Record = (u8, Time, (u32, i64));
type Change = (Time, WindowChange<u8, (u64, i64, u64)>);

/// Stamped input: (stamp, records), stamps strictly increasing.
type Input = Vec<(Time, Vec<Record>)>;

fn run(
    input: &Input,
    spec: WindowSpec,
    lateness: u64,
    workers: usize,
) -> (Vec<Change>, Vec<(Time, LateRecord<u8, (u32, i64)>)>) {
    run_from(input, spec, lateness, workers, None, None)
}

/// Checkpoints for the tests: one checkpoint asked for, the states saved for it, and the states
/// to restore.
#[derive(Default)]
struct Store {
    due: Option<(u64, Time)>,
    saved: Mutex<BTreeMap<usize, Vec<u8>>>,
    restore: BTreeMap<usize, Vec<u8>>,
}

impl StateCheckpoints for Store {
    fn due(&self, _operator: &str, worker: usize) -> Vec<(u64, Time)> {
        let saved = self.saved.lock().expect("lock");
        self.due.filter(|_| !saved.contains_key(&worker)).into_iter().collect()
    }

    fn save(&self, _operator: &str, worker: usize, _epoch: u64, state: Vec<u8>) {
        assert!(self.saved.lock().expect("lock").insert(worker, state).is_none(), "saved once");
    }

    fn restore(&self, _operator: &str, worker: usize) -> Option<Vec<u8>> {
        self.restore.get(&worker).cloned()
    }
}

/// Runs `input`, starting from `store`'s restored state if any; with `stop_at`, feeds only the
/// input stamped before it, waits until the output has passed it, and keeps only the output
/// stamped before it (what a process that died there had made durable).
fn run_from(
    input: &Input,
    spec: WindowSpec,
    lateness: u64,
    workers: usize,
    store: Option<Arc<Store>>,
    stop_at: Option<Time>,
) -> (Vec<Change>, Vec<(Time, LateRecord<u8, (u32, i64)>)>) {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let late = Arc::new(Mutex::new(Vec::new()));
    let (changes2, late2, input) = (changes.clone(), late.clone(), input.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut handle: InputHandle<Time, CapacityContainerBuilder<Vec<Record>>> = InputHandle::new();
        let (changes, late) = (changes2.clone(), late2.clone());
        let store = store.clone();
        let probe = worker.dataflow::<Time, _, _>(|scope| {
            let checkpoints = store.map(|s| s as Arc<dyn StateCheckpoints>);
            let (out, late_out) =
                handle.to_stream(scope).window_aggregate_checkpointed("Stats", spec, lateness, Stats, checkpoints);
            late_out.inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let time = *stamp.expect_singleton();
                    late.lock().expect("lock").extend(data.iter().map(|r| (time, r.clone())));
                }
            });
            out.inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let time = *stamp.expect_singleton();
                    changes.lock().expect("lock").extend(data.iter().map(|c| (time, c.clone())));
                }
            })
            .probe()
            .0
        });
        if worker.index() == 0 {
            if let Some(first) = input.first() {
                handle.advance_to(first.0);
            }
            for (stamp, records) in input.iter().filter(|(s, _)| stop_at.is_none_or(|at| *s < at)) {
                handle.advance_to(*stamp);
                for record in records {
                    handle.send(*record);
                }
                handle.advance_to(stamp + 1);
                while probe.less_than(handle.time()) {
                    worker.step();
                }
            }
            if let Some(at) = stop_at {
                handle.advance_to(at);
                while probe.less_than(&at) {
                    worker.step();
                }
            }
        }
        drop(handle);
        while worker.step() {}
    })
    .expect("timely runs");
    let mut changes = Arc::try_unwrap(changes).expect("workers done").into_inner().expect("lock");
    let mut late = Arc::try_unwrap(late).expect("workers done").into_inner().expect("lock");
    if let Some(at) = stop_at {
        changes.retain(|(t, _)| *t < at);
        late.retain(|(t, _)| *t < at);
    }
    changes.sort();
    late.sort_by_key(|(t, r)| (*t, r.key, r.event_time, r.value));
    (changes, late)
}

/// The semantics, stated per window: the value emitted at the window's end counts the
/// records stamped before its end; each later stamp within the allowed lateness that brings
/// records for it corrects it (retract old, assert new); records stamped later than that are
/// late.
fn oracle(input: &Input, spec: WindowSpec, lateness: u64) -> (Vec<Change>, Vec<(Time, (u8, Time, (u32, i64)))>) {
    let mut by_window: BTreeMap<(u8, Window), Vec<(Time, (u32, i64))>> = BTreeMap::new();
    let mut late = Vec::new();
    for (stamp, records) in input {
        for &(key, time, value) in records {
            let mut is_late = false;
            spec.for_each_window(time, |w| {
                if *stamp >= w.end && *stamp - w.end > lateness {
                    is_late = true;
                } else {
                    by_window.entry((key, w)).or_default().push((*stamp, value));
                }
            });
            if is_late {
                late.push((*stamp, (key, time, value)));
            }
        }
    }
    let mut changes = Vec::new();
    for ((key, window), records) in by_window {
        let output = |upto: Time| {
            let mut state = <Stats as Aggregate>::State::default();
            records.iter().filter(|(s, _)| *s <= upto).for_each(|(_, v)| Stats.add(&mut state, v));
            Stats.output(&state)
        };
        let mut current = None;
        if records.iter().any(|(s, _)| *s < window.end) {
            let value = output(window.end - 1);
            changes.push((window.end, WindowChange { key, window, value, diff: 1 }));
            current = Some(value);
        }
        let later: BTreeSet<Time> = records.iter().map(|(s, _)| *s).filter(|s| *s >= window.end).collect();
        for stamp in later {
            let value = output(stamp);
            if current.as_ref() == Some(&value) {
                continue;
            }
            if let Some(old) = current {
                changes.push((stamp, WindowChange { key, window, value: old, diff: -1 }));
            }
            changes.push((stamp, WindowChange { key, window, value, diff: 1 }));
            current = Some(value);
        }
    }
    changes.sort();
    late.sort();
    (changes, late)
}

/// Records with event times drifting forward with disorder, stamped with the watermark of a
/// bounded out-of-orderness tracker that is sometimes too optimistic (so some records are
/// late and some windows are corrected).
fn arb_input() -> impl Strategy<Value = Input> {
    proptest::collection::vec((0u8..5, 0u64..40, 0u32..6, -500i64..5_000, any::<bool>()), 1..300).prop_map(|raw| {
        let mut input: Input = Vec::new();
        let mut clock = 0u64;
        let mut max_seen = 0u64;
        let mut batch = Vec::new();
        for (i, (key, step, member, amount, jitter)) in raw.into_iter().enumerate() {
            clock += step;
            let time = if jitter { clock.saturating_sub(step * 7) } else { clock };
            max_seen = max_seen.max(time);
            batch.push((key, time, (member, amount)));
            if i % 7 == 6 {
                let stamp = max_seen.saturating_sub(30).max(input.last().map_or(0, |(s, _)| s + 1));
                input.push((stamp, std::mem::take(&mut batch)));
            }
        }
        if !batch.is_empty() {
            let stamp = max_seen.saturating_sub(30).max(input.last().map_or(0, |(s, _)| s + 1));
            input.push((stamp, batch));
        }
        input
    })
}

fn check(input: &Input, spec: WindowSpec, lateness: u64) -> Result<(), TestCaseError> {
    let (expected_changes, expected_late) = oracle(input, spec, lateness);
    for workers in [1, 2, 4] {
        let (changes, late) = run(input, spec, lateness, workers);
        prop_assert_eq!(&changes, &expected_changes, "changes with {} workers", workers);
        let late: Vec<(Time, (u8, Time, (u32, i64)))> =
            late.into_iter().map(|(t, r)| (t, (r.key, r.event_time, r.value))).collect();
        prop_assert_eq!(&late, &expected_late, "late records with {} workers", workers);
    }
    Ok(())
}

/// A run checkpointed at a stamp and restored from there gives what an uninterrupted run gives.
fn check_restart(input: &Input, spec: WindowSpec, lateness: u64, cut: usize) -> Result<(), TestCaseError> {
    let at = input[cut % input.len()].0;
    let (expected_changes, expected_late) = run(input, spec, lateness, 2);
    for workers in [1, 2, 4] {
        let store = Arc::new(Store { due: Some((1, at)), ..Store::default() });
        let (mut changes, mut late) = run_from(input, spec, lateness, workers, Some(store.clone()), Some(at));
        let saved = std::mem::take(&mut *store.saved.lock().expect("lock"));
        prop_assert_eq!(saved.len(), workers, "every worker saved its windows");
        let restored = Arc::new(Store { restore: saved, ..Store::default() });
        let rest: Input = input.iter().filter(|(s, _)| *s >= at).cloned().collect();
        let (more_changes, more_late) = run_from(&rest, spec, lateness, workers, Some(restored), None);
        changes.extend(more_changes);
        late.extend(more_late);
        changes.sort();
        late.sort_by_key(|(t, r)| (*t, r.key, r.event_time, r.value));
        prop_assert_eq!(&changes, &expected_changes, "changes across a restart at {} with {} workers", at, workers);
        prop_assert_eq!(&late, &expected_late, "late records across a restart at {} with {} workers", at, workers);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_restart_from_a_checkpoint_changes_nothing(
        input in arb_input(),
        cut in 0usize..1000,
        lateness in prop_oneof![Just(0u64), Just(50)],
        sliding in any::<bool>(),
    ) {
        let spec = if sliding { WindowSpec::Sliding { size_ms: 120, slide_ms: 40 } } else { WindowSpec::Tumbling { size_ms: 100 } };
        check_restart(&input, spec, lateness, cut)?;
    }

    #[test]
    fn tumbling_windows_match_the_oracle(input in arb_input(), lateness in prop_oneof![Just(0u64), Just(50), Just(10_000)]) {
        check(&input, WindowSpec::Tumbling { size_ms: 100 }, lateness)?;
    }

    #[test]
    fn sliding_windows_match_the_oracle(input in arb_input(), lateness in prop_oneof![Just(0u64), Just(60)]) {
        check(&input, WindowSpec::Sliding { size_ms: 120, slide_ms: 40 }, lateness)?;
    }
}

#[test]
fn a_late_record_within_the_lateness_retracts_and_corrects() {
    let spec = WindowSpec::Tumbling { size_ms: 100 };
    let input: Input = vec![(0, vec![(1, 10, (7, 100))]), (150, vec![(1, 20, (8, 50))]), (400, vec![(1, 30, (9, 1))])];
    let (changes, late) = run(&input, spec, 100, 2);
    let w = Window { start: 0, end: 100 };
    assert_eq!(
        changes,
        vec![
            (100, WindowChange { key: 1, window: w, value: (1, 100, 1), diff: 1 }),
            (150, WindowChange { key: 1, window: w, value: (1, 100, 1), diff: -1 }),
            (150, WindowChange { key: 1, window: w, value: (2, 150, 2), diff: 1 }),
        ]
    );
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].0, late[0].1.event_time), (400, 30));
    assert!(late[0].1.reason.contains("allowed lateness of 100 ms"), "{}", late[0].1.reason);
}

/// Session windows, stated directly: the records that are not late (a record stamped `t` is
/// late when its own window `[e, e + gap)` ended more than the allowed lateness before `t`),
/// grouped per key into maximal runs where each event starts before the run's end so far.
fn session_oracle(
    input: &Input,
    gap: u64,
    lateness: u64,
) -> (BTreeSet<(u8, Window, (u64, i64, u64))>, Vec<(Time, (u8, Time, (u32, i64)))>) {
    let mut by_key: BTreeMap<u8, Vec<(Time, (u32, i64))>> = BTreeMap::new();
    let mut late = Vec::new();
    for (stamp, records) in input {
        for &(key, time, value) in records {
            if time + gap <= *stamp && *stamp - (time + gap) > lateness {
                late.push((*stamp, (key, time, value)));
            } else {
                by_key.entry(key).or_default().push((time, value));
            }
        }
    }
    let mut sessions = BTreeSet::new();
    for (key, mut events) in by_key {
        events.sort();
        let mut current: Option<(Window, <Stats as Aggregate>::State)> = None;
        for (time, value) in events {
            match current.as_mut() {
                Some((window, state)) if time < window.end => {
                    window.end = window.end.max(time + gap);
                    Stats.add(state, &value);
                }
                _ => {
                    if let Some((window, state)) = current.take() {
                        sessions.insert((key, window, Stats.output(&state)));
                    }
                    let mut state = <Stats as Aggregate>::State::default();
                    Stats.add(&mut state, &value);
                    current = Some((Window { start: time, end: time + gap }, state));
                }
            }
        }
        if let Some((window, state)) = current {
            sessions.insert((key, window, Stats.output(&state)));
        }
    }
    late.sort();
    (sessions, late)
}

/// What the changes add up to: every (key, window, value) asserted once more than retracted.
fn materialize(changes: &[Change]) -> BTreeSet<(u8, Window, (u64, i64, u64))> {
    let mut counts: BTreeMap<(u8, Window, (u64, i64, u64)), i64> = BTreeMap::new();
    for (_, change) in changes {
        *counts.entry((change.key, change.window, change.value)).or_default() += change.diff;
    }
    assert!(counts.values().all(|c| *c == 0 || *c == 1), "a value retracted more than asserted: {counts:?}");
    counts.into_iter().filter(|(_, c)| *c == 1).map(|(k, _)| k).collect()
}

fn check_sessions(input: &Input, gap: u64, lateness: u64) -> Result<(), TestCaseError> {
    let spec = WindowSpec::Session { gap_ms: gap };
    let (expected_sessions, expected_late) = session_oracle(input, gap, lateness);
    let (first, _) = run(input, spec, lateness, 1);
    for workers in [1, 2, 4] {
        let (changes, late) = run(input, spec, lateness, workers);
        prop_assert_eq!(&changes, &first, "the same changes with {} workers", workers);
        prop_assert_eq!(&materialize(&changes), &expected_sessions, "sessions with {} workers", workers);
        let late: Vec<(Time, (u8, Time, (u32, i64)))> =
            late.into_iter().map(|(t, r)| (t, (r.key, r.event_time, r.value))).collect();
        prop_assert_eq!(&late, &expected_late, "late records with {} workers", workers);
        // A session is emitted at its end, never before.
        for (time, change) in &changes {
            if change.diff > 0 {
                prop_assert!(
                    *time >= change.window.end,
                    "session {:?} emitted at {} before its end",
                    change.window,
                    time
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn session_windows_match_the_oracle(input in arb_input(), lateness in prop_oneof![Just(0u64), Just(50), Just(10_000)]) {
        check_sessions(&input, 25, lateness)?;
    }

    #[test]
    fn a_restart_from_a_checkpoint_changes_no_session(input in arb_input(), cut in 0usize..1000, lateness in prop_oneof![Just(0u64), Just(50)]) {
        check_restart(&input, WindowSpec::Session { gap_ms: 25 }, lateness, cut)?;
    }
}

#[test]
fn a_late_event_bridging_two_sessions_merges_them() {
    let spec = WindowSpec::Session { gap_ms: 10 };
    // Sessions [0, 10) and [15, 25) close at 30; the event at 8 (stamped 31, within a lateness
    // of 100) bridges them into [0, 25).
    let input: Input = vec![(0, vec![(1, 0, (1, 5)), (1, 15, (2, 7))]), (30, vec![]), (31, vec![(1, 8, (3, 1))])];
    let (changes, late) = run(&input, spec, 100, 2);
    assert!(late.is_empty());
    let (a, b, merged) = (Window { start: 0, end: 10 }, Window { start: 15, end: 25 }, Window { start: 0, end: 25 });
    assert_eq!(
        changes,
        vec![
            (10, WindowChange { window: a, key: 1, value: (1, 5, 1), diff: 1 }),
            (25, WindowChange { window: b, key: 1, value: (1, 7, 1), diff: 1 }),
            (31, WindowChange { window: a, key: 1, value: (1, 5, 1), diff: -1 }),
            (31, WindowChange { window: merged, key: 1, value: (3, 13, 3), diff: 1 }),
            (31, WindowChange { window: b, key: 1, value: (1, 7, 1), diff: -1 }),
        ]
    );
}
