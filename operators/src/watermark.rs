//! Bounded out-of-orderness watermarks over source partitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Time;

/// Tracks the watermark of a source reading several partitions: for each partition the
/// highest event time seen minus the allowed out-of-orderness; overall, the minimum over the
/// partitions that are not idle. The result never goes backwards.
/// Serializable, so a source can save it at checkpoints and resume where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    out_of_orderness_ms: u64,
    /// Highest event time seen and idleness, per partition.
    partitions: BTreeMap<u32, (Option<Time>, bool)>,
    current: Time,
}

impl Watermarks {
    /// A tracker allowing events up to `out_of_orderness_ms` behind the newest.
    pub fn new(out_of_orderness_ms: u64) -> Self {
        Watermarks { out_of_orderness_ms, partitions: BTreeMap::new(), current: 0 }
    }

    /// Registers a partition; until it sees an event it holds the watermark at its start.
    pub fn add_partition(&mut self, partition: u32) {
        self.partitions.entry(partition).or_insert((None, false));
    }

    /// Notes an event of `partition` (which becomes active again if it was idle).
    #[inline]
    pub fn observe(&mut self, partition: u32, event_time: Time) {
        let entry = self.partitions.entry(partition).or_insert((None, false));
        entry.0 = Some(entry.0.map_or(event_time, |m| m.max(event_time)));
        entry.1 = false;
    }

    /// Marks a partition idle (nothing to read): it no longer holds the watermark back.
    pub fn set_idle(&mut self, partition: u32) {
        if let Some(entry) = self.partitions.get_mut(&partition) {
            entry.1 = true;
        }
    }

    /// The watermark now: min over active partitions of (max seen − out-of-orderness), never
    /// below its previous value. A partition that has seen nothing pins it where it is.
    pub fn current(&mut self) -> Time {
        let mut min: Option<Time> = None;
        for (max_seen, idle) in self.partitions.values() {
            if *idle {
                continue;
            }
            let mark = match max_seen {
                Some(m) => m.saturating_sub(self.out_of_orderness_ms),
                None => return self.current,
            };
            min = Some(min.map_or(mark, |x| x.min(mark)));
        }
        if let Some(min) = min {
            self.current = self.current.max(min);
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let mut w = Watermarks::new(1_000);
        w.add_partition(0);
        w.add_partition(1);
        w.observe(0, 10_000);
        assert_eq!(w.current(), 0, "partition 1 has seen nothing yet");
        w.observe(1, 5_000);
        assert_eq!(w.current(), 4_000);
        w.set_idle(1);
        assert_eq!(w.current(), 9_000, "an idle partition does not hold it back");
        w.observe(1, 6_000);
        assert_eq!(w.current(), 9_000, "it never goes backwards");
        w.observe(1, 20_000);
        w.observe(0, 30_000);
        assert_eq!(w.current(), 19_000);
    }
}
