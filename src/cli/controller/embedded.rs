//! The embedded default: a controller inside this process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arus_connectors::control::{JobState, JobStore};

use super::{Controller, RestartPolicy, Submission, launcher, router};

/// A controller inside this process, for the embedded default (`arus demo`): SQLite in a
/// folder, jobs run as threads ([`launcher::Threads`]), each run once and waited for.
pub struct Embedded {
    runtime: tokio::runtime::Runtime,
    controller: Arc<Controller>,
    threads: Arc<launcher::Threads>,
}

impl Embedded {
    /// Its database and jobs' folders in `data_dir`.
    pub fn start(data_dir: &Path) -> anyhow::Result<Embedded> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("{}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let url = format!("sqlite://{}?mode=rwc", data_dir.join("controller.db").display());
        let store = runtime.block_on(JobStore::open(&url)).with_context(|| url.clone())?;
        let threads = Arc::new(launcher::Threads::default());
        // A job inside the process runs once: a failure is final.
        let policy = RestartPolicy {
            max_failures: 0,
            window: Duration::from_secs(1),
            backoff: Duration::ZERO,
            backoff_max: Duration::ZERO,
        };
        let controller = Controller::new(store, threads.clone(), data_dir, policy, None);
        Ok(Embedded { runtime, controller, threads })
    }

    /// Submits job `name` (its spec and overrides recorded as an engineer would submit them)
    /// and runs it through the controller as `job`, waiting for its end: what `job` gave.
    pub fn run<T: Send + 'static>(
        &self,
        name: &str,
        workers: u32,
        spec: &str,
        overrides: Vec<String>,
        job: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (given, taken) = std::sync::mpsc::sync_channel(1);
        self.threads.give(
            name,
            Box::new(move || {
                let value = job()?;
                let _ = given.send(value);
                Ok(())
            }),
        );
        let submission = Submission {
            spec: spec.to_owned(),
            name: Some(name.to_owned()),
            set: overrides,
            workers,
            processes: 1,
            from_savepoint: None,
        };
        let job = self.runtime.block_on(self.controller.submit(submission))?;
        let over = self.runtime.block_on(self.controller.over(&job.id))?;
        match taken.try_recv() {
            Ok(value) if over.state == JobState::Finished => Ok(value),
            _ => Err(anyhow::anyhow!(
                "job {} {}: {}",
                over.id,
                over.state,
                over.last_error.unwrap_or_else(|| "no error recorded".to_owned())
            )),
        }
    }

    /// Every job, as `arus job list --output json` shows them.
    pub fn jobs(&self) -> anyhow::Result<serde_json::Value> {
        let views = self.runtime.block_on(self.controller.views())?;
        Ok(serde_json::to_value(views)?)
    }

    /// Serves the API and the page on `listener` (in the background), for `authenticator`'s
    /// tokens.
    pub fn serve(
        &self,
        listener: std::net::TcpListener,
        authenticator: arus_gateway::auth::Authenticator,
    ) -> anyhow::Result<()> {
        self.controller.authenticate_with(authenticator);
        listener.set_nonblocking(true)?;
        let router = router(self.controller.clone());
        self.runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            if let Err(error) =
                arus_gateway::server::serve(listener, router, arus_gateway::Limits::default(), None).await
            {
                eprintln!("error: the controller's API: {error}");
            }
        });
        Ok(())
    }
}
