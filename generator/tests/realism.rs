//! The generator's promises, checked against what it actually emits: determinism, order,
//! schema validity, realistic references, and fraud labels that are true of the data.

use std::collections::{BTreeMap, HashMap, HashSet};

use arus_generator::{FraudLabel, FraudPattern, GeneratorConfig, Output, generate};
use arus_schemas::events::{ClaimSubmitted, CoverageChangeType};
use arus_schemas::nik::parse_nik;
use arus_schemas::{Date, Event, json, wire};

fn config(seed: u64) -> GeneratorConfig {
    GeneratorConfig { seed, claims: 6_000, days: 60, fraud_rate_bp: 300, ..GeneratorConfig::default() }
}

fn run(config: &GeneratorConfig) -> (Vec<Event>, Vec<FraudLabel>) {
    let mut events = Vec::new();
    let mut labels = Vec::new();
    generate(config, |out| {
        match out {
            Output::Event(e) => events.push(e),
            Output::Label(l) => labels.push(l),
        }
        Ok::<(), ()>(())
    })
    .expect("the sink never fails");
    (events, labels)
}

fn as_bytes(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        json::write_json_line(e, &mut out);
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, la) = run(&config(7));
    let (b, lb) = run(&config(7));
    let (c, _) = run(&config(8));
    assert_eq!(as_bytes(&a), as_bytes(&b));
    assert_eq!(la, lb);
    assert_ne!(as_bytes(&a), as_bytes(&c));
}

#[test]
fn events_come_in_event_time_order_with_unique_ids_and_fit_their_schemas() {
    let (events, _) = run(&config(11));
    assert!(events.windows(2).all(|w| w[0].event_time() <= w[1].event_time()), "not sorted by event time");
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id()).collect();
    assert_eq!(ids.len(), events.len(), "event ids repeat");
    for event in &events {
        let bytes = wire::encode(event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&wire::decode(&bytes).expect("decodes"), event);
    }
}

#[test]
fn members_have_valid_niks_and_claims_reference_known_parties() {
    let config = config(12);
    let (events, _) = run(&config);
    let today = config.start.add_days(400);
    let mut members = HashSet::new();
    let mut providers = HashSet::new();
    let mut niks = HashSet::new();
    let mut claims = 0;
    let mut late = 0;
    for event in &events {
        match event {
            Event::MemberCreated(m) => {
                let parts = parse_nik(&m.nik, today).unwrap_or_else(|| panic!("invalid NIK for {}", m.member_id));
                assert_eq!((parts.date_of_birth, parts.sex), (m.date_of_birth, m.sex), "NIK of {}", m.member_id);
                assert!(m.nik.starts_with(&m.regency_code), "NIK region of {}", m.member_id);
                assert!(niks.insert(m.nik.clone()), "NIK repeats");
                members.insert(m.member_id.clone());
            }
            Event::ProviderOnboarded(p) => {
                providers.insert(p.provider_id.clone());
            }
            Event::ClaimSubmitted(c) => {
                claims += 1;
                assert!(
                    members.contains(&c.member_id) && providers.contains(&c.provider_id),
                    "claim {} before its parties",
                    c.claim_id
                );
                assert_eq!(
                    c.total_charge_idr,
                    c.lines.iter().map(|l| l.charge_amount_idr).sum(),
                    "total of {}",
                    c.claim_id
                );
                assert!(c.lines.iter().all(|l| l.units > 0 && l.charge_amount_idr.0 > 0));
                assert!(c.service_date.start() <= c.event_time, "claim {} submitted before service", c.claim_id);
                if c.event_time.date().days_since(c.service_date) > 14 {
                    late += 1;
                }
            }
            _ => {}
        }
    }
    assert!(claims >= 6_000, "only {claims} claims");
    assert!(late * 100 > claims * 3 && late * 100 < claims * 20, "{late} late claims of {claims}");
}

#[test]
fn every_kind_of_traffic_is_present() {
    let (events, _) = run(&config(13));
    let kinds: HashSet<&str> = events.iter().map(|e| e.kind().name()).collect();
    for kind in [
        "PlanCreated",
        "ProviderOnboarded",
        "ContractUpdated",
        "MemberCreated",
        "MemberUpdated",
        "CoverageChanged",
        "AuthRequested",
        "AuthApproved",
        "AuthDenied",
        "EligibilityRequested",
        "ClaimSubmitted",
        "PaymentInitiated",
        "PaymentCompleted",
        "PaymentFailed",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
    let terminations = events
        .iter()
        .filter(|e| matches!(e, Event::CoverageChanged(c) if c.change_type == CoverageChangeType::TERMINATED))
        .count();
    assert!(terminations > 0, "no terminations");
}

/// Each label is checked against the events themselves, by an independent reading.
#[test]
fn fraud_labels_are_true_of_the_data() {
    let config = config(21);
    let (events, labels) = run(&config);
    let claims: HashMap<&str, &ClaimSubmitted> = events
        .iter()
        .filter_map(|e| match e {
            Event::ClaimSubmitted(c) => Some((c.claim_id.as_str(), c)),
            _ => None,
        })
        .collect();
    let mut coverage_end: HashMap<&str, Date> = HashMap::new();
    for e in &events {
        if let Event::CoverageChanged(c) = e
            && c.change_type == CoverageChangeType::TERMINATED
        {
            coverage_end.insert(&c.member_id, c.effective_date);
        }
    }
    let mut by_pattern: BTreeMap<FraudPattern, usize> = BTreeMap::new();
    for label in &labels {
        *by_pattern.entry(label.pattern).or_default() += 1;
        let claim =
            claims.get(label.claim_id.as_str()).unwrap_or_else(|| panic!("label for unknown claim {}", label.claim_id));
        assert_eq!((&claim.member_id, &claim.provider_id), (&label.member_id, &label.provider_id));
        let related: Vec<&ClaimSubmitted> = label.related_claim_ids.iter().map(|id| claims[id.as_str()]).collect();
        match label.pattern {
            FraudPattern::Duplicate => {
                let original = related[0];
                assert_eq!(
                    (&original.member_id, &original.provider_id, original.service_date),
                    (&claim.member_id, &claim.provider_id, claim.service_date)
                );
                let codes = |c: &ClaimSubmitted| {
                    c.lines.iter().map(|l| (l.procedure_code.clone(), l.units)).collect::<Vec<_>>()
                };
                assert_eq!(codes(original), codes(claim));
                assert!(original.event_time < claim.event_time, "duplicate submitted before its original");
            }
            FraudPattern::Upcoding => {
                assert!(claim.lines.iter().any(|l| l.procedure_code == "99215") && claim.diagnosis_codes == ["J06.9"])
            }
            FraudPattern::Unbundling => {
                assert!(claim.lines.len() >= 6 && claim.lines.iter().all(|l| l.procedure_code != "80048"))
            }
            FraudPattern::PhantomBilling => {
                let end =
                    coverage_end.get(claim.member_id.as_str()).expect("phantom claim for a member never terminated");
                assert!(claim.service_date >= *end, "service {} before coverage ended {}", claim.service_date, end);
            }
            FraudPattern::ExcessiveUnits => {
                assert!(claim.lines.iter().any(|l| l.procedure_code == "97110" && l.units >= 12))
            }
            FraudPattern::ImpossibleDay => {
                let minutes: i32 = std::iter::once(*claim)
                    .chain(related.iter().copied())
                    .flat_map(|c| {
                        c.lines
                            .iter()
                            .filter(|l| l.service_date == claim.service_date && c.provider_id == claim.provider_id)
                    })
                    .filter_map(|l| l.minutes)
                    .sum();
                assert!(minutes > 24 * 60, "impossible day has only {minutes} minutes");
            }
            FraudPattern::CardSharing => {
                let first = related[0];
                assert_eq!((&first.member_id, first.service_date), (&claim.member_id, claim.service_date));
                assert_ne!(first.provider_id, claim.provider_id);
            }
        }
    }
    let fraudulent_claims: usize = labels.iter().map(|l| l.claim_id.as_str()).collect::<HashSet<_>>().len();
    assert_eq!(fraudulent_claims, labels.len(), "a claim labelled twice");
    for pattern in FraudPattern::ALL {
        assert!(by_pattern.get(pattern).copied().unwrap_or(0) > 0, "no {pattern:?} injected: {by_pattern:?}");
    }
    // 3% of 6,000 claims, give or take (impossible days add whole clusters).
    let primary = labels.iter().filter(|l| l.pattern != FraudPattern::ImpossibleDay).count();
    assert!((90..=300).contains(&primary), "{primary} fraudulent claims: {by_pattern:?}");
}

#[test]
fn no_fraud_when_the_rate_is_zero() {
    let (_, labels) = run(&GeneratorConfig { fraud_rate_bp: 0, ..config(5) });
    assert!(labels.is_empty());
}

#[test]
fn crossing_a_plan_year_renews_coverage_under_the_new_years_plans() {
    let start = Date::from_ymd(2025, 11, 1).expect("date");
    let (events, _) = run(&GeneratorConfig { start, days: 120, claims: 3_000, ..config(31) });
    assert!(events.windows(2).all(|w| w[0].event_time() <= w[1].event_time()), "not sorted by event time");
    let plan_2026_created =
        events.iter().position(|e| matches!(e, Event::PlanCreated(p) if p.plan_year == 2026)).expect("plans for 2026");
    let renewals: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::CoverageChanged(c) if c.change_type == CoverageChangeType::PLAN_CHANGED))
        .map(|(i, _)| i)
        .collect();
    assert!(!renewals.is_empty(), "no renewals on 1 January");
    for &i in &renewals {
        let Event::CoverageChanged(c) = &events[i] else { unreachable!() };
        assert!(c.plan_id.ends_with("-2026") && c.effective_date == Date::from_ymd(2026, 1, 1).expect("date"));
        assert!(i > plan_2026_created, "renewal before its plan exists");
    }
}

#[test]
fn the_parallel_runner_hands_over_the_same_outputs_in_the_same_order() {
    let config = GeneratorConfig { claims: 2_000, days: 20, ..config(41) };
    let mut sequential = Vec::new();
    let summary_a = generate(&config, |o| {
        sequential.push(o);
        Ok::<(), ()>(())
    })
    .expect("generate");
    let mut parallel = Vec::new();
    let summary_b = arus_generator::generate_in_parallel(&config, |o| {
        parallel.push(o);
        Ok::<(), ()>(())
    })
    .expect("generate_in_parallel");
    assert_eq!(summary_a, summary_b);
    assert!(sequential == parallel, "outputs differ");
}

#[test]
fn the_parallel_runner_stops_at_the_consumers_first_error() {
    let config = GeneratorConfig { claims: 20_000, days: 30, ..config(42) };
    let mut seen = 0u64;
    let result = arus_generator::generate_in_parallel(&config, |_| {
        seen += 1;
        if seen == 5_000 { Err(format!("disk full after {seen}")) } else { Ok(()) }
    });
    assert_eq!(result, Err("disk full after 5000".to_owned()));
}
