//! Eligibility: what member and plan events say about whether a member is covered for a
//! service on a date, under which plan and with which benefits.
//!
//! The state is a pure function of the set of events seen, whatever their order: a member's
//! coverage is the timeline of its `CoverageChanged` events sorted by effective date (then
//! event time and id), a plan's benefits the versions of its `PlanCreated` / `BenefitUpdated`
//! events by effective date. Replaying events, or receiving them late, never moves an answer
//! anywhere but to what the full set of events says — the property a store written
//! idempotently (Redis, the embedded store) needs.
//!
//! A dependent (spouse, child) is covered only while the family's subscriber is, and under the
//! subscriber's plan: the family's coverage follows the subscriber — except that a subscriber's
//! death does not end it (dependents keep the plan the subscriber had).

pub mod job;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use arus_connectors::store::{StateStore, StoreError};
use arus_schemas::events::{
    BenefitUpdated, Benefits, CoverageChangeType, CoverageChanged, EligibilityRequested, EligibilityResponded,
    EligibilityStatus, MemberCreated, PlanCreated, Relationship,
};
use arus_schemas::read_models::{
    Answer, EligibilitySpan, MemberEligibility, PlanBenefits, SpanCoverage, member_eligibility_key,
};
use arus_schemas::{Date, Event, Timestamp};

/// What the events say of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct MemberRecord {
    /// Known once `MemberCreated` is seen.
    created: Option<(String, Relationship)>,
    /// The family's subscriber (from `MemberCreated` or any coverage event).
    subscriber_id: Option<String>,
    /// From `MemberCreated` (the gateway refuses services before it).
    #[serde(default)]
    date_of_birth: Option<Date>,
    date_of_death: Option<Date>,
    /// Coverage changes by (effective date, event time, event id).
    changes: BTreeMap<(Date, Timestamp, String), CoverageChanged>,
    /// Events folded in: the version of the record in a store.
    events: u64,
    /// The keyed digest of the member's NIK, when the state has a key.
    nik_digest: Option<String>,
}

/// Coverage on a date, by the member's own events (borrowing the plan and the reason from
/// them: the adjudicator asks on every claim line, and copies only what it keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Coverage<'a> {
    /// No change is effective yet.
    NotYet,
    /// Covered under a plan since `start` (the first day of the unbroken span), until `end` when
    /// known.
    Covered { plan_id: &'a str, start: Date, end: Option<Date> },
    /// Ended: the last covered day, and why.
    Ended { last_day: Date, reason: Option<&'a str> },
}

/// Why a member is not covered on a date (the status, last covered day and reason an
/// [`Answer`] gives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCovered {
    /// Unknown, not yet covered, or terminated.
    pub status: EligibilityStatus,
    /// The last covered day, when coverage ended.
    pub coverage_end: Option<Date>,
    /// In words.
    pub reason: String,
}

/// Eligibility state of every member and plan seen.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EligibilityState {
    members: HashMap<String, MemberRecord>,
    /// Per plan, benefit versions by (effective date, version).
    plans: HashMap<String, BTreeMap<(Date, i32), Benefits>>,
    /// Event ids applied (an event applied twice changes nothing), every one: never advanced,
    /// for the state is folded in any order, and a record's version counts its events (an id
    /// forgotten would count a duplicate twice, and the versions would depend on the order).
    seen: crate::runtime::seen::Seen,
    /// Per subscriber, the members of the family that name it.
    dependents: HashMap<String, BTreeSet<String>>,
    /// The key of NIK digests: with it, each member's record comes with `nik:<digest>` →
    /// member id, so the gateway finds a NIK already on record without the store holding it.
    /// (Configuration, never in a snapshot: a restored state keeps the key it was made with.)
    #[serde(skip)]
    nik_key: Option<NikKey>,
}

/// A secret key; never printed.
#[derive(Clone, Default)]
struct NikKey(Vec<u8>);

impl std::fmt::Debug for NikKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NikKey(..)")
    }
}

impl EligibilityState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state that also indexes members by the keyed digest of their NIK.
    pub fn with_nik_key(key: &[u8]) -> Self {
        EligibilityState { nik_key: Some(NikKey(key.to_vec())), ..Self::default() }
    }

    /// The state, for a snapshot (without the NIK key: configuration).
    pub(crate) fn save(&self) -> Result<Vec<u8>, crate::runtime::RunError> {
        crate::runtime::snapshot::to_bytes(self)
    }

    /// Takes on a state [`save`](Self::save) gave, keeping this one's NIK key.
    pub(crate) fn load(&mut self, bytes: &[u8]) -> Result<(), crate::runtime::RunError> {
        let key = self.nik_key.take();
        *self = crate::runtime::snapshot::from_bytes(bytes)?;
        self.nik_key = key;
        Ok(())
    }

    /// Applies an event; returns the members whose answers may have changed (for a store to
    /// rewrite). Events of other kinds, and events seen before, change nothing.
    pub fn apply(&mut self, event: &Event) -> Vec<String> {
        let id = match event {
            Event::MemberCreated(e) => &e.event_id,
            Event::MemberUpdated(e) => &e.event_id,
            Event::CoverageChanged(e) => &e.event_id,
            Event::PlanCreated(e) => &e.event_id,
            Event::BenefitUpdated(e) => &e.event_id,
            _ => return Vec::new(),
        };
        if !self.seen.first(id, event.event_time().0) {
            return Vec::new();
        }
        match event {
            Event::MemberCreated(e) => self.member_created(e),
            Event::MemberUpdated(e) => {
                let record = self.members.entry(e.member_id.clone()).or_default();
                record.events += 1;
                if e.date_of_death.is_some() {
                    record.date_of_death = e.date_of_death;
                }
                self.family_of(&e.member_id)
            }
            Event::CoverageChanged(e) => self.coverage_changed(e),
            Event::PlanCreated(e) => self.plan_created(e),
            Event::BenefitUpdated(e) => self.benefit_updated(e),
            _ => Vec::new(),
        }
    }

    fn member_created(&mut self, e: &MemberCreated) -> Vec<String> {
        let record = self.members.entry(e.member_id.clone()).or_default();
        record.events += 1;
        record.created = Some((e.family_id.clone(), e.relationship));
        record.date_of_birth = Some(e.date_of_birth);
        if let Some(NikKey(key)) = &self.nik_key {
            record.nik_digest = Some(arus_schemas::nik::nik_digest(key, &e.nik));
        }
        record.subscriber_id = Some(e.subscriber_id.clone());
        self.dependents.entry(e.subscriber_id.clone()).or_default().insert(e.member_id.clone());
        self.family_of(&e.member_id)
    }

    fn coverage_changed(&mut self, e: &CoverageChanged) -> Vec<String> {
        let record = self.members.entry(e.member_id.clone()).or_default();
        record.events += 1;
        let subscriber = record.subscriber_id.get_or_insert_with(|| e.subscriber_id.clone()).clone();
        record.changes.insert((e.effective_date, e.event_time, e.event_id.clone()), e.clone());
        self.dependents.entry(subscriber).or_default().insert(e.member_id.clone());
        self.family_of(&e.member_id)
    }

    fn plan_created(&mut self, e: &PlanCreated) -> Vec<String> {
        let start = Date::from_ymd(e.plan_year, 1, 1).unwrap_or(Date(i32::MIN));
        self.plans.entry(e.plan_id.clone()).or_default().insert((start, e.version), e.benefits.clone());
        self.members_on_plan(&e.plan_id)
    }

    fn benefit_updated(&mut self, e: &BenefitUpdated) -> Vec<String> {
        self.plans.entry(e.plan_id.clone()).or_default().insert((e.effective_date, e.version), e.benefits.clone());
        self.members_on_plan(&e.plan_id)
    }

    /// A member and, for a subscriber, the dependents whose answers follow it.
    fn family_of(&self, member_id: &str) -> Vec<String> {
        let dependents = self.dependents.get(member_id).into_iter().flatten().filter(|d| *d != member_id);
        std::iter::once(member_id.to_owned()).chain(dependents.cloned()).collect()
    }

    /// The members whose changes name a plan, and their dependents (covered under their
    /// subscriber's plan).
    fn members_on_plan(&self, plan_id: &str) -> Vec<String> {
        let on_plan = self.members.iter().filter(|(_, r)| r.changes.values().any(|c| c.plan_id == plan_id));
        let affected: BTreeSet<String> = on_plan.flat_map(|(id, _)| self.family_of(id)).collect();
        affected.into_iter().collect()
    }

    /// The benefit version of a plan in force on a date: its effective date, version number
    /// and benefits.
    pub fn plan_version(&self, plan_id: &str, date: Date) -> Option<(Date, i32, &Benefits)> {
        self.plans.get(plan_id)?.range(..=(date, i32::MAX)).next_back().map(|((from, v), b)| (*from, *v, b))
    }

    /// Benefits of a plan in force on a date.
    pub fn benefits(&self, plan_id: &str, date: Date) -> Option<&Benefits> {
        self.plans.get(plan_id)?.range(..=(date, i32::MAX)).next_back().map(|(_, b)| b)
    }

    /// Coverage of a member on a date by its own events.
    fn own_coverage(record: &MemberRecord, date: Date) -> Coverage<'_> {
        let mut coverage = Coverage::NotYet;
        for ((effective, _, _), change) in &record.changes {
            if *effective > date {
                break;
            }
            coverage = match change.change_type {
                CoverageChangeType::TERMINATED => {
                    Coverage::Ended { last_day: effective.add_days(-1), reason: change.reason.as_deref() }
                }
                _ => {
                    let start = match &coverage {
                        Coverage::Covered { start, .. } => *start,
                        _ => *effective,
                    };
                    Coverage::Covered { plan_id: &change.plan_id, start, end: change.end_date }
                }
            };
            // Coverage known in advance to end before the date ended then.
            if let Coverage::Covered { end: Some(end), .. } = &coverage
                && *end < date
            {
                coverage = Coverage::Ended { last_day: *end, reason: change.reason.as_deref() };
            }
        }
        // A termination already recorded for a later day is the span's known end.
        if let Coverage::Covered { end, .. } = &mut coverage {
            let later_end = record
                .changes
                .iter()
                .find(|((effective, _, _), c)| *effective > date && c.change_type == CoverageChangeType::TERMINATED)
                .map(|((effective, _, _), _)| effective.add_days(-1));
            if end.is_none() {
                *end = later_end;
            }
        }
        if let Some(died) = record.date_of_death
            && died < date
        {
            coverage = Coverage::Ended { last_day: died, reason: Some("DEATH") };
        }
        coverage
    }

    /// Whether `member_id` is covered for `service_type` (a procedure code, or a category) on
    /// `date`.
    pub fn answer(&self, member_id: &str, date: Date, service_type: &str) -> Answer {
        let unknown = Answer::unknown_member();
        let Some(coverage) = self.coverage(member_id, date) else { return unknown };
        match coverage {
            Coverage::NotYet => Answer {
                status: EligibilityStatus::NOT_YET_COVERED,
                reason: Some(Answer::not_yet_reason(date)),
                ..unknown
            },
            Coverage::Ended { last_day, reason } => Answer {
                status: EligibilityStatus::TERMINATED,
                coverage_end: Some(last_day),
                reason: Some(Answer::ended_reason(last_day, reason)),
                ..unknown
            },
            Coverage::Covered { plan_id, start, end } => {
                Answer::covered(plan_id, start, end, self.benefits(plan_id, date), service_type)
            }
        }
    }

    /// The plan a member is covered under on a date, or why not (the status and the reason
    /// [`answer`](Self::answer) gives): the answer's part the adjudicator needs, without
    /// copying the plan's benefits for every claim line.
    pub fn covered_under(&self, member_id: &str, date: Date) -> Result<String, NotCovered> {
        let not = |status, coverage_end, reason| Err(NotCovered { status, coverage_end, reason });
        match self.coverage(member_id, date) {
            None => not(EligibilityStatus::UNKNOWN_MEMBER, None, arus_schemas::read_models::NO_SUCH_MEMBER.to_owned()),
            Some(Coverage::NotYet) => not(EligibilityStatus::NOT_YET_COVERED, None, Answer::not_yet_reason(date)),
            Some(Coverage::Ended { last_day, reason }) => {
                not(EligibilityStatus::TERMINATED, Some(last_day), Answer::ended_reason(last_day, reason))
            }
            Some(Coverage::Covered { plan_id, .. }) => Ok(plan_id.to_owned()),
        }
    }

    /// A member's coverage on a date, the subscriber's followed for a dependent; `None` for a
    /// member not known.
    fn coverage(&self, member_id: &str, date: Date) -> Option<Coverage<'_>> {
        let record = self.members.get(member_id)?;
        if record.created.is_none() && record.changes.is_empty() {
            return None;
        }
        let own = Self::own_coverage(record, date);
        // A dependent follows the subscriber: covered only while the subscriber is, under the
        // subscriber's plan.
        let is_dependent = record.created.as_ref().is_some_and(|(_, r)| *r != Relationship::SUBSCRIBER);
        let family = match (&own, is_dependent, record.subscriber_id.as_ref().and_then(|s| self.members.get(s))) {
            (Coverage::Covered { .. }, true, Some(subscriber)) => match Self::own_coverage(subscriber, date) {
                // A subscriber's death does not end the family's coverage: dependents keep the
                // plan the subscriber had.
                Coverage::Ended { last_day, reason } if reason == Some("DEATH") => {
                    match Self::own_coverage(subscriber, last_day) {
                        Coverage::Covered { plan_id, .. } => {
                            Some(Coverage::Covered { plan_id, start: Date(i32::MIN), end: None })
                        }
                        _ => Some(Coverage::Ended { last_day, reason }),
                    }
                }
                coverage => Some(coverage),
            },
            _ => None,
        };
        let coverage = match (own, family) {
            (Coverage::Covered { start, end, .. }, Some(Coverage::Covered { plan_id, start: s, end: e })) => {
                let end = match (end, e) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Coverage::Covered { plan_id, start: start.max(s), end }
            }
            (Coverage::Covered { .. }, Some(Coverage::Ended { last_day, .. })) => {
                Coverage::Ended { last_day, reason: Some("SUBSCRIBER_TERMINATED") }
            }
            (Coverage::Covered { .. }, Some(Coverage::NotYet)) => Coverage::NotYet,
            (own, _) => own,
        };
        Some(coverage)
    }

    /// The answer to a request on the bus, as the response event (its id derived from the
    /// request's, so answering twice gives the same event).
    pub fn respond(&self, request: &EligibilityRequested, now: Timestamp) -> EligibilityResponded {
        let answer = self.answer(&request.member_id, request.service_date, &request.service_type);
        Self::response(request, &answer, now)
    }

    /// An answer to a request, as the response event.
    pub fn response(request: &EligibilityRequested, answer: &Answer, now: Timestamp) -> EligibilityResponded {
        EligibilityResponded {
            event_id: format!("elig-resp:{}", request.request_id),
            event_time: now,
            request_id: request.request_id.clone(),
            member_id: request.member_id.clone(),
            service_date: request.service_date,
            eligible: answer.eligible,
            status: answer.status,
            plan_id: answer.plan_id.clone(),
            coverage_start: answer.coverage_start,
            coverage_end: answer.coverage_end,
            deductible_remaining_idr: None,
            oop_remaining_idr: None,
            // Remaining amounts need the accumulators (the adjudication issue).
            annual_limit_remaining_idr: None,
            requires_prior_auth: answer.requires_prior_auth,
            reason: answer.reason.clone(),
        }
    }
}

impl EligibilityState {
    /// The days a member's answer can change on: every day a change of the member's own, or of
    /// its subscriber, takes or ends effect, a death's next day, and every day a benefit version
    /// of their plans takes effect. Between two of them every answer stays the same.
    fn turning_days(&self, member_id: &str) -> BTreeSet<Date> {
        let mut days = BTreeSet::from([Date(i32::MIN)]);
        let Some(record) = self.members.get(member_id) else { return days };
        let subscriber = record.subscriber_id.as_deref().filter(|s| *s != member_id).and_then(|s| self.members.get(s));
        for record in std::iter::once(record).chain(subscriber) {
            for ((effective, _, _), change) in &record.changes {
                days.insert(*effective);
                if let Some(end) = change.end_date {
                    days.insert(end.add_days(1));
                }
                for (from, _) in self.plans.get(&change.plan_id).into_iter().flat_map(|v| v.keys()) {
                    days.insert(*from);
                }
            }
            if let Some(died) = record.date_of_death {
                days.insert(died.add_days(1));
            }
        }
        days
    }

    /// The version of a member's eligibility record: the events folded into what it depends on
    /// (the member's, its subscriber's, and the benefit versions of their plans). Each event
    /// that changes the record adds to it, so a fuller record always has a higher version.
    fn record_version(&self, member_id: &str) -> u64 {
        let Some(record) = self.members.get(member_id) else { return 0 };
        let subscriber = record.subscriber_id.as_deref().filter(|s| *s != member_id).and_then(|s| self.members.get(s));
        let mut plans = BTreeSet::new();
        let mut version = 0;
        for record in std::iter::once(record).chain(subscriber) {
            version += record.events;
            plans.extend(record.changes.values().map(|c| c.plan_id.as_str()));
        }
        version + plans.iter().map(|p| self.plans.get(*p).map_or(0, |v| v.len() as u64)).sum::<u64>()
    }

    /// A member's eligibility record, resolved date by date, to store; `None` for a member not
    /// known.
    pub fn eligibility_record(&self, member_id: &str) -> Option<MemberEligibility> {
        let record = self.members.get(member_id)?;
        let mut spans: Vec<EligibilitySpan> = Vec::new();
        let mut benefits: Vec<PlanBenefits> = Vec::new();
        if self.coverage(member_id, Date(i32::MIN)).is_some() {
            for day in self.turning_days(member_id) {
                let coverage = match self.coverage(member_id, day).expect("a known member") {
                    Coverage::NotYet => SpanCoverage::NotYetCovered,
                    Coverage::Ended { last_day, reason } => {
                        SpanCoverage::Terminated { last_day, reason: reason.map(str::to_owned) }
                    }
                    Coverage::Covered { plan_id, start, end } => {
                        let version = self.plan_version(plan_id, day).map(|(effective, version, b)| {
                            let known = benefits
                                .iter()
                                .position(|p| p.plan_id == plan_id && p.effective == effective && p.version == version);
                            known.unwrap_or_else(|| {
                                benefits.push(PlanBenefits {
                                    plan_id: plan_id.to_owned(),
                                    effective,
                                    version,
                                    benefits: b.clone(),
                                });
                                benefits.len() - 1
                            }) as u32
                        });
                        SpanCoverage::Active { plan_id: plan_id.to_owned(), start, end, benefits: version }
                    }
                };
                if spans.last().is_none_or(|last| last.coverage != coverage) {
                    spans.push(EligibilitySpan { from: day, coverage });
                }
            }
        }
        Some(MemberEligibility {
            member_id: member_id.to_owned(),
            created: record.created.clone(),
            subscriber_id: record.subscriber_id.clone(),
            date_of_birth: record.date_of_birth,
            date_of_death: record.date_of_death,
            changes: record.changes.values().cloned().collect(),
            spans,
            benefits,
            version: self.record_version(member_id),
        })
    }

    /// The store writes of `members`' records: key, version, JSON; with a NIK key, each
    /// member's NIK index entry too (version 1: the first member recorded with a NIK keeps it).
    pub fn records<'a>(&self, members: impl IntoIterator<Item = &'a str>) -> Vec<(String, u64, Vec<u8>)> {
        let mut writes = Vec::new();
        for record in members.into_iter().filter_map(|member_id| self.eligibility_record(member_id)) {
            if let Some(digest) = self.members.get(&record.member_id).and_then(|m| m.nik_digest.as_ref()) {
                writes.push((arus_schemas::read_models::nik_key(digest), 1, record.member_id.clone().into_bytes()));
            }
            let json = serde_json::to_vec(&record).expect("records serialize");
            writes.push((member_eligibility_key(&record.member_id), record.version, json));
        }
        writes
    }

    /// Applies an event and writes the records it changed to `store` (see [`records`](Self::records)).
    pub fn apply_to(&mut self, event: &Event, store: &dyn StateStore) -> Result<(), StoreError> {
        let changed = self.apply(event);
        store.put_many_versioned(&self.records(changed.iter().map(String::as_str))).map(|_| ())
    }
}

#[cfg(test)]
mod nik_index_tests {
    use super::*;
    use arus_schemas::events::{Relationship, Sex};

    fn created(member: &str, nik: &str) -> Event {
        Event::MemberCreated(MemberCreated {
            event_id: format!("created-{member}"),
            event_time: Timestamp(1),
            member_id: member.to_owned(),
            family_id: "F1".to_owned(),
            subscriber_id: member.to_owned(),
            relationship: Relationship::SUBSCRIBER,
            nik: nik.to_owned(),
            full_name: "Test Member".to_owned(),
            date_of_birth: "1990-01-01".parse().expect("a date"),
            sex: Sex::MALE,
            province_code: "31".to_owned(),
            regency_code: "3171".to_owned(),
            city: "Jakarta".to_owned(),
            phone: None,
            email: None,
        })
    }

    #[test]
    fn with_a_key_each_member_is_found_by_its_nik_digest_and_the_key_is_never_printed() {
        let key = b"the key of NIK digests for this test";
        let mut keyed = EligibilityState::with_nik_key(key);
        let changed = keyed.apply(&created("M1", "3171010101900001"));
        let writes = keyed.records(changed.iter().map(String::as_str));
        let digest = arus_schemas::nik::nik_digest(key, "3171010101900001");
        assert!(writes.contains(&(arus_schemas::read_models::nik_key(&digest), 1, b"M1".to_vec())), "{writes:?}");
        assert!(writes.iter().all(|(_, _, bytes)| !String::from_utf8_lossy(bytes).contains("3171010101900001")));
        assert!(!format!("{keyed:?}").contains("the key of NIK digests"), "the key is not in Debug");
        // Without a key: no index, the records as before.
        let mut plain = EligibilityState::new();
        let changed = plain.apply(&created("M1", "3171010101900001"));
        assert!(plain.records(changed.iter().map(String::as_str)).iter().all(|(key, _, _)| !key.starts_with("nik:")));
    }
}
