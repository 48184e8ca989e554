//! The parts of pipeline specs every job shares: where the topics are ([`TopicsSource`]),
//! a source of records for the windowed jobs ([`SourceSpec`]), the serving store
//! ([`StoreSpec`]), checkpoints, typed durations ([`TimeSpan`]), the job names ([`JobKind`]),
//! `--set` overrides and the errors a spec can have ([`SpecError`]). Each job's own spec is in
//! its folder; [`crate::pipeline`] is the one loader.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Where a job's topics are (the source of every job that reads the contract's topics; outputs
/// go next to them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TopicsSource {
    /// A Kafka cluster.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// Put before the topic names (`<prefix>member.events`), for clusters shared by
        /// environments.
        #[serde(default)]
        topic_prefix: String,
        /// Consumer group.
        #[serde(default = "default_topics_group")]
        group: String,
        /// Keep reading what is written after the run began, until stopped.
        #[serde(default)]
        follow: bool,
        /// Following: a partition quiet this long no longer holds anything back.
        #[serde(default = "default_idle_timeout")]
        idle_timeout: TimeSpan,
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

fn default_topics_group() -> String {
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

/// Where and how often a run saves what it needs to resume after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Directory of the checkpoints (created if missing).
    pub dir: PathBuf,
    /// Wall-clock time between checkpoints, e.g. `"10s"`.
    #[serde(default = "default_checkpoint_interval")]
    pub interval: TimeSpan,
}

fn default_checkpoint_interval() -> TimeSpan {
    TimeSpan::from_ms(10_000)
}

impl TopicsSource {
    /// The names of `topics` on this source (under its prefix).
    pub fn topic_names(&self, topics: &[&str]) -> Vec<String> {
        let (TopicsSource::Kafka { topic_prefix, .. } | TopicsSource::Embedded { topic_prefix, .. }) = self;
        topics.iter().map(|t| format!("{topic_prefix}{t}")).collect()
    }

    /// Checks what can be checked without I/O; `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        if let TopicsSource::Kafka { brokers, .. } = self {
            arus_connectors::kafka::KafkaConfig::new(brokers.clone())
                .validate()
                .map_err(|e| SpecError::invalid(path, "source.brokers", e.to_string()))?;
        }
        Ok(())
    }
}

impl StoreSpec {
    /// Checks what can be checked without I/O; `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        if let StoreSpec::Redis { url, .. } = self
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(SpecError::invalid(path, "store.url", format!("{url:?} is not a redis:// address")));
        }
        Ok(())
    }
}

impl CheckpointSpec {
    /// Checks the interval (at most a day).
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        if self.interval.ms() > 86_400_000 {
            return Err(SpecError::invalid(
                path,
                "checkpoint.interval",
                format!("{} is more than a day", self.interval),
            ));
        }
        Ok(())
    }
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
        idle_timeout: TimeSpan,
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

fn default_idle_timeout() -> TimeSpan {
    TimeSpan::from_ms(5_000)
}

fn default_group() -> String {
    "arus-provider-windows".to_owned()
}

fn default_batch_lines() -> usize {
    16_384
}

/// A length of time written `500ms`, `30s`, `5m`, `2h`, `1d` (or `0`), kept as milliseconds:
/// parsed once, when the spec is read, and written back the same way (largest whole unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan {
    ms: u64,
}

impl TimeSpan {
    /// No time.
    pub const ZERO: TimeSpan = TimeSpan { ms: 0 };

    /// `ms` milliseconds.
    pub const fn from_ms(ms: u64) -> Self {
        TimeSpan { ms }
    }

    /// Milliseconds.
    pub const fn ms(self) -> u64 {
        self.ms
    }

    /// As a [`std::time::Duration`].
    pub const fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ms)
    }

    /// Parses `500ms`, `30s`, `5m`, `2h`, `1d` (or `0`); the error says why not, in words.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(TimeSpan::ZERO);
        }
        let split =
            text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h, d)"))?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| format!("{text:?} does not start with a whole number"))?;
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| format!("{text:?}: unknown unit {unit:?} (ms, s, m, h, d)"))?;
        number.checked_mul(scale).map(TimeSpan::from_ms).ok_or_else(|| format!("{text:?} is too long"))
    }
}

/// A day: the default hold-back of the sequenced jobs (adjudication, fraud).
pub(crate) fn default_out_of_orderness() -> TimeSpan {
    TimeSpan::from_ms(86_400_000)
}

/// How long event ids are kept to drop duplicates ([`super::seen`]): 30 days.
pub(crate) fn default_dedup_horizon() -> TimeSpan {
    TimeSpan::from_ms(super::seen::DEDUP_HORIZON_MS as u64)
}

/// Units of a [`TimeSpan`], largest first.
const UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl std::fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ms == 0 {
            return f.write_str("0s");
        }
        let (unit, scale) =
            UNITS.iter().find(|(_, scale)| self.ms.is_multiple_of(*scale)).expect("ms divides everything");
        write!(f, "{}{unit}", self.ms / scale)
    }
}

impl std::str::FromStr for TimeSpan {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        TimeSpan::parse(text)
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeSpan::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A spec that cannot run, with where the problem is: always the user's to fix.
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

impl SpecError {
    /// A value out of range at `key` of the spec at `path`.
    pub fn invalid(path: &Path, key: &'static str, reason: impl Into<String>) -> Self {
        SpecError::Invalid { path: path.to_owned(), key, reason: reason.into() }
    }
}

/// Parses a spec of type `T`, applying `--set` overrides.
pub(crate) fn parse_as<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    overrides: &[String],
) -> Result<T, SpecError> {
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

/// Applies one `--set key=value` to a spec's table (the value read as TOML, or as a string when
/// it is not).
pub(crate) fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), SpecError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(TimeSpan::parse("500ms"), Ok(TimeSpan::from_ms(500)));
        assert_eq!(TimeSpan::parse("5m"), Ok(TimeSpan::from_ms(300_000)));
        assert_eq!(TimeSpan::parse("0"), Ok(TimeSpan::ZERO));
        assert!(TimeSpan::parse("5").is_err());
        assert!(TimeSpan::parse("m").is_err());
        assert!(TimeSpan::parse("5y").is_err());
        assert!(TimeSpan::parse("99999999999999999d").is_err());
    }

    #[test]
    fn durations_are_written_back_in_their_largest_whole_unit() {
        for (text, written) in [("1d", "1d"), ("24h", "1d"), ("90s", "90s"), ("0", "0s"), ("1500ms", "1500ms")] {
            let span = TimeSpan::parse(text).expect("valid");
            assert_eq!(span.to_string(), written);
            assert_eq!(TimeSpan::parse(&span.to_string()), Ok(span), "{text} round-trips");
        }
    }

    #[test]
    fn overrides_reach_through_tables_and_read_values_as_toml_or_text() {
        let mut table: toml::Table = toml::from_str("[a]\nb = 1").expect("toml");
        apply_override(&mut table, "a.c=\"x\"").expect("string");
        apply_override(&mut table, "a.d=5m").expect("text");
        apply_override(&mut table, "e.f=true").expect("new table");
        assert_eq!(table["a"]["c"].as_str(), Some("x"));
        assert_eq!(table["a"]["d"].as_str(), Some("5m"));
        assert_eq!(table["e"]["f"].as_bool(), Some(true));
        assert!(apply_override(&mut table, "a.b.c=1").is_err(), "b is not a table");
        assert!(apply_override(&mut table, "a..b=1").is_err());
        assert!(apply_override(&mut table, "nothing").is_err());
    }
}
