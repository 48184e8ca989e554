//! The fraud model through ONNX Runtime (`ORT_DYLIB_PATH`, installed by the test command):
//! quality on a held-out generated set, scores in the alerts, and a new model version taken up
//! by a running fold — replacing the model, or in shadow mode next to it — with no alert lost.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::adjudication_job::order_key;
use arus_jobs::fraud::FraudDetector;
use arus_jobs::fraud_job::{FraudFold, ModelWatch};
use arus_jobs::model::{OnnxScorer, Scorer};
use arus_jobs::spec::ModelSpec;
use arus_schemas::Event;

fn models() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))
}

fn held_out(seed: u64, claims: u64) -> (Vec<Event>, HashMap<String, &'static str>) {
    let (mut events, mut labels) = (Vec::new(), HashMap::new());
    let settings = GeneratorConfig { seed, claims, days: 60, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        match output {
            Output::Event(event) => events.push(event),
            Output::Label(label) => {
                labels.insert(label.claim_id, label.pattern.as_str());
            }
        }
        Ok(())
    })
    .expect("generate");
    events.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    (events, labels)
}

#[test]
fn the_model_scores_held_out_claims_as_its_card_says() {
    if arus_connectors::service_address("ORT_DYLIB_PATH").is_none() {
        return;
    }
    let mut scorer = OnnxScorer::load(&models().join("fraud-v1.onnx")).expect("the model loads");
    assert_eq!((scorer.name(), scorer.version()), ("arus-fraud", "1"));
    assert_eq!(scorer.importance_order().len(), arus_jobs::fraud::FEATURES.len(), "the card's importances");
    let (events, labels) = held_out(31, 15_000);
    let mut detector = FraudDetector::new();
    let (mut rows, mut ids) = (Vec::new(), Vec::new());
    for event in &events {
        detector.apply(event);
        if let Some(features) = detector.take_features() {
            rows.push(features.values);
            ids.push(features.claim_id);
        }
    }
    let scores = scorer.score(&rows).expect("scores");
    assert_eq!(scores.len(), rows.len());
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    let (mut true_positive, mut flagged, mut fraud) = (0u32, 0u32, 0u32);
    for (id, score) in ids.iter().zip(&scores) {
        let is_fraud = labels.contains_key(id);
        fraud += u32::from(is_fraud);
        if *score >= 0.5 {
            flagged += 1;
            true_positive += u32::from(is_fraud);
        }
    }
    eprintln!("model v1 on seed 31: precision {true_positive}/{flagged}, recall {true_positive}/{fraud}");
    assert!(true_positive * 100 >= flagged * 85, "precision {true_positive}/{flagged}");
    assert!(true_positive * 100 >= fraud * 75, "recall {true_positive}/{fraud}");
    // Batched or one by one, the same scores.
    let single = scorer.score(&rows[..1]).expect("one");
    assert_eq!(single[0].to_bits(), scores[0].to_bits());
}

fn alerts_with(
    watch: Option<ModelWatch>,
    events: &[Event],
    before_half: impl FnOnce(),
) -> Vec<arus_schemas::events::FraudAlert> {
    let mut fold = FraudFold::new(watch);
    let mut before_half = Some(before_half);
    let mut alerts = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if i == events.len() / 2
            && let Some(f) = before_half.take()
        {
            f();
        }
        for alert in fold.alerts(event).expect("scored") {
            let Event::FraudAlert(a) = alert else { panic!("not an alert") };
            alerts.push(a);
        }
    }
    alerts
}

#[test]
fn a_new_model_version_is_taken_up_while_running() {
    if arus_connectors::service_address("ORT_DYLIB_PATH").is_none() {
        return;
    }
    let (events, _) = held_out(5, 4_000);
    for shadow in [false, true] {
        let dir = tempfile::tempdir().expect("a folder");
        for ext in ["onnx", "json"] {
            std::fs::copy(models().join(format!("fraud-v1.{ext}")), dir.path().join(format!("fraud-v1.{ext}")))
                .expect("copy");
        }
        let spec = ModelSpec { dir: dir.path().to_owned(), threshold: 0.5, shadow };
        let reference = alerts_with(Some(ModelWatch::open(&spec).expect("v1")), &events, || {});
        // The same weights as version 2, dropped into the folder halfway.
        let alerts = alerts_with(Some(ModelWatch::open(&spec).expect("v1")), &events, || {
            std::fs::copy(dir.path().join("fraud-v1.onnx"), dir.path().join("fraud-v2.onnx")).expect("deploy v2");
        });
        let ids = |a: &[arus_schemas::events::FraudAlert]| a.iter().map(|a| a.alert_id.clone()).collect::<HashSet<_>>();
        assert_eq!(ids(&alerts), ids(&reference), "shadow {shadow}: no alert lost or added");
        assert!(alerts.iter().all(|a| a.score.is_some()), "every alert carries the score");
        let versions: Vec<(Option<&str>, Option<&str>)> =
            alerts.iter().map(|a| (a.model_version.as_deref(), a.shadow_model_version.as_deref())).collect();
        let (first, last) = (versions.first().expect("alerts"), versions.last().expect("alerts"));
        if shadow {
            assert_eq!((*first, *last), ((Some("1"), None), (Some("1"), Some("2"))), "shadow: v2 scores beside v1");
            let shadowed = alerts.iter().filter(|a| a.shadow_score.is_some());
            assert!(
                shadowed.clone().count() > 0 && shadowed.clone().all(|a| a.shadow_score == a.score),
                "same weights"
            );
        } else {
            assert_eq!((*first, *last), ((Some("1"), None), (Some("2"), None)), "v2 replaces v1");
        }
    }
}

#[test]
fn a_folder_without_a_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a folder");
    let spec = ModelSpec { dir: dir.path().to_owned(), threshold: 0.5, shadow: false };
    let err = ModelWatch::open(&spec).err().expect("no model");
    assert!(err.to_string().contains("no fraud-v<version>.onnx"), "{err}");
}
