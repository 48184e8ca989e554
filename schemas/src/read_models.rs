//! The read models: the records the jobs keep in the serving store and the gateway reads,
//! with their keys — one definition for the writer and the reader.
//!
//! | key | record | written by |
//! |---|---|---|
//! | `elig:member:<member>` | [`MemberEligibility`] (JSON): the member, its coverage changes, and its eligibility resolved date by date | eligibility |
//! | `claim:<claim>` | the claim's `ClaimAdjudicated`, in its wire form | adjudication |
//! | `claim-state:<claim>` | [`ClaimState`] (JSON): where the claim stands in the saga | adjudication |
//! | `acc:<member>:<year>` | [`Accumulators`] (JSON) | adjudication |
//! | `auth:<auth>` | [`AuthView`] (JSON) | adjudication |
//!
//! Every record is versioned in the store (a write with a version not above the stored one is
//! ignored), so replays never move a record back. A reader turns what it read into the answer
//! without business rules of its own: [`MemberEligibility::answer`] looks the date up in spans
//! the eligibility job resolved; [`ClaimView::from_stored`] puts a decision and its state
//! together.

use serde::{Deserialize, Serialize};

use crate::events::{Benefits, ClaimAdjudicated, CoverageChanged, EligibilityStatus, Relationship};
use crate::{Date, Event, Idr};

/// A record read from the store that is not what its key says.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ReadModelError {
    /// The store key.
    pub key: String,
    /// Why it could not be read.
    pub reason: String,
}

impl ReadModelError {
    fn at(key: impl Into<String>, reason: impl ToString) -> Self {
        ReadModelError { key: key.into(), reason: reason.to_string() }
    }
}

/// The store key of a member's eligibility record.
pub fn member_eligibility_key(member_id: &str) -> String {
    ["elig:member:", member_id].concat()
}

/// The store key under which the member holding a NIK is found: its keyed digest
/// ([`crate::nik::nik_digest`]), never the NIK. Holds the member id.
pub fn nik_key(digest: &str) -> String {
    ["nik:", digest].concat()
}

/// The store key of a claim's decision.
pub fn decision_key(claim_id: &str) -> String {
    ["claim:", claim_id].concat()
}

/// The store key of a claim's saga state.
pub fn state_key(claim_id: &str) -> String {
    ["claim-state:", claim_id].concat()
}

/// The store key of a member's accumulators of a plan year.
pub fn accumulator_key(member_id: &str, year: i32) -> String {
    let mut key = String::with_capacity(member_id.len() + 16);
    key.push_str("acc:");
    key.push_str(member_id);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(year));
    key
}

/// The store key of an authorization's record.
pub fn authorization_key(auth_id: &str) -> String {
    ["auth:", auth_id].concat()
}

/// An eligibility answer: whether a member is covered for a service on a date, and under what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Covered for the service on the date.
    pub eligible: bool,
    /// Why (or why not).
    pub status: EligibilityStatus,
    /// Plan covered under.
    pub plan_id: Option<String>,
    /// First day of the unbroken coverage span the date falls in.
    pub coverage_start: Option<Date>,
    /// Last covered day, when known.
    pub coverage_end: Option<Date>,
    /// The plan's benefits in force on the date.
    pub benefits: Option<Benefits>,
    /// The service needs prior authorization under the plan.
    pub requires_prior_auth: bool,
    /// Why not eligible, in words for the caller.
    pub reason: Option<String>,
}

/// The words of an unknown member's answer.
pub const NO_SUCH_MEMBER: &str = "no such member";

impl Answer {
    /// The answer for a member nobody knows.
    pub fn unknown_member() -> Self {
        Answer {
            eligible: false,
            status: EligibilityStatus::UNKNOWN_MEMBER,
            plan_id: None,
            coverage_start: None,
            coverage_end: None,
            benefits: None,
            requires_prior_auth: false,
            reason: Some(NO_SUCH_MEMBER.to_owned()),
        }
    }

    /// The words for a date not covered yet.
    pub fn not_yet_reason(date: Date) -> String {
        format!("not covered yet on {date}")
    }

    /// The words for coverage that ended (`reason`: the change's, when it gave one).
    pub fn ended_reason(last_day: Date, reason: Option<&str>) -> String {
        match reason {
            Some(reason) => format!("coverage ended on {last_day} ({reason})"),
            None => format!("coverage ended on {last_day}"),
        }
    }

    /// Covered under `plan_id` with `benefits` (when the plan has any on the date): eligible
    /// for `service_type` unless the plan excludes it.
    pub fn covered(
        plan_id: &str,
        start: Date,
        end: Option<Date>,
        benefits: Option<&Benefits>,
        service_type: &str,
    ) -> Self {
        let listed = |list: &[String]| list.iter().any(|p| p == service_type);
        let excluded = benefits.is_some_and(|b| listed(&b.excluded_procedures));
        let requires_prior_auth = benefits.is_some_and(|b| listed(&b.prior_auth_procedures));
        Answer {
            eligible: !excluded,
            status: EligibilityStatus::ACTIVE,
            plan_id: Some(plan_id.to_owned()),
            coverage_start: Some(start),
            coverage_end: end,
            benefits: benefits.cloned(),
            requires_prior_auth,
            reason: excluded.then(|| format!("{service_type} is excluded by the plan")),
        }
    }
}

/// What a member's eligibility is from one day on, until the next span's first day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilitySpan {
    /// The first day (`Date(i32::MIN)`: from the beginning of time).
    #[serde(with = "day_number")]
    pub from: Date,
    /// What the days of the span are.
    pub coverage: SpanCoverage,
}

/// A span's coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpanCoverage {
    /// No coverage is effective yet.
    NotYetCovered,
    /// Covered under a plan.
    Active {
        /// Plan.
        plan_id: String,
        /// First day of the unbroken coverage span.
        #[serde(with = "day_number")]
        start: Date,
        /// Last covered day, when known.
        #[serde(with = "day_number_or_none")]
        end: Option<Date>,
        /// The plan's benefits in force over the span: an index into
        /// [`MemberEligibility::benefits`].
        benefits: Option<u32>,
    },
    /// Coverage ended.
    Terminated {
        /// The last covered day.
        #[serde(with = "day_number")]
        last_day: Date,
        /// Why, as the change said (`DEATH`, `SUBSCRIBER_TERMINATED`, …).
        reason: Option<String>,
    },
}

/// Span dates as day numbers (days since 1970-01-01): compact, and the beginning of time
/// (`Date(i32::MIN)`) has no `YYYY-MM-DD`.
mod day_number {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Date;

    pub fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(date.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        Date::deserialize(deserializer)
    }
}

/// [`day_number`] of a date that may be absent.
mod day_number_or_none {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Date;

    pub fn serialize<S: Serializer>(date: &Option<Date>, serializer: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => serializer.serialize_some(&date.0),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Date>, D::Error> {
        Option::<Date>::deserialize(deserializer)
    }
}

/// A version of a plan's benefits a member's spans are under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanBenefits {
    /// Plan.
    pub plan_id: String,
    /// In force from.
    pub effective: Date,
    /// Benefit version.
    pub version: i32,
    /// The benefits.
    pub benefits: Benefits,
}

/// A member's eligibility as the store keeps it (`elig:member:<id>`): who the member is in the
/// family, its own coverage changes, and the answer resolved by the eligibility job date by
/// date — the subscriber's coverage followed for a dependent, the plan's benefit versions
/// applied — so that one read answers any question about the member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEligibility {
    /// Member.
    pub member_id: String,
    /// Family and relationship, once the member is known.
    pub created: Option<(String, Relationship)>,
    /// The family's subscriber.
    pub subscriber_id: Option<String>,
    /// Date of birth, once the member is known (absent from records written before it was
    /// kept). Never in an answer: the gateway checks service dates against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<Date>,
    /// Date of death.
    pub date_of_death: Option<Date>,
    /// The member's own coverage changes in effective-date order.
    pub changes: Vec<CoverageChanged>,
    /// The resolved answer, by first day; the first span starts at `Date(i32::MIN)`.
    pub spans: Vec<EligibilitySpan>,
    /// The benefit versions the spans name.
    pub benefits: Vec<PlanBenefits>,
    /// The version: events folded into the record (the member's, its subscriber's, its
    /// plans'); a fuller record always has a higher one.
    pub version: u64,
}

impl MemberEligibility {
    /// The record from its stored bytes.
    pub fn from_json(member_id: &str, bytes: &[u8]) -> Result<Self, ReadModelError> {
        serde_json::from_slice(bytes).map_err(|e| ReadModelError::at(member_eligibility_key(member_id), e))
    }

    /// Whether the member is covered for `service_type` (a procedure code, or a category) on
    /// `date`: the span the date falls in.
    pub fn answer(&self, date: Date, service_type: &str) -> Answer {
        let at = self.spans.partition_point(|span| span.from <= date);
        let Some(span) = at.checked_sub(1).and_then(|i| self.spans.get(i)) else {
            return Answer::unknown_member();
        };
        let unknown = Answer::unknown_member();
        match &span.coverage {
            SpanCoverage::NotYetCovered => Answer {
                status: EligibilityStatus::NOT_YET_COVERED,
                reason: Some(Answer::not_yet_reason(date)),
                ..unknown
            },
            SpanCoverage::Terminated { last_day, reason } => Answer {
                status: EligibilityStatus::TERMINATED,
                coverage_end: Some(*last_day),
                reason: Some(Answer::ended_reason(*last_day, reason.as_deref())),
                ..unknown
            },
            SpanCoverage::Active { plan_id, start, end, benefits } => {
                let benefits = benefits.and_then(|i| self.benefits.get(i as usize)).map(|b| &b.benefits);
                Answer::covered(plan_id, *start, *end, benefits, service_type)
            }
        }
    }
}

/// What a member has met in one year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Met {
    /// Deductible met.
    pub deductible: Idr,
    /// Out-of-pocket met (deductible, copays, coinsurance).
    pub oop: Idr,
    /// Paid by the plan (for the annual limit).
    pub plan_paid: Idr,
}

impl Met {
    /// Adds what `other` met.
    pub fn add(&mut self, other: Met) {
        self.deductible += other.deductible;
        self.oop += other.oop;
        self.plan_paid += other.plan_paid;
    }

    /// Takes back what `other` met.
    pub fn sub(&mut self, other: Met) {
        self.deductible -= other.deductible;
        self.oop -= other.oop;
        self.plan_paid -= other.plan_paid;
    }
}

/// A member's accumulators for one year, as the store keeps them (`acc:<member>:<year>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accumulators {
    /// Member.
    pub member_id: String,
    /// Family.
    pub family_id: String,
    /// Plan of the last change.
    pub plan_id: String,
    /// Calendar year.
    pub year: i32,
    /// The member's totals.
    pub member: Met,
    /// The family's totals.
    pub family: Met,
    /// Paid out by completed payments for the member's claims of the year (the seed's
    /// Cost_Accumulator paid-to-date; `member.plan_paid` is what decisions committed).
    #[serde(default)]
    pub paid_idr: Idr,
    /// Changes so far (the version).
    pub version: i64,
}

/// Where a claim stands in the saga, as the store keeps it (`claim-state:<id>`) apart from its
/// decision (`claim:<id>`, the `ClaimAdjudicated` in its wire form, written once per
/// decision): a payment rewrites these few fields, not the decision and its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimState {
    /// `ADJUDICATED`, `PAID`, `PAYMENT_FAILED` (retryable), `REVERSED`.
    pub state: String,
    /// Payment, when paid.
    pub payment_id: Option<String>,
    /// Why it was reversed.
    pub reversal: Option<String>,
    /// Changes so far (the version).
    pub version: i64,
    /// Decisions so far (the decision's version: a claim pended for an authorization is
    /// decided again when it is decided).
    pub decisions: i64,
}

impl ClaimState {
    /// A claim just decided, nothing else yet.
    pub fn decided() -> Self {
        ClaimState { state: "ADJUDICATED".to_owned(), payment_id: None, reversal: None, version: 1, decisions: 1 }
    }
}

/// A claim's decision and where it stands, as the gateway shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimView {
    /// The decision.
    pub adjudication: ClaimAdjudicated,
    /// `ADJUDICATED`, `PAID`, `PAYMENT_FAILED` (retryable), `REVERSED`.
    pub state: String,
    /// Payment, when paid.
    pub payment_id: Option<String>,
    /// Why it was reversed.
    pub reversal: Option<String>,
    /// Changes so far (the version).
    pub version: i64,
}

impl ClaimView {
    /// The keys to read for a claim, in the order [`from_stored`](Self::from_stored) takes
    /// them: its decision, its state.
    pub fn keys(claim_id: &str) -> [String; 2] {
        [decision_key(claim_id), state_key(claim_id)]
    }

    /// A claim's decision and state from what the store holds under [`keys`](Self::keys);
    /// `None` when it has not been decided. A decision with no state stands as `ADJUDICATED`
    /// (the state is written once it changes: paid, failed, reversed, decided again).
    pub fn from_stored(
        claim_id: &str,
        decision: Option<&[u8]>,
        state: Option<&[u8]>,
    ) -> Result<Option<ClaimView>, ReadModelError> {
        let Some(decision) = decision else { return Ok(None) };
        // Builds before this one kept the whole view as JSON under `claim:<id>` (at versions a
        // decision does not pass): still read, the saga state taken from `claim-state:<id>`
        // once there is one.
        let (adjudication, earlier) = if decision.first() == Some(&b'{') {
            let view: ClaimView =
                serde_json::from_slice(decision).map_err(|e| ReadModelError::at(decision_key(claim_id), e))?;
            let earlier = ClaimState {
                state: view.state,
                payment_id: view.payment_id,
                reversal: view.reversal,
                version: view.version,
                decisions: 1,
            };
            (view.adjudication, earlier)
        } else {
            match crate::wire::decode(decision) {
                Ok(Event::ClaimAdjudicated(a)) => (a, ClaimState::decided()),
                Ok(other) => {
                    return Err(ReadModelError::at(
                        decision_key(claim_id),
                        format!("a {} record", other.kind().name()),
                    ));
                }
                Err(e) => return Err(ReadModelError::at(decision_key(claim_id), e)),
            }
        };
        let state = match state {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| ReadModelError::at(state_key(claim_id), e))?,
            None => earlier,
        };
        Ok(Some(ClaimView {
            adjudication,
            state: state.state,
            payment_id: state.payment_id,
            reversal: state.reversal,
            version: state.version,
        }))
    }
}

/// An authorization as the store keeps it (`auth:<id>`) and the gateway shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthView {
    /// Member.
    pub member_id: String,
    /// `REQUESTED`, `APPROVED`, `DENIED`.
    pub status: String,
    /// The provider that requested it, when the request was seen (records written before
    /// this field have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Procedure, once approved.
    pub procedure_code: Option<String>,
    /// Units approved.
    pub approved_units: Option<i32>,
    /// Units used by decided claims.
    pub used_units: i32,
    /// First covered service date.
    pub valid_from: Option<Date>,
    /// Last covered service date.
    pub valid_to: Option<Date>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn benefits(excluded: &[&str], prior_auth: &[&str]) -> Benefits {
        Benefits {
            deductible_individual_idr: Idr(1),
            deductible_family_idr: Idr(2),
            oop_max_individual_idr: Idr(3),
            oop_max_family_idr: Idr(4),
            copay_idr: Idr(5),
            coinsurance_bp: 2000,
            out_of_network_coinsurance_bp: 10_000,
            annual_limit_idr: Idr(6),
            prior_auth_procedures: prior_auth.iter().map(|s| (*s).to_owned()).collect(),
            excluded_procedures: excluded.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn day(d: u32) -> Date {
        Date::from_ymd(2026, 3, d).expect("a date")
    }

    #[test]
    fn an_answer_is_the_span_its_date_falls_in() {
        let record = MemberEligibility {
            member_id: "M1".into(),
            created: None,
            subscriber_id: None,
            date_of_birth: None,
            date_of_death: None,
            changes: Vec::new(),
            spans: vec![
                EligibilitySpan { from: Date(i32::MIN), coverage: SpanCoverage::NotYetCovered },
                EligibilitySpan {
                    from: day(5),
                    coverage: SpanCoverage::Active {
                        plan_id: "P0".into(),
                        start: Date(i32::MIN),
                        end: None,
                        benefits: None,
                    },
                },
                EligibilitySpan { from: day(6), coverage: SpanCoverage::NotYetCovered },
                EligibilitySpan {
                    from: day(10),
                    coverage: SpanCoverage::Active {
                        plan_id: "P1".into(),
                        start: day(10),
                        end: Some(day(19)),
                        benefits: Some(0),
                    },
                },
                EligibilitySpan {
                    from: day(20),
                    coverage: SpanCoverage::Terminated { last_day: day(19), reason: Some("NON_PAYMENT".into()) },
                },
            ],
            benefits: vec![PlanBenefits {
                plan_id: "P1".into(),
                effective: day(1),
                version: 1,
                benefits: benefits(&["X1"], &["A1"]),
            }],
            version: 3,
        };
        let before = record.answer(day(9), "99213");
        assert_eq!(before.status, EligibilityStatus::NOT_YET_COVERED);
        assert_eq!(before.reason.as_deref(), Some("not covered yet on 2026-03-09"));
        let during = record.answer(day(10), "A1");
        assert!(during.eligible && during.requires_prior_auth);
        assert_eq!((during.plan_id.as_deref(), during.coverage_end), (Some("P1"), Some(day(19))));
        let excluded = record.answer(day(19), "X1");
        assert!(!excluded.eligible);
        assert_eq!(excluded.reason.as_deref(), Some("X1 is excluded by the plan"));
        let after = record.answer(day(20), "99213");
        assert_eq!(after.status, EligibilityStatus::TERMINATED);
        assert_eq!(after.reason.as_deref(), Some("coverage ended on 2026-03-19 (NON_PAYMENT)"));
        let json = serde_json::to_vec(&record).expect("json");
        assert_eq!(MemberEligibility::from_json("M1", &json).expect("read back"), record);
        let none = MemberEligibility { spans: Vec::new(), ..record };
        assert_eq!(none.answer(day(1), "x").status, EligibilityStatus::UNKNOWN_MEMBER);
    }

    #[test]
    fn keys() {
        assert_eq!(accumulator_key("M1", 2026), "acc:M1:2026");
        assert_eq!(accumulator_key("M1", -1), "acc:M1:-1");
        assert_eq!(ClaimView::keys("C1"), ["claim:C1".to_owned(), "claim-state:C1".to_owned()]);
        assert_eq!(member_eligibility_key("M1"), "elig:member:M1");
        assert_eq!(authorization_key("A1"), "auth:A1");
    }
}
