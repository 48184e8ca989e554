//! The closed set of event kinds: which Rust type, which topic, which partition key.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::events::*;
use crate::time::Timestamp;

macro_rules! event_kinds {
    ($($kind:ident => $topic:expr, key $key:ident;)+) => {
        /// Kind of an event: the Avro record name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", stringify!($kind), "`")]
                $kind,
            )+
        }

        impl EventKind {
            /// Every kind, in registry order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind),+];

            /// Position in [`EventKind::ALL`], for tables indexed by kind.
            pub fn index(self) -> usize {
                self as usize
            }

            /// The Avro record name.
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$kind => stringify!($kind)),+ }
            }

            /// The topic events of this kind are published to (`None` for dead letters,
            /// whose topic is `<source topic>.dlq`).
            pub fn topic(self) -> Option<&'static str> {
                match self { $(EventKind::$kind => $topic),+ }
            }

            /// The kind with this Avro record name.
            pub fn from_name(name: &str) -> Option<EventKind> {
                match name { $(stringify!($kind) => Some(EventKind::$kind),)+ _ => None }
            }
        }

        /// Any event of the contract. The JSON form is the event's fields plus a `type` field
        /// naming its kind: `{"type":"ClaimSubmitted","event_id":…}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        #[allow(clippy::large_enum_variant)]
        pub enum Event {
            $(
                #[doc = concat!("A `", stringify!($kind), "`.")]
                $kind($kind),
            )+
        }

        impl Event {
            /// Its kind.
            pub fn kind(&self) -> EventKind {
                match self { $(Event::$kind(_) => EventKind::$kind),+ }
            }

            /// Its stable id.
            pub fn event_id(&self) -> &str {
                match self { $(Event::$kind(e) => &e.event_id),+ }
            }

            /// Its event time.
            pub fn event_time(&self) -> Timestamp {
                match self { $(Event::$kind(e) => e.event_time),+ }
            }

            /// The record key: the entity whose events must stay in order (and, on a
            /// compacted topic, what the latest record replaces: an accumulator is a member's
            /// totals for one plan year, so `member:year`).
            #[allow(unreachable_patterns)] // (the accumulator's arm comes first)
            pub fn key(&self) -> Cow<'_, str> {
                match self {
                    Event::AccumulatorUpdated(e) => Cow::Owned(format!("{}:{}", e.member_id, e.plan_year)),
                    $(Event::$kind(e) => Cow::Borrowed(&e.$key)),+
                }
            }

            /// The topic it belongs on.
            pub fn topic(&self) -> Cow<'static, str> {
                match self {
                    Event::DeadLetter(d) => Cow::Owned(crate::topics::dlq_topic(&d.source_topic)),
                    other => Cow::Borrowed(other.kind().topic().unwrap_or("unrouted")),
                }
            }
        }

        $(
            impl From<$kind> for Event {
                fn from(e: $kind) -> Event { Event::$kind(e) }
            }
        )+
    };
}

use crate::topics::names::*;

event_kinds! {
    MemberCreated => Some(MEMBER_EVENTS), key member_id;
    MemberUpdated => Some(MEMBER_EVENTS), key member_id;
    CoverageChanged => Some(MEMBER_EVENTS), key member_id;
    ProviderOnboarded => Some(PROVIDER_EVENTS), key provider_id;
    ContractUpdated => Some(PROVIDER_EVENTS), key provider_id;
    PerformanceCalculated => Some(PROVIDER_EVENTS), key provider_id;
    PlanCreated => Some(BENEFIT_EVENTS), key plan_id;
    BenefitUpdated => Some(BENEFIT_EVENTS), key plan_id;
    AuthRequested => Some(AUTH_EVENTS), key member_id;
    AuthApproved => Some(AUTH_EVENTS), key member_id;
    AuthDenied => Some(AUTH_EVENTS), key member_id;
    ClaimSubmitted => Some(CLAIMS_EVENTS), key member_id;
    ClaimAdjudicated => Some(CLAIMS_EVENTS), key member_id;
    ClaimPaid => Some(CLAIMS_EVENTS), key member_id;
    PaymentInitiated => Some(PAYMENT_EVENTS), key claim_id;
    PaymentCompleted => Some(PAYMENT_EVENTS), key claim_id;
    PaymentFailed => Some(PAYMENT_EVENTS), key claim_id;
    EligibilityRequested => Some(ELIGIBILITY_REQUESTS), key member_id;
    EligibilityResponded => Some(ELIGIBILITY_RESPONSES), key member_id;
    AccumulatorUpdated => Some(ACCUMULATOR_UPDATES), key member_id;
    FraudAlert => Some(FRAUD_ALERTS), key subject_id;
    DeadLetter => None, key source_topic;
    AccessAudited => Some(AUDIT_EVENTS), key client_id;
}
