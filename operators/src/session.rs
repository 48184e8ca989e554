//! Session windows: per key, events no more than a gap apart form one session
//! `[first event, last event + gap)`. A session closes when the watermark passes its end; a late
//! event within the allowed lateness can extend a closed session or merge sessions, which
//! retracts what was emitted for them and asserts the merged session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Time;
use crate::aggregate::{Aggregate, LateRecord, WindowChange};
use crate::window::Window;

/// One session of one key.
struct Session<A: Aggregate> {
    end: Time,
    state: A::State,
    /// Values asserted downstream for this session (or the sessions merged into it): empty
    /// while open, one value once closed, several between a merge and the end of its stamp.
    emitted: Vec<(Window, A::Output)>,
}

/// The sessions of one worker's keys.
pub(crate) struct Sessions<K, A: Aggregate> {
    gap_ms: u64,
    allowed_lateness_ms: u64,
    aggregate: A,
    /// Per key, sessions by start.
    keys: HashMap<K, BTreeMap<Time, Session<A>>>,
    /// Open sessions as (end, key, start).
    open: BTreeSet<(Time, K, Time)>,
    /// Closed sessions still correctable, as (end, key, start).
    closed: BTreeSet<(Time, K, Time)>,
}

/// A session as saved: start, end, state, values emitted.
type SavedSession<S, O> = (Time, Time, S, Vec<(Window, O)>);

/// A key's sessions as saved.
type SavedKey<K, S, O> = (K, Vec<SavedSession<S, O>>);

impl<K, A> Sessions<K, A>
where
    K: Hash + Ord + Clone + Serialize + DeserializeOwned,
    A: Aggregate,
    A::State: Serialize + DeserializeOwned,
    A::Output: Serialize + DeserializeOwned,
{
    pub(crate) fn new(gap_ms: u64, allowed_lateness_ms: u64, aggregate: A) -> Self {
        Sessions {
            gap_ms,
            allowed_lateness_ms,
            aggregate,
            keys: HashMap::new(),
            open: BTreeSet::new(),
            closed: BTreeSet::new(),
        }
    }

    pub(crate) fn earliest_open_end(&self) -> Option<Time> {
        self.open.first().map(|(end, _, _)| *end)
    }

    /// Closes every open session ending at or before `watermark` (results into `out`, in (end,
    /// key) order) and forgets closed sessions no event can reach any more.
    pub(crate) fn close_until(&mut self, watermark: Time, out: &mut Vec<WindowChange<K, A::Output>>) {
        while let Some((end, _, _)) = self.open.first() {
            if *end > watermark {
                break;
            }
            let (end, key, start) = self.open.pop_first().expect("checked above");
            let session = self.keys.get_mut(&key).and_then(|s| s.get_mut(&start)).expect("indexed session exists");
            let window = Window { start, end };
            let value = self.aggregate.output(&session.state);
            session.emitted = vec![(window, value.clone())];
            out.push(WindowChange { window, key: key.clone(), value, diff: 1 });
            self.closed.insert((end, key, start));
        }
        // An event that is not late reaches back at most gap + lateness before the watermark.
        let reach = self.allowed_lateness_ms.saturating_add(self.gap_ms);
        while let Some((end, _, _)) = self.closed.first() {
            if end.saturating_add(reach) >= watermark {
                break;
            }
            let (_, key, start) = self.closed.pop_first().expect("checked above");
            if let Some(sessions) = self.keys.get_mut(&key) {
                sessions.remove(&start);
                if sessions.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Folds the records stamped `time` in, merging sessions; closed sessions that change get
    /// corrections (retractions of what was emitted, and the new value if still closed).
    pub(crate) fn apply<V>(
        &mut self,
        time: Time,
        records: Vec<(K, Time, V)>,
        corrections: &mut Vec<WindowChange<K, A::Output>>,
        late: &mut Vec<LateRecord<K, V>>,
    ) where
        A: Aggregate<Input = V>,
    {
        let mut changed: BTreeSet<(K, Time)> = BTreeSet::new();
        for (key, event_time, value) in records {
            let own_end = event_time.saturating_add(self.gap_ms);
            if own_end <= time && time - own_end > self.allowed_lateness_ms {
                let reason = format!(
                    "session window [{event_time}, {own_end}) closed at watermark {own_end} and the watermark is now \
                     {time}: more than the allowed lateness of {} ms",
                    self.allowed_lateness_ms
                );
                late.push(LateRecord { key, event_time, value, watermark: time, reason });
                continue;
            }
            let sessions = self.keys.entry(key.clone()).or_default();
            // Sessions overlapping [event_time, own_end): disjoint and sorted, so a run ending
            // with the last one starting before own_end.
            let overlapping: Vec<Time> = sessions
                .range(..own_end)
                .rev()
                .take_while(|(_, s)| s.end > event_time)
                .map(|(start, _)| *start)
                .collect();
            let mut merged = Session::<A> { end: own_end, state: A::State::default(), emitted: Vec::new() };
            let mut start = event_time;
            for old_start in overlapping {
                let old = sessions.remove(&old_start).expect("listed above");
                self.open.remove(&(old.end, key.clone(), old_start));
                self.closed.remove(&(old.end, key.clone(), old_start));
                changed.remove(&(key.clone(), old_start));
                start = start.min(old_start);
                merged.end = merged.end.max(old.end);
                self.aggregate.merge(&mut merged.state, old.state);
                merged.emitted.extend(old.emitted);
            }
            self.aggregate.add(&mut merged.state, &value);
            // Indexed as open until the stamp's end decides.
            self.open.insert((merged.end, key.clone(), start));
            sessions.insert(start, merged);
            changed.insert((key, start));
        }
        for (key, start) in changed {
            let session = self.keys.get_mut(&key).and_then(|s| s.get_mut(&start)).expect("changed session exists");
            let window = Window { start, end: session.end };
            if session.end <= time {
                // Closed already: it replaces what was emitted for its parts.
                let value = self.aggregate.output(&session.state);
                if session.emitted.len() == 1 && session.emitted[0] == (window, value.clone()) {
                    self.open.remove(&(session.end, key.clone(), start));
                    self.closed.insert((session.end, key, start));
                    continue;
                }
                for (w, old) in session.emitted.drain(..) {
                    corrections.push(WindowChange { window: w, key: key.clone(), value: old, diff: -1 });
                }
                session.emitted.push((window, value.clone()));
                corrections.push(WindowChange { window, key: key.clone(), value, diff: 1 });
                self.open.remove(&(session.end, key.clone(), start));
                self.closed.insert((session.end, key, start));
            } else {
                // Open again (or still): what was emitted for its parts no longer stands.
                for (w, old) in session.emitted.drain(..) {
                    corrections.push(WindowChange { window: w, key: key.clone(), value: old, diff: -1 });
                }
            }
        }
    }

    /// The sessions as bytes, keys in order.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let mut keys: Vec<SavedKey<&K, &A::State, A::Output>> = self
            .keys
            .iter()
            .map(|(key, sessions)| {
                (key, sessions.iter().map(|(start, s)| (*start, s.end, &s.state, s.emitted.clone())).collect())
            })
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serde_json::to_vec(&keys).expect("session state serializes")
    }

    pub(crate) fn restore(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        let keys: Vec<SavedKey<K, A::State, A::Output>> = serde_json::from_slice(bytes)?;
        self.keys.clear();
        self.open.clear();
        self.closed.clear();
        for (key, sessions) in keys {
            let mut map = BTreeMap::new();
            for (start, end, state, emitted) in sessions {
                let index = (end, key.clone(), start);
                if emitted.is_empty() {
                    self.open.insert(index);
                } else {
                    self.closed.insert(index);
                }
                map.insert(start, Session { end, state, emitted });
            }
            self.keys.insert(key, map);
        }
        Ok(())
    }
}
