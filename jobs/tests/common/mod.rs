//! What the jobs' tests share.

#![allow(dead_code)] // (each test file uses its part)

use std::collections::HashMap;

use arus_generator::{GeneratorConfig, Output, generate};
use arus_schemas::Event;

/// The generator's traffic, and its fraud labels: claim id → pattern.
pub struct Labelled {
    pub events: Vec<Event>,
    pub labels: HashMap<String, &'static str>,
}

/// `claims` claims over `days` days of the generator's traffic with `seed`, labelled.
pub fn labelled(seed: u64, claims: u64, days: u32) -> Labelled {
    let (mut events, mut labels) = (Vec::new(), HashMap::new());
    let settings = GeneratorConfig { seed, claims, days, ..GeneratorConfig::default() };
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
    Labelled { events, labels }
}
