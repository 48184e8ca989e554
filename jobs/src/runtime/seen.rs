//! Event ids kept for deduplication within a horizon of event time: a job applies each event
//! once, and keeps its id only as long as the event could come again — a replay reaches back
//! as far as a topic's retention, a producer's retry a few seconds. Past that the id goes, and
//! an event that old is refused as one that can no longer be told apart from a replay (counted:
//! [`Seen::expired`]), so that an event is still never applied twice while the ids kept stay
//! bounded by the traffic of one horizon, not the whole history.

use foldhash::HashMap;
use serde::{Deserialize, Serialize};

/// How long ids are kept by default: 30 days of event time (beyond the 7 days a topic of the
/// table keeps and the day the jobs allow events to come late).
pub const DEDUP_HORIZON_MS: i64 = 30 * 86_400_000;

/// Event ids applied, each with its event time, within a horizon behind the event time the
/// owner has [`advance`](Seen::advance)d it to (nothing expires until it does: a state folded
/// in any order, as the adjudicator is by its own tests, keeps every id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    /// Id → event time (ms).
    ids: HashMap<Box<str>, i64>,
    horizon_ms: i64,
    /// Events before this are refused and their ids dropped (event time, ms).
    cut: i64,
    /// When the next sweep of the ids before the cut is due (event time).
    sweep_at: i64,
    /// Events refused for being older than the horizon.
    expired: u64,
}

impl Default for Seen {
    fn default() -> Self {
        Seen::new(DEDUP_HORIZON_MS)
    }
}

impl Seen {
    /// Nothing seen yet; ids kept `horizon_ms` of event time.
    pub fn new(horizon_ms: i64) -> Self {
        Seen { ids: HashMap::default(), horizon_ms: horizon_ms.max(1), cut: i64::MIN, sweep_at: i64::MIN, expired: 0 }
    }

    /// Keeps ids `horizon_ms` (a restored state takes the run's setting).
    pub fn set_horizon(&mut self, horizon_ms: i64) {
        self.horizon_ms = horizon_ms.max(1);
    }

    /// How long ids are kept (ms of event time).
    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    /// Event time has reached `now` (ms): ids more than the horizon behind it go (swept every
    /// eighth of a horizon: those kept stay within 9/8 of one), and events that old are
    /// refused from now on. Never moves back.
    pub fn advance(&mut self, now: i64) {
        let cut = now.saturating_sub(self.horizon_ms);
        if cut <= self.cut {
            return;
        }
        self.cut = cut;
        if now >= self.sweep_at {
            self.ids.retain(|_, at| *at >= cut);
            self.sweep_at = now.saturating_add(self.horizon_ms / 8);
        }
    }

    /// Whether the event `id` at `time` (ms) is to be applied: not seen before, and not older
    /// than the horizon (then refused, counted: it cannot be told from a replay).
    pub fn first(&mut self, id: &str, time: i64) -> bool {
        if time < self.cut {
            self.expired += 1;
            return false;
        }
        if self.ids.contains_key(id) {
            return false;
        }
        self.ids.insert(id.into(), time);
        true
    }

    /// Ids kept.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Events refused for being older than the horizon.
    pub fn expired(&self) -> u64 {
        self.expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn each_event_once_and_ids_kept_only_within_the_horizon() {
        let mut seen = Seen::new(10 * DAY);
        // Not advanced: in any order, every id kept.
        assert!(seen.first("b", 2 * DAY));
        assert!(seen.first("a", 0));
        assert!(!seen.first("a", 0), "a duplicate");
        seen.advance(5 * DAY);
        assert!(!seen.first("a", 0), "still known");
        // A hundred days on, one event a day: the early ids are gone, at most 9/8 of a horizon
        // kept.
        for day in 6..=100 {
            seen.advance(day * DAY);
            assert!(seen.first(&format!("d{day}"), day * DAY));
            assert!(seen.len() <= 12, "{} ids on day {day}", seen.len());
        }
        assert!(seen.len() >= 10);
        // An event older than the horizon: refused, whether it was seen or not.
        assert!(!seen.first("a", 0));
        assert!(!seen.first("never seen", 80 * DAY));
        assert_eq!(seen.expired(), 2);
        // Within it: each once.
        assert!(seen.first("late but in time", 95 * DAY));
        assert!(!seen.first("late but in time", 95 * DAY));
        assert!(!seen.first("d99", 99 * DAY));
    }
}
