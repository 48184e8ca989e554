//! `arus controller`: keeps job definitions and states in a database (PostgreSQL, or SQLite
//! embedded), launches each job's processes, supervises them, restarts a failed job from its
//! newest snapshot with exponential backoff until it fails too often, and serves a REST API
//! (`/internal/v1/jobs…`, the admin scope) and a jobs page.
//!
//! A job's folder (`<data-dir>/jobs/<id>/`) holds its spec as submitted, its log, its
//! snapshots (the controller sets the spec's `checkpoint.dir` there, for the jobs that take
//! them) and its savepoints. A controller started again finds the jobs that were running: their
//! processes still running are watched again, the others restarted from their snapshots.

mod embedded;
mod feed;
pub mod launcher;
mod supervisor;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use arus_connectors::control::{Job, JobState, JobStore, Transition};
use axum::Json;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

pub use embedded::Embedded;
use launcher::{Launch, Launcher, Processes, Signal};
use supervisor::{Handle, Live, Request as Ask};

/// `arus controller` arguments.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Address of the API and the jobs page.
    #[arg(long, default_value = "127.0.0.1:8088")]
    addr: String,
    /// The database of jobs: `postgres://user@host/db`, or `sqlite://path?mode=rwc`
    /// [default: SQLite in --data-dir].
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Where jobs' specs, logs, snapshots and savepoints are kept.
    #[arg(long, default_value = "arus-controller")]
    data_dir: PathBuf,
    /// The OpenID provider whose tokens are accepted (the admin scope and the internal role).
    #[arg(long, value_name = "URL", required_unless_present = "insecure_dev_issuer")]
    issuer: Option<String>,
    /// The audience tokens must be for.
    #[arg(long, default_value = arus_gateway::auth::DEFAULT_AUDIENCE)]
    audience: String,
    /// An issuer inside the process, whose admin token is printed; development only.
    #[arg(long)]
    insecure_dev_issuer: bool,
    /// Serve over TLS with this certificate chain (PEM), every client presenting a
    /// certificate of --client-ca (mTLS, as the gateway's partner routes).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "client_ca"])]
    tls_cert: Option<PathBuf>,
    /// The TLS listener's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) clients' certificates must chain to.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Failures within --failure-window after which a job is not restarted again.
    #[arg(long, default_value_t = 5)]
    max_failures: usize,
    /// The window failures are counted in (e.g. `10m`).
    #[arg(long, default_value = "10m", value_parser = span)]
    failure_window: Duration,
    /// The first restart's delay; each next one doubles it, up to --backoff-max.
    #[arg(long, default_value = "1s", value_parser = span)]
    backoff: Duration,
    /// The longest delay before a restart.
    #[arg(long, default_value = "1m", value_parser = span)]
    backoff_max: Duration,
}

fn span(text: &str) -> Result<Duration, String> {
    Ok(arus_jobs::runtime::spec::TimeSpan::parse(text)?.duration())
}

/// When a failed job is restarted (Flink's exponential-delay strategy with a failure-rate
/// limit).
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Failures allowed within `window`.
    pub max_failures: usize,
    /// The window.
    pub window: Duration,
    /// The first delay.
    pub backoff: Duration,
    /// The longest delay.
    pub backoff_max: Duration,
}

/// The controller: its database, launcher and the jobs it supervises.
pub struct Controller {
    store: JobStore,
    launcher: Arc<dyn Launcher>,
    data_dir: PathBuf,
    policy: RestartPolicy,
    handles: Mutex<HashMap<String, Arc<Handle>>>,
    /// The figures of jobs no longer supervised, as they were last.
    last_figures: Mutex<HashMap<String, Live>>,
    /// Whose tokens the API takes (none set: it answers nobody).
    authenticator: std::sync::OnceLock<arus_gateway::auth::Authenticator>,
}

/// Serves until stopped.
pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("--data-dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize().with_context(|| format!("--data-dir {}", args.data_dir.display()))?;
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("controller.db").display()));
    let authenticator = super::authenticator(args.issuer.as_deref(), &args.audience, "export ARUS_TOKEN=")?;
    let policy = RestartPolicy {
        max_failures: args.max_failures,
        window: args.failure_window,
        backoff: args.backoff,
        backoff_max: args.backoff_max,
    };
    let tls = match (&args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            Some(arus_gateway::server::partner_tls_config(cert, key, ca).map_err(|e| anyhow::anyhow!("--tls-*: {e}"))?)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let store = JobStore::open(&database).await.with_context(|| format!("--database {}", redacted(&database)))?;
        let exe = std::env::current_exe().context("the arus binary's path")?;
        let controller = Controller::new(store, Arc::new(Processes::new(exe)), data_dir, policy, Some(authenticator));
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
        // Beyond this machine the internal routes are served over mTLS only.
        if tls.is_none() && !listener.local_addr()?.ip().is_loopback() {
            return Err(super::refused(format!(
                "--addr {}: beyond this machine the API is served over mTLS only (--tls-cert, --tls-key, \
                 --client-ca); without them, listen on 127.0.0.1",
                args.addr
            )));
        }
        let found = controller.clone().recover().await?;
        eprintln!(
            "controller on {}://{} (jobs page at /; {} job{} found running), database {}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?,
            found,
            if found == 1 { "" } else { "s" },
            redacted(&database)
        );
        // The gateway's server: header-read and idle timeouts, a connection cap, and with
        // TLS the client certificate checked in the handshake.
        let limits = arus_gateway::Limits::default();
        arus_gateway::server::serve(listener, router(controller), limits, tls).await.context("serving")?;
        anyhow::Ok(())
    })
}

/// A database URL without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The API's document frame.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "arus controller", description = "Jobs submitted, supervised, savepointed, stopped, resumed and cancelled; the internal routes (a bearer token of the internal role with admin.all)."),
    tags((name = "jobs", description = "The jobs and what they put out")),
)]
struct Document;

/// Every API route with its documentation: the router served and the document are both made
/// from this one list.
fn api() -> utoipa_axum::router::OpenApiRouter<Arc<Controller>> {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(list, submit))
        .routes(routes!(status))
        .routes(routes!(savepoint))
        .routes(routes!(stop))
        .routes(routes!(cancel))
        .routes(routes!(resume))
        .routes(routes!(logs))
        .routes(routes!(newest))
}

/// The API's OpenAPI 3.1 document.
pub fn openapi_document() -> String {
    let mut document = api().into_openapi();
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    document.security = Some(vec![SecurityRequirement::new("bearer", ["admin.all"])]);
    // Every operation may be refused for its token.
    let refusal = |description: &str| {
        let body = utoipa::openapi::ContentBuilder::new()
            .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Object)))
            .build();
        utoipa::openapi::ResponseBuilder::new().description(description).content("application/json", body).build()
    };
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            operation
                .responses
                .responses
                .insert("401".to_owned(), refusal("no token, or one that does not verify").into());
            operation
                .responses
                .responses
                .insert("403".to_owned(), refusal("not the internal role with admin.all").into());
        }
    }
    document.to_json().expect("the OpenAPI document serializes")
}

/// The API and the page.
pub fn router(controller: Arc<Controller>) -> axum::Router {
    let (api, _) = api().split_for_parts();
    let api = api.layer(axum::middleware::from_fn_with_state(controller.clone(), authorize));
    let document = openapi_document();
    axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/internal/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .with_state(controller)
}

/// The jobs page (its script and styles inline: nothing is fetched but the API).
const PAGE: &str = include_str!("page.html");

/// An API error: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    fn unknown(id: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "JOB_NOT_FOUND", format!("no job {id}"))
    }

    fn database(error: arus_connectors::control::ControlError) -> Self {
        eprintln!("error: {error}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", "the job database did not answer")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"arus\""));
        }
        response
    }
}

/// The API needs a token of the internal role with the admin scope.
async fn authorize(
    State(controller): State<Arc<Controller>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(authenticator) = controller.authenticator.get() else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "this controller takes no tokens yet"));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "a bearer token is needed"))?;
    let caller = match authenticator.verify_cached(token) {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            let (token, controller) = (token.to_owned(), controller.clone());
            tokio::task::spawn_blocking(move || {
                let authenticator = controller.authenticator.get().expect("checked above");
                authenticator.verify(&token)
            })
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "verifying the token"))?
            .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", why.0))?
        }
        Err(why) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", why.0)),
    };
    if caller.role != arus_gateway::auth::Role::Internal || !caller.has_scope("admin.all") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_SCOPE",
            "jobs need the admin.all scope and the internal role",
        ));
    }
    Ok(next.run(request).await)
}

/// A submission.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Submission {
    /// The spec's TOML.
    pub spec: String,
    /// The job's name [default: the spec's job kind].
    #[serde(default)]
    pub name: Option<String>,
    /// `--set` overrides.
    #[serde(default)]
    pub set: Vec<String>,
    /// Worker threads per process.
    #[serde(default = "one")]
    pub workers: u32,
    /// Processes.
    #[serde(default = "one")]
    pub processes: u32,
    /// A savepoint (a snapshot file) to start from.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub from_savepoint: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

/// A job as the API shows it: its record and what its processes' metrics say.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    job: JobSummary,
    /// Records read so far by the running processes.
    records: Option<u64>,
    /// Records read a second, over the last few seconds.
    records_per_second: Option<u64>,
    /// Records between the positions and the partitions' ends.
    lag: Option<i64>,
    /// The event-time watermark (ms since the epoch).
    watermark_ms: Option<i64>,
    /// Records refused as dead letters.
    dead_letters: Option<u64>,
    /// When the figures above were read from the job's metrics (ms since the epoch).
    figures_at_ms: Option<i64>,
    /// The newest snapshot.
    checkpoint: Option<Checkpoint>,
}

/// A job's record without its spec.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct JobSummary {
    id: String,
    name: String,
    kind: String,
    /// created, starting, running, stopping, stopped, finished, failing, restarting, failed or
    /// cancelled.
    #[schema(value_type = String)]
    state: JobState,
    since_ms: i64,
    created_ms: i64,
    workers: u32,
    processes: u32,
    launches: u32,
    pids: Vec<u32>,
    last_error: Option<String>,
}

/// A snapshot on disk.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Checkpoint {
    /// Its epoch.
    epoch: u64,
    /// Its file.
    #[schema(value_type = String)]
    path: PathBuf,
    /// When it was written (ms since the epoch).
    at_ms: i64,
}

impl Controller {
    fn job_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("jobs").join(id)
    }

    fn snapshots_dir(&self, id: &str) -> PathBuf {
        self.job_dir(id).join("snapshots")
    }

    fn handle(&self, id: &str) -> Option<Arc<Handle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    async fn job(&self, id: &str) -> Result<Job, ApiError> {
        self.store.job(id).await.map_err(ApiError::database)?.ok_or_else(|| ApiError::unknown(id))
    }

    fn view(&self, job: Job) -> JobView {
        // A supervised job's figures now; an ended one's as they were last.
        let live = match self.handle(&job.id) {
            Some(handle) => handle.live(),
            None => {
                self.last_figures.lock().unwrap_or_else(|e| e.into_inner()).get(&job.id).cloned().unwrap_or_default()
            }
        };
        let checkpoint = newest_snapshot(&self.snapshots_dir(&job.id));
        let running = !job.pids.is_empty();
        JobView {
            job: JobSummary {
                id: job.id,
                name: job.name,
                kind: job.kind,
                state: job.state,
                since_ms: job.since_ms,
                created_ms: job.created_ms,
                workers: job.workers,
                processes: job.processes,
                launches: job.launches,
                pids: job.pids,
                last_error: job.last_error,
            },
            records: live.records,
            records_per_second: live.per_second.filter(|_| running),
            lag: live.lag.filter(|_| running),
            watermark_ms: live.watermark_ms,
            dead_letters: live.dead_letters,
            figures_at_ms: live.at_ms,
            checkpoint,
        }
    }

    /// The overrides a launch gets: the job's, then the controller's (snapshots into the
    /// job's folder, for jobs that take them).
    fn overrides(&self, job: &Job) -> Vec<String> {
        let mut overrides = job.overrides.clone();
        let snapshots = format!("checkpoint.dir={}", self.snapshots_dir(&job.id).display());
        let mut with = overrides.clone();
        with.push(snapshots.clone());
        if arus_jobs::Pipeline::parse(Path::new(&job.name), &job.spec, &with).is_ok() {
            overrides.push(snapshots);
        }
        overrides
    }

    fn launch_of(&self, job: &Job) -> Launch {
        Launch {
            job_id: job.id.clone(),
            name: job.name.clone(),
            spec: self.job_dir(&job.id).join("spec.toml"),
            overrides: self.overrides(job),
            workers: job.workers,
            processes: job.processes,
            dir: self.job_dir(&job.id),
        }
    }

    /// Starts supervising job `id` (its processes `running`, when found running).
    fn supervise(self: &Arc<Self>, job: &Job, running: Option<Vec<u32>>) {
        let handle = Arc::new(Handle::default());
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).insert(job.id.clone(), handle.clone());
        tokio::spawn(supervisor::supervise(self.clone(), job.id.clone(), handle, running));
    }

    /// At start: every job that was not over is watched again (its processes still running)
    /// or restarted from its snapshots. How many were found running.
    async fn recover(self: Arc<Self>) -> anyhow::Result<usize> {
        let mut found = 0;
        for job in self.store.jobs().await? {
            if job.state.is_terminal() {
                continue;
            }
            let alive = !job.pids.is_empty() && job.pids.iter().all(|pid| self.launcher.running(*pid, &job.id));
            if alive {
                found += 1;
                let reason = "its processes found running when the controller started";
                let job = self.store.transition(&job.id, JobState::Running, reason, Default::default()).await?;
                self.supervise(&job, Some(job.pids.clone()));
                continue;
            }
            // Its processes ended while no controller watched: a stop that was under way
            // ended as stopped; anything else goes on from its snapshots.
            // (Some processes of a cluster may still run: ended, so that the restart is alone.
            // Only the job's own: an id the system gave another process is left alone.)
            for pid in &job.pids {
                if self.launcher.running(*pid, &job.id) {
                    let _ = self.launcher.signal(*pid, Signal::Kill);
                }
            }
            let change = arus_connectors::control::Change { pids: Some(Vec::new()), ..Default::default() };
            if job.state == JobState::Stopping {
                self.store
                    .transition(&job.id, JobState::Stopped, "stopped while the controller was away", change)
                    .await?;
                continue;
            }
            let job = self
                .store
                .transition(&job.id, JobState::Restarting, "its processes ended while the controller was away", change)
                .await?;
            self.supervise(&job, None);
        }
        Ok(found)
    }
}

/// The newest snapshot (`snapshot-<epoch>.arus`, or a provider-windows `checkpoint-<epoch>.json`)
/// in `dir`.
pub fn newest_snapshot(dir: &Path) -> Option<Checkpoint> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let epoch = name
                .strip_prefix("snapshot-")
                .and_then(|n| n.strip_suffix(".arus"))
                .or_else(|| name.strip_prefix("checkpoint-").and_then(|n| n.strip_suffix(".json")))?
                .parse()
                .ok()?;
            let at_ms = entry
                .metadata()
                .ok()?
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            Some(Checkpoint { epoch, path: entry.path(), at_ms })
        })
        .max_by_key(|c| c.epoch)
}

/// The newest fraud alerts and dead letters of the jobs running.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Newest {
    alerts: Vec<feed::Item>,
    dead_letters: Vec<feed::Item>,
}

#[utoipa::path(get, path = "/internal/v1/feed", tag = "jobs", responses((status = 200, description = "the newest fraud alerts and dead letters of the jobs running", body = Newest)))]
async fn newest(State(controller): State<Arc<Controller>>) -> Json<Newest> {
    let handles: Vec<Arc<Handle>> =
        controller.handles.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    let (mut alerts, mut dead_letters) = (Vec::new(), Vec::new());
    for handle in handles {
        let (a, d) = handle.feed.newest();
        alerts.extend(a);
        dead_letters.extend(d);
    }
    for items in [&mut alerts, &mut dead_letters] {
        items.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| a.job.cmp(&b.job)));
        items.truncate(feed::KEPT);
    }
    Json(Newest { alerts, dead_letters })
}

#[utoipa::path(get, path = "/internal/v1/jobs", tag = "jobs", responses((status = 200, description = "every job, the newest first", body = Vec<JobView>)))]
async fn list(State(controller): State<Arc<Controller>>) -> Result<Json<Vec<JobView>>, ApiError> {
    let jobs = controller.store.jobs().await.map_err(ApiError::database)?;
    Ok(Json(jobs.into_iter().map(|job| controller.view(job)).collect()))
}

/// A job with its history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Status {
    #[serde(flatten)]
    view: JobView,
    spec: String,
    overrides: Vec<String>,
    /// Each change of state: `at_ms`, `from`, `to`, `reason`.
    #[schema(value_type = Vec<Object>)]
    transitions: Vec<Transition>,
    #[schema(value_type = Vec<String>)]
    savepoints: Vec<PathBuf>,
}

#[utoipa::path(get, path = "/internal/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "the job")), responses((status = 200, description = "the job, its transitions and savepoints", body = Status), (status = 404, description = "no such job", body = Object)))]
async fn status(State(controller): State<Arc<Controller>>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let job = controller.job(&id).await?;
    let transitions = controller.store.transitions(&id).await.map_err(ApiError::database)?;
    let (spec, overrides) = (job.spec.clone(), job.overrides.clone());
    let mut savepoints: Vec<PathBuf> = std::fs::read_dir(controller.job_dir(&id).join("savepoints"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    savepoints.sort();
    Ok(Json(Status { view: controller.view(job), spec, overrides, transitions, savepoints }).into_response())
}

#[utoipa::path(post, path = "/internal/v1/jobs", tag = "jobs", request_body = Submission, responses((status = 201, description = "recorded, and starting", body = JobView), (status = 400, description = "not a submission", body = Object), (status = 422, description = "a spec that does not validate, a bad name or savepoint", body = Object)))]
async fn submit(State(controller): State<Arc<Controller>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let submission: Submission = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("the submission: {e}")))?;
    let job = controller.submit(submission).await?;
    Ok((StatusCode::CREATED, Json(controller.view(job))).into_response())
}

impl Controller {
    /// A controller of the jobs in `store`, launched by `launcher`, kept in `data_dir`.
    pub fn new(
        store: JobStore,
        launcher: Arc<dyn Launcher>,
        data_dir: PathBuf,
        policy: RestartPolicy,
        authenticator: Option<arus_gateway::auth::Authenticator>,
    ) -> Arc<Self> {
        Arc::new(Controller {
            store,
            launcher,
            data_dir,
            policy,
            handles: Mutex::default(),
            last_figures: Mutex::default(),
            authenticator: authenticator.map(std::sync::OnceLock::from).unwrap_or_default(),
        })
    }

    /// Takes the tokens of `authenticator` from now on (when it took none before).
    pub fn authenticate_with(&self, authenticator: arus_gateway::auth::Authenticator) {
        let _ = self.authenticator.set(authenticator);
    }

    /// Every job, as the API lists them.
    pub async fn views(&self) -> Result<Vec<JobView>, ApiError> {
        let jobs = self.store.jobs().await.map_err(ApiError::database)?;
        Ok(jobs.into_iter().map(|job| self.view(job)).collect())
    }

    /// Job `id` once it is over (stopped, finished, failed or cancelled).
    pub async fn over(&self, id: &str) -> Result<Job, ApiError> {
        loop {
            let job = self.job(id).await?;
            if job.state.is_terminal() {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Validates and records a job, and starts supervising it.
    pub async fn submit(self: &Arc<Self>, submission: Submission) -> Result<Job, ApiError> {
        let controller = self;
        if !(1..=256).contains(&submission.workers) || !(1..=64).contains(&submission.processes) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_REQUEST",
                "workers 1 to 256, processes 1 to 64",
            ));
        }
        // A spec that does not validate never starts.
        // (As it will run: with the controller's `checkpoint.dir` where the job takes one, so that
        // a spec may set the other checkpoint keys alone.)
        let label = submission.name.clone().unwrap_or_else(|| "spec".to_owned());
        let mut with_snapshots = submission.set.clone();
        with_snapshots.push("checkpoint.dir=snapshots".to_owned());
        let pipeline = arus_jobs::Pipeline::parse(Path::new(&label), &submission.spec, &with_snapshots)
            .or_else(|_| arus_jobs::Pipeline::parse(Path::new(&label), &submission.spec, &submission.set))
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_SPEC", e.to_string()))?;
        let kind =
            serde_json::to_value(pipeline.job()).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let name = submission.name.clone().unwrap_or_else(|| kind.clone());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_NAME",
                "a name is letters, digits, - and _",
            ));
        }
        if let Some(savepoint) = &submission.from_savepoint
            && !savepoint.is_file()
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_SAVEPOINT",
                format!("no file {}", savepoint.display()),
            ));
        }
        let job = controller
            .store
            .create(&name, &kind, &submission.spec, &submission.set, submission.workers, submission.processes)
            .await
            .map_err(ApiError::database)?;
        let dir = controller.job_dir(&job.id);
        let prepared = std::fs::create_dir_all(controller.snapshots_dir(&job.id))
            .and_then(|()| std::fs::write(dir.join("spec.toml"), &job.spec))
            .and_then(|()| match &submission.from_savepoint {
                Some(savepoint) => restore_savepoint(savepoint, &controller.snapshots_dir(&job.id)),
                None => Ok(()),
            });
        if let Err(error) = prepared {
            let reason = format!("its folder {}: {error}", dir.display());
            let _ = controller
                .store
                .transition(&job.id, JobState::Failed, &reason, arus_connectors::control::Change::default())
                .await;
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "JOB_FOLDER", reason));
        }
        controller.supervise(&job, None);
        Ok(job)
    }
}

/// Puts `savepoint` in `snapshots` as the only snapshot there (a resume starts from it).
fn restore_savepoint(savepoint: &Path, snapshots: &Path) -> std::io::Result<()> {
    let name = savepoint.file_name().ok_or_else(|| std::io::Error::other("a savepoint is a file"))?;
    std::fs::create_dir_all(snapshots)?;
    for entry in std::fs::read_dir(snapshots)?.flatten() {
        if entry.path().is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::copy(savepoint, snapshots.join(name)).map(|_| ())
}

/// Options of a savepoint or a stop.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct Waiting {
    /// Where the savepoint goes [default: the job's `savepoints` folder].
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    dir: Option<PathBuf>,
    /// How long to wait, in seconds.
    #[serde(default)]
    timeout_s: Option<u64>,
    /// For a resume: the savepoint to start from.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    from_savepoint: Option<PathBuf>,
}

fn waiting(body: &[u8]) -> Result<Waiting, ApiError> {
    if body.is_empty() {
        return Ok(Waiting::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()))
}

/// A savepoint taken.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Savepoint {
    #[schema(value_type = String)]
    path: PathBuf,
    epoch: u64,
    #[schema(value_type = String)]
    state: JobState,
}

/// Copies snapshot `checkpoint` of job `id` to `dir` (or the job's savepoints): the savepoint.
fn keep(controller: &Controller, id: &str, checkpoint: &Checkpoint, dir: Option<&Path>) -> Result<PathBuf, ApiError> {
    let dir = dir.map_or_else(|| controller.job_dir(id).join("savepoints"), Path::to_owned);
    let name = checkpoint.path.file_name().map(PathBuf::from).unwrap_or_default();
    let path = dir.join(name);
    std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&checkpoint.path, &path)).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "SAVEPOINT_NOT_KEPT", format!("{}: {e}", dir.display()))
    })?;
    Ok(path)
}

#[utoipa::path(post, path = "/internal/v1/jobs/{id}/savepoint", tag = "jobs", params(("id" = String, Path, description = "the job")), request_body(content = Option<Waiting>), responses((status = 200, description = "the savepoint taken", body = Savepoint), (status = 409, description = "the job is not running", body = Object), (status = 504, description = "no new snapshot in time", body = Object)))]
async fn savepoint(
    State(controller): State<Arc<Controller>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let options = waiting(&body)?;
    let job = controller.job(&id).await?;
    let Some(first) = job.pids.first().copied().filter(|_| job.state == JobState::Running) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_RUNNING",
            format!("job {id} is {}, not running", job.state),
        ));
    };
    let snapshots = controller.snapshots_dir(&id);
    let before = newest_snapshot(&snapshots).map(|c| c.epoch);
    // Process 0 writes the snapshots.
    controller
        .launcher
        .signal(first, Signal::Savepoint)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "NOT_RUNNING", format!("process {first}: {e}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(options.timeout_s.unwrap_or(120));
    loop {
        if let Some(newest) = newest_snapshot(&snapshots).filter(|c| Some(c.epoch) > before) {
            let path = keep(&controller, &id, &newest, options.dir.as_deref())?;
            let state = controller.job(&id).await?.state;
            return Ok(Json(Savepoint { path, epoch: newest.epoch, state }).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "SAVEPOINT_TIMEOUT",
                "no new snapshot in time (a job that takes no snapshots, or with nothing new since its newest, writes none)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks the supervisor of `id` for `ask` and waits until the job is over.
async fn ended(controller: &Arc<Controller>, id: &str, ask: Ask, timeout: Duration) -> Result<Job, ApiError> {
    let job = controller.job(id).await?;
    if job.state.is_terminal() {
        return Err(ApiError::new(StatusCode::CONFLICT, "NOT_RUNNING", format!("job {id} is {} already", job.state)));
    }
    let handle = controller.handle(id).ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "NOT_SUPERVISED", format!("job {id} is {} but not supervised", job.state))
    })?;
    handle.ask(ask);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = controller.job(id).await?;
        if job.state.is_terminal() {
            return Ok(job);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "STILL_ENDING",
                format!("job {id} is still {}", job.state),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job ended on request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Ended {
    #[schema(value_type = String)]
    state: JobState,
    #[schema(value_type = Option<String>)]
    savepoint: Option<PathBuf>,
}

#[utoipa::path(post, path = "/internal/v1/jobs/{id}/stop", tag = "jobs", params(("id" = String, Path, description = "the job")), request_body(content = Option<Waiting>), responses((status = 200, description = "stopped, with its savepoint", body = Ended), (status = 409, description = "the job is over already", body = Object), (status = 504, description = "still stopping", body = Object)))]
async fn stop(
    State(controller): State<Arc<Controller>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let options = waiting(&body)?;
    let job = ended(&controller, &id, Ask::Stop, Duration::from_secs(options.timeout_s.unwrap_or(600))).await?;
    // The snapshot the stop took (or the newest before it, when nothing was new) is the
    // savepoint.
    let savepoint = match newest_snapshot(&controller.snapshots_dir(&id)) {
        Some(checkpoint) if job.state == JobState::Stopped => {
            Some(keep(&controller, &id, &checkpoint, options.dir.as_deref())?)
        }
        _ => None,
    };
    Ok(Json(Ended { state: job.state, savepoint }).into_response())
}

#[utoipa::path(post, path = "/internal/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "the job")), responses((status = 200, description = "cancelled", body = Ended), (status = 409, description = "the job is over already", body = Object)))]
async fn cancel(State(controller): State<Arc<Controller>>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let job = ended(&controller, &id, Ask::Cancel, Duration::from_secs(60)).await?;
    Ok(Json(Ended { state: job.state, savepoint: None }).into_response())
}

#[utoipa::path(post, path = "/internal/v1/jobs/{id}/resume", tag = "jobs", params(("id" = String, Path, description = "the job")), request_body(content = Option<Waiting>), responses((status = 202, description = "starting again", body = JobView), (status = 409, description = "the job is not over", body = Object)))]
async fn resume(
    State(controller): State<Arc<Controller>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let options = waiting(&body)?;
    let job = controller.job(&id).await?;
    if !job.state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "RUNNING",
            format!("job {id} is {}: nothing to resume", job.state),
        ));
    }
    if let Some(savepoint) = &options.from_savepoint {
        restore_savepoint(savepoint, &controller.snapshots_dir(&id)).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_SAVEPOINT",
                format!("{}: {e}", savepoint.display()),
            )
        })?;
    }
    let reason = match &options.from_savepoint {
        Some(savepoint) => format!("resumed from savepoint {}", savepoint.display()),
        None => "resumed from its newest snapshot".to_owned(),
    };
    let job = controller
        .store
        .transition(&id, JobState::Created, &reason, arus_connectors::control::Change::default())
        .await
        .map_err(ApiError::database)?;
    controller.supervise(&job, None);
    Ok((StatusCode::ACCEPTED, Json(controller.view(job))).into_response())
}

/// Where to read a log from.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct From {
    #[serde(default)]
    from: u64,
}

/// Most of a log one request returns.
const LOG_CHUNK: u64 = 256 * 1024;

#[utoipa::path(get, path = "/internal/v1/jobs/{id}/logs", tag = "jobs", params(("id" = String, Path, description = "the job"), From), responses((status = 200, description = "the log from `from` (at most 256 KiB; `x-next-offset` says where to go on)", content_type = "text/plain", body = String), (status = 404, description = "no such job", body = Object)))]
async fn logs(
    State(controller): State<Arc<Controller>>,
    UrlPath(id): UrlPath<String>,
    Query(from): Query<From>,
) -> Result<Response, ApiError> {
    controller.job(&id).await?;
    let path = Launch::log(&controller.job_dir(&id));
    let (text, next) = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
        use std::io::{Read, Seek};
        let Ok(mut file) = std::fs::File::open(&path) else { return Ok((Vec::new(), 0)) };
        let length = file.metadata()?.len();
        let start = from.from.min(length);
        file.seek(std::io::SeekFrom::Start(start))?;
        let mut text = Vec::new();
        file.take(LOG_CHUNK).read_to_end(&mut text)?;
        let next = start + text.len() as u64;
        Ok((text, next))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "reading the log"))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "LOG_UNREADABLE", e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            ("x-next-offset".parse().expect("a name"), next.to_string()),
        ],
        text,
    )
        .into_response())
}

impl Live {
    /// From the Prometheus text of each of a job's processes.
    fn of(texts: &[String]) -> Live {
        let mut live = Live::default();
        for text in texts {
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else { continue };
                let name = series.split('{').next().unwrap_or(series);
                let Ok(value) = value.parse::<f64>() else { continue };
                let whole = value as i64;
                match name {
                    "arus_source_records_total" => *live.records.get_or_insert(0) += whole as u64,
                    "arus_dead_letters_total" => *live.dead_letters.get_or_insert(0) += whole as u64,
                    "arus_consumer_lag_records" => *live.lag.get_or_insert(0) += whole,
                    "arus_watermark_seconds" if whole > 0 => {
                        let ms = whole.saturating_mul(1_000);
                        live.watermark_ms = Some(live.watermark_ms.map_or(ms, |w: i64| w.min(ms)));
                    }
                    _ => {}
                }
            }
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_figures_are_summed_over_its_processes() {
        let one = "# HELP x\narus_source_records_total{pipeline=\"fraud\"} 120\narus_consumer_lag_records{partition=\"0\"} 5\n\
                   arus_consumer_lag_records{partition=\"1\"} 7\narus_watermark_seconds 1767225600\n";
        let two = "arus_source_records_total 30\narus_watermark_seconds 1767225000\narus_dead_letters_total 2\n";
        let live = Live::of(&[one.to_owned(), two.to_owned()]);
        assert_eq!((live.records, live.lag, live.dead_letters), (Some(150), Some(12), Some(2)));
        assert_eq!(live.watermark_ms, Some(1_767_225_000_000), "the slowest process's");
        assert_eq!(Live::of(&[]).records, None);
    }

    #[test]
    fn the_document_has_every_route_with_its_answers() {
        let document: serde_json::Value = serde_json::from_str(&openapi_document()).expect("JSON");
        let operations: Vec<(String, String)> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().into_iter().flatten().map(move |(method, _)| (method.clone(), path.clone()))
            })
            .collect();
        assert_eq!(operations.len(), 9, "{operations:?}");
        for (method, path) in &operations {
            let responses = &document["paths"][path][method]["responses"];
            assert!(responses["401"].is_object() && responses["403"].is_object(), "{method} {path}: {responses}");
        }
        assert!(document["components"]["schemas"]["Submission"].is_object());
        assert_eq!(document["security"][0]["bearer"][0], "admin.all");
    }

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        assert_eq!(redacted("postgres://arus:s3cret@db:5432/arus"), "postgres://arus@db:5432/arus");
        assert_eq!(redacted("sqlite:///tmp/c.db?mode=rwc"), "sqlite:///tmp/c.db?mode=rwc");
    }

    #[test]
    fn the_newest_snapshot_is_the_highest_epoch() {
        let dir = tempfile::tempdir().expect("a dir");
        for name in ["snapshot-9.arus", "snapshot-10.arus", ".snapshot-11.arus.tmp", "other"] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        assert_eq!(newest_snapshot(dir.path()).map(|c| c.epoch), Some(10));
        let savepoint = dir.path().join("snapshot-9.arus");
        let snapshots = dir.path().join("restored");
        restore_savepoint(&savepoint, &snapshots).expect("restore");
        std::fs::write(snapshots.join("snapshot-12.arus"), b"later").expect("write");
        restore_savepoint(&savepoint, &snapshots).expect("restore again");
        assert_eq!(newest_snapshot(&snapshots).map(|c| c.epoch), Some(9), "only the savepoint is left");
    }
}
