//! Runs the fraud rules ([`FraudDetector`]) over members, providers and claims, in event-time
//! order on one sequencer (as the adjudication job does), writing `FraudAlert`s to
//! `fraud.alerts`; a rerun writes only the alerts missing there.

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_schemas::Event;
use arus_schemas::topics::names::FRAUD_ALERTS;

use crate::adjudication_job::{AdjudicationReport, Fold, Writes, run_fold_on_log, run_sequenced};
use crate::fraud::FraudDetector;
use crate::runner::{Cluster, RunError};
use crate::spec::{FraudSpec, StoreSpec, parse_duration_ms};

/// The topics the job reads.
pub const TOPICS: [&str; 4] = ["benefit.events", "provider.events", "member.events", "claims.events"];

/// What a run did (`alerts` counts them).
pub type FraudReport = AdjudicationReport;

#[derive(Default)]
struct FraudFold {
    detector: FraudDetector,
}

impl Fold for FraudFold {
    fn apply(&mut self, event: &Event, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        Ok(self.detector.apply(event))
    }
}

/// Runs the job.
pub fn run(spec: &FraudSpec, cluster: &Cluster) -> Result<FraudReport, RunError> {
    let lateness = parse_duration_ms(&spec.out_of_orderness).map_err(RunError::Unsupported)?;
    run_sequenced(
        &spec.source,
        &StoreSpec::Memory,
        lateness,
        &TOPICS,
        &[FRAUD_ALERTS],
        Box::new(FraudFold::default()),
        cluster,
    )
}

/// Runs the job over a log this process has (the demo), writing the alerts back to it.
pub fn run_on_log(log: Arc<EmbeddedLog>, cluster: &Cluster) -> Result<FraudReport, RunError> {
    run_fold_on_log(
        log,
        cluster,
        Arc::new(MemoryStore::new()),
        &TOPICS,
        &[FRAUD_ALERTS],
        Box::new(FraudFold::default()),
    )
}
