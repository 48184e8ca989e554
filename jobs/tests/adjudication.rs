//! Adjudication: the worked example, every rule with its reason code, family
//! accumulators and the out-of-pocket cap, the annual limit, plan-year rollover, claims arriving
//! late, the saga's compensation, and invariants over the generator's traffic.

mod common;

use arus_jobs::adjudication::{Adjudicator, Room, price_line};
use arus_schemas::events::{
    AdjudicatedLine, AdjustmentGroup, AuthApproved, AuthRequested, Benefits, ClaimAdjudicated, ClaimLine, ClaimStatus,
    ClaimSubmitted, ClaimType, ContractUpdated, CoverageChangeType, CoverageChanged, FeeScheduleEntry, MemberCreated,
    NetworkStatus, PaymentCompleted, PaymentFailed, PlanCreated, PlanTier, ProviderOnboarded, ProviderType,
    Relationship, Sex,
};
use arus_schemas::{Date, Event, Idr, Timestamp};

fn date(text: &str) -> Date {
    text.parse().expect("a date")
}

/// Noon (UTC) of a day.
fn noon(text: &str) -> Timestamp {
    date(text).start().add_millis(12 * 3_600_000)
}

fn benefits() -> Benefits {
    Benefits {
        deductible_individual_idr: Idr(300_000),
        deductible_family_idr: Idr(400_000),
        oop_max_individual_idr: Idr(5_000_000),
        oop_max_family_idr: Idr(10_000_000),
        copay_idr: Idr(0),
        coinsurance_bp: 2_000,
        out_of_network_coinsurance_bp: 10_000,
        annual_limit_idr: Idr(100_000_000),
        prior_auth_procedures: vec!["70551".to_owned()],
        excluded_procedures: vec!["15780".to_owned()],
    }
}

/// Events built with increasing times and ids.
#[derive(Default)]
struct World {
    events: Vec<Event>,
    n: u64,
}

impl World {
    fn id(&mut self, kind: &str) -> String {
        self.n += 1;
        format!("{kind}-{}", self.n)
    }

    fn plan(&mut self, plan_id: &str, benefits: Benefits) {
        let event_id = self.id("plan");
        self.events.push(Event::PlanCreated(PlanCreated {
            event_id,
            event_time: Timestamp(0),
            plan_id: plan_id.to_owned(),
            name: plan_id.to_owned(),
            tier: PlanTier::SILVER,
            plan_year: 2026,
            version: 1,
            benefits,
        }));
    }

    /// A member of `family` (its subscriber is named `family`-S), enrolled in `plan` from
    /// 2026-01-01 (a dependent is covered while the subscriber is).
    fn member(&mut self, member_id: &str, family: &str, plan: &str) {
        let subscriber = format!("{family}-S");
        let relationship = if member_id == subscriber { Relationship::SUBSCRIBER } else { Relationship::SPOUSE };
        let event_id = self.id("member");
        self.events.push(Event::MemberCreated(MemberCreated {
            event_id,
            event_time: Timestamp(1),
            member_id: member_id.to_owned(),
            family_id: family.to_owned(),
            subscriber_id: subscriber.clone(),
            relationship,
            nik: "3171010101900001".to_owned(),
            full_name: "Test".to_owned(),
            date_of_birth: date("1990-01-01"),
            sex: Sex::MALE,
            province_code: "31".to_owned(),
            regency_code: "3171".to_owned(),
            city: "Jakarta".to_owned(),
            phone: None,
            email: None,
        }));
        self.coverage(member_id, CoverageChangeType::ENROLLED, plan, "2026-01-01");
    }

    fn coverage(&mut self, member_id: &str, change_type: CoverageChangeType, plan: &str, effective: &str) {
        let event_id = self.id("coverage");
        self.events.push(Event::CoverageChanged(CoverageChanged {
            event_id,
            event_time: Timestamp(2),
            member_id: member_id.to_owned(),
            family_id: "F".to_owned(),
            subscriber_id: member_id.to_owned(),
            change_type,
            plan_id: plan.to_owned(),
            effective_date: date(effective),
            end_date: None,
            reason: Some("TEST".to_owned()),
        }));
    }

    fn provider(&mut self, provider_id: &str, network: NetworkStatus, fees: &[(&str, i64)]) {
        let event_id = self.id("provider");
        self.events.push(Event::ProviderOnboarded(ProviderOnboarded {
            event_id,
            event_time: Timestamp(0),
            provider_id: provider_id.to_owned(),
            name: provider_id.to_owned(),
            provider_type: ProviderType::CLINIC,
            province_code: "31".to_owned(),
            regency_code: "3171".to_owned(),
            city: "Jakarta".to_owned(),
            latitude_e6: 0,
            longitude_e6: 0,
            network_status: network,
            specialties: vec![],
        }));
        let event_id = self.id("contract");
        self.events.push(Event::ContractUpdated(ContractUpdated {
            event_id,
            event_time: Timestamp(0),
            provider_id: provider_id.to_owned(),
            contract_id: format!("K-{provider_id}"),
            network_status: network,
            effective_date: date("2025-01-01"),
            end_date: None,
            fee_schedule: fees
                .iter()
                .map(|(code, fee)| FeeScheduleEntry {
                    procedure_code: (*code).to_owned(),
                    contracted_amount_idr: Idr(*fee),
                })
                .collect(),
        }));
    }

    fn auth(&mut self, auth_id: &str, member_id: &str, procedure: &str, units: Option<i32>) {
        let event_id = self.id("auth");
        self.events.push(Event::AuthRequested(AuthRequested {
            event_id,
            event_time: Timestamp(3),
            auth_id: auth_id.to_owned(),
            member_id: member_id.to_owned(),
            provider_id: "P1".to_owned(),
            procedure_code: procedure.to_owned(),
            diagnosis_code: "J06.9".to_owned(),
            requested_units: units.unwrap_or(1),
            service_date_from: date("2026-01-01"),
            service_date_to: date("2026-12-31"),
        }));
        if let Some(units) = units {
            let event_id = self.id("approved");
            self.events.push(Event::AuthApproved(AuthApproved {
                event_id,
                event_time: Timestamp(4),
                auth_id: auth_id.to_owned(),
                member_id: member_id.to_owned(),
                procedure_code: procedure.to_owned(),
                approved_units: units,
                valid_from: date("2026-01-01"),
                valid_to: date("2026-12-31"),
            }));
        }
    }

    /// A claim submitted on `submitted`; lines of (procedure, service date, units, charge).
    fn claim(
        &mut self,
        claim_id: &str,
        member_id: &str,
        provider: &str,
        submitted: &str,
        lines: &[(&str, &str, i32, i64)],
    ) {
        let event_id = self.id("claim");
        let lines: Vec<ClaimLine> = lines
            .iter()
            .enumerate()
            .map(|(i, (procedure, day, units, charge))| ClaimLine {
                line_number: i as i32 + 1,
                procedure_code: (*procedure).to_owned(),
                diagnosis_code: "J06.9".to_owned(),
                service_date: date(day),
                units: *units,
                charge_amount_idr: Idr(*charge),
                minutes: None,
            })
            .collect();
        self.events.push(Event::ClaimSubmitted(ClaimSubmitted {
            event_id,
            event_time: noon(submitted),
            claim_id: claim_id.to_owned(),
            member_id: member_id.to_owned(),
            provider_id: provider.to_owned(),
            claim_type: ClaimType::PROFESSIONAL,
            service_date: lines.first().map_or(date(submitted), |l| l.service_date),
            auth_id: None,
            diagnosis_codes: vec!["J06.9".to_owned()],
            total_charge_idr: lines.iter().map(|l| l.charge_amount_idr).sum(),
            lines,
            currency: "IDR".to_owned(),
            original_claim_id: None,
        }));
    }

    fn last_claim(&mut self) -> &mut ClaimSubmitted {
        match self.events.last_mut() {
            Some(Event::ClaimSubmitted(c)) => c,
            _ => panic!("the last event is not a claim"),
        }
    }

    /// Every event through one adjudicator: the decisions by claim id, and all outputs.
    fn run(&self) -> (Adjudicator, Vec<Event>) {
        let mut adjudicator = Adjudicator::new();
        let outputs = self.events.iter().flat_map(|e| adjudicator.apply(e)).collect();
        (adjudicator, outputs)
    }
}

fn decision<'a>(outputs: &'a [Event], claim_id: &str) -> &'a ClaimAdjudicated {
    outputs
        .iter()
        .find_map(|e| match e {
            Event::ClaimAdjudicated(a) if a.claim_id == claim_id => Some(a),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no decision for {claim_id}"))
}

fn codes(line: &AdjudicatedLine) -> Vec<(AdjustmentGroup, &str, i64)> {
    line.adjustments.iter().map(|a| (a.group, a.carc.as_str(), a.amount_idr.0)).collect()
}

/// billed = plan paid + every adjustment, on every line.
fn balances(line: &AdjudicatedLine) -> bool {
    line.billed_idr.0 == line.plan_paid_idr.0 + line.adjustments.iter().map(|a| a.amount_idr.0).sum::<i64>()
}

/// The golden files of a case: its input events and the decisions they give, one JSON event a
/// line. `ARUS_BLESS=1` writes them from the scenario; otherwise the scenario must be the
/// recorded input, and its outputs the recorded decisions.
fn golden(case: &str, events: &[Event], outputs: &[Event]) {
    // Consumers (and a rerun's read-back) deduplicate on event ids: no two outputs share one.
    let mut ids = std::collections::HashSet::new();
    for output in outputs {
        assert!(ids.insert(output.event_id()), "{case}: two outputs with the id {}", output.event_id());
    }
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/adjudication"));
    let lines = |events: &[Event]| events.iter().map(|e| arus_schemas::json::to_json(e) + "\n").collect::<String>();
    let (input, expected) = (dir.join(format!("{case}.events.jsonl")), dir.join(format!("{case}.expected.jsonl")));
    if std::env::var("ARUS_BLESS").is_ok() {
        std::fs::create_dir_all(dir).expect("the golden folder");
        std::fs::write(&input, lines(events)).expect("write");
        std::fs::write(&expected, lines(outputs)).expect("write");
        return;
    }
    let recorded = std::fs::read_to_string(&input).expect("the recorded input (ARUS_BLESS=1 writes it)");
    assert!(recorded == lines(events), "{case}: the scenario is not the recorded input");
    let decided = std::fs::read_to_string(&expected).expect("the recorded decisions");
    assert!(decided == lines(outputs), "{case}: the decisions differ from {}", expected.display());
}

#[test]
fn golden_files_decide_as_recorded() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/adjudication"));
    let mut cases = 0;
    for entry in std::fs::read_dir(dir).expect("the golden folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(case) = name.strip_suffix(".events.jsonl") else { continue };
        let input = std::fs::read_to_string(entry.path()).expect("read");
        let mut adjudicator = Adjudicator::new();
        let decided: String = input
            .lines()
            .map(|line| arus_schemas::json::from_json(line).expect("an event"))
            .flat_map(|event| adjudicator.apply(&event))
            .map(|e| arus_schemas::json::to_json(&e) + "\n")
            .collect();
        let expected = std::fs::read_to_string(dir.join(format!("{case}.expected.jsonl"))).expect("expected");
        assert!(decided == expected, "{case}: the decisions differ from the recorded ones");
        cases += 1;
    }
    assert!(cases >= 5, "only {cases} golden cases");
}

#[test]
fn the_worked_example() {
    use AdjustmentGroup::{CO, PR};
    let plenty = Idr(100_000_000);
    let line = price_line(
        Idr(1_000_000),
        Some(Idr(800_000)),
        Idr(0),
        2_000,
        Room { deductible: Idr(300_000), oop: plenty, annual_limit: plenty },
    );
    assert_eq!(codes(&line), vec![(CO, "45", 200_000), (PR, "1", 300_000), (PR, "2", 100_000)]);
    assert_eq!((line.allowed_idr, line.plan_paid_idr), (Idr(800_000), Idr(400_000)));
    // 350,000 of out-of-pocket room: the deductible takes 300,000, coinsurance the 50,000 left.
    let line = price_line(
        Idr(1_000_000),
        Some(Idr(800_000)),
        Idr(0),
        2_000,
        Room { deductible: Idr(300_000), oop: Idr(350_000), annual_limit: plenty },
    );
    assert_eq!(codes(&line), vec![(CO, "45", 200_000), (PR, "1", 300_000), (PR, "2", 50_000)]);
    assert_eq!(line.plan_paid_idr, Idr(450_000));
    assert!(balances(&line));
}

#[test]
fn the_worked_example_through_claims_and_accumulators() {
    let mut world = World::default();
    world.plan("SILVER", benefits());
    world.plan("TIGHT", Benefits { oop_max_individual_idr: Idr(350_000), ..benefits() });
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("80053", 800_000)]);
    world.member("A-S", "A", "SILVER");
    world.member("B-S", "B", "TIGHT");
    world.claim("C1", "A-S", "P1", "2026-03-02", &[("80053", "2026-03-01", 1, 1_000_000)]);
    world.claim("C2", "B-S", "P1", "2026-03-02", &[("80053", "2026-03-01", 1, 1_000_000)]);
    let (adjudicator, outputs) = world.run();
    golden("worked_example", &world.events, &outputs);

    let c1 = decision(&outputs, "C1");
    assert_eq!(c1.status, ClaimStatus::APPROVED);
    assert_eq!((c1.plan_id.as_deref(), c1.plan_version), (Some("SILVER"), Some(1)));
    let line = &c1.lines[0];
    assert_eq!(
        (line.allowed_idr.0, line.deductible_idr.0, line.coinsurance_idr.0, line.plan_paid_idr.0),
        (800_000, 300_000, 100_000, 400_000)
    );
    assert_eq!((c1.total_member_share_idr.0, c1.total_plan_paid_idr.0), (400_000, 400_000));
    let c2 = decision(&outputs, "C2");
    assert_eq!(
        (c2.lines[0].deductible_idr.0, c2.lines[0].coinsurance_idr.0, c2.total_plan_paid_idr.0),
        (300_000, 50_000, 450_000)
    );
    // The trace explains: the plan version, the accumulators before and after.
    assert!(c1.trace.iter().any(|t| t.contains("plan SILVER version 1")), "{:?}", c1.trace);
    assert!(c1.trace.iter().any(|t| t.contains("before: deductible met Rp 0 ")), "{:?}", c1.trace);
    assert!(c1.trace.iter().any(|t| t.starts_with("after, 2026: deductible met Rp 300.000")), "{:?}", c1.trace);

    let a = adjudicator.accumulators("A-S", 2026).expect("accumulators");
    assert_eq!((a.member.deductible.0, a.member.oop.0, a.member.plan_paid.0), (300_000, 400_000, 400_000));
    let update = outputs
        .iter()
        .find_map(|e| match e {
            Event::AccumulatorUpdated(u) if u.member_id == "A-S" => Some(u),
            _ => None,
        })
        .expect("an accumulator update");
    assert_eq!((update.deductible_met_idr.0, update.oop_met_idr.0, update.version), (300_000, 400_000, 1));
    assert_eq!(update.claim_id.as_deref(), Some("C1"));
}

#[test]
fn a_line_priced_without_a_contracted_fee_says_why_in_its_trace() {
    let mut world = World::default();
    world.plan("OPEN", Benefits { out_of_network_coinsurance_bp: 5_000, ..benefits() });
    world.provider("IN", NetworkStatus::IN_NETWORK, &[]);
    world.provider("OUT", NetworkStatus::OUT_OF_NETWORK, &[]);
    world.member("A-O", "A", "OPEN");
    world.claim("C1", "A-O", "IN", "2026-03-02", &[("80053", "2026-03-01", 1, 500_000)]);
    world.claim("C2", "A-O", "OUT", "2026-03-03", &[("80053", "2026-03-02", 1, 200_000)]);
    let (_, outputs) = world.run();
    let line =
        |claim_id: &str| decision(&outputs, claim_id).trace.iter().find(|t| t.starts_with("line 1: allowed")).cloned();
    assert_eq!(
        line("C1").as_deref(),
        Some(
            "line 1: allowed Rp 500.000 (no contracted fee: billed); before: deductible met Rp 0 (family Rp 0), \
             out-of-pocket met Rp 0 (family Rp 0), plan paid Rp 0; deductible Rp 300.000, copay Rp 0, coinsurance \
             Rp 40.000 at 2000 bp, plan pays Rp 160.000"
        )
    );
    assert_eq!(
        line("C2").as_deref(),
        Some(
            "line 1: allowed Rp 200.000 (out of network: billed); before: deductible met Rp 300.000 (family \
             Rp 300.000), out-of-pocket met Rp 340.000 (family Rp 340.000), plan paid Rp 160.000; deductible Rp 0, \
             copay Rp 0, coinsurance Rp 100.000 at 5000 bp, plan pays Rp 100.000"
        )
    );
}

#[test]
fn every_rule_denies_with_its_reason_code() {
    let mut world = World::default();
    world.plan("SILVER", benefits());
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("80053", 100_000), ("70551", 2_000_000)]);
    world.provider("OUT", NetworkStatus::OUT_OF_NETWORK, &[]);
    world.member("A-S", "A", "SILVER");
    world.member("T-S", "T", "SILVER");
    world.coverage("T-S", CoverageChangeType::TERMINATED, "SILVER", "2026-03-01");
    world.member("N-S", "N", "SILVER"); // covered from 2026-01-01
    world.auth("AUTH1", "A-S", "70551", Some(1));
    world.auth("AUTH2", "T-S", "70551", None); // requested, not decided
    let ok = ("80053", "2026-03-01", 1, 150_000);
    world.claim("OK", "A-S", "P1", "2026-03-02", &[ok]);
    world.claim("DUP", "A-S", "P1", "2026-03-05", &[ok]);
    world.claim("UNKNOWN", "nobody", "P1", "2026-03-02", &[ok]);
    world.claim("NOTYET", "N-S", "P1", "2026-03-02", &[("80053", "2025-12-20", 1, 150_000)]);
    world.claim("TERM", "T-S", "P1", "2026-03-10", &[("80053", "2026-03-05", 1, 150_000)]);
    world.claim("LATE", "A-S", "P1", "2026-07-01", &[("80053", "2026-03-02", 1, 150_000)]);
    world.claim("EXCL", "A-S", "P1", "2026-03-02", &[("15780", "2026-03-01", 1, 150_000)]);
    world.claim("OON", "A-S", "OUT", "2026-03-02", &[("80053", "2026-03-01", 1, 150_000)]);
    world.claim("NOAUTH", "N-S", "P1", "2026-03-02", &[("70551", "2026-03-01", 1, 2_500_000)]);
    world.claim("AUTHOK", "A-S", "P1", "2026-03-03", &[("70551", "2026-03-02", 1, 2_500_000)]);
    world.claim("AUTHUSED", "A-S", "P1", "2026-03-04", &[("70551", "2026-03-03", 1, 2_500_000)]);
    world.claim("PEND", "T-S", "P1", "2026-02-11", &[("70551", "2026-02-10", 1, 2_500_000)]);
    world.claim("ZERO", "A-S", "P1", "2026-03-02", &[("80053", "2026-03-01", 1, 0)]);
    world.claim("FUTURE", "A-S", "P1", "2026-03-02", &[("80053", "2026-03-09", 1, 150_000)]);
    world.claim("SUM", "A-S", "P1", "2026-03-02", &[("80053", "2026-03-08", 1, 150_000)]);
    world.last_claim().total_charge_idr = Idr(1);
    world.claim("NOPROV", "A-S", "P404", "2026-03-02", &[("80053", "2026-03-01", 2, 150_000)]);
    world.claim(
        "PART",
        "A-S",
        "P1",
        "2026-03-12",
        &[("80053", "2026-03-11", 1, 150_000), ("15780", "2026-03-11", 1, 90_000)],
    );
    let (_, outputs) = world.run();
    golden("every_rule", &world.events, &outputs);

    for (claim, status, carc) in [
        ("OK", ClaimStatus::APPROVED, None),
        ("DUP", ClaimStatus::DENIED, Some("18")),
        ("UNKNOWN", ClaimStatus::DENIED, Some("31")),
        ("NOTYET", ClaimStatus::DENIED, Some("26")),
        ("TERM", ClaimStatus::DENIED, Some("27")),
        ("LATE", ClaimStatus::DENIED, Some("29")),
        ("EXCL", ClaimStatus::DENIED, Some("96")),
        ("OON", ClaimStatus::DENIED, Some("204")),
        ("NOAUTH", ClaimStatus::DENIED, Some("197")),
        ("AUTHOK", ClaimStatus::APPROVED, None),
        ("AUTHUSED", ClaimStatus::DENIED, Some("198")),
        ("PEND", ClaimStatus::PENDED, None),
        ("ZERO", ClaimStatus::DENIED, Some("16")),
        ("FUTURE", ClaimStatus::DENIED, Some("16")),
        ("SUM", ClaimStatus::DENIED, Some("16")),
        ("NOPROV", ClaimStatus::DENIED, Some("16")),
    ] {
        let decided = decision(&outputs, claim);
        assert_eq!(decided.status, status, "{claim}: {:?}", decided.trace);
        let line = &decided.lines[0];
        assert!(balances(line) || status == ClaimStatus::PENDED, "{claim}: {line:?}");
        match carc {
            Some(carc) => {
                assert_eq!(
                    codes(line),
                    vec![(AdjustmentGroup::CO, carc, line.billed_idr.0.max(0))],
                    "{claim}: {:?}",
                    decided.trace
                );
                assert_eq!((line.allowed_idr.0, line.plan_paid_idr.0), (0, 0), "{claim}");
            }
            None if status == ClaimStatus::APPROVED => assert!(line.allowed_idr.0 > 0, "{claim}: {line:?}"),
            None => assert!(line.adjustments.is_empty(), "{claim}: a pended line is not adjusted yet"),
        }
    }
    let part = decision(&outputs, "PART");
    assert_eq!(part.status, ClaimStatus::PARTIALLY_APPROVED);
    assert_eq!(codes(&part.lines[1]), vec![(AdjustmentGroup::CO, "96", 90_000)]);
    assert_eq!(decision(&outputs, "AUTHOK").auth_id.as_deref(), Some("AUTH1"));
}

#[test]
fn family_deductible_copay_and_the_out_of_pocket_caps() {
    let mut world = World::default();
    world.plan(
        "FAM",
        Benefits {
            copay_idr: Idr(50_000),
            oop_max_individual_idr: Idr(600_000),
            oop_max_family_idr: Idr(900_000),
            ..benefits()
        },
    );
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("80053", 1_000_000), ("99213", 200_000)]);
    world.member("F-S", "F", "FAM");
    world.member("F-2", "F", "FAM");
    world.member("F-3", "F", "FAM");
    // The subscriber meets the individual deductible (300,000 of the family's 400,000).
    world.claim("C1", "F-S", "P1", "2026-02-02", &[("80053", "2026-02-01", 1, 1_000_000)]);
    // The spouse: only 100,000 of family deductible left; an office visit takes a copay.
    world.claim("C2", "F-2", "P1", "2026-02-03", &[("99213", "2026-02-02", 1, 200_000)]);
    // The subscriber again: out-of-pocket met 300,000 + 140,000 = 440,000 of 600,000.
    world.claim("C3", "F-S", "P1", "2026-02-04", &[("80053", "2026-02-03", 1, 1_000_000)]);
    world.claim("C4", "F-S", "P1", "2026-02-05", &[("80053", "2026-02-04", 1, 1_000_000)]);
    // The third member: the family's 900,000 is nearly reached.
    world.claim("C5", "F-3", "P1", "2026-02-06", &[("80053", "2026-02-05", 1, 1_000_000)]);
    let (adjudicator, outputs) = world.run();
    golden("family_caps", &world.events, &outputs);

    let line = |claim: &str| decision(&outputs, claim).lines[0].clone();
    let c1 = line("C1");
    assert_eq!((c1.deductible_idr.0, c1.coinsurance_idr.0, c1.plan_paid_idr.0), (300_000, 140_000, 560_000));
    let c2 = line("C2");
    // Deductible 100,000 (the family's remainder), copay 50,000, coinsurance 20% of 50,000.
    assert_eq!(
        (c2.deductible_idr.0, c2.copay_idr.0, c2.coinsurance_idr.0, c2.plan_paid_idr.0),
        (100_000, 50_000, 10_000, 40_000)
    );
    assert_eq!(
        codes(&c2),
        vec![
            (AdjustmentGroup::PR, "1", 100_000),
            (AdjustmentGroup::PR, "3", 50_000),
            (AdjustmentGroup::PR, "2", 10_000)
        ]
    );
    let c3 = line("C3");
    // No deductible left for anyone; coinsurance 200,000 capped by the subscriber's room (160,000).
    assert_eq!((c3.deductible_idr.0, c3.coinsurance_idr.0, c3.plan_paid_idr.0), (0, 160_000, 840_000));
    let c4 = line("C4");
    assert_eq!((c4.coinsurance_idr.0, c4.plan_paid_idr.0), (0, 1_000_000), "the subscriber's out-of-pocket is met");
    // Family out-of-pocket so far: 600,000 + 160,000 = 760,000 of 900,000: 140,000 of room.
    let c5 = line("C5");
    assert_eq!((c5.deductible_idr.0, c5.coinsurance_idr.0, c5.plan_paid_idr.0), (0, 140_000, 860_000));
    let family = adjudicator.accumulators("F-3", 2026).expect("accumulators").family;
    assert_eq!((family.deductible.0, family.oop.0), (400_000, 900_000));
    for claim in ["C1", "C2", "C3", "C4", "C5"] {
        assert!(decision(&outputs, claim).lines.iter().all(balances), "{claim}");
    }
}

#[test]
fn the_annual_limit_and_plan_year_rollover() {
    let mut world = World::default();
    world.plan("CAP", Benefits { annual_limit_idr: Idr(1_000_000), ..benefits() });
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("80053", 1_000_000)]);
    world.member("A-S", "A", "CAP");
    world.claim("C1", "A-S", "P1", "2026-12-02", &[("80053", "2026-12-01", 1, 1_000_000)]);
    world.claim("C2", "A-S", "P1", "2026-12-03", &[("80053", "2026-12-02", 1, 1_000_000)]);
    world.claim("C3", "A-S", "P1", "2027-01-03", &[("80053", "2027-01-02", 1, 1_000_000)]);
    let (adjudicator, outputs) = world.run();
    golden("annual_limit_rollover", &world.events, &outputs);
    let c1 = &decision(&outputs, "C1").lines[0];
    assert_eq!(c1.plan_paid_idr.0, 560_000);
    // 440,000 of the limit left; the plan's 800,000 share is cut to it: PR-119 360,000.
    let c2 = &decision(&outputs, "C2").lines[0];
    assert_eq!((c2.coinsurance_idr.0, c2.plan_paid_idr.0), (200_000, 440_000));
    assert_eq!(codes(c2).last(), Some(&(AdjustmentGroup::PR, "119", 360_000)));
    assert!(balances(c2));
    // A new year: deductible and limit start again.
    let c3 = &decision(&outputs, "C3").lines[0];
    assert_eq!((c3.deductible_idr.0, c3.plan_paid_idr.0), (300_000, 560_000));
    assert_eq!(adjudicator.accumulators("A-S", 2026).expect("2026").member.plan_paid.0, 1_000_000);
    assert_eq!(adjudicator.accumulators("A-S", 2027).expect("2027").member.deductible.0, 300_000);
}

#[test]
fn claims_apply_in_submission_order_whatever_their_service_dates() {
    let mut world = World::default();
    world.plan("SILVER", benefits());
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("80053", 1_000_000)]);
    world.member("A-S", "A", "SILVER");
    // The later service is submitted first and takes the deductible; the earlier one, arriving
    // late, finds it met.
    world.claim("LATER", "A-S", "P1", "2026-03-11", &[("80053", "2026-03-10", 1, 1_000_000)]);
    world.claim("EARLIER", "A-S", "P1", "2026-03-20", &[("80053", "2026-03-01", 1, 1_000_000)]);
    let (_, outputs) = world.run();
    golden("submission_order", &world.events, &outputs);
    assert_eq!(decision(&outputs, "LATER").lines[0].deductible_idr.0, 300_000);
    assert_eq!(decision(&outputs, "EARLIER").lines[0].deductible_idr.0, 0);
    // The same events again decide nothing twice.
    let (mut adjudicator, first) = world.run();
    assert!(world.events.iter().all(|e| adjudicator.apply(e).is_empty()));
    assert_eq!(first, outputs);
}

#[test]
fn compensation_restores_the_accumulators_exactly() {
    let mut world = World::default();
    world.plan("SILVER", benefits());
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("80053", 800_000)]);
    world.member("A-S", "A", "SILVER");
    world.member("A-2", "A", "SILVER");
    world.claim("C1", "A-S", "P1", "2026-03-02", &[("80053", "2026-03-01", 1, 1_000_000)]);
    world.claim("C2", "A-2", "P1", "2026-03-03", &[("80053", "2026-03-02", 1, 1_000_000)]);
    let (before, _) = world.run();
    let payment = |world: &mut World, claim: &str, retryable: Option<bool>| {
        let event_id = world.id("payment");
        world.events.push(match retryable {
            None => Event::PaymentCompleted(PaymentCompleted {
                event_id,
                event_time: noon("2026-03-20"),
                payment_id: format!("PAY-{claim}"),
                claim_id: claim.to_owned(),
                amount_idr: Idr(400_000),
                bank_reference: "BNK1".to_owned(),
            }),
            Some(retryable) => Event::PaymentFailed(PaymentFailed {
                event_id,
                event_time: noon("2026-03-20"),
                payment_id: format!("PAY-{claim}"),
                claim_id: claim.to_owned(),
                amount_idr: Idr(400_000),
                failure_code: "ACCOUNT_CLOSED".to_owned(),
                failure_reason: "closed".to_owned(),
                retryable,
            }),
        });
    };
    payment(&mut world, "C2", Some(true));
    let (retrying, _) = world.run();
    assert_eq!(retrying.accumulators("A-2", 2026), before.accumulators("A-2", 2026), "a retry will follow");
    assert_eq!(retrying.claim_state("C2").expect("C2").state, "PAYMENT_FAILED");
    payment(&mut world, "C2", Some(false));
    payment(&mut world, "C1", None);
    let (after, outputs) = world.run();

    // C2's share is taken back from the spouse and the family; C1 is paid.
    let spouse = after.accumulators("A-2", 2026).expect("A-2");
    assert_eq!((spouse.member.deductible.0, spouse.member.oop.0, spouse.member.plan_paid.0), (0, 0, 0));
    assert_eq!(spouse.family, after.accumulators("A-S", 2026).expect("A-S").member, "only C1 is left in the family");
    let totals = |a: Option<&arus_schemas::read_models::Accumulators>| a.map(|a| (a.member, a.family));
    assert_eq!(totals(after.accumulators("A-S", 2026)), totals(before.accumulators("A-S", 2026)));
    let restored = outputs
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::AccumulatorUpdated(u) if u.member_id == "A-2" => Some(u),
            _ => None,
        })
        .expect("a compensating update");
    assert_eq!((restored.deductible_met_idr.0, restored.oop_met_idr.0, restored.version), (0, 0, 2));
    assert_eq!(after.claim_state("C2").expect("C2").state, "REVERSED");
    let paid = outputs.iter().find_map(|e| match e {
        Event::ClaimPaid(p) => Some(p),
        _ => None,
    });
    assert_eq!(paid.map(|p| (p.claim_id.as_str(), p.member_id.as_str())), Some(("C1", "A-S")));
    assert_eq!(after.claim_state("C1").expect("C1").state, "PAID");
    let subscriber = after.accumulators("A-S", 2026).expect("A-S");
    assert_eq!(subscriber.paid_idr.0, 400_000, "paid to date, from the completed payment");
    assert_eq!(after.accumulators("A-2", 2026).expect("A-2").paid_idr.0, 0, "C2's payment failed");

    // A resubmission of C2's service is no longer a duplicate; a correction of C1 replaces it.
    world.claim("C2B", "A-2", "P1", "2026-03-25", &[("80053", "2026-03-02", 1, 1_000_000)]);
    world.claim("C1B", "A-S", "P1", "2026-03-26", &[("80053", "2026-03-01", 1, 900_000)]);
    world.last_claim().original_claim_id = Some("C1".to_owned());
    let (corrected, outputs) = world.run();
    assert_eq!(decision(&outputs, "C2B").status, ClaimStatus::APPROVED);
    // C2B finds C1's 300,000 of the family's 400,000 deductible: 100,000 left. C1B replaces
    // C1: C1's 300,000 comes back first, and C1B takes it again.
    assert_eq!(decision(&outputs, "C2B").lines[0].deductible_idr.0, 100_000);
    assert_eq!(decision(&outputs, "C1B").lines[0].deductible_idr.0, 300_000);
    assert_eq!(corrected.claim_state("C1").expect("C1").state, "REVERSED");
    // C1 had been paid: its payment comes out of paid-to-date, to be recovered.
    assert_eq!(corrected.accumulators("A-S", 2026).expect("A-S").paid_idr.0, 0, "C1's payment taken back");
    let reversal = corrected.claim_state("C1").expect("C1").reversal.clone().unwrap_or_default();
    assert!(reversal.contains("replaced by C1B") && reversal.contains("to be recovered"), "{reversal}");
    // A void (no lines) takes C1B back too.
    world.claim("VOID", "A-S", "P1", "2026-03-27", &[]);
    world.last_claim().original_claim_id = Some("C1B".to_owned());
    let (voided, _) = world.run();
    golden("compensation", &world.events, &world.run().1);
    let subscriber = voided.accumulators("A-S", 2026).expect("A-S");
    assert_eq!((subscriber.member.deductible.0, subscriber.member.oop.0), (0, 0));
    assert!(voided.claim_state("VOID").is_none(), "a void is not a claim of its own");
}

#[test]
fn the_generators_traffic_balances_line_by_line() {
    use arus_generator::{FraudPattern, GeneratorConfig, Output, generate};
    let mut adjudicator = Adjudicator::new();
    let (mut decided, mut phantom, mut statuses) =
        (Vec::new(), std::collections::HashSet::new(), std::collections::BTreeMap::new());
    let mut benefits_of = std::collections::HashMap::new();
    let settings = GeneratorConfig { claims: 3_000, days: 90, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        match output {
            Output::Event(event) => {
                if let Event::PlanCreated(p) = &event {
                    benefits_of.insert(p.plan_id.clone(), p.benefits.clone());
                }
                for out in adjudicator.apply(&event) {
                    if let Event::ClaimAdjudicated(a) = out {
                        *statuses.entry(format!("{:?}", a.status)).or_insert(0u32) += 1;
                        decided.push(a);
                    }
                }
            }
            Output::Label(label) if label.pattern == FraudPattern::PhantomBilling => {
                phantom.insert(label.claim_id);
            }
            Output::Label(_) => {}
        }
        Ok(())
    })
    .expect("generate");
    assert!(decided.len() >= 3_000, "{}", decided.len());
    for claim in &decided {
        assert!(claim.lines.iter().all(balances) || claim.status == ClaimStatus::PENDED, "{claim:?}");
        let sum = |f: fn(&AdjudicatedLine) -> i64| claim.lines.iter().map(f).sum::<i64>();
        assert_eq!(claim.total_plan_paid_idr.0, sum(|l| l.plan_paid_idr.0));
        assert_eq!(claim.total_member_share_idr.0, sum(|l| l.deductible_idr.0 + l.copay_idr.0 + l.coinsurance_idr.0));
        if let Some(plan) = &claim.plan_id {
            for year in 2025..=2027 {
                if let Some(acc) = adjudicator.accumulators(&claim.member_id, year) {
                    assert!(acc.member.oop <= benefits_of[plan].oop_max_individual_idr, "{acc:?}");
                    assert!(acc.member.deductible <= benefits_of[plan].deductible_individual_idr, "{acc:?}");
                }
            }
        }
        if phantom.contains(&claim.claim_id) {
            assert_ne!(claim.status, ClaimStatus::APPROVED, "phantom billing after a termination: {claim:?}");
        }
    }
    eprintln!("generated claims by outcome: {statuses:?}");
    // Most generated claims are approved; some are denied.
    assert!(statuses.get("APPROVED").copied().unwrap_or(0) as usize > decided.len() / 2, "{statuses:?}");
    assert!(statuses.contains_key("DENIED"), "{statuses:?}");
}

#[test]
fn a_claim_pended_for_an_authorization_is_decided_again_when_it_is() {
    let mut world = World::default();
    world.plan("SILVER", benefits());
    world.provider("P1", NetworkStatus::IN_NETWORK, &[("70551", 2_000_000)]);
    world.member("A-S", "A", "SILVER");
    world.member("B-S", "B", "SILVER");
    world.auth("AUTH-A", "A-S", "70551", None);
    world.auth("AUTH-B", "B-S", "70551", None);
    world.claim("CA", "A-S", "P1", "2026-03-03", &[("70551", "2026-03-02", 1, 2_500_000)]);
    world.claim("CB", "B-S", "P1", "2026-03-03", &[("70551", "2026-03-02", 1, 2_500_000)]);
    let (pended, outputs) = world.run();
    assert_eq!(decision(&outputs, "CA").status, ClaimStatus::PENDED);
    assert_eq!(pended.accumulators("A-S", 2026), None, "a pended line adds nothing");
    // A's authorization is approved, B's denied.
    let approved_id = world.id("approved");
    world.events.push(Event::AuthApproved(AuthApproved {
        event_id: approved_id.clone(),
        event_time: noon("2026-03-05"),
        auth_id: "AUTH-A".to_owned(),
        member_id: "A-S".to_owned(),
        procedure_code: "70551".to_owned(),
        approved_units: 1,
        valid_from: date("2026-03-01"),
        valid_to: date("2026-03-31"),
    }));
    let denied_id = world.id("denied");
    world.events.push(Event::AuthDenied(arus_schemas::events::AuthDenied {
        event_id: denied_id,
        event_time: noon("2026-03-05"),
        auth_id: "AUTH-B".to_owned(),
        member_id: "B-S".to_owned(),
        reason_code: "NOT_MEDICALLY_NECESSARY".to_owned(),
        reason: "criteria not met".to_owned(),
    }));
    let (after, outputs) = world.run();
    let decisions = |claim: &str| {
        outputs
            .iter()
            .filter_map(|e| match e {
                Event::ClaimAdjudicated(a) if a.claim_id == claim => Some(a.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let a = decisions("CA");
    assert_eq!(a.len(), 2, "the pended decision, then the new one");
    assert_eq!((a[0].status, a[1].status), (ClaimStatus::PENDED, ClaimStatus::APPROVED));
    assert_ne!(a[0].event_id, a[1].event_id);
    assert!(a[1].trace[0].contains("decided again: authorization AUTH-A"), "{:?}", a[1].trace);
    assert_eq!(a[1].auth_id.as_deref(), Some("AUTH-A"));
    // Allowed 2,000,000: deductible 300,000, then 20% of 1,700,000.
    assert_eq!((a[1].total_member_share_idr.0, a[1].total_plan_paid_idr.0), (640_000, 1_360_000));
    let acc = after.accumulators("A-S", 2026).expect("A's accumulators");
    assert_eq!((acc.member.deductible.0, acc.member.oop.0), (300_000, 640_000), "counted once");
    let state = after.claim_state("CA").expect("CA");
    assert_eq!((state.state.as_str(), state.decisions), ("ADJUDICATED", 2));
    let b = decisions("CB");
    assert_eq!((b.len(), b[1].status), (2, ClaimStatus::DENIED));
    assert_eq!(codes(&b[1].lines[0]), vec![(AdjustmentGroup::CO, "197", 2_500_000)]);
    // Every event id is its own: a rerun's read-back can tell them apart.
    let ids: std::collections::HashSet<&str> = outputs.iter().map(|e| e.event_id()).collect();
    assert_eq!(ids.len(), outputs.len());
}

/// Event ids kept only within the dedup horizon: over 120 days of the generator's traffic (in
/// the sequencer's order, event time advanced as the job does) an adjudicator keeping 30 days of
/// ids decides exactly what one never told the time (keeping every id) does, keeping well under half of them; a replay of the first claim then is refused
/// (older than the horizon: counted, nothing decided), and a duplicate within it decides nothing.
#[test]
fn event_ids_are_kept_within_the_horizon_and_the_decisions_do_not_change() {
    const DAY: i64 = 86_400_000;
    let mut events = common::labelled(7, 3_000, 120).events;
    events
        .sort_by(|a, b| arus_jobs::runtime::sequenced::order_key(a).cmp(&arus_jobs::runtime::sequenced::order_key(b)));
    let (mut every, mut bounded) = (Adjudicator::new(), Adjudicator::new());
    bounded.set_dedup_horizon(30 * DAY);
    for event in &events {
        bounded.advance(event.event_time().0); // (as the job does, folding in order)
        assert_eq!(bounded.apply(event), every.apply(event), "{}", event.event_id());
    }
    let ((kept, expired), (all, _)) = (bounded.dedup_ids(), every.dedup_ids());
    assert_eq!(all, events.len(), "every id, without a horizon");
    assert!(kept * 2 < all, "{kept} ids kept of {all}");
    assert_eq!(expired, 0);
    let first = events.iter().find(|e| matches!(e, Event::ClaimSubmitted(_))).expect("a claim");
    assert!(bounded.apply(first).is_empty(), "a replay from before the horizon");
    assert_eq!(bounded.dedup_ids().1, 1, "counted");
    let last = events.iter().rev().find(|e| matches!(e, Event::ClaimSubmitted(_))).expect("a claim");
    assert!(bounded.apply(last).is_empty(), "a duplicate within the horizon");
    assert_eq!(bounded.dedup_ids().1, 1);
}
