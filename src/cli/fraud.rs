//! `arus fraud features`: the generator's traffic through the fraud rules, one row of features
//! per claim with its label, for training a model (`models/train.py`). The features are the
//! ones the fraud job computes when it scores, by the same code.

use std::io::Write;

use anyhow::Context;
use arus_generator::{Output, generate};
use arus_jobs::fraud::Step;

use super::Population;

/// `arus fraud` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FraudCommand {
    /// Write a CSV of claim features and fraud labels.
    Features(FeaturesArgs),
}

/// `arus fraud features` arguments.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    population: Population,
    /// The CSV to write.
    #[arg(long)]
    out: std::path::PathBuf,
}

/// Runs a subcommand.
pub fn run(command: FraudCommand) -> anyhow::Result<()> {
    let FraudCommand::Features(args) = command;
    let config = args.population.config(20_000, 90)?;
    let (mut events, mut labels) = (Vec::new(), std::collections::HashMap::new());
    generate(&config, |output| -> anyhow::Result<()> {
        match output {
            Output::Event(event) => events.push(event),
            Output::Label(label) => {
                labels.insert(label.claim_id, label.pattern.as_str());
            }
        }
        Ok(())
    })?;
    events
        .sort_by(|a, b| arus_jobs::runtime::sequenced::order_key(a).cmp(&arus_jobs::runtime::sequenced::order_key(b)));
    let file = std::fs::File::create(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "claim_id,{},label", arus_jobs::fraud::FEATURES.join(","))?;
    let mut detector = arus_jobs::fraud::FraudDetector::new();
    let mut rows = 0u64;
    let steps = events.iter().flat_map(|event| detector.apply(event)).collect::<Vec<_>>();
    for step in steps.into_iter().chain(detector.close(i64::MAX)) {
        // A claim as it is first scored, when its window closes.
        if let Step::Claim(closed) = step
            && !closed.again
        {
            let features = &closed.features;
            let values: Vec<String> = features.values.iter().map(i64::to_string).collect();
            let label = labels.get(&features.claim_id).copied().unwrap_or("");
            writeln!(out, "{},{},{label}", features.claim_id, values.join(","))?;
            rows += 1;
        }
    }
    out.flush()?;
    eprintln!(
        "{rows} claims with {} features and their labels to {}",
        arus_jobs::fraud::FEATURES.len(),
        args.out.display()
    );
    Ok(())
}
