//! Runs the fraud rules ([`FraudDetector`]) over members, providers and claims, in event-time
//! order on one sequencer (as the adjudication job does), writing `FraudAlert`s to
//! `fraud.alerts`; a rerun writes only the alerts missing there.

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_schemas::Event;
use arus_schemas::topics::names::FRAUD_ALERTS;

use crate::adjudication_job::{AdjudicationReport, Fold, Writes, run_fold_on_log, run_sequenced};
use crate::fraud::{ClaimFeatures, FraudDetector};
use crate::model::{ModelError, OnnxScorer, Scorer, newest};
use crate::runner::{Cluster, RunError};
use crate::spec::{FraudSpec, ModelSpec, StoreSpec, parse_duration_ms};
use arus_schemas::events::ClaimSubmitted;

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

    /// Takes up a newer version if one has appeared (every [`CHECK_EVERY`] events): as the
    /// model, or in shadow mode next to it. `events`: how many since the last call.
    fn refresh(&mut self, events: u32) -> Result<(), ModelError> {
        self.since_check += events;
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
    /// Events of the batch whose claims are still to be scored.
    unscored: Vec<Unscored>,
}

/// What one event gave before scoring: the rules' alerts, and the claim with its features when
/// the event was one (and a model is to score it).
type Unscored = (Vec<Event>, Option<(ClaimSubmitted, ClaimFeatures)>);

impl FraudFold {
    /// Rules only, or rules and a model.
    pub fn new(model: Option<ModelWatch>) -> Self {
        FraudFold { detector: FraudDetector::new(), model, unscored: Vec::new() }
    }

    /// The alerts an event raises (rules, then the model on claims), scored at once.
    pub fn alerts(&mut self, event: &Event) -> Result<Vec<Event>, ModelError> {
        self.push(event);
        self.flush()
    }

    /// Runs the rules on an event; its claim waits to be scored with the others of the batch.
    fn push(&mut self, event: &Event) {
        let alerts = self.detector.apply(event);
        let features = self.detector.take_features();
        let claim = match (event, features) {
            (Event::ClaimSubmitted(claim), Some(features)) if self.model.is_some() => Some((claim.clone(), features)),
            _ => None,
        };
        self.unscored.push((alerts, claim));
    }

    /// Scores the waiting claims in one call per model, and gives every alert in event order:
    /// the same alerts, whatever the batches.
    fn flush(&mut self) -> Result<Vec<Event>, ModelError> {
        let unscored = std::mem::take(&mut self.unscored);
        let Some(watch) = self.model.as_mut() else {
            return Ok(unscored.into_iter().flat_map(|(alerts, _)| alerts).collect());
        };
        watch.refresh(unscored.len() as u32)?;
        let rows: Vec<_> = unscored.iter().filter_map(|(_, c)| c.as_ref().map(|(_, f)| f.values)).collect();
        let scores = watch.primary.score(&rows)?;
        let shadow_scores = match watch.shadow.as_mut() {
            Some(shadow) => Some((shadow.version().to_owned(), shadow.score(&rows)?)),
            None => None,
        };
        let mut out = Vec::new();
        let mut row = 0;
        for (mut alerts, claim) in unscored {
            let Some((claim, features)) = claim else {
                out.extend(alerts);
                continue;
            };
            let score = scores.get(row).copied().unwrap_or(0.0);
            let shadow = shadow_scores.as_ref().map(|(v, s)| (v.clone(), s.get(row).copied().unwrap_or(0.0)));
            row += 1;
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
                    &claim,
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
            out.extend(alerts);
        }
        Ok(out)
    }
}

impl Fold for FraudFold {
    fn apply(&mut self, event: &Event, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        self.push(event);
        Ok(Vec::new())
    }

    fn end_of_batch(&mut self, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        self.flush().map_err(|e| RunError::Unsupported(e.to_string()))
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
