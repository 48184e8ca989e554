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
//! The same events in the same order give the same alerts (ids derived from the rule and the
//! claim). A claim taken back later (a correction or a void naming it in `original_claim_id`)
//! has its alerts withdrawn: the same alert again, `WITHDRAWN`, saying why. Scores come from the
//! fraud job's model (`fraud_job`), when it has one.

use std::collections::{HashMap, HashSet};

use arus_schemas::events::{
    AlertStatus, ClaimSubmitted, EligibilityStatus, Feature, FraudAlert, RuleHit, Severity, SubjectType,
};
use arus_schemas::{Date, Event, Timestamp};

use crate::eligibility::EligibilityState;

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

/// The features of a claim in its windows, as the rules see them and a model scores them.
pub const FEATURES: [&str; 12] = [
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

/// A claim's features, in [`FEATURES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimFeatures {
    /// The claim.
    pub claim_id: String,
    /// The values.
    pub values: [i64; FEATURES.len()],
}

/// A claim as the duplicate rule remembers it: id, procedures and units (sorted), total.
type VisitClaim = (String, Vec<(String, i32)>, i64);

/// The fold's state.
#[derive(Debug, Default)]
pub struct FraudDetector {
    eligibility: EligibilityState,
    /// Provider locations (microdegrees).
    providers: HashMap<String, (i32, i32)>,
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
    seen: HashSet<String>,
    /// The features of the last claim applied.
    last: Option<ClaimFeatures>,
    /// Alerts standing, by the claim they were raised for (to withdraw them if it is taken back).
    raised: HashMap<String, Vec<FraudAlert>>,
}

fn feature(name: &str, value: i64) -> Feature {
    Feature { name: name.to_owned(), value: value as f64 }
}

/// The alert of a claim the rules let pass and a model scored high: the features, the most
/// important first (`order`: names by the model's importance).
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
        window_start: claim.service_date.start(),
        window_end: claim.service_date.add_days(1).start(),
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

    /// The features of the claim the last [`apply`](Self::apply) took, if it was a claim.
    pub fn take_features(&mut self) -> Option<ClaimFeatures> {
        self.last.take()
    }

    /// Applies one event; the alerts it raises. An event seen before raises nothing again.
    pub fn apply(&mut self, event: &Event) -> Vec<Event> {
        if !self.seen.insert(event.event_id().to_owned()) {
            return Vec::new();
        }
        match event {
            Event::ProviderOnboarded(p) => {
                self.providers.insert(p.provider_id.clone(), (p.latitude_e6, p.longitude_e6));
                Vec::new()
            }
            Event::MemberCreated(_) | Event::PlanCreated(_) | Event::BenefitUpdated(_) => {
                self.eligibility.apply(event);
                Vec::new()
            }
            Event::MemberUpdated(e) => {
                self.eligibility.apply(event);
                self.recheck(&e.member_id, e.event_time)
            }
            Event::CoverageChanged(e) => {
                self.eligibility.apply(event);
                self.recheck(&e.member_id, e.event_time)
            }
            Event::ClaimSubmitted(claim) => {
                let mut alerts = match &claim.original_claim_id {
                    Some(original) => self.withdraw(original, claim),
                    None => Vec::new(),
                };
                if !claim.lines.is_empty() {
                    alerts.extend(self.claim(claim));
                }
                for alert in &alerts {
                    if let Event::FraudAlert(a) = alert
                        && a.status == AlertStatus::RAISED
                        && let Some(flagged) = a.claim_ids.first()
                    {
                        self.raised.entry(flagged.clone()).or_default().push(a.clone());
                    }
                }
                alerts
            }
            _ => Vec::new(),
        }
    }

    /// A claim taken back (corrected or voided by `by`): the alerts raised for it are withdrawn
    /// with a follow-up event each, and it no longer counts as an earlier visit.
    fn withdraw(&mut self, original: &str, by: &ClaimSubmitted) -> Vec<Event> {
        for visits in self.claims_by_visit.values_mut() {
            visits.retain(|(id, _, _)| id != original);
        }
        self.raised
            .remove(original)
            .unwrap_or_default()
            .into_iter()
            .map(|mut alert| {
                alert.status = AlertStatus::WITHDRAWN;
                alert.event_id = format!("withdrawn:{}", alert.alert_id);
                alert.event_time = by.event_time;
                for hit in &mut alert.rule_hits {
                    hit.detail =
                        format!("withdrawn: claim {original} was taken back by {}; {}", by.claim_id, hit.detail);
                }
                Event::FraudAlert(alert)
            })
            .collect()
    }

    /// A member's claims checked again after a change of coverage (a death or termination
    /// recorded after the claims came).
    fn recheck(&mut self, member_id: &str, at: Timestamp) -> Vec<Event> {
        let Some(claims) = self.member_claims.get(member_id) else { return Vec::new() };
        let mut alerts = Vec::new();
        for (claim_id, day, provider_id) in claims.clone() {
            if !self.phantom.contains(&claim_id)
                && let Some(alert) = self.phantom_check(member_id, &claim_id, day, &provider_id, at)
            {
                alerts.push(alert);
            }
        }
        alerts
    }

    fn phantom_check(
        &mut self,
        member_id: &str,
        claim_id: &str,
        day: Date,
        provider_id: &str,
        at: Timestamp,
    ) -> Option<Event> {
        let answer = self.eligibility.answer(member_id, day, "claim");
        if answer.status != EligibilityStatus::TERMINATED {
            return None;
        }
        self.phantom.insert(claim_id.to_owned());
        let why = answer.reason.unwrap_or_else(|| "coverage ended".to_owned());
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
                answer.coverage_end.map_or(0, |end| i64::from(day.days_since(end))),
            )],
            vec![claim_id.to_owned()],
        ))
    }

    fn claim(&mut self, claim: &ClaimSubmitted) -> Vec<Event> {
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
        let coverage = self.eligibility.answer(member, day, "claim");
        let days_uncovered = match (coverage.status, coverage.coverage_end) {
            (EligibilityStatus::TERMINATED, Some(end)) => i64::from(day.days_since(end)),
            (EligibilityStatus::TERMINATED, None) => 1,
            _ => 0,
        };
        if let Some(alert) = self.phantom_check(member, id, day, provider, at) {
            alerts.push(alert);
        }
        self.last = Some(ClaimFeatures {
            claim_id: id.clone(),
            values: [
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
            ],
        });
        alerts
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
