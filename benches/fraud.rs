//! Fraud: claims through the rules and their event-time windows per second, and claims scored per second through ONNX
//! Runtime (`ORT_DYLIB_PATH`, or the one in the cache), batched and one at a time (as the job scores today). `cargo
//! bench --bench fraud`. Figures in benches/README.md.

use std::time::Instant;

use arus_generator::{GeneratorConfig, Output, generate};
use arus_jobs::fraud::model::{OnnxScorer, Scorer, newest};
use arus_jobs::fraud::{FraudDetector, Step};
use arus_jobs::runtime::sequenced::order_key;
use arus_schemas::Event;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut events = Vec::new();
    let settings = GeneratorConfig { claims: 200_000, days: 120, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        if let Output::Event(event) = output {
            events.push(event);
        }
        Ok(())
    })
    .expect("generate");
    events.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    let started = Instant::now();
    let mut detector = FraudDetector::new();
    let (mut alerts, mut rows) = (0usize, Vec::new());
    let mut take = |steps: Vec<Step>| {
        for step in steps {
            match step {
                Step::Alert(_) => alerts += 1,
                Step::Claim(closed) => {
                    alerts += closed.alerts.len();
                    rows.push(closed.features.values);
                }
            }
        }
    };
    for event in &events {
        take(detector.apply(event));
    }
    take(detector.close(i64::MAX));
    let took = started.elapsed();
    let claims = events.iter().filter(|e| matches!(e, Event::ClaimSubmitted(_))).count();
    println!(
        "rules: {claims} claims ({} events) in {took:.2?}: {} claims/s, {alerts} alerts",
        events.len(),
        claims as u128 * 1_000 / took.as_millis().max(1)
    );
    if let Err(missing) = arus_models::runtime_library() {
        eprintln!("{missing}: no model figures (deploy/local/onnxruntime.sh installs it)");
        return;
    }
    let (version, path) =
        newest(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))).expect("a model");
    let mut scorer = OnnxScorer::load(&path).expect("the model");
    for batch in [1usize, 64, 4_096] {
        let sample = &rows[..rows.len().min(if batch == 1 { 20_000 } else { rows.len() })];
        let started = Instant::now();
        let mut scored = 0;
        for chunk in sample.chunks(batch) {
            scored += scorer.score(chunk).expect("scores").len();
        }
        let took = started.elapsed();
        println!(
            "model v{version} through ONNX Runtime, batches of {batch}: {scored} claims in {took:.2?}: {} claims/s",
            scored as u128 * 1_000_000 / took.as_micros().max(1)
        );
    }
}
