//! One sandbox of the daemon, from launch to its `RunResult`.
//!
//! Each sandbox is a `bunker run` child of the daemon (the binary the daemon runs as, so the
//! very code the one-shot CLI uses), with the policy the daemon resolved and checked, a report
//! file in the daemon's private directory, and `setpriv --pdeathsig KILL` so it dies with the
//! daemon (its own init dies with it in turn). The daemon drives it on its runtime: no thread
//! per sandbox; output is read a bounded chunk at a time and either kept (capture, bounded by
//! `limits.output`) or sent as events (bounded by the connection's outbox, which blocks the
//! program's pipe when the client does not read). When the library's spawner and async
//! supervision land (issue 12, §2–3) they replace the child process here, behind the same
//! [`launch`] / [`Running::drive`].

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker_api::{ApiError, Data, ErrorCode, RunEvent, RunResult};
use bunker_cgroup::{Freezer, Layout};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::auth::PolicyArg;
use crate::outbox::Outbox;

/// What the program reads.
pub enum StdinPlan {
    Null,
    Data(Vec<u8>),
    Stream,
    Fd(OwnedFd),
}

/// Where the program's output goes.
pub enum OutputPlan {
    Capture,
    Events,
    Fds(OwnedFd, OwnedFd),
}

/// Everything needed to start one sandbox.
pub struct Launch {
    /// The `bunker` binary.
    pub exe: PathBuf,
    /// The child's working directory: relative paths of an inline policy resolve here.
    pub base_dir: PathBuf,
    pub policy: PolicyArg,
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    /// A request's `timeout_ms`, when shorter than the policy's timeout.
    pub timeout: Option<Duration>,
    /// The effective wall-clock bound (for thawing a paused sandbox at its deadline).
    pub deadline_after: Option<Duration>,
    pub stdin: StdinPlan,
    pub output: OutputPlan,
    /// Most bytes kept per stream in capture mode (`limits.output`).
    pub output_limit: u64,
    pub report_file: PathBuf,
    /// Name of the sandbox's v1 freezer group, should it be paused.
    pub freezer_name: String,
}

/// A stdin command of a `start`ed sandbox.
pub enum StdinCmd {
    Write(Vec<u8>, oneshot::Sender<Result<(), ApiError>>),
    Close,
}

/// A started sandbox, not yet driven.
pub struct Running {
    child: Child,
    pid: i32,
    stdin: Option<ChildStdin>,
    stdin_data: Option<Vec<u8>>,
    capture: bool,
    output_limit: u64,
    report_file: PathBuf,
    deadline: Option<Instant>,
    pub pause: Arc<Pause>,
}

fn spawn_failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::SetupFailed, format!("{what}: {e}")).at_step("start the sandbox")
}

/// Starts the sandbox's `bunker run`.
pub fn launch(launch: Launch, layout: Option<Arc<Layout>>) -> Result<Running, ApiError> {
    let mut cmd = Command::new("setpriv");
    cmd.arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(&launch.exe)
        .args(["run", "-q", "--report-file"])
        .arg(&launch.report_file)
        .arg("--cwd")
        .arg(&launch.cwd);
    match &launch.policy {
        PolicyArg::Json(text) => cmd.arg("--policy-json").arg(text),
        PolicyArg::File(file) => cmd.arg("--policy").arg(file),
    };
    if let Some(timeout) = launch.timeout {
        cmd.arg("--timeout")
            .arg(format!("{}ms", timeout.as_millis()));
    }
    cmd.arg("--").args(&launch.argv);
    cmd.current_dir(&launch.base_dir).env_clear();
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(&launch.env);
    let mut stdin_data = None;
    match launch.stdin {
        StdinPlan::Null => cmd.stdin(Stdio::null()),
        StdinPlan::Data(bytes) => {
            stdin_data = Some(bytes);
            cmd.stdin(Stdio::piped())
        }
        StdinPlan::Stream => cmd.stdin(Stdio::piped()),
        StdinPlan::Fd(fd) => cmd.stdin(Stdio::from(fd)),
    };
    let capture = matches!(launch.output, OutputPlan::Capture);
    match launch.output {
        OutputPlan::Capture | OutputPlan::Events => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        OutputPlan::Fds(out, err) => {
            cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        }
    }
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_failed(&format!("start {}", launch.exe.display()), e))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| spawn_failed("start the sandbox", "the child has no pid"))?;
    let stdin = child.stdin.take();
    Ok(Running {
        pid,
        stdin,
        stdin_data,
        capture,
        output_limit: launch.output_limit,
        report_file: launch.report_file,
        deadline: launch.deadline_after.map(|d| Instant::now() + d),
        pause: Arc::new(Pause {
            supervisor: pid,
            layout,
            name: launch.freezer_name,
            freezer: Mutex::new(None),
            paused: Mutex::new(false),
        }),
        child,
    })
}

/// Where a driven sandbox's events go.
pub struct EventSink {
    pub out: Outbox,
    pub id: u64,
    pub sandbox: String,
}

impl EventSink {
    async fn send(&self, event: RunEvent) {
        let frame = bunker_api::protocol::EventFrame {
            id: self.id,
            sandbox: self.sandbox.clone(),
            event,
        };
        self.out.send(&frame).await;
    }
}

/// Which of the program's streams.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads one output pipe to its end: keeps up to `limit` bytes (capture) or sends each chunk as
/// an event.
async fn pump(
    mut pipe: impl AsyncRead + Unpin,
    which: Stream,
    capture: bool,
    limit: u64,
    sink: Option<&EventSink>,
) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if capture {
            let room = (limit as usize).saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
        } else if let Some(sink) = sink {
            let data = Data::from_bytes(chunk[..n].to_vec());
            let event = match which {
                Stream::Stdout => RunEvent::Stdout { data },
                Stream::Stderr => RunEvent::Stderr { data },
            };
            sink.send(event).await;
        }
    }
    kept
}

/// Feeds the program's stdin: given bytes then end of file, or the client's `stdin` requests
/// until `close_stdin` (or until the sandbox is gone).
async fn feed(
    mut pipe: ChildStdin,
    data: Option<Vec<u8>>,
    mut commands: Option<mpsc::Receiver<StdinCmd>>,
) {
    if let Some(data) = data {
        let _ = pipe.write_all(&data).await;
        return;
    }
    let Some(commands) = commands.as_mut() else {
        return;
    };
    while let Some(command) = commands.recv().await {
        match command {
            StdinCmd::Write(bytes, done) => {
                let written = pipe.write_all(&bytes).await.map_err(|e| {
                    ApiError::new(
                        ErrorCode::RequestInvalid,
                        format!("the program's stdin is closed: {e}"),
                    )
                });
                let failed = written.is_err();
                let _ = done.send(written);
                if failed {
                    break;
                }
            }
            StdinCmd::Close => break,
        }
    }
}

/// Grace after SIGTERM before the sandbox's supervisor is SIGKILLed.
const KILL_GRACE: Duration = Duration::from_secs(2);

impl Running {
    /// Runs the sandbox to its end. `cancel` becoming true kills it (the result then carries
    /// `cancelled`).
    pub async fn drive(
        mut self,
        mut cancel: watch::Receiver<bool>,
        stdin_commands: Option<mpsc::Receiver<StdinCmd>>,
        sink: Option<EventSink>,
    ) -> Result<RunResult, ApiError> {
        let feeder = self
            .stdin
            .take()
            .map(|pipe| tokio::spawn(feed(pipe, self.stdin_data.take(), stdin_commands)));
        let stdout = self.child.stdout.take();
        let stderr = self.child.stderr.take();
        let (capture, limit) = (self.capture, self.output_limit);
        let sink_ref = sink.as_ref();
        let outputs = async {
            let out = async {
                match stdout {
                    Some(p) => pump(p, Stream::Stdout, capture, limit, sink_ref).await,
                    None => Vec::new(),
                }
            };
            let err = async {
                match stderr {
                    Some(p) => pump(p, Stream::Stderr, capture, limit, sink_ref).await,
                    None => Vec::new(),
                }
            };
            tokio::join!(out, err)
        };
        let pid = self.pid;
        let pause = self.pause.clone();
        let deadline = self.deadline;
        let child = &mut self.child;
        let supervise = async {
            let mut cancelled = false;
            let mut killed_at: Option<Instant> = None;
            loop {
                let thaw_at = deadline.filter(|_| pause.is_paused());
                let grace_over = killed_at.map(|t| t + KILL_GRACE);
                tokio::select! {
                    status = child.wait() => return (status, cancelled),
                    changed = cancel.changed(), if !cancelled => {
                        if changed.is_err() || *cancel.borrow() {
                            cancelled = true;
                            killed_at = Some(Instant::now());
                            let _ = bunker_sys::process::kill(pid, libc::SIGTERM);
                            // A frozen task acts on its kill only once thawed.
                            pause.thaw_for_kill();
                        }
                    }
                    _ = sleep_until_opt(thaw_at), if thaw_at.is_some() => {
                        // The wall-clock timeout runs while paused: the supervisor's own timer
                        // kills the sandbox now, which needs it thawed.
                        pause.thaw_for_kill();
                    }
                    _ = sleep_until_opt(grace_over), if grace_over.is_some() => {
                        let _ = child.start_kill();
                        killed_at = None;
                    }
                }
            }
        };
        let ((status, cancelled), (out, err)) = tokio::join!(supervise, outputs);
        if let Some(feeder) = feeder {
            feeder.abort();
        }
        self.pause.remove();
        let report = std::fs::read(&self.report_file);
        let _ = std::fs::remove_file(&self.report_file);
        let mut result: RunResult = match report
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        {
            Some(result) => result,
            None if cancelled => {
                return Err(ApiError::new(
                    ErrorCode::Cancelled,
                    "cancelled by the client before the sandbox was up",
                ))
            }
            None => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(ApiError::new(
                    ErrorCode::InternalError,
                    format!("the sandbox's supervisor ended ({status}) without a report"),
                ));
            }
        };
        if capture {
            result.stdout.data = Some(Data::from_bytes(out));
            result.stderr.data = Some(Data::from_bytes(err));
        }
        if cancelled {
            result.error_code = Some(ErrorCode::Cancelled);
            result.error = Some("cancelled by the client (kill, cancel or disconnect)".into());
        }
        Ok(result)
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A sandbox's pause state: its freezer group, made on the first `pause`.
pub struct Pause {
    supervisor: i32,
    layout: Option<Arc<Layout>>,
    name: String,
    freezer: Mutex<Option<Freezer>>,
    paused: Mutex<bool>,
}

/// How long a freeze may take to complete before `pause` gives up (and thaws).
const FREEZE_WAIT: Duration = Duration::from_secs(2);

fn unenforceable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Unenforceable,
        format!("pause needs the cgroup freezer: {e}"),
    )
    .at_step("cgroup freezer")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every descendant of `pid` (not `pid` itself), from /proc's children lists.
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !found.contains(&child) {
                    found.push(child);
                    todo.push(child);
                }
            }
        }
    }
    found
}

impl Pause {
    pub fn is_paused(&self) -> bool {
        *lock(&self.paused)
    }

    /// Freezes every process of the sandbox (its init and below; not its supervisor, whose
    /// timeout keeps running).
    pub async fn pause(&self) -> Result<(), ApiError> {
        if self.is_paused() {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            let all_in = {
                let mut slot = lock(&self.freezer);
                if slot.is_none() {
                    let layout = self
                        .layout
                        .as_deref()
                        .ok_or_else(|| unenforceable("no cgroup layout"))?;
                    *slot = Some(
                        Freezer::for_sandbox(layout, None, &self.name).map_err(unenforceable)?,
                    );
                }
                let freezer = slot.as_ref().ok_or_else(|| unenforceable("no freezer"))?;
                // The sandbox is up once its init has started the program (init's child):
                // before that the supervisor may still be making init, outside the group.
                let wanted = descendants(self.supervisor);
                let up = wanted.len() >= 2;
                let inside = freezer.procs().map_err(unenforceable)?;
                let missing: Vec<i32> =
                    wanted.into_iter().filter(|p| !inside.contains(p)).collect();
                freezer.adopt(&missing).map_err(unenforceable)?;
                if up {
                    freezer.set_frozen(true).map_err(unenforceable)?;
                }
                up && missing.is_empty() && freezer.is_frozen().map_err(unenforceable)?
            };
            if all_in {
                *lock(&self.paused) = true;
                return Ok(());
            }
            if started.elapsed() > FREEZE_WAIT {
                self.thaw_for_kill();
                return Err(unenforceable(
                    "the sandbox was not up and frozen within 2 s (has it ended?)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Thaws the sandbox.
    pub fn resume(&self) -> Result<(), ApiError> {
        if let Some(freezer) = lock(&self.freezer).as_ref() {
            freezer.set_frozen(false).map_err(unenforceable)?;
        }
        *lock(&self.paused) = false;
        Ok(())
    }

    fn thaw_for_kill(&self) {
        let _ = self.resume();
    }

    fn remove(&self) {
        if let Some(freezer) = lock(&self.freezer).take() {
            if let Err(e) = freezer.remove() {
                tracing::warn!(error = %e, "could not remove a freezer group");
            }
        }
        *lock(&self.paused) = false;
    }
}
