//! The adjudication job's spec (`pipelines/adjudication.toml`).

use std::path::Path;

use serde::Deserialize;

use crate::runtime::spec::{CheckpointSpec, JobKind, SpecError, StoreSpec, TimeSpan, TopicsSource};

/// The adjudication job: the topics of members, plans, providers, authorizations, claims and
/// payments in; decisions and accumulator updates out to the topics next to them, and the
/// claims' and accumulators' state to a store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjudicationSpec {
    /// `adjudication`.
    pub job: JobKind,
    /// Where the topics are (the outputs go next to them).
    pub source: TopicsSource,
    /// Where claim and accumulator records go.
    pub store: StoreSpec,
    /// How far behind the latest event time of each partition an event may come and still be
    /// decided in event-time order (`1d`, `2h`…); a later one is decided when it comes.
    #[serde(default = "crate::runtime::spec::default_out_of_orderness")]
    pub out_of_orderness: TimeSpan,
    /// Threads the decisions are folded on, families spread over them (1 to 16; the same
    /// decisions whatever the number).
    #[serde(default = "default_fold_threads")]
    pub fold_threads: usize,
    /// Snapshots of the job's state (`dir`, `interval`): a restart begins from the newest and
    /// reads only what came after it.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
    /// How long event ids are kept to drop duplicates (`30d`): an event older than that behind
    /// the newest is refused, as one that cannot be told from a replay (beyond the topics'
    /// retention a replay cannot reach).
    #[serde(default = "crate::runtime::spec::default_dedup_horizon")]
    pub dedup_horizon: TimeSpan,
}

fn default_fold_threads() -> usize {
    super::job::FOLD_THREADS
}

impl AdjudicationSpec {
    /// Checks what can be checked without I/O; `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        if !(1..=16).contains(&self.fold_threads) {
            return Err(SpecError::invalid(
                path,
                "fold_threads",
                format!("{} is not between 1 and 16", self.fold_threads),
            ));
        }
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.validate(path)?;
        }
        self.source.validate(path)?;
        self.store.validate(path)
    }
}
