//! Pipeline specs: what an engineer submits (`pipelines/<name>.toml`), validated before
//! anything runs, with `--set key=value` overrides.

use std::path::{Path, PathBuf};

use arus_operators::WindowSpec;
use serde::{Deserialize, Serialize};

/// A pipeline: which job, where its input comes from and its output goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The job to run.
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

/// Where and how often a run saves what it needs to resume after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Directory of the checkpoints (created if missing).
    pub dir: PathBuf,
    /// Wall-clock time between checkpoints, e.g. `"10s"`.
    #[serde(default = "default_checkpoint_interval")]
    pub interval: String,
}

fn default_checkpoint_interval() -> String {
    "10s".to_owned()
}

/// The jobs a pipeline can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Claims per provider in event-time windows.
    ProviderWindows,
    /// Eligibility state from member and plan events, materialized into a store.
    Eligibility,
    /// Claims adjudicated, accumulators kept, payments followed.
    Adjudication,
    /// Decisions and dimensions streamed into ClickHouse tables.
    Analytics,
    /// Fraud rules over claims, alerts to `fraud.alerts`.
    Fraud,
}

/// The fraud job: members, providers and claims in; alerts to `fraud.alerts` next to them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudSpec {
    /// `fraud`.
    pub job: JobKind,
    /// Where the topics are.
    pub source: EligibilitySource,
    /// As the adjudication job's.
    #[serde(default = "default_out_of_orderness")]
    pub out_of_orderness: String,
    /// Score every claim with the newest model in a folder, too.
    #[serde(default)]
    pub model: Option<ModelSpec>,
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

/// A fraud spec (`pipelines/fraud.toml`), with `--set` overrides.
pub fn load_fraud(path: &Path, overrides: &[String]) -> Result<FraudSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
    let spec: FraudSpec = parse_as(path, &text, overrides)?;
    let invalid = |key, reason: String| SpecError::Invalid { path: path.to_owned(), key, reason };
    if spec.job != JobKind::Fraud {
        return Err(invalid("job", format!("{:?} is not the fraud job", spec.job)));
    }
    parse_duration_ms(&spec.out_of_orderness).map_err(|r| invalid("out_of_orderness", r))?;
    if let Some(model) = &spec.model {
        if !(0.0..=1.0).contains(&model.threshold) {
            return Err(invalid("model.threshold", format!("{} is not between 0 and 1", model.threshold)));
        }
        if !model.dir.is_dir() {
            return Err(invalid("model.dir", format!("{} is not a folder", model.dir.display())));
        }
    }
    check_topics_and_store(path, &spec.source, &StoreSpec::Memory)?;
    Ok(spec)
}

/// The analytics job: adjudicated claim lines (from `claims.events`) and providers (from
/// `provider.events`) into ClickHouse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSpec {
    /// `analytics`.
    pub job: JobKind,
    /// Where the topics are.
    pub source: EligibilitySource,
    /// Where the tables are.
    pub clickhouse: ClickHouseSpec,
}

/// A ClickHouse server and database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSpec {
    /// `http://host:8123`.
    pub url: String,
    /// Database (created if missing).
    #[serde(default = "default_database")]
    pub database: String,
    /// Rows per insert.
    #[serde(default = "default_insert_rows")]
    pub batch_rows: usize,
}

fn default_database() -> String {
    "arus".to_owned()
}

fn default_insert_rows() -> usize {
    50_000
}

/// The adjudication job: the topics of members, plans, providers, authorizations, claims and
/// payments in; decisions and accumulator updates out to the topics next to them, and the
/// claims' and accumulators' state to a store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjudicationSpec {
    /// `adjudication`.
    pub job: JobKind,
    /// Where the topics are (the outputs go next to them).
    pub source: EligibilitySource,
    /// Where claim and accumulator records go.
    pub store: StoreSpec,
    /// How far behind the latest event time of each partition an event may come and still be
    /// decided in event-time order (`1d`, `2h`…); a later one is decided when it comes.
    #[serde(default = "default_out_of_orderness")]
    pub out_of_orderness: String,
    /// Threads the decisions are folded on, families spread over them (1 to 16; the same
    /// decisions whatever the number).
    #[serde(default = "default_fold_threads")]
    pub fold_threads: usize,
}

fn default_fold_threads() -> usize {
    crate::adjudication_job::FOLD_THREADS
}

fn default_out_of_orderness() -> String {
    "1d".to_owned()
}

/// The eligibility job: member and plan topics in, a state store out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilitySpec {
    /// `eligibility`.
    pub job: JobKind,
    /// Where `member.events` and `benefit.events` are.
    pub source: EligibilitySource,
    /// Where the member and plan records go.
    pub store: StoreSpec,
    /// Once the records are written, answer every request on `eligibility.requests` with an
    /// `EligibilityResponded` on `eligibility.responses` (ids derived from the requests', so a
    /// consumer drops the duplicates a rerun writes).
    #[serde(default)]
    pub answer_requests: bool,
}

/// The transport of the eligibility job's topics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EligibilitySource {
    /// A Kafka cluster.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// Put before the topic names (`<prefix>member.events`), for clusters shared by
        /// environments.
        #[serde(default)]
        topic_prefix: String,
        /// Consumer group.
        #[serde(default = "default_eligibility_group")]
        group: String,
        /// Keep reading what is written after the run began, until stopped.
        #[serde(default)]
        follow: bool,
        /// Following: a partition quiet this long no longer holds anything back.
        #[serde(default = "default_idle_timeout")]
        idle_timeout: String,
    },
    /// An embedded log persisted in a directory.
    Embedded {
        /// The log's directory.
        dir: PathBuf,
        /// Put before the topic names.
        #[serde(default)]
        topic_prefix: String,
    },
}

fn default_eligibility_group() -> String {
    "arus-eligibility".to_owned()
}

/// Where state goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StoreSpec {
    /// Redis.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Prefix of every key.
        #[serde(default = "default_prefix")]
        prefix: String,
    },
    /// This process's memory (tests, demos: gone when the run ends).
    Memory,
}

fn default_prefix() -> String {
    "arus:".to_owned()
}

/// A source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    /// A JSON-lines file, read in order.
    Jsonl {
        /// The file.
        path: PathBuf,
        /// Lines read per step; each step's records share one watermark.
        #[serde(default = "default_batch_lines")]
        batch_lines: usize,
    },
    /// A Kafka topic whose values are JSON lines, read from the beginning of every partition to
    /// where it ended when the run began; partitions are spread over all workers.
    Kafka {
        /// Bootstrap servers, `host:port[,…]`.
        brokers: String,
        /// Topic.
        topic: String,
        /// Consumer group.
        #[serde(default = "default_group")]
        group: String,
        /// Records read per step; each step's records share one watermark.
        #[serde(default = "default_batch_lines")]
        batch_records: usize,
        /// How a restart goes back to the checkpoint's offsets: `scan` (from each partition's
        /// start, skipping; any broker) or `seek` (straight there; Apache Kafka, not Tansu 0.6).
        #[serde(default)]
        resume: arus_connectors::kafka::Resume,
        /// Keep reading what is written after the run began, until stopped (default: stop once
        /// every partition is read to where it ended when the run began).
        #[serde(default)]
        follow: bool,
        /// Following: a partition with nothing new for this long no longer holds the
        /// watermark back (until it has records again).
        #[serde(default = "default_idle_timeout")]
        idle_timeout: String,
    },
    /// An Avro object container file of a topic, as `arus gen --format avro` writes them
    /// (`claims.events.avro`): its `ClaimSubmitted` events are the claims (provider, member,
    /// total charge, and the event time as the claim's time); other events are passed over.
    Avro {
        /// The file.
        path: PathBuf,
        /// The topic the file holds (default: the file name without `.avro`).
        #[serde(default)]
        topic: Option<String>,
        /// Records read per step; each step's records share one watermark.
        #[serde(default = "default_batch_lines")]
        batch_records: usize,
    },
    /// A topic of an embedded log persisted in a directory (what `arus demo` writes), values
    /// JSON lines, read like a Kafka topic.
    Embedded {
        /// The log's directory.
        dir: PathBuf,
        /// Topic.
        topic: String,
        /// Consumer group whose positions are committed at checkpoints.
        #[serde(default = "default_group")]
        group: String,
        /// Records read per step; each step's records share one watermark.
        #[serde(default = "default_batch_lines")]
        batch_records: usize,
    },
}

fn default_idle_timeout() -> String {
    "5s".to_owned()
}

fn default_group() -> String {
    "arus-provider-windows".to_owned()
}

fn default_batch_lines() -> usize {
    16_384
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
    pub size: Option<String>,
    /// For sliding windows: distance between starts, e.g. `"1m"`.
    #[serde(default)]
    pub slide: Option<String>,
    /// For session windows: the longest quiet time within a session, e.g. `"30m"`.
    #[serde(default)]
    pub gap: Option<String>,
    /// How far behind the newest event an event may arrive and still be on time.
    #[serde(default = "zero")]
    pub out_of_orderness: String,
    /// How long after a window closed a late event still corrects it.
    #[serde(default = "zero")]
    pub allowed_lateness: String,
}

fn zero() -> String {
    "0s".to_owned()
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

/// A spec that cannot run, with where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the shape of a spec (the message names line, column and key).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// A `--set` that is not `key=value` or names a path through a non-table.
    #[error("--set {assignment:?}: {reason}")]
    Override {
        /// The override.
        assignment: String,
        /// Why.
        reason: String,
    },
    /// A value out of range.
    #[error("{path}: {key}: {reason}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Reads a spec, applies `--set` overrides (`a.b=value`, the value read as TOML, or as a
/// string when it is not), and validates it.
pub fn load(path: &Path, overrides: &[String]) -> Result<PipelineSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
    parse(path, &text, overrides)
}

/// [`load`] for a spec already read (`path` names it in errors).
pub fn parse(path: &Path, text: &str, overrides: &[String]) -> Result<PipelineSpec, SpecError> {
    let spec: PipelineSpec = parse_as(path, text, overrides)?;
    if spec.job != JobKind::ProviderWindows {
        return Err(SpecError::Invalid {
            path: path.to_owned(),
            key: "job",
            reason: format!("{:?} is not a windowed job", spec.job),
        });
    }
    spec.validate(path)?;
    Ok(spec)
}

/// The job a spec file names (to pick its loader).
pub fn job_of(path: &Path) -> Result<JobKind, SpecError> {
    #[derive(Deserialize)]
    struct Job {
        job: JobKind,
    }
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
    // Only `job` matters here; the full loader reports everything else.
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| SpecError::Parse { path: path.to_owned(), message: e.to_string() })?;
    let job = table.get("job").cloned().unwrap_or(toml::Value::String(String::new()));
    let job: Job = toml::Value::Table([("job".to_owned(), job)].into_iter().collect())
        .try_into()
        .map_err(|e: toml::de::Error| SpecError::Parse { path: path.to_owned(), message: e.to_string() })?;
    Ok(job.job)
}

/// An eligibility spec (`pipelines/eligibility.toml`), with `--set` overrides.
pub fn load_eligibility(path: &Path, overrides: &[String]) -> Result<EligibilitySpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
    let spec: EligibilitySpec = parse_as(path, &text, overrides)?;
    if spec.job != JobKind::Eligibility {
        let reason = format!("{:?} is not the eligibility job", spec.job);
        return Err(SpecError::Invalid { path: path.to_owned(), key: "job", reason });
    }
    check_topics_and_store(path, &spec.source, &spec.store)?;
    Ok(spec)
}

/// An adjudication spec (`pipelines/adjudication.toml`), with `--set` overrides.
pub fn load_adjudication(path: &Path, overrides: &[String]) -> Result<AdjudicationSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
    let spec: AdjudicationSpec = parse_as(path, &text, overrides)?;
    let invalid = |key, reason: String| SpecError::Invalid { path: path.to_owned(), key, reason };
    if spec.job != JobKind::Adjudication {
        return Err(invalid("job", format!("{:?} is not the adjudication job", spec.job)));
    }
    parse_duration_ms(&spec.out_of_orderness).map_err(|r| invalid("out_of_orderness", r))?;
    check_topics_and_store(path, &spec.source, &spec.store)?;
    Ok(spec)
}

/// An analytics spec (`pipelines/analytics.toml`), with `--set` overrides.
pub fn load_analytics(path: &Path, overrides: &[String]) -> Result<AnalyticsSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
    let spec: AnalyticsSpec = parse_as(path, &text, overrides)?;
    let invalid = |key, reason: String| SpecError::Invalid { path: path.to_owned(), key, reason };
    if spec.job != JobKind::Analytics {
        return Err(invalid("job", format!("{:?} is not the analytics job", spec.job)));
    }
    let url = &spec.clickhouse.url;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid("clickhouse.url", format!("{url:?} is not an http:// address")));
    }
    if spec.clickhouse.batch_rows == 0 {
        return Err(invalid("clickhouse.batch_rows", "must be at least 1".to_owned()));
    }
    check_topics_and_store(path, &spec.source, &StoreSpec::Memory)?;
    Ok(spec)
}

/// The checks a topics source and a store share across jobs.
fn check_topics_and_store(path: &Path, source: &EligibilitySource, store: &StoreSpec) -> Result<(), SpecError> {
    let invalid = |key, reason: String| SpecError::Invalid { path: path.to_owned(), key, reason };
    match source {
        EligibilitySource::Kafka { brokers, idle_timeout, .. } => {
            arus_connectors::kafka::KafkaConfig::new(brokers.clone())
                .validate()
                .map_err(|e| invalid("source.brokers", e.to_string()))?;
            parse_duration_ms(idle_timeout).map_err(|r| invalid("source.idle_timeout", r))?;
        }
        EligibilitySource::Embedded { .. } => {}
    }
    if let StoreSpec::Redis { url, .. } = store
        && !(url.starts_with("redis://") || url.starts_with("rediss://"))
    {
        return Err(invalid("store.url", format!("{url:?} is not a redis:// address")));
    }
    Ok(())
}

/// Parses a spec of type `T`, applying `--set` overrides.
fn parse_as<T: serde::de::DeserializeOwned>(path: &Path, text: &str, overrides: &[String]) -> Result<T, SpecError> {
    let text = text.to_owned();
    let parse_error = |e: toml::de::Error| SpecError::Parse { path: path.to_owned(), message: e.to_string() };
    // The file alone first, so its own mistakes are reported with its lines.
    let mut spec: T = toml::from_str(&text).map_err(parse_error)?;
    if !overrides.is_empty() {
        let mut table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        spec = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| SpecError::Parse {
            path: path.to_owned(),
            message: format!("after --set: {e}"),
        })?;
    }
    Ok(spec)
}

fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), SpecError> {
    let err = |reason: &str| SpecError::Override { assignment: assignment.to_owned(), reason: reason.to_owned() };
    let (key, value) = assignment.split_once('=').ok_or_else(|| err("expected key=value"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("empty key segment"));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    };
    let (last, path) = parts.split_last().ok_or_else(|| err("empty key"))?;
    let mut current = table;
    for part in path {
        let entry = current.entry((*part).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| err(&format!("`{part}` is not a table")))?;
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

/// Milliseconds of a duration written `500ms`, `30s`, `5m`, `2h`, `1d` (or `0`).
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let split =
        text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long"))
}

impl PipelineSpec {
    pub(crate) fn validate(&self, path: &Path) -> Result<(), SpecError> {
        let invalid = |key, reason: String| SpecError::Invalid { path: path.to_owned(), key, reason };
        self.window_spec().map_err(|(key, reason)| invalid(key, reason))?;
        for (key, text) in [
            ("windows.out_of_orderness", &self.windows.out_of_orderness),
            ("windows.allowed_lateness", &self.windows.allowed_lateness),
        ] {
            parse_duration_ms(text).map_err(|r| invalid(key, r))?;
        }
        let (key, batch) = match &self.source {
            SourceSpec::Jsonl { batch_lines, .. } => ("source.batch_lines", *batch_lines),
            SourceSpec::Kafka { batch_records, brokers, idle_timeout, .. } => {
                parse_duration_ms(idle_timeout).map_err(|r| invalid("source.idle_timeout", r))?;
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
            let interval = parse_duration_ms(&checkpoint.interval).map_err(|r| invalid("checkpoint.interval", r))?;
            if interval > 86_400_000 {
                return Err(invalid("checkpoint.interval", format!("{} is more than a day", checkpoint.interval)));
            }
        }
        if !(1..=10_000_000).contains(&batch) {
            return Err(invalid(key, format!("{batch} is not between 1 and 10,000,000")));
        }
        Ok(())
    }

    /// The window shape.
    pub fn window_spec(&self) -> Result<WindowSpec, (&'static str, String)> {
        let w = &self.windows;
        let duration = |key: &'static str, text: &Option<String>| -> Result<u64, (&'static str, String)> {
            let text = text.as_ref().ok_or((key, format!("{:?} windows need {key}", w.kind)))?;
            parse_duration_ms(text).map_err(|r| (key, r))
        };
        let absent = |key: &'static str, value: &Option<String>| match value {
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

    /// Allowed out-of-orderness in ms (validated).
    pub fn out_of_orderness_ms(&self) -> u64 {
        parse_duration_ms(&self.windows.out_of_orderness).unwrap_or(0)
    }

    /// What a checkpoint of this pipeline is of: the job, its source and its windows (a
    /// checkpoint of anything else cannot be resumed from).
    pub fn identity(&self) -> String {
        serde_json::json!({ "job": self.job, "source": self.source, "windows": self.windows }).to_string()
    }

    /// Checkpoint settings (validated).
    pub fn checkpoint_settings(&self) -> Option<crate::checkpoint::CheckpointSettings> {
        self.checkpoint.as_ref().map(|c| crate::checkpoint::CheckpointSettings {
            dir: c.dir.clone(),
            interval: std::time::Duration::from_millis(parse_duration_ms(&c.interval).unwrap_or(10_000)),
        })
    }

    /// Allowed lateness in ms (validated).
    pub fn allowed_lateness_ms(&self) -> u64 {
        parse_duration_ms(&self.windows.allowed_lateness).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
job = "provider-windows"

[source]
kind = "jsonl"
path = "claims.jsonl"

[sink]
kind = "csv"
path = "out.csv"

[windows]
kind = "tumbling"
size = "5m"
out_of_orderness = "1m"
allowed_lateness = "10m"
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn loads_and_overrides() {
        let (_dir, path) = write(SPEC);
        let spec = load(&path, &["source.path=in.jsonl".to_owned(), "windows.size=\"10m\"".to_owned()]).expect("valid");
        assert_eq!(spec.source, SourceSpec::Jsonl { path: "in.jsonl".into(), batch_lines: 16_384 });
        assert_eq!(spec.window_spec(), Ok(WindowSpec::Tumbling { size_ms: 600_000 }));
        assert_eq!(spec.allowed_lateness_ms(), 600_000);
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let (_dir, path) = write(&SPEC.replace("size = \"5m\"", "size = \"5 parsecs\""));
        let err = load(&path, &[]).expect_err("bad duration").to_string();
        assert!(err.contains("p.toml") && err.contains("windows.size"), "{err}");

        let (_dir, path) = write(&SPEC.replace("kind = \"tumbling\"", "kind = \"tumbling\"\nsizee = \"1m\""));
        let err = load(&path, &[]).expect_err("unknown key").to_string();
        assert!(err.contains("line 14") && err.contains("sizee"), "{err}");

        let (_dir, path) = write(SPEC);
        let err = load(&path, &["windows".to_owned()]).expect_err("no =").to_string();
        assert!(err.contains("key=value"), "{err}");
        let err = load(&path, &["job=\"nope\"".to_owned()]).expect_err("unknown job").to_string();
        assert!(err.contains("after --set") && err.contains("nope"), "{err}");
    }

    #[test]
    fn session_windows_need_a_gap_and_nothing_else() {
        let (_dir, path) = write(SPEC);
        let session = ["windows.kind=\"session\"".to_owned(), "windows.gap=\"30m\"".to_owned()];
        let err = load(&path, &session).expect_err("a size too").to_string();
        assert!(err.contains("windows.size"), "{err}");
        let spec = load(&path, &[session.to_vec(), vec!["windows.size=false".to_owned()]].concat());
        assert!(spec.is_err(), "size must be a duration or absent");
        let text = SPEC.replace("kind = \"tumbling\"\nsize = \"5m\"", "kind = \"session\"\ngap = \"30m\"");
        let (_dir, path) = write(&text);
        assert_eq!(load(&path, &[]).expect("valid").window_spec(), Ok(WindowSpec::Session { gap_ms: 1_800_000 }));
        let (_dir, path) = write(&text.replace("gap = \"30m\"", "gap = \"0s\""));
        assert!(load(&path, &[]).expect_err("zero gap").to_string().contains("positive"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("m").is_err());
        assert!(parse_duration_ms("5y").is_err());
    }
}
