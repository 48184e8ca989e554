//! The order a reader hands a topic's records out in, whatever carries them: the partitions
//! take turns in ascending order, `quantum` records each, a turn waiting for its partition's
//! records (or its end) however the transport interleaves them; a partition with nothing more
//! to give is passed over. The same partitions from the same positions (and the same turn) give
//! the same sequence — what makes a job's output the same after a restart. Written once for the
//! Kafka reader and the embedded log's.

/// What a reader of some partitions gives the turn-taking: the records it has buffered per
/// partition, whether a partition is read to its end, and a way to wait for more.
pub trait PartitionBuffers {
    /// A record as the transport hands it out.
    type Record;
    /// How the transport fails.
    type Error;
    /// Takes the next buffered record of `partition`, if there is one.
    fn pop(&mut self, partition: u32) -> Option<Self::Record>;
    /// Whether `partition` has nothing more to give: read to its end, nothing buffered.
    fn exhausted(&self, partition: u32) -> bool;
    /// Waits (a while) for more of `partition`; a transport may buffer other partitions' records
    /// on the way.
    fn fill(&mut self, partition: u32) -> Result<(), Self::Error>;
}

/// Whose turn it is among some partitions, and how many records it has had in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turns {
    /// The partitions, ascending.
    partitions: Vec<u32>,
    /// Records per partition per turn.
    quantum: usize,
    /// The partition whose turn it is, and how many records it has had in this turn.
    turn: (u32, usize),
}

impl Turns {
    /// Turns over `partitions`, `quantum` records each, going on from `at` (what
    /// [`turn`](Self::turn) said where a reading stopped) when it names one of them, from the
    /// first otherwise.
    pub fn new(mut partitions: Vec<u32>, quantum: usize, at: Option<(u32, usize)>) -> Self {
        partitions.sort_unstable();
        partitions.dedup();
        let first = partitions.first().copied().unwrap_or(0);
        let turn = at.filter(|(p, _)| partitions.contains(p)).unwrap_or((first, 0));
        Turns { partitions, quantum: quantum.max(1), turn }
    }

    /// Whose turn it is, and how many records that partition has had in it.
    pub fn turn(&self) -> (u32, usize) {
        self.turn
    }

    /// Records per partition per turn.
    pub fn quantum(&self) -> usize {
        self.quantum
    }

    /// The partitions, ascending.
    pub fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    /// `partition`'s turn begins now (a follower hands out what is there, out of order).
    pub fn begin(&mut self, partition: u32) {
        self.turn = (partition, 0);
    }

    /// The partition whose turn it is has had one more record.
    pub fn took_one(&mut self) {
        self.turn.1 += 1;
    }

    /// The next record in turn order, waiting for it as long as it takes; `None` once every
    /// partition is exhausted.
    pub fn next<B: PartitionBuffers>(&mut self, buffers: &mut B) -> Result<Option<B::Record>, B::Error> {
        loop {
            let (partition, taken) = self.turn;
            if !self.partitions.contains(&partition) {
                return Ok(None);
            }
            if taken < self.quantum
                && let Some(record) = buffers.pop(partition)
            {
                self.turn.1 += 1;
                return Ok(Some(record));
            }
            if taken >= self.quantum || buffers.exhausted(partition) {
                // This partition's turn is over: the next one with something to give, in order.
                let mut open = self.partitions.iter().copied().filter(|p| !buffers.exhausted(*p));
                let first = open.next();
                let next = std::iter::once(first).flatten().chain(open).find(|p| *p > partition).or(first);
                let Some(next) = next else { return Ok(None) };
                self.turn = (next, 0);
                continue;
            }
            buffers.fill(partition)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use super::*;

    /// Partitions of numbered records that arrive a few at a time, on any partition.
    struct Trickle {
        /// Per partition: what has arrived, and what is still to come.
        parts: BTreeMap<u32, (VecDeque<u32>, VecDeque<u32>)>,
        fills: usize,
    }

    impl PartitionBuffers for Trickle {
        type Record = (u32, u32);
        type Error = ();
        fn pop(&mut self, partition: u32) -> Option<(u32, u32)> {
            self.parts.get_mut(&partition)?.0.pop_front().map(|r| (partition, r))
        }
        fn exhausted(&self, partition: u32) -> bool {
            self.parts.get(&partition).is_none_or(|(arrived, to_come)| arrived.is_empty() && to_come.is_empty())
        }
        fn fill(&mut self, _partition: u32) -> Result<(), ()> {
            // One record of every partition arrives per fill, whichever was waited for.
            self.fills += 1;
            for (arrived, to_come) in self.parts.values_mut() {
                arrived.extend(to_come.pop_front());
            }
            Ok(())
        }
    }

    fn trickle(sizes: &[(u32, u32)]) -> Trickle {
        let parts = sizes.iter().map(|(p, n)| (*p, (VecDeque::new(), (0..*n).collect()))).collect();
        Trickle { parts, fills: 0 }
    }

    #[test]
    fn partitions_take_turns_in_order_whatever_arrives_when() {
        let mut turns = Turns::new(vec![2, 0, 1], 3, None);
        let mut records = trickle(&[(0, 5), (1, 1), (2, 7)]);
        let mut order = Vec::new();
        while let Some(record) = turns.next(&mut records).expect("no error") {
            order.push(record);
        }
        let expected =
            [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1), (2, 2), (0, 3), (0, 4), (2, 3), (2, 4), (2, 5), (2, 6)];
        assert_eq!(order, expected);
        assert!(records.fills > 0);
    }

    #[test]
    fn reopened_at_a_turn_it_goes_on_with_the_same_records() {
        let sizes = [(0, 9), (1, 4), (3, 6)];
        let all = |turns: &mut Turns, records: &mut Trickle| {
            std::iter::from_fn(|| turns.next(records).expect("no error")).collect::<Vec<_>>()
        };
        let everything = all(&mut Turns::new(vec![0, 1, 3], 4, None), &mut trickle(&sizes));
        for stop in 0..everything.len() {
            let (mut turns, mut records) = (Turns::new(vec![0, 1, 3], 4, None), trickle(&sizes));
            for _ in 0..stop {
                turns.next(&mut records).expect("no error");
            }
            // What is left of each partition, from where it stopped, with the same turn.
            let mut rest = trickle(&[]);
            for (p, (arrived, to_come)) in records.parts {
                rest.parts.insert(p, (VecDeque::new(), arrived.into_iter().chain(to_come).collect()));
            }
            let mut reopened = Turns::new(vec![0, 1, 3], 4, Some(turns.turn()));
            assert_eq!(all(&mut reopened, &mut rest), everything[stop..], "after {stop}");
        }
        assert_eq!(Turns::new(Vec::new(), 4, None).next(&mut trickle(&[])), Ok(None));
    }
}
