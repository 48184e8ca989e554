//! The arus event contract.
//!
//! Avro schemas under `schemas/avro/<Kind>/v<N>.avsc` are the source of truth; this crate
//! holds the Rust type of each event, their encoding in the Confluent wire format, their
//! JSON form, and the topics they travel on. It does no I/O.
//!
//! # Layout
//! - [`events`]: one struct per Avro record (`ClaimSubmitted`, `CoverageChanged`, …).
//! - [`kinds`]: [`Event`], the closed set of events, and [`EventKind`] with topic and key.
//! - [`registry`]: the bundled schema versions and their permanent schema ids.
//! - [`wire`]: Confluent wire format (magic byte, schema id, Avro body) encode/decode.
//! - [`json`]: the JSON form used by files and tests.
//! - [`topics`]: every topic's partitions, retention, compression; Kafka's partitioner.
//! - [`read_models`]: the records the jobs keep in the serving store and the gateway reads,
//!   and their keys.
//! - [`money`], [`time`]: whole-rupiah amounts and event-time dates/timestamps.
//! - [`nik`]: the layout of the national identity number (NIK), made and checked.
//!
//! # Example
//! ```
//! use arus_schemas::{wire, Event, events::AuthDenied, time::Timestamp};
//! let event = Event::from(AuthDenied {
//!     event_id: "ev-1".into(),
//!     event_time: Timestamp(1_767_225_600_000),
//!     auth_id: "A1".into(),
//!     member_id: "M1".into(),
//!     reason_code: "NOT_MEDICALLY_NECESSARY".into(),
//!     reason: "conservative treatment not tried".into(),
//! });
//! let bytes = wire::encode(&event).unwrap();
//! assert_eq!(bytes[0], 0); // Confluent magic byte
//! assert_eq!(wire::decode(&bytes).unwrap(), event);
//! ```

pub mod avro_binary;
pub mod error;
pub mod events;
pub mod json;
pub mod kinds;
pub mod money;
pub mod nik;
pub mod read_models;
pub mod registry;
pub mod time;
pub mod topics;
pub mod wire;

pub use error::{DecodeError, EncodeError};
pub use kinds::{Event, EventKind};
pub use money::Idr;
pub use time::{Date, Timestamp};

/// Calls `$callback!(Kind, Kind, …)` with every event kind: one list for code that must
/// match on all of them.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_kind {
    ($callback:ident) => {
        $callback!(
            MemberCreated,
            MemberUpdated,
            CoverageChanged,
            ProviderOnboarded,
            ContractUpdated,
            PerformanceCalculated,
            PlanCreated,
            BenefitUpdated,
            AuthRequested,
            AuthApproved,
            AuthDenied,
            ClaimSubmitted,
            ClaimAdjudicated,
            ClaimPaid,
            PaymentInitiated,
            PaymentCompleted,
            PaymentFailed,
            EligibilityRequested,
            EligibilityResponded,
            AccumulatorUpdated,
            FraudAlert,
            DeadLetter,
            AccessAudited
        )
    };
}
