//! Every topic of the system and its settings, in one place.
//!
//! Connectors create topics from [`TOPICS`] (Tansu does not auto-create them) and the
//! embedded log uses the same partition counts, so a key lands in the same partition
//! number on both.

/// Topic names.
pub mod names {
    /// Members, their coverage and demographics.
    pub const MEMBER_EVENTS: &str = "member.events";
    /// Providers, contracts and scorecards.
    pub const PROVIDER_EVENTS: &str = "provider.events";
    /// Plans and benefit versions.
    pub const BENEFIT_EVENTS: &str = "benefit.events";
    /// Prior authorizations.
    pub const AUTH_EVENTS: &str = "auth.events";
    /// Claims: submitted, adjudicated, paid.
    pub const CLAIMS_EVENTS: &str = "claims.events";
    /// Payments to providers.
    pub const PAYMENT_EVENTS: &str = "payment.events";
    /// Eligibility questions for callers who prefer the bus.
    pub const ELIGIBILITY_REQUESTS: &str = "eligibility.requests";
    /// Eligibility answers.
    pub const ELIGIBILITY_RESPONSES: &str = "eligibility.responses";
    /// Deductible and out-of-pocket totals.
    pub const ACCUMULATOR_UPDATES: &str = "accumulator.updates";
    /// Fraud alerts for analysts.
    pub const FRAUD_ALERTS: &str = "fraud.alerts";
    /// Every access to a member's data through the gateway (`AccessAudited`), kept for years.
    pub const AUDIT_EVENTS: &str = "audit.events";
}

use names::*;

/// Settings of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: &'static str,
    /// Partition count. Keys are hashed over these, so it is fixed once a topic has data.
    pub partitions: u32,
    /// How long records are kept, in milliseconds; -1 keeps them forever.
    pub retention_ms: i64,
    /// Producer compression (`lz4`, `zstd`, …).
    pub compression: &'static str,
    /// `delete`, or `compact` where only the latest value per key matters.
    pub cleanup_policy: &'static str,
    /// What the record key is.
    pub key: &'static str,
}

const DAY_MS: i64 = 86_400_000;

/// Every topic arus reads or writes (dead-letter topics are derived: see [`dlq_topic`]).
pub const TOPICS: &[TopicSpec] = &[
    TopicSpec {
        name: MEMBER_EVENTS,
        partitions: 12,
        retention_ms: -1,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "member_id",
    },
    TopicSpec {
        name: PROVIDER_EVENTS,
        partitions: 6,
        retention_ms: -1,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "provider_id",
    },
    TopicSpec {
        name: BENEFIT_EVENTS,
        partitions: 3,
        retention_ms: -1,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "plan_id",
    },
    TopicSpec {
        name: AUTH_EVENTS,
        partitions: 12,
        retention_ms: 400 * DAY_MS,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "member_id",
    },
    TopicSpec {
        name: CLAIMS_EVENTS,
        partitions: 24,
        retention_ms: -1,
        compression: "zstd",
        cleanup_policy: "delete",
        key: "member_id",
    },
    TopicSpec {
        name: PAYMENT_EVENTS,
        partitions: 12,
        retention_ms: -1,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "claim_id",
    },
    TopicSpec {
        name: ELIGIBILITY_REQUESTS,
        partitions: 12,
        retention_ms: DAY_MS,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "member_id",
    },
    TopicSpec {
        name: ELIGIBILITY_RESPONSES,
        partitions: 12,
        retention_ms: DAY_MS,
        compression: "lz4",
        cleanup_policy: "delete",
        key: "member_id",
    },
    TopicSpec {
        name: ACCUMULATOR_UPDATES,
        partitions: 12,
        retention_ms: -1,
        compression: "lz4",
        cleanup_policy: "compact",
        key: "member_id:plan_year",
    },
    TopicSpec {
        name: FRAUD_ALERTS,
        partitions: 6,
        retention_ms: 730 * DAY_MS,
        compression: "zstd",
        cleanup_policy: "delete",
        key: "subject_id",
    },
    TopicSpec {
        name: AUDIT_EVENTS,
        partitions: 6,
        // Ten years: what an auditor of health data may ask for.
        retention_ms: 3_653 * DAY_MS,
        compression: "zstd",
        cleanup_policy: "delete",
        key: "client_id",
    },
];

/// Partition count and settings of every dead-letter topic.
pub const DLQ_SPEC: TopicSpec = TopicSpec {
    name: "<source>.dlq",
    partitions: 1,
    retention_ms: 30 * DAY_MS,
    compression: "zstd",
    cleanup_policy: "delete",
    key: "original key",
};

/// The dead-letter topic of a source topic.
pub fn dlq_topic(source_topic: &str) -> String {
    format!("{source_topic}.dlq")
}

/// The spec of a named topic (dead-letter topics included).
pub fn topic_spec(name: &str) -> Option<TopicSpec> {
    if name.ends_with(".dlq") {
        return Some(DLQ_SPEC);
    }
    TOPICS.iter().find(|t| t.name == name).copied()
}

/// The spec of a topic named as a deployment names it: the table's name, perhaps after a prefix
/// (`test-1-claims.events`); dead-letter topics by their `.dlq` ending.
pub fn declared(name: &str) -> Option<TopicSpec> {
    if name.ends_with(".dlq") {
        return Some(DLQ_SPEC);
    }
    TOPICS.iter().find(|t| name.ends_with(t.name)).copied()
}

/// The partition a key goes to: murmur2 over the key bytes, as Kafka's default partitioner
/// (and librdkafka's `murmur2_random`) computes it, so the embedded log and Kafka agree.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58_897_971);
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }

    #[test]
    fn a_topic_under_a_prefix_is_written_with_its_own_codec() {
        let codec = |name: &str| declared(name).map(|t| t.compression);
        assert_eq!(codec("staging.claims.events"), Some("zstd"));
        assert_eq!(codec(names::CLAIMS_EVENTS), Some("zstd"));
        assert_eq!(codec("t-accumulator.updates"), Some("lz4"));
        assert_eq!(codec("t-claims.events.dlq"), Some(DLQ_SPEC.compression));
        assert_eq!(codec("not-in-the-table"), None);
        assert_eq!(declared("t-accumulator.updates").map(|t| t.cleanup_policy), Some("compact"));
    }

    /// A compacted topic keeps the latest record per key: an accumulator's key names the plan
    /// year too, so a member's earlier years are not compacted away.
    #[test]
    fn an_accumulators_key_is_its_member_and_plan_year() {
        let zero = crate::Idr::default();
        let update = crate::events::AccumulatorUpdated {
            event_id: "a1".to_owned(),
            event_time: crate::Timestamp(0),
            member_id: "M1".to_owned(),
            family_id: "F1".to_owned(),
            plan_id: "PL1".to_owned(),
            plan_year: 2026,
            deductible_met_idr: zero,
            oop_met_idr: zero,
            family_deductible_met_idr: zero,
            family_oop_met_idr: zero,
            plan_paid_to_date_idr: zero,
            cause_event_id: "c1".to_owned(),
            claim_id: None,
            version: 1,
            paid_to_date_idr: zero,
        };
        let event = crate::Event::AccumulatorUpdated(update);
        assert_eq!(event.key(), "M1:2026");
        assert_eq!(topic_spec(names::ACCUMULATOR_UPDATES).map(|t| t.key), Some("member_id:plan_year"));
    }

    #[test]
    fn every_topic_is_unique_and_partitioned() {
        let mut names: Vec<_> = TOPICS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TOPICS.len());
        assert!(TOPICS.iter().all(|t| t.partitions > 0));
        assert_eq!(topic_spec("claims.events.dlq"), Some(DLQ_SPEC));
        assert_eq!(topic_spec("nope"), None);
    }
}
