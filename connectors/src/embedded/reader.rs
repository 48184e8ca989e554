//! Reading some partitions of a log topic from given offsets up to given ends, in the fixed
//! order of [`crate::turns`] (the order the Kafka reader hands records out in).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::{EmbeddedLog, LogError, Record};
use crate::transport::{PartitionSource, SourceRecord, TransportError};
use crate::turns::{PartitionBuffers, Turns};

/// Some partitions of a topic of an embedded log, read in turns up to given ends.
pub struct LogPartitionReader {
    parts: Parts,
    turns: Turns,
    /// The record handed out last.
    last: Option<Record>,
}

/// What has been fetched of each partition, and how far to read.
struct Parts {
    log: Arc<EmbeddedLog>,
    topic: String,
    partitions: BTreeMap<u32, Part>,
    /// Records fetched at once.
    quantum: usize,
}

struct Part {
    /// Offset of the next record to hand out.
    next: u64,
    /// Offset of the next record to fetch.
    fetched: u64,
    /// Where reading stops.
    end: u64,
    buffer: VecDeque<Record>,
}

impl LogPartitionReader {
    /// A reader of `partitions` of `topic`, each `(partition, from, end)`, `quantum` records of
    /// a partition per turn, going on from `turn` when given (what [`turn`](Self::turn) said
    /// where a reading stopped).
    pub fn open(
        log: Arc<EmbeddedLog>,
        topic: &str,
        partitions: &[(u32, u64, u64)],
        quantum: usize,
        turn: Option<(u32, usize)>,
    ) -> Self {
        let turns = Turns::new(partitions.iter().map(|(p, _, _)| *p).collect(), quantum, turn);
        let partitions = partitions
            .iter()
            .map(|&(p, from, end)| (p, Part { next: from, fetched: from, end, buffer: VecDeque::new() }))
            .collect();
        let parts = Parts { log, topic: topic.to_owned(), partitions, quantum: turns.quantum() };
        LogPartitionReader { parts, turns, last: None }
    }

    /// The next record in turn order; `None` once every partition is read to its end.
    pub fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        self.turns.next(&mut self.parts)
    }

    /// Whether every partition is read to its end.
    pub fn finished(&self) -> bool {
        self.parts.partitions.values().all(|p| p.next >= p.end)
    }

    /// Partitions read to their end.
    pub fn ended(&self) -> Vec<u32> {
        self.parts.partitions.iter().filter(|(_, s)| s.next >= s.end).map(|(p, _)| *p).collect()
    }

    /// Per partition, the offset of the next record to hand out.
    pub fn positions(&self) -> Vec<(u32, u64)> {
        self.parts.partitions.iter().map(|(p, s)| (*p, s.next)).collect()
    }

    /// Whose turn it is, and how many records that partition has had in it.
    pub fn turn(&self) -> (u32, usize) {
        self.turns.turn()
    }
}

impl PartitionSource for LogPartitionReader {
    fn next(&mut self) -> Result<Option<SourceRecord<'_>>, TransportError> {
        self.last = self.next_record()?;
        Ok(self.last())
    }

    fn last(&self) -> Option<SourceRecord<'_>> {
        self.last.as_ref().map(|r| SourceRecord {
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: Some(r.timestamp.0),
            key: r.key.as_deref(),
            value: &r.value,
        })
    }

    fn positions(&self) -> Vec<(u32, Option<u64>)> {
        LogPartitionReader::positions(self).into_iter().map(|(p, next)| (p, Some(next))).collect()
    }

    fn turn(&self) -> (u32, usize) {
        self.turns.turn()
    }

    fn caught_up(&self, partition: u32) -> bool {
        self.parts.partitions.get(&partition).is_some_and(|p| p.next >= p.end)
    }

    fn finished(&self) -> bool {
        LogPartitionReader::finished(self)
    }
}

impl PartitionBuffers for Parts {
    type Record = Record;
    type Error = LogError;

    fn pop(&mut self, partition: u32) -> Option<Record> {
        let part = self.partitions.get_mut(&partition)?;
        let record = part.buffer.pop_front()?;
        part.next = record.offset + 1;
        Some(record)
    }

    fn exhausted(&self, partition: u32) -> bool {
        self.partitions.get(&partition).is_none_or(|p| p.buffer.is_empty() && p.fetched >= p.end)
    }

    fn fill(&mut self, partition: u32) -> Result<(), LogError> {
        let Some(part) = self.partitions.get_mut(&partition) else { return Ok(()) };
        let want = (part.end.saturating_sub(part.fetched) as usize).min(self.quantum);
        let records = self.log.fetch(&self.topic, partition, part.fetched, want)?;
        // A log shorter than the end given is read to where it stops.
        part.fetched = records.last().map_or(part.end, |r| r.offset + 1);
        part.buffer.extend(records);
        Ok(())
    }
}
