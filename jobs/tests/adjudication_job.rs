//! The adjudication job on the embedded log: the same decisions and accumulator updates for 1,
//! 2 and 4 workers, equal to folding the events directly in the job's order, written back to
//! `claims.events` and `accumulator.updates`, and the claims' and accumulators' records in the
//! store.

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::{MemoryStore, StateStore};
use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::adjudication::Adjudicator;
use arus_jobs::adjudication::job::run_on_log_folding;
use arus_jobs::runtime::Cluster;
use arus_jobs::runtime::sequenced::{order_key, wanted};
use arus_schemas::read_models::Accumulators;
use arus_schemas::{Event, wire};

fn generated() -> Vec<Event> {
    let mut events = Vec::new();
    let settings = GeneratorConfig { claims: 1_500, days: 60, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        if let Output::Event(event) = output {
            events.push(event);
        }
        Ok(())
    })
    .expect("generate");
    events
}

fn log_of(events: &[Event]) -> Arc<EmbeddedLog> {
    let log = EmbeddedLog::new();
    log.create_all_topics().expect("topics");
    for event in events {
        let bytes = wire::encode(event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
    Arc::new(log)
}

/// Per partition, the records of `topic` from `from` offsets on, decoded.
fn read(log: &EmbeddedLog, topic: &str, from: &[u64]) -> Vec<Vec<Event>> {
    log.end_offsets(topic)
        .expect("offsets")
        .into_iter()
        .enumerate()
        .map(|(p, end)| {
            let start = from.get(p).copied().unwrap_or(0);
            log.fetch(topic, p as u32, start, (end - start) as usize)
                .expect("fetch")
                .iter()
                .map(|r| wire::decode(&r.value).expect("an event"))
                .collect()
        })
        .collect()
}

#[test]
fn any_worker_count_decides_as_the_direct_fold_does() {
    let events = generated();
    // The direct fold, in the job's order.
    let mut ordered: Vec<&Event> = events.iter().filter(|e| wanted(e)).collect();
    ordered.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    let mut adjudicator = Adjudicator::new();
    let mut expected: Vec<Event> = ordered.iter().flat_map(|e| adjudicator.apply(e)).collect();
    // Each claim's last decision (a claim pended for an authorization is decided again).
    let mut last_decision = std::collections::HashMap::new();
    for event in &expected {
        if let Event::ClaimAdjudicated(a) = event {
            last_decision.insert(a.claim_id.clone(), a.clone());
        }
    }
    expected.sort_by(|a, b| a.event_id().cmp(b.event_id()));
    let claims = events.iter().filter(|e| matches!(e, Event::ClaimSubmitted(_))).count();
    assert!(expected.iter().filter(|e| matches!(e, Event::ClaimAdjudicated(_))).count() == claims);

    // Decisions and accumulator updates, per partition.
    type Written = (Vec<Vec<Event>>, Vec<Vec<Event>>);
    let mut first: Option<Written> = None;
    for (workers, fold_threads) in [(1, 1), (2, 2), (4, 3), (1, 2)] {
        let log = log_of(&events);
        let claims_before = log.end_offsets("claims.events").expect("offsets");
        let store = Arc::new(MemoryStore::new());
        let report = run_on_log_folding(log.clone(), &Cluster::Local { workers }, store.clone(), fold_threads)
            .expect("the job runs");
        assert_eq!(report.late, 0, "{report:?}");
        assert_eq!(report.decided.values().sum::<u64>() as usize, claims, "{report:?}");
        let decisions = read(&log, "claims.events", &claims_before);
        let updates = read(&log, "accumulator.updates", &[]);
        let mut written: Vec<Event> = decisions.iter().chain(&updates).flatten().cloned().collect();
        written.sort_by(|a, b| a.event_id().cmp(b.event_id()));
        assert_eq!(written.len(), expected.len(), "{workers} workers, {fold_threads} fold threads");
        let differ = written.iter().zip(&expected).find(|(w, e)| w != e);
        assert!(
            differ.is_none(),
            "{workers} workers, {fold_threads} fold threads: the job's outputs differ from the direct fold: {differ:#?}"
        );
        // Per partition, in the same order every time.
        match &first {
            None => first = Some((decisions, updates)),
            Some(first) => {
                assert!(*first == (decisions, updates), "{workers} workers, {fold_threads} fold threads: another order")
            }
        }
        // The store has every claim's record and the accumulators the fold ends with.
        for event in &expected {
            match event {
                Event::ClaimAdjudicated(a) => {
                    let view =
                        arus_connectors::store::read::claim(&*store, &a.claim_id).expect("read").expect("a record");
                    assert_eq!(Some(&view.adjudication), last_decision.get(&a.claim_id));
                    let state = adjudicator.claim_state(&a.claim_id).expect("a state");
                    assert_eq!(
                        (&view.state, &view.payment_id, &view.reversal, view.version),
                        (&state.state, &state.payment_id, &state.reversal, state.version)
                    );
                }
                Event::AccumulatorUpdated(u) => {
                    let (_, bytes) = store
                        .get(&arus_schemas::read_models::accumulator_key(&u.member_id, u.plan_year))
                        .expect("get")
                        .expect("a record");
                    let acc: Accumulators = serde_json::from_slice(&bytes).expect("json");
                    assert_eq!(Some(&acc), adjudicator.accumulators(&u.member_id, u.plan_year));
                }
                _ => {}
            }
        }
    }
}

#[test]
fn claim_records_of_an_earlier_build_and_bad_records_read_as_expected() {
    let events = generated();
    let log = log_of(&events);
    let store = Arc::new(MemoryStore::new());
    run_on_log_folding(log, &Cluster::Local { workers: 1 }, store.clone(), 1).expect("the job runs");
    let decided = events
        .iter()
        .find_map(|e| match e {
            Event::ClaimSubmitted(c) => Some(c.claim_id.clone()),
            _ => None,
        })
        .expect("a claim");
    let view = arus_connectors::store::read::claim(&*store, &decided).expect("read").expect("decided");

    // An earlier build's record: the whole view as JSON under claim:<id>.
    let old = MemoryStore::new();
    let mut earlier = view.clone();
    earlier.state = "PAID".to_owned();
    earlier.payment_id = Some("PAY-1".to_owned());
    earlier.version = 2;
    old.put_versioned("claim:OLD", 2, &serde_json::to_vec(&earlier).expect("json")).expect("put");
    assert_eq!(arus_connectors::store::read::claim(&old, "OLD").expect("read"), Some(earlier.clone()));
    // Its state, once this build writes one, is the state.
    let reversed = serde_json::json!({
        "state": "REVERSED", "payment_id": "PAY-1", "reversal": "voided", "version": 3, "decisions": 1
    });
    old.put_versioned("claim-state:OLD", 3, reversed.to_string().as_bytes()).expect("put");
    let now = arus_connectors::store::read::claim(&old, "OLD").expect("read").expect("there");
    assert_eq!((now.state.as_str(), now.reversal.as_deref(), now.version), ("REVERSED", Some("voided"), 3));
    assert_eq!(now.adjudication, earlier.adjudication);

    // Not a decision: an error naming the claim and what is wrong, not a panic or a guess.
    old.put_versioned("claim:GARBAGE", 1, b"\x00\x00\x00\x00\x01junk").expect("put");
    let error = arus_connectors::store::read::claim(&old, "GARBAGE").expect_err("garbage");
    assert!(error.to_string().contains("claim:GARBAGE"), "{error}");
    let paid = events.iter().find(|e| matches!(e, Event::PaymentCompleted(_))).expect("a payment");
    old.put_versioned("claim:WRONG", 1, &wire::encode(paid).expect("encode")).expect("put");
    let error = arus_connectors::store::read::claim(&old, "WRONG").expect_err("another kind");
    assert!(error.to_string().contains("PaymentCompleted"), "{error}");
    assert_eq!(arus_connectors::store::read::claim(&old, "NONE").expect("read"), None);
}
