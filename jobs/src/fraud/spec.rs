//! The fraud job's spec (`pipelines/fraud.toml`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::spec::{CheckpointSpec, JobKind, SpecError, TimeSpan, TopicsSource};

/// The fraud job: members, providers and claims in; alerts to `fraud.alerts` next to them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudSpec {
    /// `fraud`.
    pub job: JobKind,
    /// Where the topics are.
    pub source: TopicsSource,
    /// As the adjudication job's.
    #[serde(default = "crate::runtime::spec::default_out_of_orderness")]
    pub out_of_orderness: TimeSpan,
    /// Score every claim with the newest model in a folder, too.
    #[serde(default)]
    pub model: Option<ModelSpec>,
    /// Snapshots of the rules' state (`dir`, `interval`): a restart begins from the newest and
    /// reads only what came after it. With them, the end of a bounded input is a pause: the
    /// windows still open stay open (in the snapshot) for the next run, instead of closing.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
    /// How long event ids are kept to drop duplicates (`30d`): an event older than that behind
    /// the newest is refused, as one that cannot be told from a replay (beyond the topics'
    /// retention a replay cannot reach).
    #[serde(default = "crate::runtime::spec::default_dedup_horizon")]
    pub dedup_horizon: TimeSpan,
}

/// The fraud model: the newest `fraud-v<version>.onnx` in `dir`, watched for newer ones.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The models folder.
    pub dir: PathBuf,
    /// A claim the rules let pass is alerted when the model scores it at least this.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// A newer version found while running scores next to the current one (both scores in
    /// the alerts) instead of replacing it.
    #[serde(default)]
    pub shadow: bool,
}

fn default_threshold() -> f64 {
    0.5
}

impl FraudSpec {
    /// Checks what can be checked without I/O (whether the model's folder holds a model is
    /// found out when the job opens it); `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        if let Some(model) = &self.model
            && !(0.0..=1.0).contains(&model.threshold)
        {
            return Err(SpecError::invalid(
                path,
                "model.threshold",
                format!("{} is not between 0 and 1", model.threshold),
            ));
        }
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.validate(path)?;
        }
        self.source.validate(path)
    }
}
