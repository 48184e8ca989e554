//! What an engineer submits: a pipeline spec (`pipelines/<name>.toml`), one of the jobs' specs
//! chosen by its `job` key, read once, `--set` overrides applied, validated without I/O
//! before anything runs. [`Pipeline::load`] is the one loader; each job's spec and its checks
//! live in the job's folder.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::adjudication::spec::AdjudicationSpec;
use crate::analytics::spec::AnalyticsSpec;
use crate::eligibility::spec::EligibilitySpec;
use crate::fraud::spec::FraudSpec;
use crate::provider_windows::spec::ProviderWindowsSpec;
use crate::runtime::spec::{JobKind, SpecError, apply_override, parse_as};

/// A pipeline spec, by job.
#[derive(Debug, Clone, PartialEq)]
pub enum Pipeline {
    /// Claims per provider in event-time windows, to a file.
    ProviderWindows(ProviderWindowsSpec),
    /// Member and plan events materialized into the serving store.
    Eligibility(EligibilitySpec),
    /// Claims decided; decisions and accumulators to the topics and the store.
    Adjudication(AdjudicationSpec),
    /// Decisions and dimensions into ClickHouse.
    Analytics(AnalyticsSpec),
    /// Fraud rules and the model; alerts to `fraud.alerts`.
    Fraud(FraudSpec),
}

impl Pipeline {
    /// Reads the spec at `path`, applies `--set` overrides (`a.b=value`, the value read as TOML,
    /// or as a string when it is not), and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_owned(), source })?;
        Self::parse(path, &text, overrides)
    }

    /// [`load`](Self::load) for a spec already read (`path` names it in errors).
    pub fn parse(path: &Path, text: &str, overrides: &[String]) -> Result<Self, SpecError> {
        let pipeline = match job_of(path, text, overrides)? {
            JobKind::ProviderWindows => Pipeline::ProviderWindows(parse_as(path, text, overrides)?),
            JobKind::Eligibility => Pipeline::Eligibility(parse_as(path, text, overrides)?),
            JobKind::Adjudication => Pipeline::Adjudication(parse_as(path, text, overrides)?),
            JobKind::Analytics => Pipeline::Analytics(parse_as(path, text, overrides)?),
            JobKind::Fraud => Pipeline::Fraud(parse_as(path, text, overrides)?),
        };
        pipeline.validate(path)?;
        Ok(pipeline)
    }

    /// Checks what can be checked without I/O (files, brokers and stores are found out when
    /// the job starts).
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        match self {
            Pipeline::ProviderWindows(spec) => spec.validate(path),
            Pipeline::Eligibility(spec) => spec.validate(path),
            Pipeline::Adjudication(spec) => spec.validate(path),
            Pipeline::Analytics(spec) => spec.validate(path),
            Pipeline::Fraud(spec) => spec.validate(path),
        }
    }

    /// Which job.
    pub fn job(&self) -> JobKind {
        match self {
            Pipeline::ProviderWindows(_) => JobKind::ProviderWindows,
            Pipeline::Eligibility(_) => JobKind::Eligibility,
            Pipeline::Adjudication(_) => JobKind::Adjudication,
            Pipeline::Analytics(_) => JobKind::Analytics,
            Pipeline::Fraud(_) => JobKind::Fraud,
        }
    }
}

/// The job a spec names (after the overrides, which may change it).
fn job_of(path: &Path, text: &str, overrides: &[String]) -> Result<JobKind, SpecError> {
    let parse_error = |message: String| SpecError::Parse { path: path.to_owned(), message };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
    for assignment in overrides {
        apply_override(&mut table, assignment)?;
    }
    let job = table.remove("job").ok_or_else(|| parse_error("missing `job`: which job the spec is for".to_owned()))?;
    let job: JobKind = deserialize_value(job).map_err(|e| {
        let jobs = "provider-windows, eligibility, adjudication, analytics, fraud";
        parse_error(format!("{}job: {e} (one of {jobs})", if overrides.is_empty() { "" } else { "after --set: " }))
    })?;
    Ok(job)
}

fn deserialize_value<T: DeserializeOwned>(value: toml::Value) -> Result<T, toml::de::Error> {
    value.try_into()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use arus_operators::WindowSpec;

    use super::*;
    use crate::runtime::spec::{SourceSpec, TimeSpan};

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

    fn windows(path: &Path, overrides: &[String]) -> Result<ProviderWindowsSpec, SpecError> {
        match Pipeline::load(path, overrides)? {
            Pipeline::ProviderWindows(spec) => Ok(spec),
            other => panic!("not a windowed job: {other:?}"),
        }
    }

    #[test]
    fn loads_and_overrides() {
        let (_dir, path) = write(SPEC);
        let spec =
            windows(&path, &["source.path=in.jsonl".to_owned(), "windows.size=\"10m\"".to_owned()]).expect("valid");
        assert_eq!(spec.source, SourceSpec::Jsonl { path: "in.jsonl".into(), batch_lines: 16_384 });
        assert_eq!(spec.window_spec(), Ok(WindowSpec::Tumbling { size_ms: 600_000 }));
        assert_eq!(spec.windows.allowed_lateness, TimeSpan::from_ms(600_000));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let (_dir, path) = write(&SPEC.replace("size = \"5m\"", "size = \"5 parsecs\""));
        let err = windows(&path, &[]).expect_err("bad duration").to_string();
        assert!(err.contains("p.toml") && err.contains("line 14") && err.contains("size"), "{err}");
        assert!(err.contains("unknown unit"), "{err}");

        let (_dir, path) = write(&SPEC.replace("kind = \"tumbling\"", "kind = \"tumbling\"\nsizee = \"1m\""));
        let err = windows(&path, &[]).expect_err("unknown key").to_string();
        assert!(err.contains("line 14") && err.contains("sizee"), "{err}");

        let (_dir, path) = write(SPEC);
        let err = windows(&path, &["windows".to_owned()]).expect_err("no =").to_string();
        assert!(err.contains("key=value"), "{err}");
        let err = windows(&path, &["job=\"nope\"".to_owned()]).expect_err("unknown job").to_string();
        assert!(err.contains("after --set") && err.contains("nope"), "{err}");

        let (_dir, path) = write(&SPEC.replace("job = \"provider-windows\"", ""));
        let err = windows(&path, &[]).expect_err("no job").to_string();
        assert!(err.contains("missing `job`"), "{err}");
    }

    #[test]
    fn session_windows_need_a_gap_and_nothing_else() {
        let (_dir, path) = write(SPEC);
        let session = ["windows.kind=\"session\"".to_owned(), "windows.gap=\"30m\"".to_owned()];
        let err = windows(&path, &session).expect_err("a size too").to_string();
        assert!(err.contains("windows.size"), "{err}");
        let spec = windows(&path, &[session.to_vec(), vec!["windows.size=false".to_owned()]].concat());
        assert!(spec.is_err(), "size must be a duration or absent");
        let text = SPEC.replace("kind = \"tumbling\"\nsize = \"5m\"", "kind = \"session\"\ngap = \"30m\"");
        let (_dir, path) = write(&text);
        assert_eq!(windows(&path, &[]).expect("valid").window_spec(), Ok(WindowSpec::Session { gap_ms: 1_800_000 }));
        let (_dir, path) = write(&text.replace("gap = \"30m\"", "gap = \"0s\""));
        assert!(windows(&path, &[]).expect_err("zero gap").to_string().contains("positive"));
    }

    /// Every spec the repository ships loads, as the job its file names.
    #[test]
    fn the_shipped_pipelines_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("pipelines/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let pipeline = Pipeline::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                seen.push(pipeline.job());
            }
        }
        for job in
            [JobKind::ProviderWindows, JobKind::Eligibility, JobKind::Adjudication, JobKind::Analytics, JobKind::Fraud]
        {
            assert!(seen.contains(&job), "a shipped spec for {job:?}");
        }
    }

    #[test]
    fn job_specs_check_their_own_values() {
        let (_dir, path) = write(
            "job = \"adjudication\"\nfold_threads = 17\n[source]\nkind = \"embedded\"\ndir = \"x\"\n[store]\nkind = \"memory\"\n",
        );
        let err = Pipeline::load(&path, &[]).expect_err("17 threads").to_string();
        assert!(err.contains("fold_threads"), "{err}");
        let err = Pipeline::load(&path, &["fold_threads=2".to_owned(), "out_of_orderness=\"1 week\"".to_owned()])
            .expect_err("a week is not a duration")
            .to_string();
        assert!(err.contains("after --set") && err.contains("1 week"), "{err}");
        let spec =
            Pipeline::load(&path, &["fold_threads=2".to_owned(), "out_of_orderness=2h".to_owned()]).expect("valid");
        let Pipeline::Adjudication(spec) = spec else { panic!("adjudication") };
        assert_eq!(spec.out_of_orderness, TimeSpan::from_ms(7_200_000));
    }
}
