//! Where a job's processes run: behind [`Launcher`], so that another launcher (Kubernetes)
//! can place the same processes later. [`Processes`] runs them on this machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// One launch of a job: every process of its cluster.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The job (its processes carry it on their command line, so they are found again).
    pub job_id: String,
    /// The job's name.
    pub name: String,
    /// The spec, written where the processes can read it.
    pub spec: PathBuf,
    /// `--set` overrides (the controller's own last).
    pub overrides: Vec<String>,
    /// Worker threads per process.
    pub workers: u32,
    /// Processes.
    pub processes: u32,
    /// The job's folder: its log, hostfile and exit statuses go there.
    pub dir: PathBuf,
}

impl Launch {
    /// Where process `index` writes how it ended.
    pub fn status_file(dir: &Path, index: usize) -> PathBuf {
        dir.join(format!("exit-{index}"))
    }

    /// Where process `index` serves its metrics (`host:port`).
    pub fn metrics_file(dir: &Path, index: usize) -> PathBuf {
        dir.join(format!("metrics-{index}"))
    }

    /// The job's log (every process's output, appended).
    pub fn log(dir: &Path) -> PathBuf {
        dir.join("job.log")
    }
}

/// A signal to a job's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop: flush, snapshot, end.
    Terminate,
    /// Take a savepoint and go on.
    Savepoint,
    /// End at once.
    Kill,
}

/// Starts, signals and watches a job's processes.
pub trait Launcher: Send + Sync {
    /// Starts every process of `launch`; their ids.
    fn launch(&self, launch: &Launch) -> std::io::Result<Vec<u32>>;
    /// Whether process `pid` of job `job_id` still runs (an id reused by another process
    /// does not count).
    fn running(&self, pid: u32, job_id: &str) -> bool;
    /// Sends `signal` to process `pid`.
    fn signal(&self, pid: u32, signal: Signal) -> std::io::Result<()>;
    /// What it launches, in words (`process`).
    fn unit(&self) -> &'static str {
        "process"
    }
}

/// Processes on this machine: `arus run` of the same binary, each in a process group of its
/// own (a Ctrl-C meant for the controller does not reach them; they outlive it).
pub struct Processes {
    exe: PathBuf,
    /// Children of this controller, reaped when they end.
    children: Mutex<HashMap<u32, Child>>,
}

impl Processes {
    /// Launching `exe run …`.
    pub fn new(exe: PathBuf) -> Self {
        Processes { exe, children: Mutex::default() }
    }
}

impl Launcher for Processes {
    fn launch(&self, launch: &Launch) -> std::io::Result<Vec<u32>> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(Launch::log(&launch.dir))?;
        let hostfile = launch.dir.join("hostfile");
        if launch.processes > 1 {
            let mut lines = String::new();
            for _ in 0..launch.processes {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                lines.push_str(&format!("127.0.0.1:{port}\n"));
            }
            std::fs::write(&hostfile, lines)?;
        }
        let mut pids = Vec::new();
        for index in 0..launch.processes as usize {
            let status = Launch::status_file(&launch.dir, index);
            match std::fs::remove_file(&status) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // Its metrics on a port free now, written down so that a controller started later
            // finds them too.
            let metrics = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
            std::fs::write(Launch::metrics_file(&launch.dir, index), &metrics)?;
            let mut command = Command::new(&self.exe);
            command
                .arg("run")
                .arg(&launch.spec)
                .args(["--workers", &launch.workers.to_string(), "--metrics-addr", &metrics])
                .arg("--status-file")
                .arg(&status)
                .args(["--job-id", &launch.job_id]);
            for assignment in &launch.overrides {
                command.arg("--set").arg(assignment);
            }
            if launch.processes > 1 {
                command
                    .args(["--processes", &launch.processes.to_string(), "--process", &index.to_string()])
                    .arg("--hostfile")
                    .arg(&hostfile);
            }
            let spawned = log.try_clone().and_then(|out| {
                let err = log.try_clone()?;
                command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0).spawn()
            });
            let child = match spawned {
                Ok(child) => child,
                Err(error) => {
                    // A cluster runs whole or not at all: the processes already started end.
                    let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
                    for pid in &pids {
                        if let Some(mut child) = children.remove(pid) {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                    }
                    return Err(error);
                }
            };
            let pid = child.id();
            self.children.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, child);
            pids.push(pid);
        }
        Ok(pids)
    }

    fn running(&self, pid: u32, job_id: &str) -> bool {
        // A child of this controller that ended is reaped here (it would linger as a zombie).
        {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(child) = children.get_mut(&pid) {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    children.remove(&pid);
                    return false;
                }
                return true;
            }
        }
        // One started by a controller before this one: alive while /proc says so, and it is
        // the job's (its command line names the job).
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
        let arguments: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        arguments.windows(2).any(|pair| pair[0] == b"--job-id" && pair[1] == job_id.as_bytes())
    }

    fn signal(&self, pid: u32, signal: Signal) -> std::io::Result<()> {
        use rustix::process::{Pid, Signal as S, kill_process};
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::other(format!("no process {pid}")))?;
        let signal = match signal {
            Signal::Terminate => S::TERM,
            Signal::Savepoint => S::USR1,
            Signal::Kill => S::KILL,
        };
        kill_process(pid, signal).map_err(std::io::Error::from)
    }
}

/// How a process ended, from the status file `arus run --status-file` writes: its exit code
/// and, on failure, the error. `None` when it wrote none (killed, or it crashed).
pub fn exit_status(path: &Path) -> Option<(u8, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (code, message) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    Some((code.trim().parse().ok()?, message.trim().to_owned()))
}

/// A job run inside this process (by its name), once.
pub type InProcessJob = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

/// Jobs as threads of this process, for the embedded default (`arus demo`): each name's job
/// given beforehand, run once when launched, its end written to its status file as a
/// process's would be. They cannot be signalled (a savepoint, stop or cancel is refused).
#[derive(Default)]
pub struct Threads {
    jobs: Mutex<HashMap<String, InProcessJob>>,
    running: Mutex<HashMap<u32, std::thread::JoinHandle<()>>>,
    next: std::sync::atomic::AtomicU32,
}

/// Ids of in-process jobs: above any process id Linux gives (2^22).
const THREAD_IDS: u32 = 1 << 30;

impl Threads {
    /// The job the launch of a job named `name` runs.
    pub fn give(&self, name: &str, job: InProcessJob) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), job);
    }
}

impl Launcher for Threads {
    fn launch(&self, launch: &Launch) -> std::io::Result<Vec<u32>> {
        let job = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).remove(&launch.name).ok_or_else(|| {
            std::io::Error::other(format!("no in-process job {} to run (each runs once)", launch.name))
        })?;
        let status = Launch::status_file(&launch.dir, 0);
        let thread = std::thread::Builder::new().name(format!("arus-job-{}", launch.name)).spawn(move || {
            let ended = match job() {
                Ok(()) => "0\n".to_owned(),
                Err(error) => format!("1\n{error:#}\n"),
            };
            if let Err(e) = std::fs::write(&status, ended) {
                eprintln!("warning: {}: {e}", status.display());
            }
        })?;
        let id = THREAD_IDS + self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id, thread);
        Ok(vec![id])
    }

    fn running(&self, pid: u32, _job_id: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.get(&pid) {
            Some(thread) if thread.is_finished() => {
                running.remove(&pid);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    fn signal(&self, _pid: u32, _signal: Signal) -> std::io::Result<()> {
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "a job inside this process runs to its end"))
    }

    fn unit(&self) -> &'static str {
        "in-process thread"
    }
}
