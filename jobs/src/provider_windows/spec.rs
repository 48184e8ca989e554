//! The provider-windows job's spec (`pipelines/provider-windows.toml`,
//! `pipelines/provider-sessions.toml`).

use std::path::{Path, PathBuf};

use arus_operators::WindowSpec;
use serde::{Deserialize, Serialize};

use crate::runtime::checkpoint::CheckpointSettings;
use crate::runtime::spec::{CheckpointSpec, JobKind, SourceSpec, SpecError, TimeSpan};

/// The provider-windows job (`pipelines/provider-windows.toml`): claims from a source, per
/// provider in event-time windows, to a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderWindowsSpec {
    /// `provider-windows`.
    pub job: JobKind,
    /// Where records come from.
    pub source: SourceSpec,
    /// Where results go.
    pub sink: SinkSpec,
    /// Event-time windows.
    pub windows: WindowsSpec,
    /// Checkpoints (none unless given).
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
}

/// Where window results go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// `csv` (one row per window result; a correction is a later row for the same window, the
    /// last row of a window its value) or `jsonl` (the change log: one object per change with
    /// its `diff`, +1 asserting a value and −1 retracting one written before).
    pub kind: SinkKind,
    /// The file, replaced on each run (cut back to the checkpoint when resuming).
    pub path: PathBuf,
    /// Where records too late to count go (JSON lines); counted only when absent.
    #[serde(default)]
    pub late_path: Option<PathBuf>,
    /// Where undecodable input lines go (JSON lines with the error and the original line);
    /// default: `<topic>.dlq` for a topic source, `<path>.dlq.jsonl` for a file.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
    /// Write to Kafka in transactions under this id, committed at each checkpoint (Apache
    /// Kafka; Tansu 0.6 has none: without it, topics are written effectively-once by
    /// read-back).
    #[serde(default)]
    pub kafka_transactional_id: Option<String>,
}

/// Output file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// Comma-separated values with a header.
    Csv,
    /// JSON lines.
    Jsonl,
}

/// Event-time windows of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsSpec {
    /// `tumbling`, `sliding` or `session`.
    pub kind: WindowKind,
    /// Window length, e.g. `"5m"` (tumbling and sliding windows).
    #[serde(default)]
    pub size: Option<TimeSpan>,
    /// For sliding windows: distance between starts, e.g. `"1m"`.
    #[serde(default)]
    pub slide: Option<TimeSpan>,
    /// For session windows: the longest quiet time within a session, e.g. `"30m"`.
    #[serde(default)]
    pub gap: Option<TimeSpan>,
    /// How far behind the newest event an event may arrive and still be on time.
    #[serde(default)]
    pub out_of_orderness: TimeSpan,
    /// How long after a window closed a late event still corrects it.
    #[serde(default)]
    pub allowed_lateness: TimeSpan,
}

/// Window kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// Back-to-back windows.
    Tumbling,
    /// Overlapping windows.
    Sliding,
    /// Per key, runs of events no more than a gap apart.
    Session,
}

impl ProviderWindowsSpec {
    /// Checks what can be checked without I/O; `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        let invalid = |key, reason: String| SpecError::invalid(path, key, reason);
        self.window_spec().map_err(|(key, reason)| invalid(key, reason))?;
        let (key, batch) = match &self.source {
            SourceSpec::Jsonl { batch_lines, .. } => ("source.batch_lines", *batch_lines),
            SourceSpec::Kafka { batch_records, brokers, .. } => {
                arus_connectors::kafka::KafkaConfig::new(brokers.clone())
                    .validate()
                    .map_err(|e| invalid("source.brokers", e.to_string()))?;
                ("source.batch_records", *batch_records)
            }
            SourceSpec::Avro { batch_records, .. } => ("source.batch_records", *batch_records),
            SourceSpec::Embedded { batch_records, topic, .. } => {
                arus_connectors::embedded::validate_topic_name(topic)
                    .map_err(|e| invalid("source.topic", e.to_string()))?;
                ("source.batch_records", *batch_records)
            }
        };
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.validate(path)?;
        }
        if !(1..=10_000_000).contains(&batch) {
            return Err(invalid(key, format!("{batch} is not between 1 and 10,000,000")));
        }
        Ok(())
    }

    /// The window shape.
    pub fn window_spec(&self) -> Result<WindowSpec, (&'static str, String)> {
        let w = &self.windows;
        let duration = |key: &'static str, span: &Option<TimeSpan>| -> Result<u64, (&'static str, String)> {
            span.map(TimeSpan::ms).ok_or((key, format!("{:?} windows need {key}", w.kind)))
        };
        let absent = |key: &'static str, value: &Option<TimeSpan>| match value {
            Some(_) => Err((key, format!("{:?} windows have no {key}", w.kind).to_lowercase())),
            None => Ok(()),
        };
        let spec = match w.kind {
            WindowKind::Tumbling => {
                absent("windows.slide", &w.slide)?;
                absent("windows.gap", &w.gap)?;
                WindowSpec::Tumbling { size_ms: duration("windows.size", &w.size)? }
            }
            WindowKind::Sliding => {
                absent("windows.gap", &w.gap)?;
                WindowSpec::Sliding {
                    size_ms: duration("windows.size", &w.size)?,
                    slide_ms: duration("windows.slide", &w.slide)?,
                }
            }
            WindowKind::Session => {
                absent("windows.size", &w.size)?;
                absent("windows.slide", &w.slide)?;
                WindowSpec::Session { gap_ms: duration("windows.gap", &w.gap)? }
            }
        };
        spec.validate().map_err(|e| ("windows", e.to_string()))?;
        Ok(spec)
    }

    /// What a checkpoint of this pipeline is of: the job, its source and its windows (a
    /// checkpoint of anything else cannot be resumed from).
    pub fn identity(&self) -> String {
        serde_json::json!({ "job": self.job, "source": self.source, "windows": self.windows }).to_string()
    }

    /// Checkpoint settings (validated).
    pub fn checkpoint_settings(&self) -> Option<CheckpointSettings> {
        self.checkpoint.as_ref().map(|c| CheckpointSettings { dir: c.dir.clone(), interval: c.interval.duration() })
    }
}

impl ProviderWindowsSpec {
    /// A provider-windows spec through the one loader ([`crate::Pipeline::load`]); a spec of
    /// another job is an error naming it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, SpecError> {
        Self::from_pipeline(path, crate::Pipeline::load(path, overrides)?)
    }

    /// [`load`](Self::load) for a spec already read.
    pub fn parse(path: &Path, text: &str, overrides: &[String]) -> Result<Self, SpecError> {
        Self::from_pipeline(path, crate::Pipeline::parse(path, text, overrides)?)
    }

    fn from_pipeline(path: &Path, pipeline: crate::Pipeline) -> Result<Self, SpecError> {
        match pipeline {
            crate::Pipeline::ProviderWindows(spec) => Ok(spec),
            other => Err(SpecError::invalid(path, "job", format!("{:?} is not a windowed job", other.job()))),
        }
    }
}
