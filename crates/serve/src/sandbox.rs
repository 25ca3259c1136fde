//! One sandbox of the daemon, from launch to its `RunResult`.
//!
//! The daemon's spawner (`bunker_sandbox::spawner`, forked before the runtime started) builds
//! the sandbox; its init is the daemon's child (CLONE_PARENT), supervised on the daemon's
//! runtime by the async driver (`supervise_async`): no thread per sandbox. Output is kept
//! (capture) or sent as events, bounded by `limits.output` either way; events wait in the
//! connection's bounded outbox, so a client that does not read holds back only its own
//! sandboxes. The egress proxy serves the sandbox's listeners on the daemon's runtime
//! (`bunker_proxy::start_on`): no thread or runtime per sandbox either.
//!
//! A stdin descriptor a client passes (`spec.stdin: "fd"`) goes through the table a local run
//! applies to its own stdin (`bunker_sandbox::stdin::given_stdin`, decided here because only
//! the daemon knows the sandbox's host uid and outlives the spawner's part): a pipe, or a file
//! the sandbox cannot change, open read-only, is the program's fd 0 as it is; anything else
//! (a socket, a descriptor open for writing, a file the sandbox's uid owns) stays with the
//! daemon, which copies its bytes into a pipe of its own through the driver's stdin feed.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker_api::{ApiError, Data, ErrorCode, RunEvent, RunResult};
use bunker_cgroup::{Freezer, Layout};
use bunker_policy::Policy;
use bunker_sandbox::idmap::{IdLease, IdMode, IdRange};
use bunker_sandbox::spawner::{SpawnRequest, Spawner};
use bunker_sandbox::stdin::{given_stdin, GivenStdin};
use bunker_sandbox::supervise::{supervise_async, KillReason, OutputMode, SupervisionControl};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::pool::Taken;
use bunker_sandbox::spawn::{Prepared, Program};
use bunker_sandbox::SandboxError;

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

/// How the daemon's sandboxes get their host ids.
#[derive(Debug, Clone, Copy)]
pub enum Ids {
    /// As root: one id per sandbox, leased from this range.
    Leased(IdRange),
    /// Rootless: the daemon's own.
    Own { uid: u32, gid: u32 },
}

/// Everything needed to start one sandbox.
pub struct Launch {
    /// The effective policy, a request's shorter `timeout_ms` already applied.
    pub policy: Policy,
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: Vec<(String, String)>,
    pub stdin: StdinPlan,
    pub output: OutputPlan,
    /// Name of the sandbox's v1 freezer group, should it be paused.
    pub freezer_name: String,
    /// A ready sandbox of a warm pool to run in, instead of building one.
    pub warm: Option<Taken>,
    /// `warm: require`: should `warm`'s init be gone, the start over is through a sandbox
    /// prepared now, not a cold start.
    pub require_warm: bool,
}

/// What fills the program's stdin pipe, which the driver writes.
enum StdinFill {
    /// These bytes, then end of file.
    Data(Vec<u8>),
    /// The client's `stdin` requests, until `close_stdin`.
    Stream,
    /// The bytes of a descriptor the client passed that may not be the program's own.
    Copy(ClientStdin),
}

/// A client's stdin descriptor the daemon reads for the program, and the pipe whose closing
/// stops the reading (held by the driving task: the reader never outlives the sandbox).
struct ClientStdin {
    source: OwnedFd,
    stop: (OwnedFd, OwnedFd),
}

/// Largest chunk read from a client's stdin at once; at most the driver's channel of them
/// waits for the program.
const COPY_CHUNK: usize = 64 * 1024;

/// A stdin command of a `start`ed sandbox.
pub enum StdinCmd {
    Write(Vec<u8>, oneshot::Sender<Result<(), ApiError>>),
    Close,
}

/// A started sandbox, not yet driven.
pub struct Running {
    sandbox: bunker_sandbox::spawn::Sandbox,
    policy: Policy,
    stdin_write: Option<(OwnedFd, StdinFill)>,
    output: OutputPlan,
    _lease: Option<IdLease>,
    pub pause: Arc<Pause>,
    /// Taken from a warm pool (`RunResult::warm`).
    warm: bool,
}

fn setup_failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::SetupFailed, format!("{what}: {e}")).at_step(what.to_string())
}

/// Builds the sandbox through the spawner (on this task: the spawner's socket is on the
/// runtime's reactor; it answers when init is Ready).
pub async fn launch(
    spawner: Arc<Spawner>,
    ids: Ids,
    layout: Option<Arc<Layout>>,
    mut launch: Launch,
) -> Result<Running, ApiError> {
    let warm = launch.warm.take();
    let (id_mode, lease, prepared) = match (warm, ids) {
        (
            Some(Taken {
                prepared,
                id_mode,
                lease,
            }),
            _,
        ) => (id_mode, lease, Some(prepared)),
        (None, Ids::Leased(range)) => {
            let lease = IdLease::acquire(range).map_err(|e| e.to_api_error())?;
            (lease.id_mode(), Some(lease), None)
        }
        (None, Ids::Own { uid, gid }) => (IdMode::Rootless { uid, gid }, None, None),
    };
    let mut warm = prepared.is_some();
    let pipe = || bunker_sys::fd::pipe().map_err(|e| setup_failed("stdin pipe", e));
    let piped = |fill| pipe().map(|(r, w)| (Some(r), Some((w, fill))));
    let (program_stdin, stdin_write) = match launch.stdin {
        StdinPlan::Null => (None, None),
        StdinPlan::Fd(fd) => match given_stdin(fd.as_fd(), id_mode.host_uid()) {
            GivenStdin::Null => (None, None),
            GivenStdin::AsIs => (Some(fd), None),
            GivenStdin::Relay => piped(StdinFill::Copy(ClientStdin {
                source: fd,
                stop: pipe()?,
            }))?,
        },
        StdinPlan::Data(bytes) => piped(StdinFill::Data(bytes))?,
        StdinPlan::Stream => piped(StdinFill::Stream)?,
    };
    let request = SpawnRequest {
        policy: launch.policy.clone(),
        argv: launch.argv.into_iter().map(OsString::from).collect(),
        cwd: Some(PathBuf::from(launch.cwd)),
        env: launch
            .env
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
        caller_cwd: None,
        id_mode,
    };
    let sandbox = match prepared {
        Some(prepared) => {
            // A copy for the start over, should this sandbox's init be gone.
            let stdin_again = match &program_stdin {
                Some(fd) => Some(fd.try_clone().map_err(|e| setup_failed("stdin", e))?),
                None => None,
            };
            let program = program_of(&request, program_stdin);
            match launch_prepared(prepared, launch.policy.clone(), program).await? {
                Some(sandbox) => sandbox,
                // It died while it waited (killed from outside): a start over is what a cold
                // request would have got. With `warm: require`, through a sandbox prepared
                // now; a second one gone as well is the request's error.
                None if launch.require_warm => {
                    tracing::info!(
                        "a pooled sandbox's init was gone at its launch; another is prepared"
                    );
                    let prepared = spawner.prepare(launch.policy.clone(), id_mode).await?;
                    let program = program_of(&request, stdin_again);
                    launch_prepared(prepared, launch.policy.clone(), program)
                        .await?
                        .ok_or_else(|| {
                            setup_failed(
                                "launch a prepared sandbox",
                                "its init ended before the program reached it",
                            )
                        })?
                }
                None => {
                    tracing::info!(
                        "a pooled sandbox's init was gone at its launch; the request runs cold"
                    );
                    warm = false;
                    spawner.spawn(request, stdin_again).await?
                }
            }
        }
        None => spawner.spawn(request, program_stdin).await?,
    };
    let init_pid = sandbox.supervised.init_pid;
    // On cgroup v2 the sandbox's own group freezes it.
    let v2_group = sandbox
        .supervised
        .cgroup
        .paths()
        .into_iter()
        .find(|dir| dir.join("cgroup.freeze").exists());
    Ok(Running {
        policy: launch.policy,
        stdin_write,
        output: launch.output,
        _lease: lease,
        warm,
        pause: Arc::new(Pause {
            init_pid,
            v2_group,
            layout,
            name: launch.freezer_name,
            freezer: Mutex::new(None),
            paused: Mutex::new(false),
        }),
        sandbox,
    })
}

/// A sandbox prepared for one request (`warm: require` with no pooled one that fits), by the
/// same spawner step a pool's refill takes.
pub async fn prepare_now(spawner: &Spawner, ids: Ids, policy: &Policy) -> Result<Taken, ApiError> {
    let (id_mode, lease) = match ids {
        Ids::Leased(range) => {
            let lease = IdLease::acquire(range).map_err(|e| e.to_api_error())?;
            (lease.id_mode(), Some(lease))
        }
        Ids::Own { uid, gid } => (IdMode::Rootless { uid, gid }, None),
    };
    let prepared = spawner.prepare(policy.clone(), id_mode).await?;
    Ok(Taken {
        prepared,
        id_mode,
        lease,
    })
}

/// The program of `request` for a prepared sandbox.
fn program_of(request: &SpawnRequest, stdin: Option<OwnedFd>) -> Program {
    Program {
        argv: request.argv.clone(),
        env: request.env.clone(),
        cwd: request.cwd.clone(),
        caller_cwd: request.caller_cwd.clone(),
        stdin,
        extra_fds: Vec::new(),
    }
}

/// Sends a prepared sandbox its program (off the runtime: init restricts itself and answers
/// Ready, a few syscalls). `None`: its init was gone before the program reached it (it exited
/// while it waited, or its end of the control socket is closed), which a cold start would not
/// hit. Any other failure, a lowering write of the cgroup's limits among them, is the
/// request's error (docs/protocol.md, "Warm pools").
async fn launch_prepared(
    prepared: Prepared,
    policy: Policy,
    program: Program,
) -> Result<Option<bunker_sandbox::spawn::Sandbox>, ApiError> {
    tokio::task::spawn_blocking(move || {
        if !init_waits(&prepared) {
            // Dropped: reaped, its cgroup removed.
            return Ok(None);
        }
        match prepared.launch(&policy, program) {
            Ok(sandbox) => Ok(Some(sandbox)),
            Err(SandboxError::Setup { source, .. })
                if matches!(source.errno, libc::EPIPE | libc::ECONNRESET) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_api_error()),
        }
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("launch task: {e}")))?
}

/// Whether a prepared sandbox's init still waits (its pidfd turns readable once it exited).
fn init_waits(prepared: &Prepared) -> bool {
    let Some(sandbox) = prepared.sandbox() else {
        return false;
    };
    matches!(
        bunker_sys::event::poll(&[sandbox.supervised.pidfd.as_fd()], Some(Duration::ZERO)).as_deref(),
        Ok([ready]) if !ready.readable && !ready.hangup
    )
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

/// Hands the driver's events to the sandbox's task. Unbounded, but bounded in bytes by the
/// policy: output events count against `limits.output`, and the rest are a handful per run.
#[derive(Debug)]
struct Forward(mpsc::UnboundedSender<RunEvent>);

impl bunker_sandbox::events::Observer for Forward {
    fn event(&self, event: &RunEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// Writes a chunk to one of the client's descriptors, off the runtime (a descriptor the client
/// passed may block, and must not be made non-blocking under it).
async fn write_to(fd: &Arc<OwnedFd>, data: &Data) {
    let Some(bytes) = data.to_bytes() else {
        return;
    };
    let fd = fd.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::from(match fd.try_clone() {
            Ok(fd) => fd,
            Err(_) => return,
        });
        let _ = file.write_all(&bytes);
    })
    .await;
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Running {
    /// Runs the sandbox to its end. `cancel` becoming true kills it (the result then carries
    /// `cancelled`).
    pub async fn drive(
        self,
        mut cancel: watch::Receiver<bool>,
        stdin_commands: Option<mpsc::Receiver<StdinCmd>>,
        sink: Option<EventSink>,
    ) -> Result<RunResult, ApiError> {
        let Running {
            sandbox,
            policy,
            stdin_write,
            output,
            _lease,
            pause,
            warm,
        } = self;
        let bunker_sandbox::spawn::Sandbox {
            mut supervised,
            lifeline,
            proxy_listeners,
        } = sandbox;
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let fds = match output {
            OutputPlan::Capture => {
                supervised.output = OutputMode::Capture;
                None
            }
            OutputPlan::Events => {
                supervised.output = OutputMode::Events;
                None
            }
            OutputPlan::Fds(out, err) => {
                supervised.output = OutputMode::Events;
                Some((Arc::new(out), Arc::new(err)))
            }
        };
        supervised.observer = Some(Arc::new(Forward(events_tx.clone())));
        let _ = events_tx.send(RunEvent::Started {
            enforced: supervised.enforced.clone(),
        });
        drop(events_tx);
        let proxy = start_proxy(&policy, proxy_listeners, supervised.init_pid)?;
        let (control, kill) = SupervisionControl::new();
        // Closed when this task is done with the sandbox: the copy of a client's stdin stops.
        let mut stop_copy = None;
        let (control, stdin_tx) = match stdin_write {
            Some((write_end, fill)) => {
                let (control, tx) = control.with_stdin(write_end);
                match fill {
                    StdinFill::Data(bytes) => {
                        let _ = tx.send(bytes).await;
                        (control, None)
                    }
                    StdinFill::Stream => (control, Some(tx)),
                    StdinFill::Copy(ClientStdin {
                        source,
                        stop: (stop_read, stop_write),
                    }) => {
                        stop_copy = Some(stop_write);
                        // Off the runtime's workers: a regular file cannot be polled, and a
                        // client's descriptor must not be made non-blocking under it.
                        tokio::task::spawn_blocking(move || {
                            copy_client_stdin(source, stop_read, tx)
                        });
                        (control, None)
                    }
                }
            }
            None => (control, None),
        };
        let deadline = policy.limits.timeout.map(|t| Instant::now() + t);
        let supervise = supervise_async(supervised, &policy, control);
        tokio::pin!(supervise);
        // Events go out from a task of their own, so the driver is never held up by a client
        // that reads slowly (its timeouts keep running).
        let forwarder = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match (&fds, event) {
                    (Some((out, _)), RunEvent::Stdout { data }) => write_to(out, &data).await,
                    (Some((_, err)), RunEvent::Stderr { data }) => write_to(err, &data).await,
                    (_, event) => {
                        if let Some(sink) = &sink {
                            sink.send(event).await;
                        }
                    }
                }
            }
        });
        // The client's stdin requests, each answered once its chunk is taken.
        let feeder = match (stdin_commands, stdin_tx) {
            (Some(commands), Some(tx)) => Some(tokio::spawn(feed(commands, tx))),
            _ => None,
        };
        let mut cancelled = false;
        // From its deadline on, the sandbox is kept thawed (a pause then changes nothing): the
        // driver kills it at its timeout, which a frozen task only acts on once thawed.
        let mut thaw_at = deadline;
        let outcome = loop {
            tokio::select! {
                outcome = &mut supervise => break outcome,
                changed = cancel.changed(), if !cancelled => {
                    if changed.is_err() || *cancel.borrow() {
                        cancelled = true;
                        let _ = kill.try_send(KillReason::Cancelled);
                        // A frozen task acts on its kill only once thawed.
                        pause.thaw_for_kill();
                    }
                }
                _ = sleep_until_opt(thaw_at), if thaw_at.is_some() => {
                    pause.thaw_for_kill();
                    thaw_at = Some(Instant::now() + THAW_RECHECK);
                }
            }
        };
        if let Some(feeder) = feeder {
            feeder.abort();
        }
        drop(stop_copy);
        // Every event is out before the result.
        let _ = forwarder.await;
        drop(lifeline);
        pause.remove();
        let records = match proxy {
            Some(handle) => handle.finish_async().await,
            None => Vec::new(),
        };
        let mut result = outcome.map_err(|e| e.to_api_error())?;
        result.http = bunker_api::HttpReport::from_records(
            records
                .into_iter()
                .map(bunker_api::HttpRecord::from)
                .collect(),
        );
        result.warm = warm;
        if cancelled && result.error_code.is_none() {
            result.error_code = Some(ErrorCode::Cancelled);
            result.error = Some("cancelled by the client (kill, cancel or disconnect)".into());
        }
        Ok(result)
    }
}

/// Passes the client's stdin requests to the driver until `close_stdin` (dropping the sender
/// closes the program's stdin) or the end of the sandbox.
async fn feed(mut commands: mpsc::Receiver<StdinCmd>, tx: mpsc::Sender<Vec<u8>>) {
    while let Some(command) = commands.recv().await {
        match command {
            StdinCmd::Write(bytes, done) => {
                let sent = tx.send(bytes).await.map_err(|_| {
                    ApiError::new(ErrorCode::RequestInvalid, "the program's stdin is closed")
                });
                let _ = done.send(sent);
            }
            StdinCmd::Close => return,
        }
    }
}

/// Copies a client's stdin descriptor into the program's pipe (through the driver's channel,
/// which bounds what waits) until its end of file, the program's end of its stdin (the channel
/// is gone), or `stop` closing. As the local relay does, it reads no more than `FIONREAD` says
/// is there, so a read does not block once poll said readable, and poll also wakes on `stop`.
fn copy_client_stdin(source: OwnedFd, stop: OwnedFd, chunks: mpsc::Sender<Vec<u8>>) {
    loop {
        let Ok(ready) = bunker_sys::event::poll(&[source.as_fd(), stop.as_fd()], None) else {
            return;
        };
        if ready[1].any() {
            return;
        }
        if !ready[0].any() {
            continue;
        }
        let there = bunker_sys::tty::readable_bytes(source.as_fd()).unwrap_or(COPY_CHUNK);
        // Zero bytes there yet readable is end of file, which a one-byte read returns at once.
        let mut chunk = vec![0u8; there.clamp(1, COPY_CHUNK)];
        match bunker_sys::fd::read(source.as_raw_fd(), &mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if chunks.blocking_send(chunk).is_err() {
                    return;
                }
            }
            // Someone else took the bytes first (the client shares the descriptor).
            Err(e) if e.errno == libc::EAGAIN => continue,
            Err(_) => return,
        }
    }
}

/// A sandbox's pause state: its freezer group, made on the first `pause`.
pub struct Pause {
    init_pid: i32,
    v2_group: Option<PathBuf>,
    layout: Option<Arc<Layout>>,
    name: String,
    freezer: Mutex<Option<Freezer>>,
    paused: Mutex<bool>,
}

/// How often a sandbox past its deadline is thawed again (should it have been paused since).
const THAW_RECHECK: Duration = Duration::from_millis(50);

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

/// `pid` and every descendant of it, from /proc's children lists.
fn with_descendants(pid: i32) -> Vec<i32> {
    let mut found = vec![pid];
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

    /// Freezes every process of the sandbox: its init and all below it.
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
                        Freezer::for_sandbox(layout, self.v2_group.as_deref(), &self.name)
                            .map_err(unenforceable)?,
                    );
                }
                let freezer = slot.as_ref().ok_or_else(|| unenforceable("no freezer"))?;
                let inside = freezer.procs().map_err(unenforceable)?;
                let missing: Vec<i32> = with_descendants(self.init_pid)
                    .into_iter()
                    .filter(|p| !inside.contains(p))
                    .collect();
                freezer.adopt(&missing).map_err(unenforceable)?;
                freezer.set_frozen(true).map_err(unenforceable)?;
                missing.is_empty() && freezer.is_frozen().map_err(unenforceable)?
            };
            if all_in {
                *lock(&self.paused) = true;
                return Ok(());
            }
            if started.elapsed() > FREEZE_WAIT {
                self.thaw_for_kill();
                return Err(unenforceable("the freeze did not complete within 2 s"));
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

/// Serves a sandbox's egress proxy on this runtime, when its policy gave it listeners. A proxy
/// that cannot start kills the sandbox: without it the sandbox cannot be what the policy says.
pub fn start_proxy(
    policy: &Policy,
    listeners: Option<(OwnedFd, OwnedFd)>,
    init_pid: i32,
) -> Result<Option<bunker_proxy::ProxyHandle>, ApiError> {
    let Some((http, socks)) = listeners else {
        return Ok(None);
    };
    let config = bunker_proxy::ProxyConfig {
        policy: Arc::new(policy.clone()),
        resolve: Vec::new(),
        on_decision: None,
    };
    bunker_proxy::start_on(
        &tokio::runtime::Handle::current(),
        config,
        std::net::TcpListener::from(http),
        std::net::TcpListener::from(socks),
    )
    .map(Some)
    .map_err(|e| {
        let _ = bunker_sys::process::kill(init_pid, libc::SIGKILL);
        setup_failed("start the egress proxy", e)
    })
}
