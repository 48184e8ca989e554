//! The eligibility job's spec (`pipelines/eligibility.toml`).

use std::path::Path;

use serde::Deserialize;

use crate::runtime::spec::{CheckpointSpec, JobKind, SpecError, StoreSpec, TopicsSource};

/// The eligibility job: member and plan topics in, a state store out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilitySpec {
    /// `eligibility`.
    pub job: JobKind,
    /// Where `member.events` and `benefit.events` are.
    pub source: TopicsSource,
    /// Where the member and plan records go.
    pub store: StoreSpec,
    /// Once the records are written, answer every request on `eligibility.requests` with an
    /// `EligibilityResponded` on `eligibility.responses` (ids derived from the requests', so a
    /// consumer drops the duplicates a rerun writes).
    #[serde(default)]
    pub answer_requests: bool,
    /// The environment variable holding the key of NIK digests: with it, the job also writes
    /// `nik:<HMAC(key, NIK)>` → member id, so the gateway refuses a second member with a NIK
    /// on record (the same key: `arus gateway --nik-key-env`) without the store holding NIKs.
    #[serde(default)]
    pub nik_key_env: Option<String>,
    /// Snapshots of the job's state (`dir`, `interval`): a restart begins from the newest and
    /// reads only what came after it.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
}

impl EligibilitySpec {
    /// Checks what can be checked without I/O; `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.validate(path)?;
        }
        self.source.validate(path)?;
        self.store.validate(path)
    }
}
