//! The control plane's database: job definitions, the state each job is in, and every
//! transition with its reason. PostgreSQL in production (`postgres://…`), SQLite embedded
//! (`sqlite://path?mode=rwc`): one schema, versioned migrations applied at open, the same
//! queries on both (sqlx's `Any` driver).

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

/// A control-plane database failure.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The database refused or could not be reached.
    #[error("the control database: {0}")]
    Database(#[from] sqlx::Error),
    /// A row the database holds does not read (a state this build does not know, say).
    #[error("the control database holds {0}")]
    Corrupt(String),
    /// No job with that id.
    #[error("no job {0}")]
    UnknownJob(String),
}

/// The migrations, in order: version, name, SQL. Applied once each, in a transaction with the
/// row that records them.
const MIGRATIONS: [(i64, &str, &str); 1] = [(1, "jobs", include_str!("../migrations/control/0001_jobs.sql"))];

/// Where a job is in its life. Flink's and Arroyo's states, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not launched yet.
    Created,
    /// Its processes are being started.
    Starting,
    /// Its processes run.
    Running,
    /// Asked to stop: taking a savepoint, then ending.
    Stopping,
    /// Stopped with a savepoint; `resume` goes on from it.
    Stopped,
    /// Its input ended and everything was written.
    Finished,
    /// A process failed; deciding whether to restart.
    Failing,
    /// Waiting out the backoff before a restart from the newest snapshot.
    Restarting,
    /// Failed too often to restart again.
    Failed,
    /// Ended at once, without a savepoint.
    Cancelled,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 10] = [
        JobState::Created,
        JobState::Starting,
        JobState::Running,
        JobState::Stopping,
        JobState::Stopped,
        JobState::Finished,
        JobState::Failing,
        JobState::Restarting,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Finished => "finished",
            JobState::Failing => "failing",
            JobState::Restarting => "restarting",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether the job is over until someone resumes it (no process runs, none will by itself).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Stopped | JobState::Finished | JobState::Failed | JobState::Cancelled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as submitted, with where it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (`<name>-<n>`).
    pub id: String,
    /// Its name (the spec's file name unless given).
    pub name: String,
    /// The pipeline's kind (`fraud`, `adjudication`, …).
    pub kind: String,
    /// The spec's TOML as submitted.
    pub spec: String,
    /// `--set` overrides, in order.
    pub overrides: Vec<String>,
    /// Worker threads per process.
    pub workers: u32,
    /// Processes in its timely cluster.
    pub processes: u32,
    /// Where it is.
    pub state: JobState,
    /// Since when (ms since the epoch).
    pub since_ms: i64,
    /// When it was submitted.
    pub created_ms: i64,
    /// How many times its processes were launched.
    pub launches: u32,
    /// The ids of its processes while they run (empty otherwise).
    pub pids: Vec<u32>,
    /// The last failure, in words.
    pub last_error: Option<String>,
}

/// One change of a job's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// From (none for the first).
    pub from: Option<JobState>,
    /// To.
    pub to: JobState,
    /// Why.
    pub reason: String,
}

/// What a transition changes besides the state.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// The processes now running (`Some(vec![])` when they ended).
    pub pids: Option<Vec<u32>>,
    /// One more launch.
    pub launched: bool,
    /// The last error (`Some(None)` clears it).
    pub last_error: Option<Option<String>>,
}

/// The control plane's database.
#[derive(Debug, Clone)]
pub struct JobStore {
    pool: AnyPool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl JobStore {
    /// Connects to `url` (`postgres://…` or `sqlite://…`) and applies the migrations not
    /// applied yet.
    pub async fn open(url: &str) -> Result<JobStore, ControlError> {
        sqlx::any::install_default_drivers();
        // SQLite allows one writer: one connection, so that writers queue rather than fail.
        let connections = if url.starts_with("sqlite:") { 1 } else { 4 };
        let pool = AnyPoolOptions::new().max_connections(connections).connect(url).await?;
        let store = JobStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), ControlError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS arus_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms \
             BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let applied = sqlx::query("SELECT version FROM arus_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
            if applied.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO arus_migrations (version, name, applied_ms) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Records a new job (state `created`) under a fresh id made from its name.
    pub async fn create(
        &self,
        name: &str,
        kind: &str,
        spec: &str,
        overrides: &[String],
        workers: u32,
        processes: u32,
    ) -> Result<Job, ControlError> {
        let now = now_ms();
        let overrides_json = serde_json::to_string(overrides).map_err(|e| ControlError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let taken: i64 = sqlx::query("SELECT COUNT(*) AS n FROM arus_jobs").fetch_one(&mut *tx).await?.try_get("n")?;
        // Ids count up per controller database; a name's id is free unless a job was deleted.
        let mut n = taken + 1;
        let id = loop {
            let id = format!("{name}-{n}");
            let exists =
                sqlx::query("SELECT id FROM arus_jobs WHERE id = $1").bind(&id).fetch_optional(&mut *tx).await?;
            if exists.is_none() {
                break id;
            }
            n += 1;
        };
        sqlx::query(
            "INSERT INTO arus_jobs (id, name, kind, spec, overrides, workers, processes, state, since_ms, created_ms, \
             launches, pids, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, '[]', NULL)",
        )
        .bind(&id)
        .bind(name)
        .bind(kind)
        .bind(spec)
        .bind(&overrides_json)
        .bind(i64::from(workers))
        .bind(i64::from(processes))
        .bind(JobState::Created.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO arus_job_transitions (job_id, seq, at_ms, from_state, to_state, reason) VALUES ($1, 1, $2, \
             NULL, $3, 'submitted')",
        )
        .bind(&id)
        .bind(now)
        .bind(JobState::Created.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.job(&id).await?.ok_or(ControlError::UnknownJob(id))
    }

    /// The job `id`, if there is one.
    pub async fn job(&self, id: &str) -> Result<Option<Job>, ControlError> {
        let row = sqlx::query(SELECT_JOB).bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| job_of(&row)).transpose()
    }

    /// Every job, the newest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, ControlError> {
        let rows = sqlx::query(SELECT_JOBS).fetch_all(&self.pool).await?;
        rows.iter().map(job_of).collect()
    }

    /// Moves job `id` to `to`, for `reason`, with `change`; the transition recorded with it
    /// (one transaction). Returns the job as it now is.
    pub async fn transition(&self, id: &str, to: JobState, reason: &str, change: Change) -> Result<Job, ControlError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT state, launches, pids, last_error FROM arus_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ControlError::UnknownJob(id.to_owned()))?;
        let from: String = row.try_get("state")?;
        let launches: i64 = row.try_get::<i64, _>("launches")? + i64::from(change.launched);
        let pids = match change.pids {
            Some(pids) => serde_json::to_string(&pids).map_err(|e| ControlError::Corrupt(e.to_string()))?,
            None => row.try_get("pids")?,
        };
        let last_error: Option<String> = match change.last_error {
            Some(error) => error,
            None => row.try_get("last_error")?,
        };
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM arus_job_transitions WHERE job_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("seq")?;
        sqlx::query(
            "UPDATE arus_jobs SET state = $1, since_ms = $2, launches = $3, pids = $4, last_error = $5 WHERE id = $6",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(launches)
        .bind(&pids)
        .bind(&last_error)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO arus_job_transitions (job_id, seq, at_ms, from_state, to_state, reason) VALUES ($1, $2, $3, \
             $4, $5, $6)",
        )
        .bind(id)
        .bind(seq + 1)
        .bind(now)
        .bind(&from)
        .bind(to.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.job(id).await?.ok_or_else(|| ControlError::UnknownJob(id.to_owned()))
    }

    /// Job `id`'s transitions, the first first.
    pub async fn transitions(&self, id: &str) -> Result<Vec<Transition>, ControlError> {
        let rows = sqlx::query(
            "SELECT at_ms, from_state, to_state, reason FROM arus_job_transitions WHERE job_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let from: Option<String> = row.try_get("from_state")?;
                Ok(Transition {
                    at_ms: row.try_get("at_ms")?,
                    from: from.as_deref().map(state).transpose()?,
                    to: state(&row.try_get::<String, _>("to_state")?)?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }
}

const SELECT_JOB: &str = "SELECT id, name, kind, spec, overrides, workers, processes, state, since_ms, created_ms, \
                          launches, pids, last_error FROM arus_jobs WHERE id = $1";
const SELECT_JOBS: &str = "SELECT id, name, kind, spec, overrides, workers, processes, state, since_ms, created_ms, \
                           launches, pids, last_error FROM arus_jobs ORDER BY created_ms DESC, id DESC";

fn state(name: &str) -> Result<JobState, ControlError> {
    JobState::parse(name).ok_or_else(|| ControlError::Corrupt(format!("a job state {name:?} this build does not know")))
}

fn job_of(row: &sqlx::any::AnyRow) -> Result<Job, ControlError> {
    let json = |column: &str| -> Result<String, ControlError> { Ok(row.try_get::<String, _>(column)?) };
    let count = |column: &str| -> Result<u32, ControlError> {
        let n: i64 = row.try_get(column)?;
        u32::try_from(n).map_err(|_| ControlError::Corrupt(format!("{column} {n}")))
    };
    Ok(Job {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        spec: row.try_get("spec")?,
        overrides: serde_json::from_str(&json("overrides")?).map_err(|e| ControlError::Corrupt(e.to_string()))?,
        workers: count("workers")?,
        processes: count("processes")?,
        state: state(&row.try_get::<String, _>("state")?)?,
        since_ms: row.try_get("since_ms")?,
        created_ms: row.try_get("created_ms")?,
        launches: count("launches")?,
        pids: serde_json::from_str(&json("pids")?).map_err(|e| ControlError::Corrupt(e.to_string()))?,
        last_error: row.try_get("last_error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
    }

    /// Against the embedded database (SQLite in a temporary folder); `tests/controller.rs`
    /// runs the controller against PostgreSQL.
    #[test]
    fn jobs_and_their_transitions_are_kept_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().expect("a dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("control.db").display());
        runtime().block_on(async {
            let store = JobStore::open(&url).await.expect("open");
            let job =
                store.create("fraud", "fraud", "job = \"fraud\"", &["a=1".to_owned()], 2, 1).await.expect("create");
            assert_eq!((job.id.as_str(), job.state, job.launches), ("fraud-1", JobState::Created, 0));
            let other = store.create("fraud", "fraud", "", &[], 1, 1).await.expect("create");
            assert_eq!(other.id, "fraud-2");
            let change = Change { pids: Some(vec![41, 42]), launched: true, last_error: None };
            store.transition(&job.id, JobState::Starting, "launching", change).await.expect("transition");
            let failed = Change { pids: Some(vec![]), launched: false, last_error: Some(Some("exit 3".to_owned())) };
            store.transition(&job.id, JobState::Failing, "exit 3", failed).await.expect("transition");
            drop(store);

            // Opened again: the migrations are not applied twice, and everything is there.
            let store = JobStore::open(&url).await.expect("reopen");
            let job = store.job("fraud-1").await.expect("read").expect("the job");
            assert_eq!((job.state, job.launches, job.pids.len()), (JobState::Failing, 1, 0));
            assert_eq!(
                (job.overrides, job.workers, job.last_error.as_deref()),
                (vec!["a=1".to_owned()], 2, Some("exit 3"))
            );
            let steps: Vec<_> =
                store.transitions("fraud-1").await.expect("transitions").into_iter().map(|t| (t.from, t.to)).collect();
            assert_eq!(
                steps,
                [
                    (None, JobState::Created),
                    (Some(JobState::Created), JobState::Starting),
                    (Some(JobState::Starting), JobState::Failing)
                ]
            );
            let ids: Vec<String> = store.jobs().await.expect("jobs").into_iter().map(|j| j.id).collect();
            assert_eq!(ids.len(), 2);
            assert!(matches!(
                store.transition("nobody-1", JobState::Running, "", Change::default()).await,
                Err(ControlError::UnknownJob(_))
            ));
        });
    }

    #[test]
    fn states_read_back_by_name() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(JobState::parse("zombie"), None);
        assert!(JobState::Stopped.is_terminal() && !JobState::Restarting.is_terminal());
    }
}
