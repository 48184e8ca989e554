//! The analytics job's spec (`pipelines/analytics.toml`).

use std::path::Path;

use serde::Deserialize;

use crate::runtime::spec::{JobKind, SpecError, TopicsSource};

/// The analytics job: adjudicated claim lines (from `claims.events`) and providers (from
/// `provider.events`) into ClickHouse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSpec {
    /// `analytics`.
    pub job: JobKind,
    /// Where the topics are.
    pub source: TopicsSource,
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

impl AnalyticsSpec {
    /// Checks what can be checked without I/O; `path` names the spec in errors.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        let url = &self.clickhouse.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SpecError::invalid(path, "clickhouse.url", format!("{url:?} is not an http:// address")));
        }
        if self.clickhouse.batch_rows == 0 {
            return Err(SpecError::invalid(path, "clickhouse.batch_rows", "must be at least 1"));
        }
        self.source.validate(path)
    }
}
