//! The bundled schema registry: every `.avsc` version under `schemas/avro/`, with the
//! Confluent schema id it is known by, resolved offline.
//!
//! Ids are permanent. A new version of a schema is a new file (`vN+1.avsc`, never an edit of
//! an existing one) and a new line at the end of [`BUNDLED`] with the next free id. Writers
//! always use the latest version of a kind; readers accept every version and resolve it to the
//! latest, which the compatibility test guarantees is possible.

use foldhash::HashMap;
use std::sync::OnceLock;

use apache_avro::Schema;

use crate::kinds::EventKind;

/// One bundled schema version.
#[derive(Debug, Clone, Copy)]
pub struct BundledSchema {
    /// Confluent schema id.
    pub id: u32,
    /// Event kind (the record name).
    pub kind: EventKind,
    /// Version of the kind's schema, from 1.
    pub version: u32,
    /// The `.avsc` text.
    pub text: &'static str,
}

macro_rules! bundled {
    ($($id:literal => $kind:ident @ $version:literal),+ $(,)?) => {
        /// Every bundled schema version, in id order.
        pub const BUNDLED: &[BundledSchema] = &[$(
            BundledSchema {
                id: $id,
                kind: EventKind::$kind,
                version: $version,
                text: include_str!(concat!("../avro/", stringify!($kind), "/v", stringify!($version), ".avsc")),
            }
        ),+];
    };
}

bundled! {
    1 => MemberCreated @ 1,
    2 => MemberUpdated @ 1,
    3 => CoverageChanged @ 1,
    4 => ProviderOnboarded @ 1,
    5 => ContractUpdated @ 1,
    6 => PerformanceCalculated @ 1,
    7 => PlanCreated @ 1,
    8 => BenefitUpdated @ 1,
    9 => AuthRequested @ 1,
    10 => AuthApproved @ 1,
    11 => AuthDenied @ 1,
    12 => ClaimSubmitted @ 1,
    13 => ClaimAdjudicated @ 1,
    14 => ClaimPaid @ 1,
    15 => PaymentInitiated @ 1,
    16 => PaymentCompleted @ 1,
    17 => PaymentFailed @ 1,
    18 => EligibilityRequested @ 1,
    19 => EligibilityResponded @ 1,
    20 => AccumulatorUpdated @ 1,
    21 => FraudAlert @ 1,
    22 => DeadLetter @ 1,
    23 => ClaimSubmitted @ 2,
    24 => AccumulatorUpdated @ 2,
    25 => AccessAudited @ 1,
}

/// A parsed schema version.
#[derive(Debug)]
pub struct RegisteredSchema {
    /// Where it came from.
    pub bundled: BundledSchema,
    /// The parsed schema.
    pub schema: Schema,
}

/// The parsed registry.
#[derive(Debug)]
pub struct Registry {
    entries: Vec<RegisteredSchema>,
    by_id: HashMap<u32, usize>,
    latest: HashMap<EventKind, usize>,
}

/// Largest single allocation the Avro decoder may make for one length-prefixed value. Kafka
/// records default to at most 1 MiB, so a larger length can only come from garbage; without
/// this bound a forged length would make the decoder allocate up to its 512 MiB default.
pub const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

impl Registry {
    fn load() -> Registry {
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
        let mut entries = Vec::with_capacity(BUNDLED.len());
        let mut by_id = HashMap::default();
        let mut latest: HashMap<EventKind, usize> = HashMap::default();
        for bundled in BUNDLED {
            // The bundled files are part of the binary and checked by the tests, so a parse
            // failure here is a build defect, not an input error.
            let schema = Schema::parse_str(bundled.text).unwrap_or_else(|e| {
                panic!("bundled schema {} v{} does not parse: {e}", bundled.kind.name(), bundled.version)
            });
            let index = entries.len();
            assert!(by_id.insert(bundled.id, index).is_none(), "schema id {} used twice", bundled.id);
            let newer = latest.get(&bundled.kind).is_none_or(|&i: &usize| {
                let current: &RegisteredSchema = &entries[i];
                current.bundled.version < bundled.version
            });
            if newer {
                latest.insert(bundled.kind, index);
            }
            entries.push(RegisteredSchema { bundled: *bundled, schema });
        }
        Registry { entries, by_id, latest }
    }

    /// The schema with this Confluent id.
    pub fn by_id(&self, id: u32) -> Option<&RegisteredSchema> {
        self.by_id.get(&id).map(|&i| &self.entries[i])
    }

    /// The latest version of a kind's schema: what writers use.
    pub fn latest(&self, kind: EventKind) -> &RegisteredSchema {
        &self.entries[self.latest[&kind]]
    }

    /// Every version of a kind, oldest first.
    pub fn versions(&self, kind: EventKind) -> Vec<&RegisteredSchema> {
        let mut versions: Vec<_> = self.entries.iter().filter(|e| e.bundled.kind == kind).collect();
        versions.sort_by_key(|e| e.bundled.version);
        versions
    }

    /// Every registered schema, in id order.
    pub fn all(&self) -> &[RegisteredSchema] {
        &self.entries
    }
}

/// The process-wide registry, parsed on first use.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema_named_after_it() {
        let registry = registry();
        for &kind in EventKind::ALL {
            let latest = registry.latest(kind);
            let name = latest.schema.name().map(|n| n.name().to_owned());
            assert_eq!(name.as_deref(), Some(kind.name()), "schema of {kind:?}");
        }
    }

    #[test]
    fn versions_are_consecutive_from_one() {
        let registry = registry();
        for &kind in EventKind::ALL {
            let versions: Vec<u32> = registry.versions(kind).iter().map(|e| e.bundled.version).collect();
            let expected: Vec<u32> = (1..=versions.len() as u32).collect();
            assert_eq!(versions, expected, "versions of {kind:?}");
        }
    }

    #[test]
    fn ids_are_unique_and_ascending() {
        assert!(BUNDLED.windows(2).all(|w| w[0].id < w[1].id));
    }
}
