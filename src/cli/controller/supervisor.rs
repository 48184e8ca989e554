//! One job's supervision: launch its processes, watch them (and their metrics), and when they
//! end say how — finished, stopped, cancelled — or restart them from the newest snapshot after
//! a backoff that doubles each time, until failures come too fast.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::control::{Change, ControlError, JobState};

use super::Controller;
use super::launcher::{Launch, Signal, exit_status};

/// What an operator asked of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A savepoint, then the end.
    Stop,
    /// The end at once.
    Cancel,
}

/// A supervised job's mailbox and figures.
#[derive(Debug, Default)]
pub struct Handle {
    asked: Mutex<Option<Request>>,
    live: Mutex<Live>,
    /// Its newest alerts and dead letters.
    pub feed: super::feed::Feed,
    /// Whether it is still supervised (the feed's reading stops when not).
    over: std::sync::atomic::AtomicBool,
}

/// What a job's processes' metrics said last.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Records read.
    pub records: Option<u64>,
    /// Records read a second.
    pub per_second: Option<u64>,
    /// Records behind the partitions' ends.
    pub lag: Option<i64>,
    /// The watermark (ms since the epoch), the slowest process's.
    pub watermark_ms: Option<i64>,
    /// Dead letters.
    pub dead_letters: Option<u64>,
    /// When these figures were read (ms since the epoch).
    pub at_ms: Option<i64>,
}

impl Handle {
    /// Asks for `request` (a cancel is never turned back into a stop).
    pub fn ask(&self, request: Request) {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        if *asked != Some(Request::Cancel) {
            *asked = Some(request);
        }
    }

    fn asked(&self) -> Option<Request> {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The figures.
    pub fn live(&self) -> Live {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Supervises job `id` until it is over (its processes `running` when found running).
pub async fn supervise(controller: Arc<Controller>, id: String, handle: Arc<Handle>, running: Option<Vec<u32>>) {
    // Its alerts and dead letters, read while it is supervised (jobs on Kafka topics).
    if let Ok(Some(job)) = controller.store.job(&id).await
        && let Some((config, topics)) = super::feed::topics_of(&job.name, &job.spec, &controller.overrides(&job))
    {
        let (handle, id) = (handle.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let going = || !handle.over.load(std::sync::atomic::Ordering::Relaxed);
            super::feed::follow(&id, &config, &topics, &handle.feed, &going);
        });
    }
    if let Err(error) = watch(&controller, &id, &handle, running).await {
        eprintln!("error: supervising job {id}: {error}");
    }
    handle.over.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut handles = controller.handles.lock().unwrap_or_else(|e| e.into_inner());
    if handles.get(&id).is_some_and(|h| Arc::ptr_eq(h, &handle)) {
        handles.remove(&id);
        controller.last_figures.lock().unwrap_or_else(|e| e.into_inner()).insert(id, handle.live());
    }
}

fn gone() -> Change {
    Change { pids: Some(Vec::new()), ..Change::default() }
}

async fn watch(
    controller: &Arc<Controller>,
    id: &str,
    handle: &Handle,
    mut running: Option<Vec<u32>>,
) -> Result<(), ControlError> {
    let store = &controller.store;
    let policy = controller.policy;
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut backoff = policy.backoff;
    loop {
        let job = store.job(id).await?.ok_or_else(|| ControlError::UnknownJob(id.to_owned()))?;
        let dir = controller.job_dir(id);
        let launched: Result<Vec<u32>, String> = match running.take() {
            // (Found running when the controller started: recorded so before it serves.)
            Some(pids) => Ok(pids),
            None => {
                match handle.asked() {
                    Some(Request::Cancel) => {
                        store.transition(id, JobState::Cancelled, "cancelled before it started", gone()).await?;
                        return Ok(());
                    }
                    Some(Request::Stop) => {
                        store.transition(id, JobState::Stopped, "stopped before it started", gone()).await?;
                        return Ok(());
                    }
                    None => {}
                }
                let launch = controller.launch_of(&job);
                let reason = format!("launch {}", job.launches + 1);
                store
                    .transition(id, JobState::Starting, &reason, Change { launched: true, ..Change::default() })
                    .await?;
                let launcher = controller.launcher.clone();
                let unit = launcher.unit();
                match tokio::task::spawn_blocking(move || launcher.launch(&launch)).await {
                    Ok(Ok(pids)) => {
                        let reason = format!("{unit}{} {pids:?} started", if pids.len() == 1 { "" } else { "es" });
                        let change = Change { pids: Some(pids.clone()), ..Change::default() };
                        store.transition(id, JobState::Running, &reason, change).await?;
                        Ok(pids)
                    }
                    Ok(Err(error)) => Err(format!("cannot start its processes: {error}")),
                    Err(error) => Err(format!("cannot start its processes: {error}")),
                }
            }
        };
        let started = Instant::now();
        let failure = match launched {
            Err(reason) => Some(reason),
            Ok(pids) => {
                watch_processes(controller, id, handle, &pids).await?;
                // How each process ended, from its status file.
                (0..pids.len()).find_map(|index| match exit_status(&Launch::status_file(&dir, index)) {
                    Some((0, _)) => None,
                    Some((code, message)) => Some(format!("process {index} exited with {code}: {message}")),
                    None => Some(format!("process {index} ended without an exit status (killed, or it crashed)")),
                })
            }
        };
        match (handle.asked(), failure) {
            (Some(Request::Cancel), _) => {
                store.transition(id, JobState::Cancelled, "cancelled: its processes killed", gone()).await?;
                return Ok(());
            }
            (Some(Request::Stop), None) => {
                store.transition(id, JobState::Stopped, "stopped on request, with a savepoint", gone()).await?;
                return Ok(());
            }
            (None, None) => {
                store.transition(id, JobState::Finished, "its input ended: everything written", gone()).await?;
                return Ok(());
            }
            (asked, Some(reason)) => {
                let change =
                    Change { pids: Some(Vec::new()), last_error: Some(Some(reason.clone())), ..Change::default() };
                store.transition(id, JobState::Failing, &reason, change).await?;
                if asked == Some(Request::Stop) {
                    store.transition(id, JobState::Failed, "it failed while stopping", Change::default()).await?;
                    return Ok(());
                }
                let now = Instant::now();
                failures.push_back(now);
                while failures.front().is_some_and(|at| now.duration_since(*at) > policy.window) {
                    failures.pop_front();
                }
                if failures.len() > policy.max_failures {
                    let reason =
                        format!("{} failures within {}s: not restarted again", failures.len(), policy.window.as_secs());
                    store.transition(id, JobState::Failed, &reason, Change::default()).await?;
                    return Ok(());
                }
                // A run that lasted starts the delays over.
                if started.elapsed() > policy.backoff_max {
                    backoff = policy.backoff;
                }
                let reason = format!("restart in {} ms from its newest snapshot", backoff.as_millis());
                store.transition(id, JobState::Restarting, &reason, Change::default()).await?;
                let deadline = Instant::now() + backoff;
                while Instant::now() < deadline {
                    match handle.asked() {
                        Some(Request::Cancel) => {
                            store
                                .transition(id, JobState::Cancelled, "cancelled while waiting to restart", gone())
                                .await?;
                            return Ok(());
                        }
                        Some(Request::Stop) => {
                            store.transition(id, JobState::Stopped, "stopped while waiting to restart", gone()).await?;
                            return Ok(());
                        }
                        None => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                backoff = (backoff * 2).min(policy.backoff_max);
            }
        }
    }
}

/// Watches `pids` until every one has ended: passes requests on as signals, reads their
/// metrics every second.
async fn watch_processes(
    controller: &Arc<Controller>,
    id: &str,
    handle: &Handle,
    pids: &[u32],
) -> Result<(), ControlError> {
    let launcher = controller.launcher.clone();
    let dir = controller.job_dir(id);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_millis(500))).build().into();
    let mut signalled = None;
    let mut scraped: Option<(Instant, u64)> = None;
    let mut next_scrape = Instant::now();
    loop {
        let asked = handle.asked();
        if asked != signalled {
            match asked {
                Some(Request::Stop) => {
                    for pid in pids.iter().filter(|pid| launcher.running(**pid, id)) {
                        let _ = launcher.signal(*pid, Signal::Terminate);
                    }
                    let reason = "stop asked: a snapshot, then the end";
                    controller.store.transition(id, JobState::Stopping, reason, Change::default()).await?;
                }
                Some(Request::Cancel) => {
                    for pid in pids.iter().filter(|pid| launcher.running(**pid, id)) {
                        let _ = launcher.signal(*pid, Signal::Kill);
                    }
                }
                None => {}
            }
            signalled = asked;
        }
        if !pids.iter().any(|pid| launcher.running(*pid, id)) {
            return Ok(());
        }
        if Instant::now() >= next_scrape {
            next_scrape = Instant::now() + Duration::from_secs(1);
            let (agent, dir, processes) = (agent.clone(), dir.clone(), pids.len());
            let texts = tokio::task::spawn_blocking(move || {
                (0..processes)
                    .filter_map(|index| {
                        let address = std::fs::read_to_string(Launch::metrics_file(&dir, index)).ok()?;
                        let mut response = agent.get(format!("http://{}/metrics", address.trim())).call().ok()?;
                        response.body_mut().read_to_string().ok()
                    })
                    .collect::<Vec<String>>()
            })
            .await
            .unwrap_or_default();
            if !texts.is_empty() {
                let mut live = Live::of(&texts);
                let now = Instant::now();
                if let (Some((then, before)), Some(records)) = (scraped, live.records) {
                    let ms = now.duration_since(then).as_millis().max(1) as u64;
                    live.per_second = Some(records.saturating_sub(before).saturating_mul(1_000) / ms);
                }
                scraped = live.records.map(|records| (now, records));
                live.at_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as i64);
                *handle.live.lock().unwrap_or_else(|e| e.into_inner()) = live;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
