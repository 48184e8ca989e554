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

use foldhash::{HashMap, HashSet};

use arus_connectors::store::{StateStore, StoreError};
use arus_schemas::events::{
    BenefitUpdated, Benefits, CoverageChangeType, CoverageChanged, EligibilityRequested, EligibilityResponded,
    EligibilityStatus, MemberCreated, PlanCreated, Relationship,
};
use arus_schemas::{Date, Event, Timestamp};
use serde::{Deserialize, Serialize};

/// What the events say of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MemberRecord {
    /// Known once `MemberCreated` is seen.
    created: Option<(String, Relationship)>,
    /// The family's subscriber (from `MemberCreated` or any coverage event).
    subscriber_id: Option<String>,
    date_of_death: Option<Date>,
    /// Coverage changes by (effective date, event time, event id).
    changes: BTreeMap<(Date, Timestamp, String), CoverageChanged>,
    /// Events folded in: the version of the record in a store.
    events: u64,
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

/// Why an unknown member is not covered, in words.
const NO_SUCH_MEMBER: &str = "no such member";

fn not_yet_reason(date: Date) -> String {
    format!("not covered yet on {date}")
}

fn ended_reason(last_day: Date, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("coverage ended on {last_day} ({reason})"),
        None => format!("coverage ended on {last_day}"),
    }
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

/// An eligibility answer.
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

/// Eligibility state of every member and plan seen.
#[derive(Debug, Clone, Default)]
pub struct EligibilityState {
    members: HashMap<String, MemberRecord>,
    /// Per plan, benefit versions by (effective date, version).
    plans: HashMap<String, BTreeMap<(Date, i32), Benefits>>,
    /// Event ids applied (an event applied twice changes nothing).
    seen: HashSet<String>,
    /// Per subscriber, the members of the family that name it.
    dependents: HashMap<String, BTreeSet<String>>,
}

impl EligibilityState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
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
        if !self.seen.insert(id.clone()) {
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
        record.subscriber_id = Some(e.subscriber_id.clone());
        self.dependents.entry(e.subscriber_id.clone()).or_default().insert(e.member_id.clone());
        vec![e.member_id.clone()]
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

    fn members_on_plan(&self, plan_id: &str) -> Vec<String> {
        let mut affected: Vec<String> = self
            .members
            .iter()
            .filter(|(_, r)| r.changes.values().any(|c| c.plan_id == plan_id))
            .map(|(id, _)| id.clone())
            .collect();
        affected.sort_unstable();
        affected
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
        let unknown = Answer {
            eligible: false,
            status: EligibilityStatus::UNKNOWN_MEMBER,
            plan_id: None,
            coverage_start: None,
            coverage_end: None,
            benefits: None,
            requires_prior_auth: false,
            reason: Some(NO_SUCH_MEMBER.to_owned()),
        };
        let Some(coverage) = self.coverage(member_id, date) else { return unknown };
        match coverage {
            Coverage::NotYet => {
                Answer { status: EligibilityStatus::NOT_YET_COVERED, reason: Some(not_yet_reason(date)), ..unknown }
            }
            Coverage::Ended { last_day, reason } => Answer {
                status: EligibilityStatus::TERMINATED,
                coverage_end: Some(last_day),
                reason: Some(ended_reason(last_day, reason)),
                ..unknown
            },
            Coverage::Covered { plan_id, start, end } => {
                let benefits = self.benefits(plan_id, date).cloned();
                let listed = |list: &[String]| list.iter().any(|p| p == service_type);
                let excluded = benefits.as_ref().is_some_and(|b| listed(&b.excluded_procedures));
                let requires_prior_auth = benefits.as_ref().is_some_and(|b| listed(&b.prior_auth_procedures));
                Answer {
                    eligible: !excluded,
                    status: EligibilityStatus::ACTIVE,
                    plan_id: Some(plan_id.to_owned()),
                    coverage_start: Some(start),
                    coverage_end: end,
                    benefits,
                    requires_prior_auth,
                    reason: excluded.then(|| format!("{service_type} is excluded by the plan")),
                }
            }
        }
    }

    /// The plan a member is covered under on a date, or why not (the status and the reason
    /// [`answer`](Self::answer) gives): the answer's part the adjudicator needs, without
    /// copying the plan's benefits for every claim line.
    pub fn covered_under(&self, member_id: &str, date: Date) -> Result<String, NotCovered> {
        let not = |status, coverage_end, reason| Err(NotCovered { status, coverage_end, reason });
        match self.coverage(member_id, date) {
            None => not(EligibilityStatus::UNKNOWN_MEMBER, None, NO_SUCH_MEMBER.to_owned()),
            Some(Coverage::NotYet) => not(EligibilityStatus::NOT_YET_COVERED, None, not_yet_reason(date)),
            Some(Coverage::Ended { last_day, reason }) => {
                not(EligibilityStatus::TERMINATED, Some(last_day), ended_reason(last_day, reason))
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

/// A member's record as a store keeps it (`elig:member:<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Member.
    pub member_id: String,
    /// Family and relationship, once the member is known.
    pub created: Option<(String, Relationship)>,
    /// The family's subscriber.
    pub subscriber_id: Option<String>,
    /// Date of death.
    pub date_of_death: Option<Date>,
    /// Coverage changes in effective-date order.
    pub changes: Vec<CoverageChanged>,
    /// Events folded in (the version).
    pub events: u64,
}

/// A plan's benefit versions as a store keeps them (`elig:plan:<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// Plan.
    pub plan_id: String,
    /// Benefits by effective date and version.
    pub versions: Vec<(Date, i32, Benefits)>,
}

fn member_key(member_id: &str) -> String {
    format!("elig:member:{member_id}")
}

fn plan_key(plan_id: &str) -> String {
    format!("elig:plan:{plan_id}")
}

impl EligibilityState {
    /// A member's record, to store.
    pub fn member_view(&self, member_id: &str) -> Option<MemberView> {
        let r = self.members.get(member_id)?;
        Some(MemberView {
            member_id: member_id.to_owned(),
            created: r.created.clone(),
            subscriber_id: r.subscriber_id.clone(),
            date_of_death: r.date_of_death,
            changes: r.changes.values().cloned().collect(),
            events: r.events,
        })
    }

    /// A plan's versions, to store.
    pub fn plan_view(&self, plan_id: &str) -> Option<PlanView> {
        let versions = self.plans.get(plan_id)?;
        Some(PlanView {
            plan_id: plan_id.to_owned(),
            versions: versions.iter().map(|((d, v), b)| (*d, *v, b.clone())).collect(),
        })
    }

    fn load_member(&mut self, view: MemberView) {
        let record = MemberRecord {
            created: view.created,
            subscriber_id: view.subscriber_id,
            date_of_death: view.date_of_death,
            changes: view
                .changes
                .into_iter()
                .map(|c| ((c.effective_date, c.event_time, c.event_id.clone()), c))
                .collect(),
            events: view.events,
        };
        self.members.insert(view.member_id, record);
    }

    fn load_plan(&mut self, view: PlanView) {
        self.plans.insert(view.plan_id, view.versions.into_iter().map(|(d, v, b)| ((d, v), b)).collect());
    }

    /// Applies an event and writes what it changed to `store`: the member's record, or the
    /// plan's versions. A record is versioned by the events folded into it, so a replay from
    /// scratch never overwrites a fuller record with an older one.
    pub fn apply_to(&mut self, event: &Event, store: &dyn StateStore) -> Result<(), StoreError> {
        if self.apply(event).is_empty() && !matches!(event, Event::PlanCreated(_) | Event::BenefitUpdated(_)) {
            return Ok(());
        }
        match event {
            Event::MemberCreated(e) => self.store_member(&e.member_id, store),
            Event::MemberUpdated(e) => self.store_member(&e.member_id, store),
            Event::CoverageChanged(e) => self.store_member(&e.member_id, store),
            Event::PlanCreated(PlanCreated { plan_id, .. }) | Event::BenefitUpdated(BenefitUpdated { plan_id, .. }) => {
                let Some(view) = self.plan_view(plan_id) else { return Ok(()) };
                let version = view.versions.len() as u64;
                store.put_versioned(&plan_key(plan_id), version, &json(&view)).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    fn store_member(&self, member_id: &str, store: &dyn StateStore) -> Result<(), StoreError> {
        let Some(view) = self.member_view(member_id) else { return Ok(()) };
        store.put_versioned(&member_key(member_id), view.events, &json(&view)).map(|_| ())
    }

    /// A member's record as `store` holds it.
    pub fn member_from_store(store: &dyn StateStore, member_id: &str) -> Result<Option<MemberView>, StoreError> {
        match store.get(&member_key(member_id))? {
            Some((_, bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("{}: {e}", member_key(member_id)))),
            None => Ok(None),
        }
    }

    /// Answers from what `store` holds: the member, its subscriber, and their plans.
    pub fn answer_from_store(
        store: &dyn StateStore,
        member_id: &str,
        date: Date,
        service_type: &str,
    ) -> Result<Answer, StoreError> {
        let mut state = EligibilityState::new();
        let read_member = |id: &str| -> Result<Option<MemberView>, StoreError> {
            match store.get(&member_key(id))? {
                Some((_, bytes)) => {
                    serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError(format!("{}: {e}", member_key(id))))
                }
                None => Ok(None),
            }
        };
        let mut plans = BTreeSet::new();
        if let Some(member) = read_member(member_id)? {
            let subscriber = match &member.subscriber_id {
                Some(s) if s != member_id => read_member(s)?,
                _ => None,
            };
            for view in std::iter::once(member).chain(subscriber) {
                plans.extend(view.changes.iter().map(|c| c.plan_id.clone()));
                state.load_member(view);
            }
        }
        let plans: Vec<String> = plans.into_iter().collect();
        let keys: Vec<String> = plans.iter().map(|p| plan_key(p)).collect();
        for (plan_id, stored) in plans.iter().zip(store.get_many(&keys)?) {
            if let Some((_, bytes)) = stored {
                let view: PlanView =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError(format!("{}: {e}", plan_key(plan_id))))?;
                state.load_plan(view);
            }
        }
        Ok(state.answer(member_id, date, service_type))
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("views serialize")
}
