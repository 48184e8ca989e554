//! The runtime every job shares: how a run is spread over workers ([`Cluster`]), how it
//! fails ([`RunError`]), what its workers share, and the machinery the jobs are built from.
//!
//! # Layout
//! - [`input`]: the transports a job reads (files, Kafka, the embedded log), opened once per
//!   process and read by every worker in its share of the partitions, in a fixed order.
//! - [`sequenced`]: the sequenced runtime: events folded in event-time order by one sequencer
//!   ([`sequenced::Fold`]), outputs written by a writer thread to the topics and the store.
//! - [`sinks`]: checkpointed sinks of a dataflow (files of lines, dead letters to topics), and
//!   what a record that cannot be read becomes ([`sinks::DeadLetter`]).
//! - [`checkpoint`]: the checkpoint coordinator (source positions, operator state, sinks).
//! - [`snapshot`]: a sequenced job's snapshot files (the fold's state, the events held, the
//!   positions of its inputs and outputs).
//! - [`metrics`]: a run's Prometheus metrics.
//! - [`spec`]: the parts of pipeline specs every job shares (topics, stores, durations, errors).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arus_connectors::kafka::KafkaError;
use arus_connectors::store::{MemoryStore, RedisStore, StateStore};

pub mod checkpoint;
pub mod input;
pub mod metrics;
pub mod seen;
pub mod sequenced;
pub mod sinks;
pub mod snapshot;
pub mod spec;

use checkpoint::CheckpointError;
use spec::StoreSpec;

/// How to spread the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// Worker threads in this process.
    Local {
        /// Threads.
        workers: usize,
    },
    /// One process of a timely cluster.
    Process {
        /// Threads per process.
        workers: usize,
        /// This process's index in `addresses`.
        process: usize,
        /// `host:port` of every process, in order.
        addresses: Vec<String>,
    },
}

/// A request to stop a run early, shared between whoever may ask (a signal handler, a
/// controller) and the run. A run asked to stop stops reading, writes out what it has decided
/// and flushes its outputs, and returns its report: its sources' positions stay where a restart
/// picks them up (a sequenced job drops what it still held back, undecided: a restart decides
/// it in order; a checkpointed one resumes from its last checkpoint).
///
/// It also carries a request for a savepoint: a snapshot taken now, the run going on (a job
/// with snapshots takes it at its next step; `arus run` asks on SIGUSR1).
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<std::sync::atomic::AtomicBool>, Arc<std::sync::atomic::AtomicBool>);

impl Shutdown {
    /// Not requested yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The flag itself, for a signal handler to set.
    pub fn flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.0.clone()
    }

    /// The savepoint flag, for a signal handler to set.
    pub fn savepoint_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.1.clone()
    }

    /// Asks for a snapshot now, the run going on.
    pub fn request_savepoint(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a savepoint has been asked for since the last call (the request is taken).
    pub fn take_savepoint(&self) -> bool {
        self.1.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks the run to stop.
    pub fn request(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether stopping has been asked for.
    pub fn requested(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a run is given besides its spec: where it runs, what it reports, when it stops.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Its workers and processes.
    pub cluster: Cluster,
    /// Its metrics (served by whoever runs it, or not).
    pub metrics: Arc<metrics::Metrics>,
    /// A request to stop early.
    pub shutdown: Shutdown,
}

impl RunContext {
    /// `workers` threads in this process, metrics labelled `pipeline`, not asked to stop.
    pub fn local(workers: usize, pipeline: &str) -> Self {
        RunContext {
            cluster: Cluster::Local { workers },
            metrics: Arc::new(metrics::Metrics::new(pipeline)),
            shutdown: Shutdown::new(),
        }
    }
}

/// Whose a failure is: what a user can do about it, and how the CLI exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The user's input: the spec, a file, the data, a checkpoint of another run. Running the
    /// same again fails the same; the message says what to change.
    User,
    /// A service the job depends on (the broker, the store, ClickHouse): see
    /// [`RunError::retryable`].
    External,
    /// A bug in arus: a thread that panicked, a record that would not encode.
    Internal,
}

/// A run that failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Timely could not start (a cluster's addresses taken or unreachable).
    #[error("starting workers: {0}")]
    Timely(String),
    /// The broker failed or refused.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The embedded log failed.
    #[error(transparent)]
    Log(#[from] arus_connectors::embedded::LogError),
    /// Checkpoints could not be read or written, or are of another run.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The serving store (Redis) failed.
    #[error(transparent)]
    Store(#[from] arus_connectors::store::StoreError),
    /// ClickHouse failed.
    #[error("clickhouse: {0}")]
    ClickHouse(String),
    /// The run cannot be done as asked: the spec, its input or its model as given.
    #[error("{0}")]
    Invalid(String),
    /// A bug: what should not happen did.
    #[error("internal error (a bug in arus): {0}")]
    Internal(String),
}

impl RunError {
    /// Whose the failure is.
    pub fn domain(&self) -> Domain {
        match self {
            RunError::Io { .. } | RunError::Log(_) | RunError::Checkpoint(_) | RunError::Invalid(_) => Domain::User,
            RunError::Kafka(KafkaError::Config(_)) => Domain::User,
            RunError::Timely(_) | RunError::Kafka(_) | RunError::Store(_) | RunError::ClickHouse(_) => Domain::External,
            RunError::Internal(_) => Domain::Internal,
        }
    }

    /// Whether running again, unchanged, can succeed: a service that failed may be back; a
    /// user's input or a bug stays as it is.
    pub fn retryable(&self) -> bool {
        self.domain() == Domain::External
    }
}

impl From<arus_connectors::transport::TransportError> for RunError {
    fn from(error: arus_connectors::transport::TransportError) -> Self {
        use arus_connectors::transport::TransportError;
        match error {
            TransportError::Kafka(e) => RunError::Kafka(e),
            TransportError::Log(e) => RunError::Log(e),
        }
    }
}

/// What a run's workers share: the report they add to, and the first error.
#[derive(Default)]
pub(crate) struct Shared<R> {
    pub(crate) report: R,
    error: Option<RunError>,
}

/// Records `error` as the run's, unless one came first.
pub(crate) fn fail<R>(shared: &Mutex<Shared<R>>, error: RunError) {
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.error.get_or_insert(error);
}

pub(crate) fn report<R>(shared: &Mutex<Shared<R>>, update: impl FnOnce(&mut R)) {
    update(&mut shared.lock().unwrap_or_else(|e| e.into_inner()).report);
}

/// Waits for the workers: the report they made, or the first error.
pub(crate) fn finish<R>(
    guards: timely::communication::WorkerGuards<()>,
    shared: Arc<Mutex<Shared<R>>>,
) -> Result<R, RunError> {
    drop(guards);
    let mut shared =
        Arc::try_unwrap(shared).ok().expect("workers finished").into_inner().unwrap_or_else(|e| e.into_inner());
    match shared.error.take() {
        Some(error) => Err(error),
        None => Ok(shared.report),
    }
}

/// `work` done for each of `items` at once, a thread each (for work that is mostly waiting for
/// the broker): the results in the items' order, a panic as an error naming `what`.
pub(crate) fn each_at_once<T: Sync, R: Send>(
    items: &[T],
    what: &str,
    work: impl Fn(&T) -> Result<R, RunError> + Sync,
) -> Vec<Result<R, RunError>> {
    std::thread::scope(|scope| {
        let work = &work;
        let running: Vec<_> = items.iter().map(|item| scope.spawn(move || work(item))).collect();
        running
            .into_iter()
            .map(|done| done.join().unwrap_or_else(|_| Err(RunError::Internal(format!("{what} panicked")))))
            .collect()
    })
}

/// The timely configuration of a cluster, and its number of workers in all.
pub(crate) fn timely_config(cluster: &Cluster) -> (timely::Config, usize) {
    match cluster.clone() {
        Cluster::Local { workers } => (timely::Config::process(workers.max(1)), workers.max(1)),
        Cluster::Process { workers, process, addresses } => {
            let total = workers.max(1) * addresses.len();
            let config = timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: workers.max(1),
                    process,
                    addresses,
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            };
            (config, total)
        }
    }
}

/// The store a spec names.
pub fn open_store(spec: &StoreSpec) -> Result<Arc<dyn StateStore>, RunError> {
    Ok(match spec {
        StoreSpec::Redis { url, prefix } => Arc::new(RedisStore::connect(url, prefix)?),
        StoreSpec::Memory => Arc::new(MemoryStore::new()),
    })
}
