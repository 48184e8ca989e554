//! Fraud rules over claims, as a fold over events: each rule keeps the state of its window
//! (a provider's or a member's day of service) and raises a `FraudAlert` naming the rule, the
//! pattern, the features behind it and the claims involved — something an analyst can act on.
//!
//! | rule | pattern | window | fires when |
//! |---|---|---|---|
//! | `R-DUP` | duplicate | member × provider × day | a claim repeats an earlier one: the same procedures and units, the total within 5% |
//! | `R-UPCODE` | upcoding | claim | a level-5 office visit (99215) for a minor respiratory diagnosis (J00, J02, J06, J20) |
//! | `R-UNBUNDLE` | unbundling | claim | 4 or more components of the basic metabolic panel billed separately |
//! | `R-PHANTOM` | phantom_billing | member | a service on a day the member was not covered (ended, or died) — checked when the claim comes, and again when a termination or death is recorded later |
//! | `R-UNITS` | excessive_units | claim line | one timed procedure billed for more than 2 hours for one member on one day |
//! | `R-DAY` | impossible_day | provider × day | a provider's timed services add up to more than 24 hours on one day |
//! | `R-CARD` | card_sharing | member × day | the member has office visits the same day at facilities 500 km or more apart |
//!
//! Every claim also goes into event-time windows by its submission time ([`crate::fraud::windows`]):
//! its provider's 5-minute tumbling window, and the 1-day windows (hopping by 5 minutes) of its
//! provider, its member and its provider's peer group. A claim waits in its 5-minute window; when
//! the window closes (the job's watermark passes its end) it comes out as a [`Step::Claim`] with
//! the rules' alerts about it and its [`FEATURES`] — its own, then its windows' — for the fraud
//! job's model to score in one batch per close (`fraud::job`).
//!
//! The same events in the same order give the same alerts (ids derived from the rule and the
//! claim). Corrections are followed up, not left standing:
//! - a claim taken back later (a correction or a void naming it in `original_claim_id`) has its
//!   alerts withdrawn — the same alert again, `WITHDRAWN`, saying why — and leaves its windows;
//! - a claim coming after its window closed (late) is scored at once, and the claims of the
//!   window it joins are scored again, as are those of a window a claim is taken back from: a
//!   model alert follows the new score (raised, or withdrawn);
//! - a phantom-billing alert contradicted by coverage reinstated back over its day is withdrawn.

pub mod job;
pub mod model;
pub mod spec;
pub mod windows;

use std::collections::BTreeMap;
use std::sync::Arc;

use arus_schemas::events::{
    AlertStatus, ClaimSubmitted, EligibilityStatus, Feature, FraudAlert, RuleHit, Severity, SubjectType,
};
use arus_schemas::{Date, Event, Timestamp};

use foldhash::{HashMap, HashSet};

use crate::eligibility::EligibilityState;
use crate::fraud::windows::{
    Contribution, DAY_SLOTS as DAY, HIGH_SEVERITY, SLOT_MS, WINDOW_FEATURES, Windows, slot_of,
};

/// Minutes of timed services a provider can bill in a day.
const DAY_MINUTES: i64 = 24 * 60;
/// Minutes of one timed procedure for one member on one day past which units are excessive.
const LINE_MINUTES: i32 = 120;
/// Facilities at least this far apart on one day: one card, two people.
const CARD_KM: i64 = 500;
/// Basic metabolic panel components: billed one by one, unbundling.
const BMP_COMPONENTS: [&str; 6] = ["82947", "84295", "82310", "84132", "82565", "84520"];

/// Kilometres between two points in microdegrees, by the equirectangular approximation with
/// cos(latitude) taken as 1 — within 2% across Indonesia (11° S to 6° N), integers only.
pub fn distance_km(a: (i32, i32), b: (i32, i32)) -> i64 {
    let dlat = i128::from(a.0) - i128::from(b.0);
    let dlon = i128::from(a.1) - i128::from(b.1);
    let micro_degrees = (dlat * dlat + dlon * dlon).unsigned_abs().isqrt();
    // 111.2 km per degree.
    (micro_degrees * 1_112 / 10_000_000) as i64
}

/// How many of [`FEATURES`] are the claim's own (known when it comes); the rest are its
/// event-time windows' ([`WINDOW_FEATURES`], known when its window closes).
pub const CLAIM_FEATURES: usize = 12;

/// The claim's own features and its service day's, known when it comes.
const CLAIM_FEATURE_NAMES: [&str; CLAIM_FEATURES] = [
    "lines",
    "billed_idr",
    "max_units",
    "claim_minutes",
    "provider_day_minutes",
    "provider_day_claims",
    "member_day_visits",
    "member_day_max_km",
    "level5_minor_diagnosis",
    "panel_components",
    "days_uncovered",
    "repeats_earlier_claim",
];

/// The features of a claim in its windows, as the rules see them and a model scores them: the
/// claim's own and its service day's, then its event-time windows' ([`WINDOW_FEATURES`]).
pub const FEATURES: [&str; CLAIM_FEATURES + WINDOW_FEATURES.len()] = {
    let mut all = [""; CLAIM_FEATURES + WINDOW_FEATURES.len()];
    let mut i = 0;
    while i < CLAIM_FEATURES {
        all[i] = CLAIM_FEATURE_NAMES[i];
        i += 1;
    }
    while i < all.len() {
        all[i] = WINDOW_FEATURES[i - CLAIM_FEATURES];
        i += 1;
    }
    all
};

/// A claim's features, in [`FEATURES`] order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimFeatures {
    /// The claim.
    pub claim_id: String,
    /// The values.
    pub values: [i64; FEATURES.len()],
}

/// A claim as the duplicate rule remembers it: id, procedures and units (sorted), total.
type VisitClaim = (String, Vec<(String, i32)>, i64);

/// A claim whose 5-minute window has closed: the rules' alerts about it (to go out now, with a
/// model's score when there is one) and its features, windows included.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Closed {
    /// The claim.
    pub claim: Arc<ClaimSubmitted>,
    /// Its features.
    pub features: ClaimFeatures,
    /// The rules' alerts raised for it.
    pub alerts: Vec<Event>,
    /// It was scored before and its window has changed since (a late claim came into it, or
    /// one was taken back): its model alert is to be raised or withdrawn as the new score says.
    pub again: bool,
}

/// What the detector gives: an alert to go out as it is (a withdrawal, a claim found phantom
/// when coverage changed later), or a claim whose window closed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Step {
    /// An alert, ready.
    Alert(Event),
    /// A claim, ready to be scored.
    Claim(Closed),
}

/// Where a claim waits for its window to close: (slot, event time, event id).
type PendingKey = (i64, i64, String);

/// The fold's state (saved whole in a snapshot).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FraudDetector {
    eligibility: EligibilityState,
    /// Provider locations (microdegrees).
    providers: HashMap<String, (i32, i32)>,
    /// Provider peer groups (their type).
    peer_groups: HashMap<String, String>,
    /// The event-time windows.
    windows: Windows,
    /// Claims whose window is open.
    pending: BTreeMap<PendingKey, Closed>,
    /// Where each of them waits.
    pending_keys: HashMap<String, PendingKey>,
    /// Windows of slots before this one have closed.
    closed_below: Option<i64>,
    /// Claims of closed windows (a day's), for scoring again when a window changes.
    retained: BTreeMap<i64, Vec<(Arc<ClaimSubmitted>, ClaimFeatures)>>,
    /// Times each alert id has been raised (a raise after a withdrawal is a new event).
    revisions: HashMap<String, u32>,
    /// Per member, provider and day: earlier claims' ids, procedures and units, totals.
    claims_by_visit: HashMap<(String, String, Date), Vec<VisitClaim>>,
    /// Per provider and day: minutes of timed services and the claims, and whether alerted.
    provider_days: HashMap<(String, Date), (i64, Vec<String>, bool)>,
    /// Per member and day: claims and providers.
    member_days: HashMap<(String, Date), Vec<(String, String)>>,
    /// Per member: claims (id, day, provider, submission time) for later coverage checks.
    member_claims: HashMap<String, Vec<(String, Date, String)>>,
    /// Claims alerted as phantom billing.
    phantom: HashSet<String>,
    seen: crate::runtime::seen::Seen,
    /// Alerts standing, by the claim they were raised for (to withdraw them if it is taken back).
    raised: HashMap<String, Vec<FraudAlert>>,
}

fn feature(name: &str, value: i64) -> Feature {
    Feature { name: name.to_owned(), value: value as f64 }
}

/// The alert of a claim the rules let pass and a model scored high, over the claim's 5-minute
/// window: the features, the most important first (`order`: names by the model's importance).
pub fn model_alert(
    claim: &ClaimSubmitted,
    features: &ClaimFeatures,
    score: f64,
    model: (&str, &str),
    order: &[String],
) -> Event {
    let named: Vec<Feature> = FEATURES.iter().zip(features.values).map(|(name, value)| feature(name, value)).collect();
    let mut top: Vec<String> = order
        .iter()
        .filter(|name| FEATURES.iter().zip(features.values).any(|(n, v)| n == name && v != 0))
        .take(3)
        .cloned()
        .collect();
    if top.is_empty() {
        top = FEATURES.iter().take(3).map(|n| (*n).to_owned()).collect();
    }
    let alert_id = format!("FA-MODEL-{}", claim.claim_id);
    Event::FraudAlert(FraudAlert {
        event_id: format!("alert:{alert_id}"),
        event_time: claim.event_time,
        alert_id,
        status: AlertStatus::RAISED,
        subject_type: SubjectType::PROVIDER,
        subject_id: claim.provider_id.clone(),
        window_start: Timestamp(slot_of(claim.event_time.0) * SLOT_MS),
        window_end: Timestamp((slot_of(claim.event_time.0) + 1) * SLOT_MS),
        severity: Severity::MEDIUM,
        rule_hits: Vec::new(),
        model_name: Some(model.0.to_owned()),
        model_version: Some(model.1.to_owned()),
        score: Some(score),
        shadow_model_version: None,
        shadow_score: None,
        features: named,
        top_features: top,
        claim_ids: vec![claim.claim_id.clone()],
    })
}

/// An alert of one rule.
#[allow(clippy::too_many_arguments)]
fn alert(
    rule: &str,
    pattern: &str,
    detail: String,
    subject: (SubjectType, &str),
    day: Date,
    at: Timestamp,
    severity: Severity,
    features: Vec<Feature>,
    claim_ids: Vec<String>,
) -> Event {
    let alert_id = format!("FA-{rule}-{}", claim_ids.first().map_or("", String::as_str));
    Event::FraudAlert(FraudAlert {
        event_id: format!("alert:{alert_id}"),
        event_time: at,
        alert_id,
        status: AlertStatus::RAISED,
        subject_type: subject.0,
        subject_id: subject.1.to_owned(),
        window_start: day.start(),
        window_end: day.add_days(1).start(),
        severity,
        rule_hits: vec![RuleHit { rule: rule.to_owned(), pattern: pattern.to_owned(), detail }],
        model_name: None,
        model_version: None,
        score: None,
        shadow_model_version: None,
        shadow_score: None,
        top_features: features.iter().map(|f| f.name.clone()).collect(),
        features,
        claim_ids,
    })
}

impl FraudDetector {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
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

    /// Event time has reached `now` (ms): event ids older than the horizon go, and events
    /// that old are refused from now on.
    pub fn advance(&mut self, now: i64) {
        self.seen.advance(now);
    }

    /// Events refused for being older than the horizon.
    pub fn expired(&self) -> u64 {
        self.seen.expired()
    }

    /// Applies one event: first closing the windows that end by its time, then what it raises.
    /// An event seen before raises nothing again.
    pub fn apply(&mut self, event: &Event) -> Vec<Step> {
        if !self.seen.first(event.event_id(), event.event_time().0) {
            return Vec::new();
        }
        let mut steps = self.close(event.event_time().0);
        match event {
            Event::ProviderOnboarded(p) => {
                self.providers.insert(p.provider_id.clone(), (p.latitude_e6, p.longitude_e6));
                self.peer_groups.insert(p.provider_id.clone(), p.provider_type.as_str().to_owned());
            }
            Event::MemberCreated(_) | Event::PlanCreated(_) | Event::BenefitUpdated(_) => {
                self.eligibility.apply(event);
            }
            Event::MemberUpdated(e) => {
                self.eligibility.apply(event);
                steps.extend(self.recheck(&e.member_id, e.event_time));
            }
            Event::CoverageChanged(e) => {
                self.eligibility.apply(event);
                steps.extend(self.recheck(&e.member_id, e.event_time));
            }
            Event::ClaimSubmitted(claim) => {
                if let Some(original) = &claim.original_claim_id {
                    steps.extend(self.take_back(original, claim));
                }
                if !claim.lines.is_empty() {
                    steps.extend(self.claim(claim));
                }
            }
            _ => {}
        }
        steps
    }

    /// Closes the windows that end by `until` (event time, ms): their claims, in order. Every
    /// event up to `until` must have been applied (the job calls this at its watermark; the
    /// end of the input is `i64::MAX`).
    pub fn close(&mut self, until: i64) -> Vec<Step> {
        let below = slot_of(until);
        if self.closed_below.is_some_and(|closed| closed >= below) {
            return Vec::new();
        }
        let keep = self.pending.split_off(&(below, i64::MIN, String::new()));
        let ready = std::mem::replace(&mut self.pending, keep);
        let mut steps = Vec::with_capacity(ready.len());
        for (_, mut closed) in ready {
            self.pending_keys.remove(&closed.claim.claim_id);
            self.window_features(&mut closed.features);
            let slot = slot_of(closed.claim.event_time.0);
            self.retained.entry(slot).or_default().push((closed.claim.clone(), closed.features.clone()));
            steps.push(Step::Claim(closed));
        }
        let before = self.closed_below.replace(below);
        // Once a day of event time: forget claims a day past their window for scoring again,
        // and windows two days past.
        if before.is_none_or(|b| b.div_euclid(DAY) != below.div_euclid(DAY)) && below < i64::MAX / SLOT_MS - DAY {
            self.retained = self.retained.split_off(&(below - DAY));
            self.windows.prune(below - 2 * DAY);
        }
        steps
    }

    /// Fills in the window part of a claim's features.
    fn window_features(&mut self, features: &mut ClaimFeatures) {
        if let Some(window) = self.windows.features(&features.claim_id) {
            features.values[CLAIM_FEATURES..].copy_from_slice(&window);
        }
    }

    /// The claims of a closed window, to be scored again (it changed); `except` a claim.
    fn rescore(&mut self, slot: i64, except: &str) -> Vec<Step> {
        let claims: Vec<(Arc<ClaimSubmitted>, ClaimFeatures)> = self
            .retained
            .get(&slot)
            .map(|c| c.iter().filter(|(c, _)| c.claim_id != except).cloned().collect())
            .unwrap_or_default();
        claims
            .into_iter()
            .map(|(claim, mut features)| {
                self.window_features(&mut features);
                Step::Claim(Closed { claim, features, alerts: Vec::new(), again: true })
            })
            .collect()
    }

    /// Records an alert as standing (it has gone out), so a claim taken back later withdraws
    /// it; an alert raised again after a withdrawal gets an event id of its own.
    pub fn register(&mut self, alert: &mut FraudAlert) {
        if alert.status != AlertStatus::RAISED {
            return;
        }
        let raised = self.revisions.entry(alert.alert_id.clone()).or_default();
        *raised += 1;
        if *raised > 1 {
            alert.event_id = format!("alert:{}:{raised}", alert.alert_id);
        }
        if let Some(flagged) = alert.claim_ids.first() {
            self.raised.entry(flagged.clone()).or_default().push(alert.clone());
        }
    }

    /// Whether an alert about a claim stands (`alert_id`: that one; `None`: any).
    pub fn standing(&self, claim_id: &str, alert_id: Option<&str>) -> bool {
        self.raised
            .get(claim_id)
            .is_some_and(|alerts| alerts.iter().any(|a| alert_id.is_none_or(|id| a.alert_id == id)))
    }

    /// Withdraws the standing alerts about a claim that `which` picks: a follow-up event
    /// each, saying why.
    pub fn withdraw(
        &mut self,
        claim_id: &str,
        which: impl Fn(&FraudAlert) -> bool,
        why: &str,
        at: Timestamp,
    ) -> Vec<Event> {
        let Some(standing) = self.raised.get_mut(claim_id) else { return Vec::new() };
        let (gone, stay): (Vec<FraudAlert>, Vec<FraudAlert>) = standing.drain(..).partition(|a| which(a));
        *standing = stay;
        if standing.is_empty() {
            self.raised.remove(claim_id);
        }
        gone.into_iter()
            .map(|mut alert| {
                let revision = self.revisions.get(&alert.alert_id).copied().unwrap_or(1);
                alert.status = AlertStatus::WITHDRAWN;
                alert.event_id = match revision {
                    1 => format!("withdrawn:{}", alert.alert_id),
                    n => format!("withdrawn:{}:{n}", alert.alert_id),
                };
                alert.event_time = at;
                for hit in &mut alert.rule_hits {
                    hit.detail = format!("withdrawn: {why}; {}", hit.detail);
                }
                if alert.rule_hits.is_empty() {
                    alert.top_features.insert(0, format!("withdrawn: {why}"));
                }
                Event::FraudAlert(alert)
            })
            .collect()
    }

    /// A claim taken back (corrected or voided by `by`): the alerts raised for it are withdrawn
    /// with a follow-up event each (those still waiting for its window are dropped), it no
    /// longer counts as an earlier visit, and it leaves its windows — whose other claims, when
    /// the window has closed, are scored again.
    fn take_back(&mut self, original: &str, by: &ClaimSubmitted) -> Vec<Step> {
        for visits in self.claims_by_visit.values_mut() {
            visits.retain(|(id, _, _)| id != original);
        }
        if let Some(key) = self.pending_keys.remove(original) {
            self.pending.remove(&key);
        }
        let why = format!("claim {original} was taken back by {}", by.claim_id);
        let mut steps: Vec<Step> =
            self.withdraw(original, |_| true, &why, by.event_time).into_iter().map(Step::Alert).collect();
        if let Some(slot) = self.windows.remove(original)
            && self.closed_below.is_some_and(|closed| slot < closed)
        {
            if let Some(claims) = self.retained.get_mut(&slot) {
                claims.retain(|(c, _)| c.claim_id != original);
            }
            steps.extend(self.rescore(slot, original));
        }
        steps
    }

    /// A member's claims checked again after a change of coverage: a death or termination
    /// recorded after the claims came makes them phantom billing; a coverage reinstated back
    /// over their days withdraws the phantom-billing alerts it contradicts.
    fn recheck(&mut self, member_id: &str, at: Timestamp) -> Vec<Step> {
        let Some(claims) = self.member_claims.get(member_id) else { return Vec::new() };
        let mut steps = Vec::new();
        for (claim_id, day, provider_id) in claims.clone() {
            if !self.phantom.contains(&claim_id) {
                if let Some(alert) = self.phantom_check(member_id, &claim_id, day, &provider_id, at) {
                    steps.push(Step::Alert(alert));
                }
                continue;
            }
            if self.terminated(member_id, day).is_some() {
                continue;
            }
            self.phantom.remove(&claim_id);
            let is_phantom = |a: &FraudAlert| a.rule_hits.iter().any(|h| h.rule == "R-PHANTOM");
            // Not gone out yet: dropped.
            if let Some(key) = self.pending_keys.get(&claim_id)
                && let Some(waiting) = self.pending.get_mut(key)
            {
                waiting.alerts.retain(|a| !matches!(a, Event::FraudAlert(a) if is_phantom(a)));
            }
            let why = format!("the member was covered on {day} after all (coverage changed later)");
            steps.extend(self.withdraw(&claim_id, is_phantom, &why, at).into_iter().map(Step::Alert));
        }
        steps
    }

    /// Why a member's coverage had ended by `day`, if it had (not yet covered or unknown is
    /// not that).
    fn terminated(&self, member_id: &str, day: Date) -> Option<crate::eligibility::NotCovered> {
        self.eligibility.covered_under(member_id, day).err().filter(|n| n.status == EligibilityStatus::TERMINATED)
    }

    fn phantom_check(
        &mut self,
        member_id: &str,
        claim_id: &str,
        day: Date,
        provider_id: &str,
        at: Timestamp,
    ) -> Option<Event> {
        let ended = self.terminated(member_id, day)?;
        let why = &ended.reason;
        self.phantom.insert(claim_id.to_owned());
        Some(alert(
            "R-PHANTOM",
            "phantom_billing",
            format!("services on {day} billed by {provider_id} for a member not covered then ({why})"),
            (SubjectType::MEMBER, member_id),
            day,
            at,
            Severity::HIGH,
            vec![feature(
                "days_after_coverage_end",
                ended.coverage_end.map_or(0, |end| i64::from(day.days_since(end))),
            )],
            vec![claim_id.to_owned()],
        ))
    }

    /// The rules over a new claim, and the claim into its windows: it waits there until its
    /// window closes, or, late (its window has closed), is scored now — with the window's other
    /// claims scored again.
    fn claim(&mut self, claim: &ClaimSubmitted) -> Vec<Step> {
        let mut alerts = Vec::new();
        let (member, provider, day, at) = (&claim.member_id, &claim.provider_id, claim.service_date, claim.event_time);
        let id = &claim.claim_id;

        // Duplicates: the same visit billed again.
        let mut procedures: Vec<(String, i32)> =
            claim.lines.iter().map(|l| (l.procedure_code.clone(), l.units)).collect();
        procedures.sort();
        let total = claim.total_charge_idr.0;
        let visits = self.claims_by_visit.entry((member.clone(), provider.clone(), day)).or_default();
        if claim.original_claim_id.is_none()
            && let Some((original, _, earlier)) =
                visits.iter().find(|(_, p, t)| *p == procedures && (total - t).abs() * 100 <= 5 * t.abs().max(1))
        {
            alerts.push(alert(
                "R-DUP",
                "duplicate",
                format!("claim {id} repeats claim {original}: same member, day and procedures"),
                (SubjectType::PROVIDER, provider),
                day,
                at,
                Severity::MEDIUM,
                vec![feature("billed_idr", total), feature("original_billed_idr", *earlier)],
                vec![id.clone(), original.clone()],
            ));
        }
        let repeats = i64::from(claim.original_claim_id.is_none() && !alerts.is_empty());
        visits.push((id.clone(), procedures, total));

        // Upcoding and unbundling: within the claim.
        let minor = |d: &str| ["J00", "J02", "J06", "J20"].iter().any(|p| d.starts_with(p));
        if let Some(line) = claim.lines.iter().find(|l| l.procedure_code == "99215" && minor(&l.diagnosis_code)) {
            alerts.push(alert(
                "R-UPCODE",
                "upcoding",
                format!("a level-5 visit (99215) billed for {}, a minor respiratory diagnosis", line.diagnosis_code),
                (SubjectType::PROVIDER, provider),
                day,
                at,
                Severity::MEDIUM,
                vec![feature("line_billed_idr", line.charge_amount_idr.0)],
                vec![id.clone()],
            ));
        }
        let components = claim.lines.iter().filter(|l| BMP_COMPONENTS.contains(&l.procedure_code.as_str())).count();
        if components >= 4 {
            alerts.push(alert(
                "R-UNBUNDLE",
                "unbundling",
                format!("{components} components of the basic metabolic panel billed one by one"),
                (SubjectType::PROVIDER, provider),
                day,
                at,
                Severity::MEDIUM,
                vec![feature("panel_components", components as i64)],
                vec![id.clone()],
            ));
        }

        let level5_minor =
            i64::from(claim.lines.iter().any(|l| l.procedure_code == "99215" && minor(&l.diagnosis_code)));
        // Excessive units of one timed procedure.
        if let Some(line) = claim.lines.iter().find(|l| l.minutes.is_some_and(|m| m > LINE_MINUTES)) {
            let minutes = line.minutes.unwrap_or(0);
            alerts.push(alert(
                "R-UNITS",
                "excessive_units",
                format!(
                    "{} units of {} ({minutes} minutes) for one member on one day",
                    line.units, line.procedure_code
                ),
                (SubjectType::PROVIDER, provider),
                day,
                at,
                Severity::MEDIUM,
                vec![feature("units", i64::from(line.units)), feature("minutes", i64::from(minutes))],
                vec![id.clone()],
            ));
        }

        // Impossible day: a provider's timed services past 24 hours.
        let minutes: i64 = claim.lines.iter().filter_map(|l| l.minutes).map(i64::from).sum();
        let (mut day_minutes, mut day_claims) = (0, 0);
        if minutes > 0 {
            let (total_minutes, claims, alerted) = self.provider_days.entry((provider.clone(), day)).or_default();
            *total_minutes += minutes;
            claims.push(id.clone());
            (day_minutes, day_claims) = (*total_minutes, claims.len() as i64);
            if *total_minutes > DAY_MINUTES {
                // The first alert names every claim of the day so far; later ones, the claim.
                let involved = if *alerted { vec![id.clone()] } else { claims.clone() };
                *alerted = true;
                let mut involved = involved;
                // The triggering claim first: it names the alert.
                involved.retain(|c| c != id);
                involved.insert(0, id.clone());
                alerts.push(alert(
                    "R-DAY",
                    "impossible_day",
                    format!("{} hours of timed services billed by {provider} on {day}", *total_minutes / 60),
                    (SubjectType::PROVIDER, provider),
                    day,
                    at,
                    Severity::CRITICAL,
                    vec![feature("minutes_that_day", *total_minutes), feature("claims_that_day", claims.len() as i64)],
                    involved,
                ));
            }
        }

        // Card sharing: the same member seen in person (an office visit, 992xx) far apart on
        // one day. Samples sent to a distant lab or prescriptions filled elsewhere are no sign.
        let visit = claim.lines.iter().any(|l| l.procedure_code.starts_with("992"));
        let here = self.providers.get(provider).copied().filter(|_| visit);
        let seen_today = self.member_days.entry((member.clone(), day)).or_default();
        let visits_today = seen_today.len() as i64 + i64::from(visit);
        let farthest = here.map_or(0, |here| {
            seen_today
                .iter()
                .filter_map(|(_, other)| self.providers.get(other).map(|there| distance_km(here, *there)))
                .max()
                .unwrap_or(0)
        });
        if let Some(here) = here {
            let far = seen_today.iter().find_map(|(other_claim, other)| {
                let there = self.providers.get(other).copied()?;
                let km = distance_km(here, there);
                (km >= CARD_KM).then(|| (other_claim.clone(), other.clone(), km))
            });
            if let Some((other_claim, other, km)) = far {
                alerts.push(alert(
                    "R-CARD",
                    "card_sharing",
                    format!("treated on {day} by {provider} and by {other}, {km} km apart"),
                    (SubjectType::MEMBER, member),
                    day,
                    at,
                    Severity::HIGH,
                    vec![feature("distance_km", km)],
                    vec![id.clone(), other_claim],
                ));
            }
        }
        if visit {
            seen_today.push((id.clone(), provider.clone()));
        }

        // Phantom billing, as far as coverage is known now (and again when it changes).
        self.member_claims.entry(member.clone()).or_default().push((id.clone(), day, provider.clone()));
        let days_uncovered = match self.terminated(member, day).map(|t| t.coverage_end) {
            Some(Some(end)) => i64::from(day.days_since(end)),
            Some(None) => 1,
            None => 0,
        };
        if let Some(alert) = self.phantom_check(member, id, day, provider, at) {
            alerts.push(alert);
        }
        let mut values = [0; FEATURES.len()];
        values[..CLAIM_FEATURES].copy_from_slice(&[
            claim.lines.len() as i64,
            total,
            claim.lines.iter().map(|l| i64::from(l.units)).max().unwrap_or(0),
            minutes,
            day_minutes,
            day_claims,
            visits_today,
            farthest,
            level5_minor,
            components as i64,
            days_uncovered,
            repeats,
        ]);
        let features = ClaimFeatures { claim_id: id.clone(), values };
        let slot = slot_of(at.0);
        self.windows.add(
            id,
            Contribution {
                slot,
                provider,
                member,
                peer: self.peer_groups.get(provider).map_or("", String::as_str),
                billed: total,
                lines: claim.lines.len() as i64,
                high_severity: claim.lines.iter().filter(|l| HIGH_SEVERITY.contains(&l.procedure_code.as_str())).count()
                    as i64,
            },
        );
        let mut closed = Closed { claim: Arc::new(claim.clone()), features, alerts, again: false };
        if self.closed_below.is_some_and(|below| slot < below) {
            self.window_features(&mut closed.features);
            self.retained.entry(slot).or_default().push((closed.claim.clone(), closed.features.clone()));
            let mut steps = vec![Step::Claim(closed)];
            steps.extend(self.rescore(slot, id));
            return steps;
        }
        let key = (slot, at.0, claim.event_id.clone());
        self.pending_keys.insert(id.clone(), key.clone());
        self.pending.insert(key, closed);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_in_kilometres_without_floats() {
        // Jakarta to Surabaya: about 660 km.
        let jakarta = (-6_200_000, 106_816_666);
        let surabaya = (-7_250_000, 112_750_000);
        let km = distance_km(jakarta, surabaya);
        assert!((640..=680).contains(&km), "{km}");
        assert_eq!(distance_km(jakarta, jakarta), 0);
    }
}
