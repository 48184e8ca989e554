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
use crate::model::{ModelError, OnnxScorer, Scorer, newest};
use crate::runner::{Cluster, RunError};
use crate::spec::{FraudSpec, ModelSpec, StoreSpec, parse_duration_ms};

/// The topics the job reads.
pub const TOPICS: [&str; 4] = ["benefit.events", "provider.events", "member.events", "claims.events"];

/// What a run did (`alerts` counts them).
pub type FraudReport = AdjudicationReport;

/// How often (in events) the models folder is looked at for a newer version.
const CHECK_EVERY: u32 = 256;

/// The models in use: the newest in a folder, and (shadow mode) a newer one next to it.
pub struct ModelWatch {
    dir: std::path::PathBuf,
    primary: Box<dyn Scorer>,
    shadow: Option<Box<dyn Scorer>>,
    shadow_mode: bool,
    threshold: f64,
    loaded: u32,
    since_check: u32,
}

impl ModelWatch {
    /// The newest model in `dir` (an error when there is none, or it does not load).
    pub fn open(spec: &ModelSpec) -> Result<Self, ModelError> {
        let (version, path) = newest(&spec.dir)
            .ok_or_else(|| ModelError(format!("{}: no fraud-v<version>.onnx here", spec.dir.display())))?;
        Ok(ModelWatch {
            dir: spec.dir.clone(),
            primary: Box::new(OnnxScorer::load(&path)?),
            shadow: None,
            shadow_mode: spec.shadow,
            threshold: spec.threshold,
            loaded: version,
            since_check: 0,
        })
    }

    /// Takes up a newer version if one has appeared (every [`CHECK_EVERY`] calls): as the model,
    /// or in shadow mode next to it.
    fn refresh(&mut self) -> Result<(), ModelError> {
        self.since_check += 1;
        if self.since_check < CHECK_EVERY {
            return Ok(());
        }
        self.since_check = 0;
        if let Some((version, path)) = newest(&self.dir).filter(|(v, _)| *v > self.loaded) {
            let scorer: Box<dyn Scorer> = Box::new(OnnxScorer::load(&path)?);
            if self.shadow_mode {
                self.shadow = Some(scorer);
            } else {
                self.primary = scorer;
            }
            self.loaded = version;
        }
        Ok(())
    }
}

/// The rules, and the model when there is one.
#[derive(Default)]
pub struct FraudFold {
    detector: FraudDetector,
    model: Option<ModelWatch>,
}

impl FraudFold {
    /// Rules only, or rules and a model.
    pub fn new(model: Option<ModelWatch>) -> Self {
        FraudFold { detector: FraudDetector::new(), model }
    }

    /// The alerts an event raises (rules, then the model on claims).
    pub fn alerts(&mut self, event: &Event) -> Result<Vec<Event>, ModelError> {
        let mut alerts = self.detector.apply(event);
        let features = self.detector.take_features();
        let (Some(watch), Some(features), Event::ClaimSubmitted(claim)) = (self.model.as_mut(), features, event) else {
            return Ok(alerts);
        };
        watch.refresh()?;
        let score = watch.primary.score(&[features.values])?.first().copied().unwrap_or(0.0);
        let shadow = match watch.shadow.as_mut() {
            Some(shadow) => {
                Some((shadow.version().to_owned(), shadow.score(&[features.values])?.first().copied().unwrap_or(0.0)))
            }
            None => None,
        };
        let mut about_claim = 0;
        for alert in alerts.iter_mut() {
            if let Event::FraudAlert(a) = alert
                && a.claim_ids.first() == Some(&features.claim_id)
            {
                a.model_name = Some(watch.primary.name().to_owned());
                a.model_version = Some(watch.primary.version().to_owned());
                a.score = Some(score);
                (a.shadow_model_version, a.shadow_score) =
                    shadow.clone().map_or((None, None), |(v, s)| (Some(v), Some(s)));
                about_claim += 1;
            }
        }
        if about_claim == 0 && score >= watch.threshold {
            let mut alert = crate::fraud::model_alert(
                claim,
                &features,
                score,
                (watch.primary.name(), watch.primary.version()),
                watch.primary.importance_order(),
            );
            if let (Event::FraudAlert(a), Some((version, shadow_score))) = (&mut alert, shadow) {
                (a.shadow_model_version, a.shadow_score) = (Some(version), Some(shadow_score));
            }
            alerts.push(alert);
        }
        Ok(alerts)
    }
}

impl Fold for FraudFold {
    fn apply(&mut self, event: &Event, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        self.alerts(event).map_err(|e| RunError::Unsupported(e.to_string()))
    }
}

/// Runs the job.
pub fn run(spec: &FraudSpec, cluster: &Cluster) -> Result<FraudReport, RunError> {
    let lateness = parse_duration_ms(&spec.out_of_orderness).map_err(RunError::Unsupported)?;
    let model =
        spec.model.as_ref().map(ModelWatch::open).transpose().map_err(|e| RunError::Unsupported(e.to_string()))?;
    run_sequenced(
        &spec.source,
        &StoreSpec::Memory,
        lateness,
        &TOPICS,
        &[FRAUD_ALERTS],
        Box::new(FraudFold::new(model)),
        cluster,
    )
}

/// Runs the rules over a log this process has (the demo), writing the alerts back to it.
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
