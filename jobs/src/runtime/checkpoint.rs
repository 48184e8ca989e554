//! Checkpoints of a run: source positions, operator state and sink lengths, taken together at
//! one timely time, so a run that dies at any moment resumes from the last complete one and
//! writes exactly what an uninterrupted run writes.
//!
//! # Protocol
//! Every so often (`checkpoint.interval` of wall-clock time) the coordinator picks a time `at`
//! above every stamp any source has used so far. Each source saves its state (positions,
//! watermarks, the stamp it will use next) when it first moves its capability to `at` or
//! beyond, or when it finishes; each stateful operator saves its state once its frontier has
//! passed `at`, before applying anything stamped at or after it ([`StateCheckpoints`]); each
//! sink saves the length of its file once it has written everything stamped before `at`. When
//! every piece is in, the checkpoint is written to `<dir>/checkpoint-<epoch>.json` (a temporary
//! file renamed into place: a checkpoint file is complete or absent) and older ones are removed.
//! Then the sources' positions are committed back to where they came from (the Kafka consumer
//! group, the embedded log's positions), where lag tools can see them.
//!
//! On start the latest checkpoint is restored: sources reopen at its positions and stamps, the
//! operators load their state, and the sinks cut their files back to its lengths. Records are
//! read in a fixed order (see the readers), so everything after the checkpoint is produced again
//! exactly as before.
//!
//! The coordinator is shared by the worker threads of one process; checkpoints therefore need a
//! single process (`--processes 1`), which the runner checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arus_operators::{StateCheckpoints, Time, Watermarks};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Version of the checkpoint file format.
const FORMAT: u32 = 1;

/// What a source saves: where to read on, and the event-time state to go on with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Per partition, the position of the next record to read (`None`: the beginning).
    pub positions: Vec<(u32, Option<u64>)>,
    /// Lines read so far (file sources), so dead letters keep their line numbers.
    pub lines: u64,
    /// Watermark tracking.
    pub watermarks: Watermarks,
    /// The stamp the source uses next.
    pub next: Time,
    /// Whether the source had read everything.
    pub finished: bool,
    /// Whose turn it was among the partitions, and how many records it had had in it.
    #[serde(default)]
    pub turn: Option<(u32, usize)>,
}

/// How far a sink had written at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkPosition {
    /// Bytes in its file (cut back to this on restore).
    Bytes(u64),
    /// A topic: per partition, the offset after the last record it had written (read back from
    /// there on restore, so nothing is written twice), and the ids of records found that way by
    /// an earlier restore and not yet met again (still not to be written).
    Topic {
        /// Partition, next offset.
        offsets: Vec<(u32, u64)>,
        /// Event ids already in the topic.
        pending: Vec<String>,
    },
}

/// A checkpoint as written.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    epoch: u64,
    at: Time,
    workers: usize,
    /// What the checkpoint is of: the job, its source and windows.
    identity: String,
    /// Per worker.
    sources: Vec<SourceState>,
    /// Per operator, per worker.
    operators: BTreeMap<String, Vec<Box<RawValue>>>,
    /// Per sink, the bytes of its file.
    sinks: BTreeMap<String, SinkPosition>,
}

/// Why checkpoints cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The directory or a file in it could not be read or written.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint file that does not read.
    #[error("checkpoint {path}: {message}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint belongs to another job, source or worker count.
    #[error(
        "checkpoint {path} was taken {what}; run it that way, or delete {dir} to start over",
        dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    Mismatch {
        /// File.
        path: PathBuf,
        /// How it differs.
        what: String,
    },
}

/// Where checkpoints go and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Directory (created if missing).
    pub dir: PathBuf,
    /// Wall-clock time between checkpoints.
    pub interval: Duration,
}

/// Called with the sources' positions once a checkpoint is complete.
pub type OnComplete = Box<dyn Fn(&[SourceState]) -> Result<(), String> + Send + Sync>;

/// Coordinates the checkpoints of one process's workers; see the module documentation.
pub struct Coordinator {
    settings: CheckpointSettings,
    workers: usize,
    identity: String,
    operators: Vec<String>,
    sinks: Vec<String>,
    restored: Option<Manifest>,
    progress: Mutex<Progress>,
    on_complete: Option<OnComplete>,
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
}

struct Progress {
    /// Per worker: the stamp its source uses next, while it runs.
    caps: Vec<Option<Time>>,
    /// Per worker: its source's final state, once finished.
    finished: Vec<Option<SourceState>>,
    next_epoch: u64,
    last: Instant,
    in_flight: Option<InFlight>,
    /// Checkpoints completed by this process.
    completed: u64,
    /// The first thing that went wrong.
    error: Option<String>,
}

struct InFlight {
    started: Instant,
    epoch: u64,
    at: Time,
    sources: Vec<Option<SourceState>>,
    operators: BTreeMap<(String, usize), Vec<u8>>,
    sinks: BTreeMap<String, SinkPosition>,
}

impl Coordinator {
    /// Opens the checkpoint directory of a run of `identity` on `workers` workers, with
    /// stateful operators and sinks by name, and loads the latest checkpoint there.
    pub fn open(
        settings: CheckpointSettings,
        workers: usize,
        identity: String,
        operators: &[&str],
        sinks: &[&str],
        on_complete: Option<OnComplete>,
    ) -> Result<Self, CheckpointError> {
        let dir = &settings.dir;
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io { path: dir.clone(), source })?;
        let restored = match latest(dir)? {
            Some((path, epoch)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
                let manifest: Manifest = serde_json::from_str(&text)
                    .map_err(|e| CheckpointError::Corrupt { path: path.clone(), message: e.to_string() })?;
                let corrupt = |message: String| CheckpointError::Corrupt { path: path.clone(), message };
                if manifest.format != FORMAT {
                    return Err(corrupt(format!("format {} is not {FORMAT}", manifest.format)));
                }
                if manifest.epoch != epoch {
                    return Err(corrupt(format!("holds epoch {} under the name of {epoch}", manifest.epoch)));
                }
                if manifest.identity != identity {
                    let what = format!("of another job or source ({}, not {identity})", manifest.identity);
                    return Err(CheckpointError::Mismatch { path, what });
                }
                if manifest.workers != workers {
                    let what = format!("with {} workers, not {workers}", manifest.workers);
                    return Err(CheckpointError::Mismatch { path, what });
                }
                let complete = manifest.sources.len() == workers
                    && operators.iter().all(|o| manifest.operators.get(*o).is_some_and(|s| s.len() == workers))
                    && sinks.iter().all(|s| manifest.sinks.contains_key(*s));
                if !complete {
                    return Err(corrupt("does not hold every source, operator and sink of this job".to_owned()));
                }
                Some(manifest)
            }
            None => None,
        };
        let next_epoch = restored.as_ref().map_or(1, |m| m.epoch + 1);
        Ok(Coordinator {
            settings,
            workers,
            identity,
            operators: operators.iter().map(|s| (*s).to_owned()).collect(),
            sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
            restored,
            progress: Mutex::new(Progress {
                caps: vec![None; workers],
                finished: vec![None; workers],
                next_epoch,
                last: Instant::now(),
                in_flight: None,
                completed: 0,
                error: None,
            }),
            on_complete,
            metrics: None,
        })
    }

    /// Reports completed checkpoints to `metrics`.
    pub fn with_metrics(mut self, metrics: Option<std::sync::Arc<super::metrics::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The epoch and time of the checkpoint restored, if any.
    pub fn restored_at(&self) -> Option<(u64, Time)> {
        self.restored.as_ref().map(|m| (m.epoch, m.at))
    }

    /// The restored state of `worker`'s source.
    pub fn restored_source(&self, worker: usize) -> Option<SourceState> {
        self.restored.as_ref().and_then(|m| m.sources.get(worker).cloned())
    }

    /// The restored length of a sink's file.
    pub fn restored_sink(&self, name: &str) -> Option<SinkPosition> {
        self.restored.as_ref().and_then(|m| m.sinks.get(name).cloned())
    }

    /// Checkpoints completed by this process.
    pub fn completed(&self) -> u64 {
        self.lock().completed
    }

    /// What went wrong writing checkpoints, if anything did.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A source starts, or moves on, to stamp `next`; `state` describes it there (everything
    /// stamped before `next` sent). Saves it for a checkpoint it crosses, and starts a new
    /// checkpoint when one is due.
    pub fn source_at(&self, worker: usize, next: Time, state: impl FnOnce() -> SourceState) {
        let mut progress = self.lock();
        progress.caps[worker] = Some(next);
        let mut state = Some(state);
        if let Some(in_flight) = progress.in_flight.as_mut()
            && in_flight.at <= next
            && in_flight.sources[worker].is_none()
            && let Some(state) = state.take()
        {
            in_flight.sources[worker] = Some(state());
        }
        if progress.in_flight.is_none() && progress.last.elapsed() >= self.settings.interval {
            self.begin(&mut progress);
        }
        self.try_complete(&mut progress);
    }

    /// A source has read everything; `state` is where it ended.
    pub fn source_finished(&self, worker: usize, state: SourceState) {
        let mut progress = self.lock();
        progress.caps[worker] = None;
        if let Some(in_flight) = progress.in_flight.as_mut()
            && in_flight.sources[worker].is_none()
        {
            in_flight.sources[worker] = Some(state.clone());
        }
        progress.finished[worker] = Some(state);
        // When every source is done, one last checkpoint holds where they ended: it replaces one
        // in flight that holds a source elsewhere. (Every operator can still save for it: this
        // source still holds its last stamp, below the new checkpoint's time.)
        let final_in_flight =
            progress.in_flight.as_ref().is_some_and(|f| f.sources.iter().flatten().all(|s| s.finished));
        if progress.finished.iter().all(Option::is_some) && !final_in_flight {
            progress.in_flight = None;
            self.begin(&mut progress);
        }
        self.try_complete(&mut progress);
    }

    /// Starts a checkpoint at a time above every stamp sent so far, once every source has
    /// started.
    fn begin(&self, progress: &mut Progress) {
        if progress.caps.iter().zip(&progress.finished).any(|(cap, finished)| cap.is_none() && finished.is_none()) {
            return;
        }
        let finished = progress.finished.iter().flatten().map(|s| s.next);
        let Some(max) = progress.caps.iter().flatten().copied().chain(finished).max() else { return };
        let epoch = progress.next_epoch;
        progress.next_epoch += 1;
        progress.in_flight = Some(InFlight {
            started: Instant::now(),
            epoch,
            at: max + 1,
            sources: progress.finished.clone(),
            operators: BTreeMap::new(),
            sinks: BTreeMap::new(),
        });
    }

    /// The time of the checkpoint in flight, if one is.
    pub fn pending_at(&self) -> Option<Time> {
        self.lock().in_flight.as_ref().map(|f| f.at)
    }

    /// The checkpoint a sink still owes its length to.
    pub fn sink_due(&self, name: &str) -> Option<(u64, Time)> {
        let progress = self.lock();
        let in_flight = progress.in_flight.as_ref()?;
        (!in_flight.sinks.contains_key(name)).then_some((in_flight.epoch, in_flight.at))
    }

    /// A sink has written everything stamped before the checkpoint's time, durably, up to
    /// `position`.
    pub fn sink_saved(&self, epoch: u64, name: &str, position: SinkPosition) {
        let mut progress = self.lock();
        if let Some(in_flight) = progress.in_flight.as_mut().filter(|f| f.epoch == epoch) {
            in_flight.sinks.insert(name.to_owned(), position);
        }
        self.try_complete(&mut progress);
    }

    /// A sink could not make its file durable: no checkpoint can complete.
    pub fn fail(&self, message: String) {
        self.lock().error.get_or_insert(message);
    }

    fn try_complete(&self, progress: &mut Progress) {
        let Some(in_flight) = progress.in_flight.as_ref() else { return };
        let complete = in_flight.sources.iter().all(Option::is_some)
            && in_flight.operators.len() == self.operators.len() * self.workers
            && self.sinks.iter().all(|s| in_flight.sinks.contains_key(s));
        if !complete || progress.error.is_some() {
            return;
        }
        let in_flight = progress.in_flight.take().expect("checked above");
        let sources: Vec<SourceState> = in_flight.sources.into_iter().flatten().collect();
        match self.write(in_flight.epoch, in_flight.at, &sources, in_flight.operators, in_flight.sinks) {
            Ok(bytes) => {
                progress.completed += 1;
                if let Some(metrics) = &self.metrics {
                    metrics.checkpoint(in_flight.started.elapsed(), bytes);
                }
                progress.last = Instant::now();
                if let Some(on_complete) = &self.on_complete
                    && let Err(message) = on_complete(&sources)
                {
                    // The checkpoint holds the positions; the committed ones only inform.
                    eprintln!("warning: checkpoint {}: committing source positions: {message}", in_flight.epoch);
                }
            }
            Err(error) => {
                progress.error.get_or_insert(error.to_string());
            }
        }
    }

    fn write(
        &self,
        epoch: u64,
        at: Time,
        sources: &[SourceState],
        operators: BTreeMap<(String, usize), Vec<u8>>,
        sinks: BTreeMap<String, SinkPosition>,
    ) -> Result<u64, CheckpointError> {
        let dir = &self.settings.dir;
        let mut by_operator: BTreeMap<String, Vec<Box<RawValue>>> = BTreeMap::new();
        for ((operator, _worker), state) in operators {
            let text = String::from_utf8(state).map_err(|e| CheckpointError::Corrupt {
                path: dir.clone(),
                message: format!("state of {operator} is not JSON text: {e}"),
            })?;
            let raw = RawValue::from_string(text).map_err(|e| CheckpointError::Corrupt {
                path: dir.clone(),
                message: format!("state of {operator} is not JSON: {e}"),
            })?;
            by_operator.entry(operator).or_default().push(raw);
        }
        let manifest = Manifest {
            format: FORMAT,
            epoch,
            at,
            workers: self.workers,
            identity: self.identity.clone(),
            sources: sources.to_vec(),
            operators: by_operator,
            sinks,
        };
        let path = dir.join(file_name(epoch));
        let tmp = dir.join(format!(".{}.tmp", file_name(epoch)));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CheckpointError::Io { path, source }
        };
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(&bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        for (old, old_epoch) in checkpoints(dir)? {
            if old_epoch < epoch {
                std::fs::remove_file(&old).map_err(io(&old))?;
            }
        }
        Ok(bytes.len() as u64)
    }
}

impl StateCheckpoints for Coordinator {
    fn due(&self, operator: &str, worker: usize) -> Vec<(u64, Time)> {
        let progress = self.lock();
        let Some(in_flight) = progress.in_flight.as_ref() else { return Vec::new() };
        if in_flight.operators.contains_key(&(operator.to_owned(), worker)) {
            return Vec::new();
        }
        vec![(in_flight.epoch, in_flight.at)]
    }

    fn save(&self, operator: &str, worker: usize, epoch: u64, state: Vec<u8>) {
        let mut progress = self.lock();
        if let Some(in_flight) = progress.in_flight.as_mut().filter(|f| f.epoch == epoch) {
            in_flight.operators.insert((operator.to_owned(), worker), state);
        }
        self.try_complete(&mut progress);
    }

    fn restore(&self, operator: &str, worker: usize) -> Option<Vec<u8>> {
        let manifest = self.restored.as_ref()?;
        manifest.operators.get(operator)?.get(worker).map(|raw| raw.get().as_bytes().to_vec())
    }
}

fn file_name(epoch: u64) -> String {
    format!("checkpoint-{epoch:012}.json")
}

/// Complete checkpoint files in `dir` with their epochs.
fn checkpoints(dir: &Path) -> Result<Vec<(PathBuf, u64)>, CheckpointError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CheckpointError::Io { path: dir.to_owned(), source })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CheckpointError::Io { path: dir.to_owned(), source })?;
        let name = entry.file_name();
        let Some(epoch) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((entry.path(), epoch));
    }
    found.sort_by_key(|(_, epoch)| *epoch);
    Ok(found)
}

fn latest(dir: &Path) -> Result<Option<(PathBuf, u64)>, CheckpointError> {
    Ok(checkpoints(dir)?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(next: Time) -> SourceState {
        SourceState {
            positions: vec![(0, Some(next))],
            lines: 0,
            watermarks: Watermarks::new(0),
            next,
            finished: false,
            turn: None,
        }
    }

    fn settings(dir: &Path) -> CheckpointSettings {
        CheckpointSettings { dir: dir.to_owned(), interval: Duration::ZERO }
    }

    #[test]
    fn a_checkpoint_completes_when_every_piece_is_in_and_restores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Coordinator::open(settings(dir.path()), 2, "job".into(), &["op"], &["csv"], None).expect("open");
        c.source_at(0, 10, || state(10));
        c.source_at(1, 20, || state(20));
        // Both sources registered; the checkpoint is at 21, above every stamp used.
        assert_eq!(c.due("op", 0), vec![(1, 21)]);
        c.source_at(0, 30, || state(30));
        c.save("op", 0, 1, b"[1]".to_vec());
        c.save("op", 1, 1, b"[2]".to_vec());
        assert_eq!(c.sink_due("csv"), Some((1, 21)));
        c.sink_saved(1, "csv", SinkPosition::Bytes(99));
        assert_eq!(c.completed(), 0, "worker 1's source has not crossed 21 yet");
        c.source_finished(1, SourceState { finished: true, ..state(25) });
        assert_eq!(c.completed(), 1);
        assert_eq!(c.error(), None);

        let again = Coordinator::open(settings(dir.path()), 2, "job".into(), &["op"], &["csv"], None).expect("reopen");
        assert_eq!(again.restored_at(), Some((1, 21)));
        assert_eq!(again.restored_source(0), Some(state(30)));
        assert!(again.restored_source(1).is_some_and(|s| s.finished));
        assert_eq!(again.restore("op", 1), Some(b"[2]".to_vec()));
        assert_eq!(again.restored_sink("csv"), Some(SinkPosition::Bytes(99)));

        let err = Coordinator::open(settings(dir.path()), 4, "job".into(), &["op"], &["csv"], None)
            .err()
            .expect("other worker count");
        assert!(err.to_string().contains("with 2 workers, not 4"), "{err}");
        let err = Coordinator::open(settings(dir.path()), 2, "other".into(), &["op"], &["csv"], None)
            .err()
            .expect("other job");
        assert!(err.to_string().contains("delete"), "{err}");
    }

    #[test]
    fn a_half_written_checkpoint_is_not_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".checkpoint-000000000007.json.tmp"), "{").expect("write");
        let c = Coordinator::open(settings(dir.path()), 1, "job".into(), &[], &[], None).expect("open");
        assert_eq!(c.restored_at(), None);
        std::fs::write(dir.path().join(file_name(3)), "{").expect("write");
        let err = Coordinator::open(settings(dir.path()), 1, "job".into(), &[], &[], None).err().expect("corrupt");
        assert!(err.to_string().contains("checkpoint-000000000003.json"), "{err}");
    }
}
