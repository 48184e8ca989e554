//! The fraud model through ONNX Runtime (`ORT_DYLIB_PATH`, installed by the test command):
//! quality on a held-out generated set, scores in the alerts, and a new model version taken up
//! by a running fold — replacing the model, or in shadow mode next to it — with no alert lost.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use arus_jobs::fraud::job::{FraudFold, ModelWatch};
use arus_jobs::fraud::model::{OnnxScorer, Scorer, newest};
use arus_jobs::fraud::spec::ModelSpec;
use arus_jobs::fraud::{FraudDetector, Step};
use arus_jobs::runtime::sequenced::order_key;
use arus_schemas::Event;

mod common;

fn models() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))
}

fn held_out(seed: u64, claims: u64) -> (Vec<Event>, HashMap<String, &'static str>) {
    let common::Labelled { mut events, labels } = common::labelled(seed, claims, 60);
    events.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    (events, labels)
}

#[test]
fn the_model_scores_held_out_claims_as_its_card_says() {
    if arus_connectors::service_address("ORT_DYLIB_PATH").is_none() {
        return;
    }
    let (version, path) = newest(models()).expect("a model in models/");
    let mut scorer = OnnxScorer::load(&path).expect("the model loads");
    assert_eq!((scorer.name(), scorer.version()), ("arus-fraud", version.to_string().as_str()));
    assert_eq!(scorer.importance_order().len(), arus_jobs::fraud::FEATURES.len(), "the card's importances");
    let (events, labels) = held_out(31, 15_000);
    let mut detector = FraudDetector::new();
    let (mut rows, mut ids) = (Vec::new(), Vec::new());
    let steps: Vec<Step> = events.iter().flat_map(|event| detector.apply(event)).collect();
    for step in steps.into_iter().chain(detector.close(i64::MAX)) {
        if let Step::Claim(closed) = step {
            rows.push(closed.features.values);
            ids.push(closed.features.claim_id);
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
    eprintln!("model v{version} on seed 31: precision {true_positive}/{flagged}, recall {true_positive}/{fraud}");
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
    for alert in fold.finish().expect("scored") {
        let Event::FraudAlert(a) = alert else { panic!("not an alert") };
        alerts.push(a);
    }
    alerts
}

#[test]
fn a_new_model_version_is_taken_up_while_running() {
    if arus_connectors::service_address("ORT_DYLIB_PATH").is_none() {
        return;
    }
    let (events, _) = held_out(5, 4_000);
    let (version, _) = newest(models()).expect("a model in models/");
    let (v, next) = (version.to_string(), (version + 1).to_string());
    for shadow in [false, true] {
        let dir = tempfile::tempdir().expect("a folder");
        for ext in ["onnx", "json"] {
            let name = format!("fraud-v{v}.{ext}");
            std::fs::copy(models().join(&name), dir.path().join(&name)).expect("copy");
        }
        let spec = ModelSpec { dir: dir.path().to_owned(), threshold: 0.5, shadow };
        let reference = alerts_with(Some(ModelWatch::open(&spec).expect("the model")), &events, || {});
        // The same weights as the next version, dropped into the folder halfway.
        let alerts = alerts_with(Some(ModelWatch::open(&spec).expect("the model")), &events, || {
            for ext in ["onnx", "json"] {
                std::fs::copy(
                    dir.path().join(format!("fraud-v{v}.{ext}")),
                    dir.path().join(format!("fraud-v{next}.{ext}")),
                )
                .expect("deploy the next version");
            }
        });
        let ids = |a: &[arus_schemas::events::FraudAlert]| a.iter().map(|a| a.alert_id.clone()).collect::<HashSet<_>>();
        assert_eq!(ids(&alerts), ids(&reference), "shadow {shadow}: no alert lost or added");
        assert!(alerts.iter().all(|a| a.score.is_some()), "every alert carries the score");
        let versions: Vec<(Option<&str>, Option<&str>)> =
            alerts.iter().map(|a| (a.model_version.as_deref(), a.shadow_model_version.as_deref())).collect();
        let (first, last) = (versions.first().expect("alerts"), versions.last().expect("alerts"));
        if shadow {
            assert_eq!(
                (*first, *last),
                ((Some(v.as_str()), None), (Some(v.as_str()), Some(next.as_str()))),
                "shadow: the next version scores beside the current one"
            );
            let shadowed = alerts.iter().filter(|a| a.shadow_score.is_some());
            assert!(
                shadowed.clone().count() > 0 && shadowed.clone().all(|a| a.shadow_score == a.score),
                "same weights"
            );
        } else {
            assert_eq!(
                (*first, *last),
                ((Some(v.as_str()), None), (Some(next.as_str()), None)),
                "the next version replaces the current one"
            );
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

#[test]
fn a_model_trained_on_other_features_is_refused_with_a_clear_error() {
    if arus_connectors::service_address("ORT_DYLIB_PATH").is_none() {
        return;
    }
    let (version, path) = newest(models()).expect("a model in models/");
    let dir = tempfile::tempdir().expect("a folder");
    std::fs::copy(&path, dir.path().join(format!("fraud-v{version}.onnx"))).expect("copy");
    // Its card says it was trained on the first twelve features only (as version 1 was).
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).expect("the card")).expect("json");
    card["features"] = serde_json::json!(arus_jobs::fraud::FEATURES[..12]);
    std::fs::write(dir.path().join(format!("fraud-v{version}.json")), card.to_string()).expect("write the card");
    let spec = ModelSpec { dir: dir.path().to_owned(), threshold: 0.5, shadow: false };
    let err = ModelWatch::open(&spec).err().expect("refused");
    let message = err.to_string();
    assert!(message.contains("trained on 12 features") && message.contains("train it again"), "{message}");
}
