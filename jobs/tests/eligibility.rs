//! Eligibility answers from member and plan events: coverage changes, terminations, deaths,
//! dependents following their subscriber, plan benefits by date, and answers that do not depend
//! on the order events arrive in or on replays.

use arus_jobs::eligibility::EligibilityState;
use arus_schemas::events::{
    BenefitUpdated, Benefits, CoverageChangeType, CoverageChanged, EligibilityRequested, EligibilityStatus,
    MemberCreated, MemberUpdated, PlanCreated, PlanTier, Relationship, Sex,
};
use arus_schemas::{Date, Event, Idr, Timestamp};
use proptest::prelude::*;

fn date(text: &str) -> Date {
    let parts: Vec<i32> = text.split('-').map(|p| p.parse().expect("number")).collect();
    Date::from_ymd(parts[0], parts[1] as u32, parts[2] as u32).expect("a date")
}

fn benefits(copay: i64) -> Benefits {
    Benefits {
        deductible_individual_idr: Idr(500_000),
        deductible_family_idr: Idr(1_500_000),
        oop_max_individual_idr: Idr(5_000_000),
        oop_max_family_idr: Idr(15_000_000),
        copay_idr: Idr(copay),
        coinsurance_bp: 2_000,
        out_of_network_coinsurance_bp: 4_000,
        annual_limit_idr: Idr(100_000_000),
        prior_auth_procedures: vec!["70551".to_owned()],
        excluded_procedures: vec!["15780".to_owned()],
    }
}

fn plan(id: &str, copay: i64) -> Event {
    Event::PlanCreated(PlanCreated {
        event_id: format!("plan-{id}"),
        event_time: Timestamp(0),
        plan_id: id.to_owned(),
        name: id.to_owned(),
        tier: PlanTier::SILVER,
        plan_year: 2026,
        version: 1,
        benefits: benefits(copay),
    })
}

fn member(id: &str, relationship: Relationship) -> Event {
    Event::MemberCreated(MemberCreated {
        event_id: format!("created-{id}"),
        event_time: Timestamp(1),
        member_id: id.to_owned(),
        family_id: "F1".to_owned(),
        subscriber_id: "S".to_owned(),
        relationship,
        nik: "3171010101900001".to_owned(),
        full_name: "Test Member".to_owned(),
        date_of_birth: date("1990-01-01"),
        sex: Sex::FEMALE,
        province_code: "31".to_owned(),
        regency_code: "3171".to_owned(),
        city: "Jakarta".to_owned(),
        phone: None,
        email: None,
    })
}

fn coverage(n: u32, id: &str, change_type: CoverageChangeType, plan_id: &str, effective: &str) -> Event {
    Event::CoverageChanged(CoverageChanged {
        event_id: format!("coverage-{n}"),
        event_time: Timestamp(i64::from(n) * 1_000),
        member_id: id.to_owned(),
        family_id: "F1".to_owned(),
        subscriber_id: "S".to_owned(),
        change_type,
        plan_id: plan_id.to_owned(),
        effective_date: date(effective),
        end_date: None,
        reason: (change_type == CoverageChangeType::TERMINATED).then(|| "NON_PAYMENT".to_owned()),
    })
}

/// A family: subscriber S and spouse D enrolled on P1 from January, S moved to P2 in March and
/// terminated from June; a child C enrolled in February; a member X who dies in April; P1's
/// copay raised in May.
fn events() -> Vec<Event> {
    vec![
        plan("P1", 25_000),
        plan("P2", 50_000),
        member("S", Relationship::SUBSCRIBER),
        member("D", Relationship::SPOUSE),
        member("C", Relationship::CHILD),
        member("X", Relationship::SUBSCRIBER),
        coverage(1, "S", CoverageChangeType::ENROLLED, "P1", "2026-01-01"),
        coverage(2, "D", CoverageChangeType::ENROLLED, "P1", "2026-01-01"),
        coverage(3, "C", CoverageChangeType::ENROLLED, "P1", "2026-02-01"),
        coverage(4, "X", CoverageChangeType::ENROLLED, "P1", "2026-01-01"),
        coverage(5, "S", CoverageChangeType::PLAN_CHANGED, "P2", "2026-03-01"),
        coverage(6, "S", CoverageChangeType::TERMINATED, "P2", "2026-06-01"),
        Event::MemberUpdated(MemberUpdated {
            event_id: "died-X".to_owned(),
            event_time: Timestamp(9_000),
            member_id: "X".to_owned(),
            full_name: None,
            province_code: None,
            regency_code: None,
            city: None,
            phone: None,
            email: None,
            date_of_death: Some(date("2026-04-10")),
        }),
        Event::BenefitUpdated(BenefitUpdated {
            event_id: "raise-P1".to_owned(),
            event_time: Timestamp(10_000),
            plan_id: "P1".to_owned(),
            version: 2,
            effective_date: date("2026-05-01"),
            benefits: benefits(40_000),
        }),
    ]
}

fn state_of(events: &[Event]) -> EligibilityState {
    let mut state = EligibilityState::new();
    events.iter().for_each(|e| {
        state.apply(e);
    });
    state
}

#[test]
fn coverage_follows_enrolment_plan_changes_and_termination() {
    let state = state_of(&events());
    let s = |day: &str| state.answer("S", date(day), "99213");
    assert_eq!(s("2025-12-31").status, EligibilityStatus::NOT_YET_COVERED);
    assert!(!s("2025-12-31").eligible);
    let jan = s("2026-01-15");
    assert!(jan.eligible);
    assert_eq!((jan.plan_id.as_deref(), jan.coverage_start), (Some("P1"), Some(date("2026-01-01"))));
    assert_eq!(jan.coverage_end, Some(date("2026-05-31")), "a termination on record is the span's known end");
    let april = s("2026-04-01");
    assert_eq!(april.plan_id.as_deref(), Some("P2"), "the plan change applies from March");
    assert_eq!(april.coverage_start, Some(date("2026-01-01")), "a plan change does not break the span");
    assert!(s("2026-05-31").eligible, "covered through the last day");
    let june = s("2026-06-01");
    assert!(!june.eligible);
    assert_eq!(june.status, EligibilityStatus::TERMINATED);
    assert_eq!(june.coverage_end, Some(date("2026-05-31")));
    assert!(june.reason.as_deref().is_some_and(|r| r.contains("NON_PAYMENT")), "{june:?}");
}

#[test]
fn a_dependent_follows_the_subscriber() {
    let state = state_of(&events());
    let d = |day: &str| state.answer("D", date(day), "99213");
    assert_eq!(d("2026-02-01").plan_id.as_deref(), Some("P1"));
    assert_eq!(d("2026-04-01").plan_id.as_deref(), Some("P2"), "the spouse moves with the subscriber's plan");
    assert!(d("2026-05-31").eligible);
    let june = d("2026-06-01");
    assert!(!june.eligible, "the subscriber's termination ends the family's coverage");
    assert!(june.reason.as_deref().is_some_and(|r| r.contains("SUBSCRIBER_TERMINATED")), "{june:?}");
    let c = state.answer("C", date("2026-01-15"), "99213");
    assert_eq!(c.status, EligibilityStatus::NOT_YET_COVERED, "the child's own enrolment starts in February");
    assert_eq!(state.answer("C", date("2026-02-15"), "99213").coverage_start, Some(date("2026-02-01")));
}

#[test]
fn death_unknown_members_benefits_exclusions_and_prior_auth() {
    let state = state_of(&events());
    assert!(state.answer("X", date("2026-04-10"), "99213").eligible, "covered on the day of death");
    let after = state.answer("X", date("2026-04-11"), "99213");
    assert_eq!((after.eligible, after.status), (false, EligibilityStatus::TERMINATED));
    assert!(after.reason.as_deref().is_some_and(|r| r.contains("DEATH")));
    assert_eq!(state.answer("nobody", date("2026-04-11"), "99213").status, EligibilityStatus::UNKNOWN_MEMBER);
    let copay = |day: &str| state.answer("D", date(day), "99213").benefits.map(|b| b.copay_idr);
    assert_eq!(copay("2026-02-10"), Some(Idr(25_000)));
    let x_may = state.answer("C", date("2026-05-10"), "99213");
    assert_eq!(x_may.plan_id.as_deref(), Some("P2"), "the child follows the subscriber too");
    let mri = state.answer("S", date("2026-02-10"), "70551");
    assert!(mri.eligible && mri.requires_prior_auth);
    let cosmetic = state.answer("S", date("2026-02-10"), "15780");
    assert!(!cosmetic.eligible && cosmetic.status == EligibilityStatus::ACTIVE);
    assert!(cosmetic.reason.as_deref().is_some_and(|r| r.contains("excluded")));
    let response = state.respond(
        &EligibilityRequested {
            event_id: "req-event".to_owned(),
            event_time: Timestamp(5),
            request_id: "R1".to_owned(),
            member_id: "S".to_owned(),
            service_date: date("2026-06-02"),
            service_type: "99213".to_owned(),
            provider_id: None,
        },
        Timestamp(6),
    );
    assert_eq!(
        (response.eligible, response.status, response.event_id.as_str()),
        (false, EligibilityStatus::TERMINATED, "elig-resp:R1")
    );
}

#[test]
fn benefit_versions_apply_from_their_effective_date() {
    let mut state = state_of(&events());
    // P1's raise applies from May: X is dead by then, D and C follow S to P2; a member still on
    // P1 shows it.
    state.apply(&member("Y", Relationship::SUBSCRIBER));
    let mut enrol = coverage(7, "Y", CoverageChangeType::ENROLLED, "P1", "2026-01-01");
    if let Event::CoverageChanged(c) = &mut enrol {
        c.subscriber_id = "Y".to_owned();
    }
    let affected = state.apply(&enrol);
    assert_eq!(affected, vec!["Y".to_owned()]);
    let copay = |day: &str| state.answer("Y", date(day), "99213").benefits.map(|b| b.copay_idr);
    assert_eq!(copay("2026-04-30"), Some(Idr(25_000)));
    assert_eq!(copay("2026-05-01"), Some(Idr(40_000)));
    assert!(state.apply(&enrol).is_empty(), "an event applied twice changes nothing");
}

const DAYS: [&str; 8] =
    ["2025-12-31", "2026-01-01", "2026-02-15", "2026-03-01", "2026-04-11", "2026-05-31", "2026-06-01", "2026-12-31"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any order of the events, with some replayed, gives the same answers.
    #[test]
    fn answers_do_not_depend_on_event_order_or_replays(
        order in Just((0..events().len()).collect::<Vec<usize>>()).prop_shuffle(),
        replays in proptest::collection::vec(0..events().len(), 0..6),
    ) {
        let all = events();
        let reference = state_of(&all);
        let shuffled: Vec<Event> =
            order.iter().chain(replays.iter()).map(|i| all[*i].clone()).collect();
        let state = state_of(&shuffled);
        for member in ["S", "D", "C", "X", "nobody"] {
            for day in DAYS {
                prop_assert_eq!(state.answer(member, date(day), "70551"), reference.answer(member, date(day), "70551"));
            }
        }
    }
}

/// Materialized in a store as events arrive, answers read back from the store change with the
/// events, and a replay from scratch never moves the store backwards.
fn store_follows_the_events(store: &dyn arus_connectors::store::StateStore) {
    let all = events();
    let answer = |member: &str, day: &str| {
        arus_connectors::store::read::eligibility(store, member, date(day), "99213").expect("read the store")
    };
    let mut state = EligibilityState::new();
    // Plans and members, enrolments, but not yet S's plan change or termination.
    for event in &all[..10] {
        state.apply_to(event, store).expect("write the store");
    }
    assert_eq!(answer("S", "2026-04-01").plan_id.as_deref(), Some("P1"));
    assert_eq!(answer("D", "2026-04-01").plan_id.as_deref(), Some("P1"));
    assert!(answer("S", "2026-07-01").eligible);
    state.apply_to(&all[10], store).expect("the plan change");
    assert_eq!(answer("S", "2026-04-01").plan_id.as_deref(), Some("P2"), "the answer follows the CoverageChanged");
    assert_eq!(answer("D", "2026-04-01").plan_id.as_deref(), Some("P2"), "and the dependent follows the subscriber");
    for event in &all[11..] {
        state.apply_to(event, store).expect("write the store");
    }
    let terminated = answer("S", "2026-07-01");
    assert_eq!((terminated.eligible, terminated.status), (false, EligibilityStatus::TERMINATED));
    assert!(!answer("D", "2026-07-01").eligible, "the spouse's coverage ends with the subscriber's");
    assert!(answer("S", "2026-05-31").eligible);
    assert_eq!(answer("S", "2026-02-10").benefits.map(|b| b.copay_idr), Some(Idr(25_000)));
    assert_eq!(answer("nobody", "2026-02-10").status, EligibilityStatus::UNKNOWN_MEMBER);

    // A replay of the first half from scratch: the store keeps the fuller records.
    let mut replay = EligibilityState::new();
    for event in all[..10].iter().rev() {
        replay.apply_to(event, store).expect("write the store");
    }
    assert_eq!(answer("S", "2026-04-01").plan_id.as_deref(), Some("P2"), "a replay never moves a member back");
    assert!(!answer("S", "2026-07-01").eligible);
    // Every answer read from the store is the one the full state gives.
    for member in ["S", "D", "C", "X"] {
        for day in DAYS {
            assert_eq!(
                arus_connectors::store::read::eligibility(store, member, date(day), "70551").expect("read"),
                state.answer(member, date(day), "70551"),
                "{member} on {day}"
            );
        }
    }
}

#[test]
fn the_embedded_store_follows_the_events() {
    store_follows_the_events(&arus_connectors::store::MemoryStore::new());
}

/// Against the real Redis (`REDIS_URL`; required when `ARUS_REQUIRE_SERVICES` is set).
#[test]
fn redis_follows_the_events() {
    let Some(url) = arus_connectors::service_address("REDIS_URL") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-test-eligibility-{}-{nanos}:", std::process::id());
    let store = arus_connectors::store::RedisStore::connect(&url, &prefix).expect("redis");
    store_follows_the_events(&store);
}

/// The generator's traffic, read through eligibility: every claim it makes for a member is for
/// a day the member is covered, except the phantom billing it injects after a termination or a
/// death, which eligibility must catch.
#[test]
fn generated_claims_are_eligible_except_phantom_billing() {
    use arus_generator::{FraudPattern, GeneratorConfig, Output, generate};
    let config = GeneratorConfig { claims: 4_000, days: 120, ..GeneratorConfig::default() };
    let mut state = EligibilityState::new();
    let mut claims = Vec::new();
    let mut phantom = std::collections::BTreeSet::new();
    let mut deaths = std::collections::HashMap::new();
    generate(&config, |output| -> Result<(), std::convert::Infallible> {
        match output {
            Output::Event(Event::ClaimSubmitted(claim)) => claims.push(claim),
            Output::Event(event) => {
                if let Event::MemberUpdated(update) = &event
                    && let Some(died) = update.date_of_death
                {
                    deaths.insert(update.member_id.clone(), died);
                }
                state.apply(&event);
            }
            Output::Label(label) if label.pattern == FraudPattern::PhantomBilling => {
                phantom.insert(label.claim_id);
            }
            Output::Label(_) => {}
        }
        Ok(())
    })
    .expect("generate");
    let (mut wrong, mut caught) = (Vec::new(), 0);
    for claim in &claims {
        let procedure = claim.lines.first().map_or("", |l| l.procedure_code.as_str());
        let answer = state.answer(&claim.member_id, claim.service_date, procedure);
        let covered = answer.status == EligibilityStatus::ACTIVE;
        // Not covered: the phantom billing injected after terminations and deaths, and the few
        // claims the generator makes for days after a death (deaths are recorded, back-dated,
        // some days after they happen; such claims are not labelled).
        if !phantom.contains(&claim.claim_id) && deaths.get(&claim.member_id).is_some_and(|d| *d < claim.service_date) {
            if covered {
                wrong.push((claim.claim_id.clone(), false, answer.status, answer.reason));
            }
            continue;
        }
        match (phantom.contains(&claim.claim_id), covered) {
            (true, false) => caught += 1,
            (false, true) => {}
            (is_phantom, _) => wrong.push((claim.claim_id.clone(), is_phantom, answer.status, answer.reason)),
        }
    }
    assert!(claims.len() > 3_000 && !phantom.is_empty());
    assert!(
        wrong.is_empty(),
        "{} of {} claims judged wrongly, e.g. {:?}",
        wrong.len(),
        claims.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(caught, phantom.len());
}

#[test]
fn a_subscribers_death_leaves_the_dependents_covered_under_the_same_plan() {
    let mut all = events();
    // W is X's spouse: X dies on 2026-04-10 (and X's own coverage ends then).
    let mut spouse = member("W", Relationship::SPOUSE);
    if let Event::MemberCreated(m) = &mut spouse {
        m.subscriber_id = "X".to_owned();
    }
    let mut enrol = coverage(8, "W", CoverageChangeType::ENROLLED, "P1", "2026-01-01");
    if let Event::CoverageChanged(c) = &mut enrol {
        c.subscriber_id = "X".to_owned();
    }
    all.extend([spouse, enrol]);
    let state = state_of(&all);
    assert!(!state.answer("X", date("2026-05-01"), "99213").eligible);
    let widow = state.answer("W", date("2026-05-01"), "99213");
    assert!(widow.eligible, "{widow:?}");
    assert_eq!(widow.plan_id.as_deref(), Some("P1"));
}

/// The record the job stores for each member answers every question as the whole state does:
/// the generator's traffic (families, terminations, deaths, plan changes, benefit versions),
/// every member, every day from before the first coverage to after the last, for a plain
/// service, an excluded one and one needing prior authorization.
#[test]
fn each_members_stored_record_answers_as_the_whole_state_does() {
    use arus_generator::{GeneratorConfig, Output, generate};
    let config = GeneratorConfig { claims: 2_000, days: 90, ..GeneratorConfig::default() };
    let mut state = EligibilityState::new();
    let mut members = std::collections::BTreeSet::new();
    let (mut first, mut last) = (Date(i32::MAX), Date(i32::MIN));
    let mut procedures = std::collections::BTreeSet::from(["99213".to_owned()]);
    generate(&config, |output| -> Result<(), std::convert::Infallible> {
        if let Output::Event(event) = output {
            match &event {
                Event::MemberCreated(m) => {
                    members.insert(m.member_id.clone());
                }
                Event::CoverageChanged(c) => {
                    first = first.min(c.effective_date);
                    last = last.max(c.effective_date);
                }
                Event::PlanCreated(p) => {
                    procedures.extend(p.benefits.excluded_procedures.iter().take(1).cloned());
                    procedures.extend(p.benefits.prior_auth_procedures.iter().take(1).cloned());
                }
                _ => {}
            }
            state.apply(&event);
        }
        Ok(())
    })
    .expect("generate");
    assert!(members.len() > 100 && procedures.len() >= 3, "{} members, {procedures:?}", members.len());
    let (mut asked, mut spans) = (0u64, 0usize);
    for member in &members {
        let record = state.eligibility_record(member).expect("a known member");
        spans += record.spans.len();
        let mut day = first.add_days(-30);
        while day <= last.add_days(400) {
            for procedure in &procedures {
                assert_eq!(record.answer(day, procedure), state.answer(member, day, procedure), "{member} on {day}");
                asked += 1;
            }
            day = day.add_days(3);
        }
    }
    assert!(asked > 100_000 && spans > members.len(), "{asked} answers from {spans} spans");
}
