//! Claim adjudication, cost accumulators and the claim saga, as a fold over events.
//!
//! [`Adjudicator::apply`] takes every event the job reads (members and coverage, plans,
//! providers and contracts, authorizations, claims, payments) in one deterministic order and
//! returns the events it decides: `ClaimAdjudicated` (to `claims.events`), `AccumulatorUpdated`
//! (to `accumulator.updates`) and `ClaimPaid`. The same events in the same order always give
//! the same outputs, to the rupiah.
//!
//! Each claim line goes through the standard order, and stops at the first rule that denies it:
//! 1. front-end validation (CARC 16: missing or invalid fields, a line charge that is not
//!    positive, a service date after submission, line charges not summing to the total);
//! 2. duplicates: the same member, provider, service date, procedure, units and charge as a line
//!    of an earlier claim still standing (CARC 18);
//! 3. eligibility on the line's date of service (unknown member 31, not yet covered 26,
//!    terminated or deceased 27);
//! 4. timely filing: submitted more than [`TIMELY_FILING_DAYS`] after the service (29); plan
//!    exclusions (96); out of network where the plan covers nothing out of network (204);
//! 5. prior authorization where the plan requires it: none approved for the member, procedure
//!    and date (197), or fewer units left on it than billed (198); an authorization requested
//!    and not yet decided pends the claim;
//! 6. pricing: allowed = min(billed, contracted fee per unit × units) in network, billed out of
//!    network; the difference is contractual (CO-45);
//! 7. member share, capped together by the room left under the out-of-pocket maximum
//!    (individual and family, whichever is less), taken in this order: deductible (PR-1, up to
//!    what is left of the individual and family deductibles), copay (PR-3, per office visit
//!    line: procedure codes 99202–99215), coinsurance (PR-2: the plan's rate, or its
//!    out-of-network rate, on what is left, **rounded half up to the whole rupiah**); then the
//!    annual limit: what the plan would pay beyond what is left of it is the member's (PR-119,
//!    not counted toward the out-of-pocket maximum);
//! 8. the plan pays the rest.
//!
//! For every line, billed = plan paid + the sum of its adjustments (CO and PR amounts).
//! Accumulators are per member and per family per calendar year of the service date; denied
//! lines do not touch them. Compensation: a `PaymentFailed` that will not be retried, or a
//! claim replacing another (`original_claim_id`: a correction, or with no lines a void),
//! restores what the earlier claim added to the accumulators, exactly, and frees its lines for
//! the duplicate check; claims adjudicated in between are not adjudicated again.

pub mod job;
pub(crate) mod shards;
pub mod spec;

use std::collections::BTreeMap;

use foldhash::HashMap;

use arus_schemas::events::{
    AccumulatorUpdated, AdjudicatedLine, Adjustment, AdjustmentGroup, AuthApproved, Benefits, ClaimAdjudicated,
    ClaimLine, ClaimPaid, ClaimStatus, ClaimSubmitted, ContractUpdated, EligibilityStatus, NetworkStatus,
};
use arus_schemas::{Date, Event, Idr, Timestamp};

use arus_schemas::read_models::{
    Accumulators, AuthView, ClaimState, Met, accumulator_key, authorization_key, decision_key, state_key,
};

use crate::eligibility::EligibilityState;

/// Days after the date of service within which a claim must be submitted.
pub const TIMELY_FILING_DAYS: i32 = 90;

/// Office-visit procedure codes: a copay applies to each such line.
fn is_office_visit(procedure: &str) -> bool {
    procedure.len() == 5 && ("99202"..="99215").contains(&procedure)
}

/// An approved authorization and what is used of it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Auth {
    Requested { member_id: String },
    Approved { approval: AuthApproved, used_units: i32 },
    Denied { member_id: String },
}

/// A member, family, provider or procedure id, interned: the fold looks ids up on every line
/// (duplicate keys, accumulators), and compares and hashes numbers instead of strings.
type Name = u32;

/// The ids the fold has seen, each once.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Names {
    ids: HashMap<Box<str>, Name>,
    names: Vec<Box<str>>,
}

impl Names {
    /// The number of `name`, given one the first time.
    fn intern(&mut self, name: &str) -> Name {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as Name;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// The number of `name`, if it has one.
    fn get(&self, name: &str) -> Option<Name> {
        self.ids.get(name).copied()
    }

    fn name(&self, id: Name) -> &str {
        &self.names[id as usize]
    }
}

/// What an adjudicated claim added, to take back if it is compensated.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Standing {
    member_id: Name,
    family_id: Name,
    provider_id: Name,
    /// Per year, what the claim added.
    added: BTreeMap<i32, Met>,
    /// Its lines' duplicate keys.
    lines: Vec<DuplicateKey>,
    /// Authorization units it used.
    auth_units: Vec<(String, i32)>,
    /// Reversed (compensated or replaced): adds nothing any more.
    reversed: bool,
    /// Paid to the provider by completed payments while it stood (counted in paid-to-date;
    /// taken out again, to be recovered, when it is reversed).
    paid: Idr,
}

/// Member, provider, date of service, procedure, units, charge.
type DuplicateKey = (Name, Name, Date, Name, i32, i64);

/// The adjudication state: reference data, accumulators, standing claims.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Adjudicator {
    eligibility: EligibilityState,
    names: Names,
    /// Member → family.
    families: HashMap<Name, Name>,
    providers: HashMap<String, NetworkStatus>,
    /// Per provider, contracts by effective date.
    contracts: HashMap<String, BTreeMap<Date, ContractUpdated>>,
    auths: HashMap<String, Auth>,
    /// Who requested each authorization (the gateway shows a provider its own).
    auth_requesters: HashMap<String, String>,
    /// Per member, authorization ids in arrival order.
    member_auths: HashMap<String, Vec<String>>,
    members_met: HashMap<(Name, i32), Accumulators>,
    families_met: HashMap<(Name, i32), Met>,
    /// Lines of standing claims, to their claim.
    duplicates: HashMap<DuplicateKey, std::sync::Arc<str>>,
    claims: HashMap<String, Standing>,
    /// Per decided claim, where it stands.
    sagas: HashMap<String, ClaimState>,
    seen: crate::runtime::seen::Seen,
    /// Claims pended for an authorization not decided yet, by the authorization.
    pended: HashMap<String, Vec<ClaimSubmitted>>,
}

/// One line's figures, before they become an [`AdjudicatedLine`].
#[derive(Debug, Default, Clone)]
struct LineFigures {
    allowed: Idr,
    deductible: Idr,
    copay: Idr,
    coinsurance: Idr,
    plan_paid: Idr,
    adjustments: Vec<Adjustment>,
}

fn adjustment(group: AdjustmentGroup, carc: &str, amount: Idr) -> Adjustment {
    Adjustment { group, carc: carc.to_owned(), amount_idr: amount }
}

/// A line denied in full: its whole charge adjusted under `group`/`carc`.
fn denied_line(line: &ClaimLine, group: AdjustmentGroup, carc: &str) -> AdjudicatedLine {
    let billed = line.charge_amount_idr.max(Idr(0));
    AdjudicatedLine {
        line_number: line.line_number,
        billed_idr: line.charge_amount_idr,
        allowed_idr: Idr(0),
        deductible_idr: Idr(0),
        copay_idr: Idr(0),
        coinsurance_idr: Idr(0),
        plan_paid_idr: Idr(0),
        adjustments: vec![adjustment(group, carc, billed)],
    }
}

/// What is left under each limit when a line is priced.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Deductible left (individual and family, whichever is less).
    pub deductible: Idr,
    /// Out-of-pocket room left (individual and family, whichever is less).
    pub oop: Idr,
    /// Annual limit left.
    pub annual_limit: Idr,
}

/// A line of a decision's trace (or an event id), built piece by piece: the amounts appended
/// without the formatting machinery (`format!` of the two lines every priced line writes was a
/// fifth of the sequencer's time end to end).
struct Text(String);

impl Text {
    fn new() -> Self {
        Text(String::with_capacity(256))
    }

    fn s(mut self, text: &str) -> Self {
        self.0.push_str(text);
        self
    }

    fn idr(mut self, amount: Idr) -> Self {
        amount.push_to(&mut self.0);
        self
    }

    /// An integer, without the formatting machinery.
    fn n(mut self, n: impl itoa::Integer) -> Self {
        self.0.push_str(itoa::Buffer::new().format(n));
        self
    }

    /// A date, `YYYY-MM-DD`.
    fn date(mut self, date: arus_schemas::time::Date) -> Self {
        date.push_to(&mut self.0);
        self
    }
}

/// Prices one line: `billed`, the contracted amount for its units (`None` out of network),
/// whether a copay applies, the coinsurance rate in basis points, and the room left; the
/// line's figures and adjustments. Pure: the worked examples of the tests run through it.
fn price(billed: Idr, contracted: Option<Idr>, copay: Idr, coinsurance_bp: i32, room: Room) -> LineFigures {
    let mut figures = LineFigures::default();
    let allowed = contracted.map_or(billed, |c| billed.min(c));
    figures.allowed = allowed;
    if billed > allowed {
        figures.adjustments.push(adjustment(AdjustmentGroup::CO, "45", billed - allowed));
    }
    let mut oop_room = room.oop;
    let deductible = allowed.min(room.deductible).min(oop_room);
    oop_room -= deductible;
    let copay = copay.min(allowed - deductible).min(oop_room);
    oop_room -= copay;
    let rest = allowed - deductible - copay;
    let coinsurance = rest.apply_bp(coinsurance_bp).min(oop_room);
    let plan_share = rest - coinsurance;
    let plan_paid = plan_share.min(room.annual_limit);
    let over_limit = plan_share - plan_paid;
    for (carc, amount) in [("1", deductible), ("3", copay), ("2", coinsurance), ("119", over_limit)] {
        if amount > Idr(0) {
            figures.adjustments.push(adjustment(AdjustmentGroup::PR, carc, amount));
        }
    }
    figures.deductible = deductible;
    figures.copay = copay;
    figures.coinsurance = coinsurance;
    figures.plan_paid = plan_paid;
    figures
}

/// The worked example's arithmetic, public for the tests and the docs: a line of `billed`
/// with `contracted`, no copay, `coinsurance_bp`; its deductible, coinsurance, plan paid and
/// contractual adjustment.
pub fn price_line(
    billed: Idr,
    contracted: Option<Idr>,
    copay: Idr,
    coinsurance_bp: i32,
    room: Room,
) -> AdjudicatedLine {
    let f = price(billed, contracted, copay, coinsurance_bp, room);
    AdjudicatedLine {
        line_number: 1,
        billed_idr: billed,
        allowed_idr: f.allowed,
        deductible_idr: f.deductible,
        copay_idr: f.copay,
        coinsurance_idr: f.coinsurance,
        plan_paid_idr: f.plan_paid,
        adjustments: f.adjustments,
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Adjudicator {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A member's accumulators for a year.
    pub fn accumulators(&self, member_id: &str, year: i32) -> Option<&Accumulators> {
        self.members_met.get(&(self.names.get(member_id)?, year))
    }

    /// Where a decided claim stands in the saga.
    pub fn claim_state(&self, claim_id: &str) -> Option<&ClaimState> {
        self.sagas.get(claim_id)
    }

    /// The member and year whose accumulators a claim's payment counts in.
    pub fn payment_year(&self, claim_id: &str) -> Option<(&str, i32)> {
        let standing = self.claims.get(claim_id)?;
        Some((self.names.name(standing.member_id), *standing.added.keys().next()?))
    }

    /// Where an authorization stands.
    pub fn authorization(&self, auth_id: &str) -> Option<AuthView> {
        let provider_id = self.auth_requesters.get(auth_id).cloned();
        Some(match self.auths.get(auth_id)? {
            Auth::Requested { member_id } => AuthView {
                member_id: member_id.clone(),
                status: "REQUESTED".to_owned(),
                provider_id: provider_id.clone(),
                procedure_code: None,
                approved_units: None,
                used_units: 0,
                valid_from: None,
                valid_to: None,
            },
            Auth::Approved { approval, used_units } => AuthView {
                member_id: approval.member_id.clone(),
                status: "APPROVED".to_owned(),
                provider_id: provider_id.clone(),
                procedure_code: Some(approval.procedure_code.clone()),
                approved_units: Some(approval.approved_units),
                used_units: *used_units,
                valid_from: Some(approval.valid_from),
                valid_to: Some(approval.valid_to),
            },
            Auth::Denied { member_id } => AuthView {
                member_id: member_id.clone(),
                status: "DENIED".to_owned(),
                provider_id: provider_id.clone(),
                procedure_code: None,
                approved_units: None,
                used_units: 0,
                valid_from: None,
                valid_to: None,
            },
        })
    }

    /// Keeps event ids `horizon_ms` of event time behind the newest (an older event is
    /// refused, as one that cannot be told from a replay).
    pub fn set_dedup_horizon(&mut self, horizon_ms: i64) {
        self.seen.set_horizon(horizon_ms);
    }

    /// How long event ids are kept (ms of event time).
    pub fn dedup_horizon(&self) -> i64 {
        self.seen.horizon_ms()
    }

    /// Event time has reached `now` (ms): event ids older than the horizon behind it go, and
    /// events that old are refused from now on (the job says so as it folds, in event-time
    /// order; an adjudicator never told keeps every id).
    pub fn advance(&mut self, now: i64) {
        self.seen.advance(now);
    }

    /// Event ids kept for dropping duplicates, and events refused for being older than the
    /// horizon.
    pub fn dedup_ids(&self) -> (usize, u64) {
        (self.seen.len(), self.seen.expired())
    }

    /// Applies one event; the events it decides, in order. An event seen before (by id)
    /// decides nothing again.
    pub fn apply(&mut self, event: &Event) -> Vec<Event> {
        if !self.seen.first(event.event_id(), event.event_time().0) {
            return Vec::new();
        }
        match event {
            Event::MemberCreated(e) => {
                let (member, family) = (self.names.intern(&e.member_id), self.names.intern(&e.family_id));
                self.families.insert(member, family);
                self.eligibility.apply(event);
            }
            Event::MemberUpdated(_) | Event::CoverageChanged(_) | Event::PlanCreated(_) | Event::BenefitUpdated(_) => {
                self.eligibility.apply(event);
            }
            Event::ProviderOnboarded(e) => {
                self.providers.insert(e.provider_id.clone(), e.network_status);
            }
            Event::ContractUpdated(e) => {
                self.contracts.entry(e.provider_id.clone()).or_default().insert(e.effective_date, e.clone());
            }
            Event::AuthRequested(e) => {
                self.auths.entry(e.auth_id.clone()).or_insert(Auth::Requested { member_id: e.member_id.clone() });
                self.auth_requesters.entry(e.auth_id.clone()).or_insert_with(|| e.provider_id.clone());
                self.member_auths.entry(e.member_id.clone()).or_default().push(e.auth_id.clone());
            }
            Event::AuthApproved(e) => {
                if !matches!(self.auths.get(&e.auth_id), Some(Auth::Requested { .. })) {
                    self.member_auths.entry(e.member_id.clone()).or_default().push(e.auth_id.clone());
                }
                self.auths.insert(e.auth_id.clone(), Auth::Approved { approval: e.clone(), used_units: 0 });
                return self.decide_again(&e.auth_id, &e.event_id, e.event_time);
            }
            Event::AuthDenied(e) => {
                if !matches!(self.auths.get(&e.auth_id), Some(Auth::Requested { .. })) {
                    self.member_auths.entry(e.member_id.clone()).or_default().push(e.auth_id.clone());
                }
                self.auths.insert(e.auth_id.clone(), Auth::Denied { member_id: e.member_id.clone() });
                return self.decide_again(&e.auth_id, &e.event_id, e.event_time);
            }
            Event::ClaimSubmitted(claim) => return self.submitted(claim),
            Event::PaymentCompleted(e) => {
                let Some(standing) = self.claims.get_mut(&e.claim_id) else { return Vec::new() };
                let paid = ClaimPaid {
                    event_id: format!("paid:{}", e.event_id),
                    event_time: e.event_time,
                    claim_id: e.claim_id.clone(),
                    payment_id: e.payment_id.clone(),
                    member_id: self.names.name(standing.member_id).to_owned(),
                    provider_id: self.names.name(standing.provider_id).to_owned(),
                    amount_idr: e.amount_idr,
                };
                // Paid to date, in the year the claim's decision counted in — for a claim that
                // stands; a payment that completes after its claim was reversed is money to
                // recover, not paid-to-date.
                let mut update = None;
                if !standing.reversed {
                    standing.paid += e.amount_idr;
                    if let Some(year) = standing.added.keys().next().copied()
                        && let Some(acc) = self.members_met.get_mut(&(standing.member_id, year))
                    {
                        acc.paid_idr += e.amount_idr;
                        acc.version += 1;
                        update = Some(accumulator_event(acc, &e.event_id, e.event_time, &e.claim_id));
                    }
                }
                let reversed = standing.reversed;
                if let Some(view) = self.sagas.get_mut(&e.claim_id) {
                    if reversed {
                        let note = format!(
                            "payment {} of {} completed after the reversal: to be recovered from the provider",
                            e.payment_id, e.amount_idr
                        );
                        view.reversal = Some(view.reversal.take().map_or(note.clone(), |r| format!("{r}; {note}")));
                    } else {
                        view.state = "PAID".to_owned();
                    }
                    view.payment_id = Some(e.payment_id.clone());
                    view.version += 1;
                }
                // The paid-to-date, on accumulator.updates too (the Cost_Accumulator).
                return std::iter::once(Event::ClaimPaid(paid)).chain(update.map(Event::AccumulatorUpdated)).collect();
            }
            Event::PaymentFailed(e) if e.retryable => {
                if let Some(view) = self.sagas.get_mut(&e.claim_id)
                    && view.state != "REVERSED"
                {
                    view.state = "PAYMENT_FAILED".to_owned();
                    view.version += 1;
                }
            }
            Event::PaymentFailed(e) => {
                let reason = format!("payment {} failed: {}", e.payment_id, e.failure_code);
                return self.reverse(&e.claim_id, &e.event_id, e.event_time, &reason);
            }
            _ => {}
        }
        Vec::new()
    }

    /// The claims pended for an authorization, decided again now that it is decided: what
    /// their first decisions added is taken back, and each gets a new decision (its own event
    /// id) replacing the pended one.
    fn decide_again(&mut self, auth_id: &str, cause: &str, at: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        for claim in self.pended.remove(auth_id).unwrap_or_default() {
            if self.claims.get(&claim.claim_id).is_none_or(|s| s.reversed) {
                continue; // replaced or voided meanwhile
            }
            out.extend(self.reverse(
                &claim.claim_id,
                cause,
                at,
                &format!("decided again: authorization {auth_id} decided"),
            ));
            let (mut adjudicated, updates) = self.decide(&claim, &format!("{}:{cause}", claim.event_id));
            adjudicated.event_id = format!("adj:{}:{cause}", claim.event_id);
            adjudicated.trace.insert(0, format!("decided again: authorization {auth_id} was decided ({cause})"));
            if let Some(view) = self.sagas.get_mut(&claim.claim_id) {
                view.decisions += 1;
                view.state = "ADJUDICATED".to_owned();
                view.reversal = None;
                view.version += 1;
            }
            out.push(Event::ClaimAdjudicated(adjudicated));
            out.extend(updates);
        }
        out
    }

    /// Takes back what a standing claim added: accumulators restored (one update per year it
    /// touched), its lines and authorization units freed.
    fn reverse(&mut self, claim_id: &str, cause: &str, at: Timestamp, reason: &str) -> Vec<Event> {
        let Some(standing) = self.claims.get_mut(claim_id) else { return Vec::new() };
        if standing.reversed {
            return Vec::new();
        }
        standing.reversed = true;
        let standing = standing.clone();
        for key in &standing.lines {
            if self.duplicates.get(key).is_some_and(|c| **c == *claim_id) {
                self.duplicates.remove(key);
            }
        }
        for (auth_id, units) in &standing.auth_units {
            if let Some(Auth::Approved { used_units, .. }) = self.auths.get_mut(auth_id) {
                *used_units -= units;
            }
        }
        let mut out = Vec::new();
        // What was paid on it comes out of paid-to-date (the year it counted in).
        let paid_year = standing.added.keys().next().copied();
        for (year, added) in &standing.added {
            let member = self.members_met.entry((standing.member_id, *year)).or_default();
            if Some(*year) == paid_year {
                member.paid_idr -= standing.paid;
            }
            member.member.sub(*added);
            let family = self.families_met.entry((standing.family_id, *year)).or_default();
            family.sub(*added);
            member.family = *family;
            member.version += 1;
            out.push(Event::AccumulatorUpdated(accumulator_event(member, cause, at, claim_id)));
        }
        if let Some(view) = self.sagas.get_mut(claim_id) {
            view.state = "REVERSED".to_owned();
            view.reversal = Some(if standing.paid.0 > 0 {
                format!("{reason}; its payment of {} is to be recovered from the provider", standing.paid)
            } else {
                reason.to_owned()
            });
            view.version += 1;
        }
        out
    }

    fn submitted(&mut self, claim: &ClaimSubmitted) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(original) = &claim.original_claim_id {
            out.extend(self.reverse(
                original,
                &claim.event_id,
                claim.event_time,
                &format!("replaced by {}", claim.claim_id),
            ));
            if claim.lines.is_empty() {
                return out; // a void
            }
        }
        if self.sagas.contains_key(&claim.claim_id) {
            return out; // a claim id is decided once
        }
        let (adjudicated, updates) = self.decide(claim, &claim.event_id);
        self.sagas.insert(claim.claim_id.clone(), ClaimState::decided());
        out.push(Event::ClaimAdjudicated(adjudicated));
        out.extend(updates);
        out
    }

    /// Decides a claim: the decision, and one accumulator update per year it touched (their
    /// ids derived from `cause`: the claim's event, or what made it be decided again).
    fn decide(&mut self, claim: &ClaimSubmitted, cause: &str) -> (ClaimAdjudicated, Vec<Event>) {
        let mut trace = Vec::new();
        let submitted = claim.event_time.date();
        let member_id = &claim.member_id;
        let member = self.names.intern(member_id);
        let family = self.families.get(&member).copied().unwrap_or(member);
        let provider = self.names.intern(&claim.provider_id);
        let claim_id: std::sync::Arc<str> = claim.claim_id.as_str().into();
        // Claim-level checks: a claim that fails them has every line denied.
        let mut claim_denial: Option<(&str, String)> = None;
        if !valid_id(&claim.claim_id) || !valid_id(member_id) || !valid_id(&claim.provider_id) {
            claim_denial = Some(("16", "a claim, member or provider id is missing or malformed".to_owned()));
        } else if claim.lines.is_empty() {
            claim_denial = Some(("16", "no service lines".to_owned()));
        } else if claim.currency != "IDR" {
            claim_denial = Some(("16", format!("currency {} is not IDR", claim.currency)));
        } else if claim.lines.iter().map(|l| l.charge_amount_idr).sum::<Idr>() != claim.total_charge_idr {
            claim_denial = Some(("16", "line charges do not add up to the total charge".to_owned()));
        } else if !self.providers.contains_key(&claim.provider_id) {
            claim_denial = Some(("16", format!("unknown provider {}", claim.provider_id)));
        }
        let mut lines = Vec::with_capacity(claim.lines.len());
        let mut added: BTreeMap<i32, Met> = BTreeMap::new();
        let mut keys = Vec::new();
        let mut auth_units: Vec<(String, i32)> = Vec::new();
        let (mut plan, mut plan_version, mut used_auth) = (None::<String>, None::<i32>, None::<String>);
        let mut pended = false;
        let mut seen_in_claim: Vec<DuplicateKey> = Vec::new(); // a claim has a few lines
        for line in &claim.lines {
            let n = line.line_number;
            if let Some((carc, why)) = &claim_denial {
                trace.push(format!("line {n}: denied CO-{carc}: {why}"));
                lines.push(denied_line(line, AdjustmentGroup::CO, carc));
                continue;
            }
            // 1. front end.
            let invalid = if line.charge_amount_idr <= Idr(0) {
                Some("the charge is not positive")
            } else if line.units <= 0 {
                Some("units are not positive")
            } else if line.service_date > submitted {
                Some("the service date is after the submission")
            } else if !valid_id(&line.procedure_code) {
                Some("the procedure code is missing or malformed")
            } else {
                None
            };
            if let Some(why) = invalid {
                trace.push(format!("line {n}: denied CO-16: {why}"));
                lines.push(denied_line(line, AdjustmentGroup::CO, "16"));
                continue;
            }
            // 2. duplicates.
            let key: DuplicateKey = (
                member,
                provider,
                line.service_date,
                self.names.intern(&line.procedure_code),
                line.units,
                line.charge_amount_idr.0,
            );
            if let Some(earlier) = self.duplicates.get(&key) {
                trace.push(format!("line {n}: denied CO-18: duplicate of a line of claim {earlier}"));
                lines.push(denied_line(line, AdjustmentGroup::CO, "18"));
                continue;
            }
            if seen_in_claim.contains(&key) {
                trace.push(format!("line {n}: denied CO-18: duplicate of an earlier line of this claim"));
                lines.push(denied_line(line, AdjustmentGroup::CO, "18"));
                continue;
            }
            seen_in_claim.push(key);
            // 3. eligibility on the date of service.
            let plan_id = match self.eligibility.covered_under(member_id, line.service_date) {
                Ok(plan_id) => plan_id,
                Err(not) => {
                    let why = not.reason;
                    let carc = match not.status {
                        EligibilityStatus::NOT_YET_COVERED => "26",
                        EligibilityStatus::TERMINATED => "27",
                        EligibilityStatus::UNKNOWN_MEMBER | EligibilityStatus::ACTIVE => "31",
                    };
                    trace.push(format!("line {n}: denied CO-{carc}: not eligible on {}: {why}", line.service_date));
                    lines.push(denied_line(line, AdjustmentGroup::CO, carc));
                    continue;
                }
            };
            let Some((from, version, benefits)) = self.eligibility.plan_version(&plan_id, line.service_date) else {
                trace
                    .push(format!("line {n}: pended: no benefits of plan {plan_id} in force on {}", line.service_date));
                pended = true;
                lines.push(pended_line(line));
                continue;
            };
            // What the line needs of the benefits, taken while they are borrowed (no clone).
            let excluded = benefits.excluded_procedures.contains(&line.procedure_code);
            let needs_auth = benefits.prior_auth_procedures.contains(&line.procedure_code);
            let benefits = Terms::of(benefits);
            if plan.is_none() {
                trace.push(
                    Text::new()
                        .s("plan ")
                        .s(&plan_id)
                        .s(" version ")
                        .n(version)
                        .s(" (benefits from ")
                        .date(from)
                        .s(")")
                        .0,
                );
                plan = Some(plan_id.clone());
                plan_version = Some(version);
            }
            // 4. timely filing, exclusions, network.
            let filed_after = submitted.days_since(line.service_date);
            if filed_after > TIMELY_FILING_DAYS {
                trace.push(format!(
                    "line {n}: denied CO-29: filed {filed_after} days after service (limit {TIMELY_FILING_DAYS})"
                ));
                lines.push(denied_line(line, AdjustmentGroup::CO, "29"));
                continue;
            }
            if excluded {
                trace.push(format!("line {n}: denied CO-96: {} is excluded by the plan", line.procedure_code));
                lines.push(denied_line(line, AdjustmentGroup::CO, "96"));
                continue;
            }
            let contract = self
                .contracts
                .get(&claim.provider_id)
                .and_then(|c| c.range(..=line.service_date).next_back())
                .map(|(_, c)| c)
                .filter(|c| c.end_date.is_none_or(|end| end >= line.service_date));
            let in_network = contract
                .map_or(self.providers.get(&claim.provider_id) == Some(&NetworkStatus::IN_NETWORK), |c| {
                    c.network_status == NetworkStatus::IN_NETWORK
                });
            let coinsurance_bp =
                if in_network { benefits.coinsurance_bp } else { benefits.out_of_network_coinsurance_bp };
            if !in_network && coinsurance_bp >= 10_000 {
                trace.push(format!(
                    "line {n}: denied CO-204: out of network, and the plan covers nothing out of network"
                ));
                lines.push(denied_line(line, AdjustmentGroup::CO, "204"));
                continue;
            }
            // 5. prior authorization.
            if needs_auth {
                match self.authorization_for(claim, line) {
                    AuthCheck::Approved(auth_id) => {
                        if let Some(Auth::Approved { used_units, approval }) = self.auths.get_mut(&auth_id) {
                            *used_units += line.units;
                            trace.push(format!(
                                "line {n}: authorization {auth_id}: {} of {} units used",
                                used_units, approval.approved_units
                            ));
                        }
                        auth_units.push((auth_id.clone(), line.units));
                        used_auth.get_or_insert(auth_id);
                    }
                    AuthCheck::Exceeded(auth_id, left) => {
                        trace.push(format!(
                            "line {n}: denied CO-198: authorization {auth_id} has {left} units left, {} billed",
                            line.units
                        ));
                        lines.push(denied_line(line, AdjustmentGroup::CO, "198"));
                        continue;
                    }
                    AuthCheck::Undecided(auth_id) => {
                        trace.push(format!("line {n}: pended: authorization {auth_id} is not decided yet"));
                        let waiting = self.pended.entry(auth_id).or_default();
                        if !waiting.iter().any(|c| c.claim_id == claim.claim_id) {
                            waiting.push(claim.clone());
                        }
                        pended = true;
                        lines.push(pended_line(line));
                        continue;
                    }
                    AuthCheck::Absent => {
                        trace.push(format!(
                            "line {n}: denied CO-197: {} needs prior authorization, none approved",
                            line.procedure_code
                        ));
                        lines.push(denied_line(line, AdjustmentGroup::CO, "197"));
                        continue;
                    }
                }
            }
            // 6–8. pricing and the member's share.
            let contracted = if in_network {
                contract.and_then(|c| {
                    c.fee_schedule
                        .iter()
                        .find(|f| f.procedure_code == line.procedure_code)
                        .map(|f| Idr(f.contracted_amount_idr.0 * i64::from(line.units)))
                })
            } else {
                None
            };
            let year = line.service_date.year();
            let member_met = self.members_met.get(&(member, year)).map(|a| a.member).unwrap_or_default();
            let family_met = self.families_met.get(&(family, year)).copied().unwrap_or_default();
            let room = room(&benefits, member_met, family_met);
            let copay = if is_office_visit(&line.procedure_code) { benefits.copay_idr } else { Idr(0) };
            let figures = price(line.charge_amount_idr, contracted, copay, coinsurance_bp, room);
            let text = Text::new().s("line ").n(n).s(": allowed ").idr(figures.allowed);
            let text = match contracted {
                Some(c) => text.s(" (contracted ").idr(c).s(" for ").n(line.units).s(" units)"),
                None if in_network => text.s(" (no contracted fee: billed)"),
                None => text.s(" (out of network: billed)"),
            };
            trace.push(
                text.s("; before: deductible met ")
                    .idr(member_met.deductible)
                    .s(" (family ")
                    .idr(family_met.deductible)
                    .s("), out-of-pocket met ")
                    .idr(member_met.oop)
                    .s(" (family ")
                    .idr(family_met.oop)
                    .s("), plan paid ")
                    .idr(member_met.plan_paid)
                    .s("; deductible ")
                    .idr(figures.deductible)
                    .s(", copay ")
                    .idr(figures.copay)
                    .s(", coinsurance ")
                    .idr(figures.coinsurance)
                    .s(" at ")
                    .n(coinsurance_bp)
                    .s(" bp, plan pays ")
                    .idr(figures.plan_paid)
                    .0,
            );
            let share = Met {
                deductible: figures.deductible,
                oop: figures.deductible + figures.copay + figures.coinsurance,
                plan_paid: figures.plan_paid,
            };
            self.add_met((member, member_id), family, &plan_id, year, share);
            added.entry(year).or_default().add(share);
            self.duplicates.insert(key, claim_id.clone());
            keys.push(key);
            lines.push(AdjudicatedLine {
                line_number: n,
                billed_idr: line.charge_amount_idr,
                allowed_idr: figures.allowed,
                deductible_idr: figures.deductible,
                copay_idr: figures.copay,
                coinsurance_idr: figures.coinsurance,
                plan_paid_idr: figures.plan_paid,
                adjustments: figures.adjustments,
            });
        }
        let approved = lines.iter().filter(|l| l.allowed_idr > Idr(0)).count();
        let status = if pended {
            ClaimStatus::PENDED
        } else if approved == lines.len() && approved > 0 {
            ClaimStatus::APPROVED
        } else if approved > 0 {
            ClaimStatus::PARTIALLY_APPROVED
        } else {
            ClaimStatus::DENIED
        };
        // One accumulator update per year the claim touched.
        let mut updates = Vec::new();
        for year in added.keys() {
            if let Some(acc) = self.members_met.get(&(member, *year)) {
                let mut acc = acc.clone();
                acc.family = self.families_met.get(&(family, *year)).copied().unwrap_or_default();
                trace.push(
                    Text::new()
                        .s("after, ")
                        .n(*year)
                        .s(": deductible met ")
                        .idr(acc.member.deductible)
                        .s(" (family ")
                        .idr(acc.family.deductible)
                        .s("), out-of-pocket met ")
                        .idr(acc.member.oop)
                        .s(" (family ")
                        .idr(acc.family.oop)
                        .s("), plan paid ")
                        .idr(acc.member.plan_paid)
                        .0,
                );
                updates.push(Event::AccumulatorUpdated(accumulator_event(
                    &acc,
                    cause,
                    claim.event_time,
                    &claim.claim_id,
                )));
            }
        }
        self.claims.insert(
            claim.claim_id.clone(),
            Standing {
                member_id: member,
                family_id: family,
                provider_id: provider,
                added,
                lines: keys,
                auth_units,
                reversed: false,
                paid: Idr(0),
            },
        );
        let sum = |f: fn(&AdjudicatedLine) -> Idr| lines.iter().map(f).sum::<Idr>();
        let adjudicated = ClaimAdjudicated {
            event_id: ["adj:", &claim.event_id].concat(),
            event_time: claim.event_time,
            claim_id: claim.claim_id.clone(),
            member_id: member_id.clone(),
            provider_id: claim.provider_id.clone(),
            status,
            plan_id: plan,
            plan_version,
            auth_id: used_auth,
            total_billed_idr: sum(|l| l.billed_idr),
            total_allowed_idr: sum(|l| l.allowed_idr),
            total_member_share_idr: sum(|l| l.deductible_idr + l.copay_idr + l.coinsurance_idr),
            total_plan_paid_idr: sum(|l| l.plan_paid_idr),
            lines,
            trace,
        };
        (adjudicated, updates)
    }

    fn add_met(&mut self, (member, member_id): (Name, &str), family: Name, plan_id: &str, year: i32, share: Met) {
        let family_met = self.families_met.entry((family, year)).or_default();
        family_met.add(share);
        let family_met = *family_met;
        let family_id = self.names.name(family);
        let acc = self.members_met.entry((member, year)).or_insert_with(|| Accumulators {
            member_id: member_id.to_owned(),
            family_id: family_id.to_owned(),
            year,
            ..Accumulators::default()
        });
        if acc.plan_id != plan_id {
            acc.plan_id = plan_id.to_owned();
        }
        acc.member.add(share);
        acc.family = family_met;
        acc.version += 1;
    }

    /// The authorization covering a line: the one the claim cites, else the member's
    /// approved ones for the procedure and date, in the order they came.
    fn authorization_for(&self, claim: &ClaimSubmitted, line: &ClaimLine) -> AuthCheck {
        let candidates: Vec<&String> = match &claim.auth_id {
            Some(id) => vec![id],
            None => self.member_auths.get(&claim.member_id).map(|ids| ids.iter().collect()).unwrap_or_default(),
        };
        let mut best = AuthCheck::Absent;
        for id in candidates {
            match self.auths.get(id) {
                Some(Auth::Approved { approval, used_units })
                    if approval.member_id == claim.member_id
                        && approval.procedure_code == line.procedure_code
                        && approval.valid_from <= line.service_date
                        && line.service_date <= approval.valid_to =>
                {
                    let left = approval.approved_units - used_units;
                    if left >= line.units {
                        return AuthCheck::Approved(id.clone());
                    }
                    best = AuthCheck::Exceeded(id.clone(), left);
                }
                Some(Auth::Requested { member_id })
                    if *member_id == claim.member_id && matches!(best, AuthCheck::Absent) =>
                {
                    best = AuthCheck::Undecided(id.clone());
                }
                Some(Auth::Denied { .. }) | Some(Auth::Requested { .. }) | Some(Auth::Approved { .. }) | None => {}
            }
        }
        best
    }
}

enum AuthCheck {
    Approved(String),
    Exceeded(String, i32),
    Undecided(String),
    Absent,
}

/// A line held for information still to come: nothing allowed, nothing adjusted yet.
fn pended_line(line: &ClaimLine) -> AdjudicatedLine {
    AdjudicatedLine {
        line_number: line.line_number,
        billed_idr: line.charge_amount_idr,
        allowed_idr: Idr(0),
        deductible_idr: Idr(0),
        copay_idr: Idr(0),
        coinsurance_idr: Idr(0),
        plan_paid_idr: Idr(0),
        adjustments: Vec::new(),
    }
}

/// The amounts and rates of a benefit version a line is priced with.
#[derive(Debug, Clone, Copy)]
struct Terms {
    deductible_individual_idr: Idr,
    deductible_family_idr: Idr,
    oop_max_individual_idr: Idr,
    oop_max_family_idr: Idr,
    copay_idr: Idr,
    coinsurance_bp: i32,
    out_of_network_coinsurance_bp: i32,
    annual_limit_idr: Idr,
}

impl Terms {
    fn of(b: &Benefits) -> Self {
        Terms {
            deductible_individual_idr: b.deductible_individual_idr,
            deductible_family_idr: b.deductible_family_idr,
            oop_max_individual_idr: b.oop_max_individual_idr,
            oop_max_family_idr: b.oop_max_family_idr,
            copay_idr: b.copay_idr,
            coinsurance_bp: b.coinsurance_bp,
            out_of_network_coinsurance_bp: b.out_of_network_coinsurance_bp,
            annual_limit_idr: b.annual_limit_idr,
        }
    }
}

/// What is left under each limit.
fn room(benefits: &Terms, member: Met, family: Met) -> Room {
    Room {
        deductible: benefits
            .deductible_individual_idr
            .saturating_sub(member.deductible)
            .min(benefits.deductible_family_idr.saturating_sub(family.deductible)),
        oop: benefits
            .oop_max_individual_idr
            .saturating_sub(member.oop)
            .min(benefits.oop_max_family_idr.saturating_sub(family.oop)),
        annual_limit: benefits.annual_limit_idr.saturating_sub(member.plan_paid),
    }
}

fn accumulator_event(acc: &Accumulators, cause: &str, at: Timestamp, claim_id: &str) -> AccumulatorUpdated {
    AccumulatorUpdated {
        // The claim too: one event can both take a claim back and decide the one replacing it.
        event_id: Text(String::with_capacity(cause.len() + claim_id.len() + acc.member_id.len() + 12))
            .s("acc:")
            .s(cause)
            .s(":")
            .s(claim_id)
            .s(":")
            .s(&acc.member_id)
            .s(":")
            .n(acc.year)
            .0,
        event_time: at,
        member_id: acc.member_id.clone(),
        family_id: acc.family_id.clone(),
        plan_id: acc.plan_id.clone(),
        plan_year: acc.year,
        deductible_met_idr: acc.member.deductible,
        oop_met_idr: acc.member.oop,
        family_deductible_met_idr: acc.family.deductible,
        family_oop_met_idr: acc.family.oop,
        plan_paid_to_date_idr: acc.member.plan_paid,
        cause_event_id: cause.to_owned(),
        claim_id: Some(claim_id.to_owned()),
        version: acc.version,
        paid_to_date_idr: acc.paid_idr,
    }
}
