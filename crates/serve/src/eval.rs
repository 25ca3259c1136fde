//! The `eval` operation (docs/protocol.md, "eval"): code run by a worker library (Bun or
//! Python, crates/sandbox/src/worker) in a sandbox of the engine's eval profile, the request and
//! the reply passing through the worker's channel (a control socket for the `R` / `D` doorbells,
//! a sealed memfd holding the `in` and `out` rings).
//!
//! A worker is a sandbox whose program, the worker library, has been launched with its channel
//! as fds 3 and 4 ([`start_worker`]): it has restricted itself and waits for `R`. Pre-started
//! ones wait in the `eval:ENGINE` pools (pool.rs); an eval that does not fit one starts a worker
//! now, through the same function. Either way the hand-over is the same ([`eval_once`]): the
//! request written into `in` and `R` rung, the sandbox supervised from then (its timeout and
//! wall time count from the hand-over), then `D` awaited on the control socket (on the
//! runtime's reactor) or the sandbox's end. The reply is sent as soon as the `out` record has
//! passed the channel's checks; the sandbox is killed and torn down in the background a
//! moment behind it (`TEARDOWN_DELAY`, so as not to compete with the reply; with network, the
//! end is awaited so the result carries the proxy's records). A worker that breaks the
//! protocol is killed and its result says `protocol_error`; nothing it writes is trusted
//! beyond what the channel checked.
//!
//! One tenant per worker: a worker serves one eval and ends, except in a session of the opt-in
//! multi-request mode (`open_worker`, [`Sessions`]): one connection's worker, serving its evals
//! one at a time, killed with the connection or by a timeout or memory kill.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker_api::eval::{Engine, EvalLimits, EvalResult, EvalSpec, HttpOptions};
use bunker_api::protocol::WorkerSpec;
use bunker_api::{ApiError, ErrorCode, PolicyChoice, RunResult};
use bunker_policy::eval::{apply_eval_options, eval_load_spec, spec_policy_source};
use bunker_policy::Policy;
use bunker_sandbox::idmap::{IdLease, IdMode};
use bunker_sandbox::spawn::{Prepared, Program, Sandbox};
use bunker_sandbox::supervise::{supervise_async, KillReason, OutputMode, SupervisionControl};
use bunker_sandbox::worker::channel::{Channel, ChannelConfig, ChannelError, Doorbell};
use bunker_sandbox::worker::{outcome, program, WorkerReply, WorkerRequest};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::sandbox::{start_proxy, Ids};
use crate::state::{Shared, Slot};

/// A launched worker: its sandbox (the worker library running, waiting for `R`) and bunker's
/// end of its channel. Dropped before its hand-over, its init is killed and reaped (blocking
/// briefly: drop it off the runtime's workers) and its cgroup removed.
pub struct Worker {
    parts: Option<(Sandbox, Channel)>,
}

impl Worker {
    /// Its sandbox (for its cgroup and its init's pidfd).
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.parts.as_ref().map(|(sandbox, _)| sandbox)
    }

    fn into_parts(mut self) -> Option<(Sandbox, Channel)> {
        self.parts.take()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some((sandbox, _)) = self.parts.take() {
            let pidfd = std::os::fd::AsFd::as_fd(&sandbox.supervised.pidfd);
            let _ = bunker_sys::event::pidfd_send_signal(pidfd, libc::SIGKILL);
            let _ = bunker_sys::event::poll(&[pidfd], None);
            // Reaped (init is the daemon's child); its cgroup goes with the handle.
            let _ = bunker_sys::event::wait_pidfd(pidfd, true);
        }
    }
}

fn setup_failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::SetupFailed, format!("{what}: {e}")).at_step(what.to_string())
}

/// Hands a prepared sandbox the worker program of `engine` with a new channel as its fds 3 and
/// 4: init restricts itself and starts it. Blocking (a few syscalls, then init's Ready): call it
/// off the runtime's workers. `policy` is the one the sandbox was prepared with.
pub fn start_worker(
    prepared: Prepared,
    policy: &Policy,
    engine: Engine,
) -> Result<Worker, ApiError> {
    let (channel, fds) = Channel::new(ChannelConfig::default())
        .map_err(|e| setup_failed("make the worker's channel", e))?;
    let sandbox = prepared
        .launch(
            policy,
            Program {
                argv: program::argv(engine),
                env: Vec::new(),
                cwd: Some("/tmp".into()),
                caller_cwd: None,
                stdin: None,
                extra_fds: fds.into_extra_fds(),
            },
        )
        .map_err(|e| e.to_api_error())?;
    Ok(Worker {
        parts: Some((sandbox, channel)),
    })
}

/// The policy an eval runs under: the engine's profile (`eval:bun`, `eval:python`), extended by
/// `extra` (a name or an inline document, loaded with the profile in its `extends`:
/// `bunker_policy::eval::eval_load_spec`, as `bunker eval` loads its `--policy`), with `http`
/// mapped onto its network rules and `limits` lowering its limits (`apply_eval_options`).
/// Without `extra`, the config's cached profile: nothing is loaded per request.
pub fn effective_policy(
    config: &Config,
    engine: Engine,
    extra: Option<&PolicyChoice>,
    http: Option<&HttpOptions>,
    limits: &EvalLimits,
) -> Result<Policy, ApiError> {
    let profile = engine.profile();
    let mut policy = match extra {
        None => config.named_policy(profile).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InternalError,
                format!("the built-in profile {profile} is missing"),
            )
        })?,
        Some(choice) => {
            let file_of = |name: &str| config.policies.get(name).map(|(file, _)| file.clone());
            let source =
                spec_policy_source(choice, &config.base_dir, file_of).ok_or_else(|| {
                    let name = match choice {
                        PolicyChoice::Name(name) => name.as_str(),
                        PolicyChoice::Inline(_) => "",
                    };
                    ApiError::new(
                        ErrorCode::NotFound,
                        format!("spec.policy: no policy named {name:?}"),
                    )
                })?;
            let spec = eval_load_spec(engine, Some(source), config.base_dir.clone());
            bunker_policy::load(&spec).map_err(|e| ApiError::from(&e))?
        }
    };
    apply_eval_options(&mut policy, http, limits).map_err(|e| ApiError::from(&e))?;
    Ok(policy)
}

/// The console bytes an eval keeps (the worker's cap).
fn console_cap(limits: &EvalLimits) -> u64 {
    limits
        .console_bytes
        .unwrap_or(bunker_policy::eval::DEFAULT_CONSOLE_BYTES)
}

/// A worker taken for an eval, with the slot and host ids it holds.
pub struct Hired {
    pub worker: Worker,
    pub slot: Slot,
    pub lease: Option<IdLease>,
    /// From a pool of pre-started workers.
    pub warm: bool,
}

impl Shared {
    /// A worker for an eval under `policy`: a pre-started one when `pooled` (no http, no extra
    /// policy) and a pool of the engine fits, else one started now (a slot taken first, as a
    /// cold run takes one).
    pub async fn hire(
        self: &Arc<Self>,
        engine: Engine,
        policy: &Policy,
        pooled: bool,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Hired, ApiError> {
        if pooled {
            if let Some(hired) = self.take_worker(engine, policy) {
                return Ok(hired);
            }
        }
        let slot = self.admit(cancel).await?;
        let (id_mode, lease) = match self.ids {
            Ids::Leased(range) => {
                let lease = IdLease::acquire(range).map_err(|e| e.to_api_error())?;
                (lease.id_mode(), Some(lease))
            }
            Ids::Own { uid, gid } => (IdMode::Rootless { uid, gid }, None),
        };
        let prepared = self.spawner.prepare(policy.clone(), id_mode).await?;
        let policy = policy.clone();
        let worker = tokio::task::spawn_blocking(move || start_worker(prepared, &policy, engine))
            .await
            .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("launch task: {e}")))??;
        Ok(Hired {
            worker,
            slot,
            lease,
            warm: false,
        })
    }
}

/// A worker's sandbox under supervision, in a task of its own that holds its slot until the
/// sandbox is gone.
struct Supervised {
    channel: Channel,
    doorbell: AsyncFd<OwnedFd>,
    /// Ends the sandbox (a reason sent, or every sender dropped).
    kill: mpsc::Sender<KillReason>,
    ended: JoinHandle<Result<RunResult, ApiError>>,
    /// The end, once `ended` gave it.
    result: Option<Result<RunResult, ApiError>>,
    network: bool,
}

/// Starts supervising a hired worker from now (its timeout and wall time count from here).
fn supervise(hired: Hired, policy: Policy) -> Result<Supervised, ApiError> {
    let Hired {
        worker,
        slot,
        lease,
        warm: _,
    } = hired;
    let (sandbox, channel) = worker
        .into_parts()
        .ok_or_else(|| ApiError::new(ErrorCode::InternalError, "a worker was handed out twice"))?;
    let Sandbox {
        mut supervised,
        lifeline,
        proxy_listeners,
    } = sandbox;
    let doorbell = channel
        .control_fd()
        .try_clone_to_owned()
        .and_then(|fd| bunker_sys::reactor::register(fd, tokio::io::Interest::READABLE))
        .map_err(|e| setup_failed("watch the worker's control socket", e))?;
    let network = proxy_listeners.is_some();
    let proxy = start_proxy(&policy, proxy_listeners, supervised.init_pid)?;
    supervised.started = std::time::Instant::now();
    supervised.output = OutputMode::Capture;
    let (control, kill) = SupervisionControl::new();
    let ended = tokio::spawn(async move {
        let outcome = supervise_async(supervised, &policy, control).await;
        drop(lifeline);
        let records = match proxy {
            Some(handle) => handle.finish_async().await,
            None => Vec::new(),
        };
        let result = outcome.map(|mut result| {
            result.http = bunker_api::HttpReport::from_records(
                records
                    .into_iter()
                    .map(bunker_api::HttpRecord::from)
                    .collect(),
            );
            result
        });
        drop(slot);
        drop(lease);
        result.map_err(|e| e.to_api_error())
    });
    Ok(Supervised {
        channel,
        doorbell,
        kill,
        ended,
        result: None,
        network,
    })
}

/// What waiting for a reply came to.
enum Awaited {
    /// `D` and a checked record (`Some`), the worker's end closed (`None`), or a broken
    /// protocol (`Err`).
    Reply(Result<Option<WorkerReply>, ChannelError>),
    /// The sandbox ended first.
    Ended,
    /// The deadline of an eval in a session passed.
    Deadline,
    /// The request was cancelled (the connection went).
    Cancelled,
}

impl Supervised {
    /// Waits for `D` (then reads and checks the reply), the sandbox's end, `deadline` or
    /// `cancel`.
    async fn await_reply(
        &mut self,
        deadline: Option<Instant>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Awaited {
        loop {
            match self.channel.poll_doorbell() {
                Ok(Doorbell::Nothing) => {}
                Ok(Doorbell::Reply(reply)) => return Awaited::Reply(Ok(Some(*reply))),
                Ok(Doorbell::Closed) => return Awaited::Reply(Ok(None)),
                Err(e) => return Awaited::Reply(Err(e)),
            }
            if self.result.is_some() {
                return Awaited::Ended;
            }
            tokio::select! {
                ready = self.doorbell.readable() => match ready {
                    // Cleared before the next look: an edge after it wakes this task again.
                    Ok(mut guard) => guard.clear_ready(),
                    Err(e) => {
                        return Awaited::Reply(Err(ChannelError::Sys(bunker_sys::SysError::from_errno(
                            format!("wait for the worker's doorbell: {e}"),
                            e.raw_os_error().unwrap_or(libc::EIO),
                        ))))
                    }
                },
                ended = &mut self.ended => {
                    self.result = Some(ended.unwrap_or_else(|e| {
                        Err(ApiError::new(ErrorCode::InternalError, format!("supervision task: {e}")))
                    }));
                    // A doorbell rung just before the end is still read above.
                }
                _ = sleep_until_opt(deadline) => return Awaited::Deadline,
                changed = cancel.changed() => {
                    if changed.is_err() || *cancel.borrow() {
                        return Awaited::Cancelled;
                    }
                }
            }
        }
    }

    /// Kills the sandbox (the first reason stays) and waits for its end.
    async fn end(&mut self, reason: KillReason) -> Result<RunResult, ApiError> {
        let _ = self.kill.try_send(reason);
        if self.result.is_none() {
            let ended = (&mut self.ended).await;
            self.result = Some(ended.unwrap_or_else(|e| {
                Err(ApiError::new(
                    ErrorCode::InternalError,
                    format!("supervision task: {e}"),
                ))
            }));
        }
        self.result.clone().unwrap_or_else(|| {
            Err(ApiError::new(
                ErrorCode::InternalError,
                "the worker's run was lost",
            ))
        })
    }

    /// Waits for the sandbox's own end (the worker exits after its one request; a limit or
    /// its timeout ends it otherwise).
    async fn natural_end(&mut self) -> Result<RunResult, ApiError> {
        if self.result.is_none() {
            let ended = (&mut self.ended).await;
            self.result = Some(ended.unwrap_or_else(|e| {
                Err(ApiError::new(
                    ErrorCode::InternalError,
                    format!("supervision task: {e}"),
                ))
            }));
        }
        self.end(KillReason::Cancelled).await
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn cancelled() -> ApiError {
    ApiError::new(
        ErrorCode::Cancelled,
        "cancelled by the client (cancel or disconnect)",
    )
}

fn request_invalid(e: ChannelError) -> ApiError {
    ApiError::new(ErrorCode::RequestInvalid, format!("spec: {e}"))
}

/// How long a worker's sandbox outlives the reply it gave (see `eval_once`): long enough for
/// the reply to reach the client on a busy host, short enough to be no run of its own.
const TEARDOWN_DELAY: Duration = Duration::from_millis(2);

/// Runs one eval in a hired worker, which ends with it.
pub async fn eval_once(
    shared: &Arc<Shared>,
    hired: Hired,
    policy: Policy,
    spec: &EvalSpec,
    cancel: &mut watch::Receiver<bool>,
) -> Result<EvalResult, ApiError> {
    let warm = hired.warm;
    let request = WorkerRequest::from_spec(spec, console_cap(&spec.limits), false);
    let mut run = supervise(hired, policy)?;
    let handed = Instant::now();
    if let Err(e) = run.channel.send_request(&request) {
        let _ = run.end(KillReason::Cancelled).await;
        return Err(request_invalid(e));
    }
    let awaited = run.await_reply(None, cancel).await;
    let wall_ms = || handed.elapsed().as_secs_f64() * 1000.0;
    let result = match awaited {
        Awaited::Reply(Ok(Some(reply))) if run.network => {
            // The proxy's records are complete once the sandbox is gone.
            let wall_ms = wall_ms();
            let ended = run.natural_end().await?;
            outcome::eval_result(Ok(Some(reply)), Some(&ended), wall_ms, warm)
        }
        Awaited::Reply(Ok(Some(reply))) => {
            // The reply is checked: it goes now, and the sandbox is killed and torn down
            // TEARDOWN_DELAY behind it (the supervision task holds the slot until it is gone),
            // so that the worker's exit, the teardown and the pool's refill do not compete
            // with the reply for the CPU. The Bun library itself sleeps a moment after `D`
            // before it exits, for the same reason (docs/workers.md).
            let result = outcome::eval_result(Ok(Some(reply)), None, wall_ms(), warm);
            tokio::spawn(async move {
                tokio::time::sleep(TEARDOWN_DELAY).await;
                let _ = run.kill.try_send(KillReason::Cancelled);
            });
            result
        }
        Awaited::Reply(Err(e)) => {
            let wall_ms = wall_ms();
            tracing::warn!(error = %e, "a worker broke the channel protocol; its sandbox is killed");
            let ended = run.end(KillReason::Cancelled).await.ok();
            outcome::eval_result(Err(&e), ended.as_ref(), wall_ms, warm)
        }
        Awaited::Reply(Ok(None)) | Awaited::Ended | Awaited::Deadline => {
            let wall_ms = wall_ms();
            let ended = run.natural_end().await?;
            outcome::eval_result(Ok(None), Some(&ended), wall_ms, warm)
        }
        Awaited::Cancelled => {
            let _ = run.end(KillReason::Cancelled).await;
            return Err(cancelled());
        }
    };
    // Counted by the eval's status: the sandbox killed behind a reply is no run of its own.
    shared.count_status(result.status);
    Ok(result)
}

/// An opened worker (`open_worker`): one connection's, serving its evals one at a time.
struct Session {
    engine: Engine,
    limits: EvalLimits,
    console_bytes: u64,
    run: Supervised,
}

/// The opened workers of one connection, by id; dropped with the connection, which ends them.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Session>>>>>,
}

static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

fn not_found(worker: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no open worker {worker} on this connection (closed, ended by a limit, or another connection's)"),
    )
}

impl Sessions {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Option<Session>>>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a worker for `spec` (cold: a session's worker is never a pooled one) and names it.
    pub async fn open(
        &self,
        shared: &Arc<Shared>,
        config: &Config,
        spec: WorkerSpec,
        permit: impl FnOnce(&Policy) -> Result<(), ApiError>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<String, ApiError> {
        let mut policy = effective_policy(
            config,
            spec.engine,
            spec.policy.as_ref(),
            spec.http.as_ref(),
            &spec.limits,
        )?;
        permit(&policy)?;
        let console_bytes = console_cap(&spec.limits);
        let hired = shared.hire(spec.engine, &policy, false, cancel).await?;
        // Each eval's timeout is applied here, from its own hand-over; the sandbox itself lives
        // until it is closed, a limit ends it, or its connection goes.
        policy.limits.timeout = None;
        let run = supervise(hired, policy)?;
        let id = format!("w-{}", NEXT_WORKER.fetch_add(1, Ordering::Relaxed));
        let session = Session {
            engine: spec.engine,
            limits: spec.limits,
            console_bytes,
            run,
        };
        self.lock()
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(Some(session))));
        Ok(id)
    }

    /// Ends an opened worker.
    pub async fn close(&self, worker: &str) -> Result<(), ApiError> {
        let session = self
            .lock()
            .remove(worker)
            .ok_or_else(|| not_found(worker))?;
        let taken = session.lock().await.take();
        if let Some(mut session) = taken {
            let _ = session.run.end(KillReason::Cancelled).await;
        }
        Ok(())
    }

    /// Runs `spec` in the opened worker it names, after the evals before it.
    pub async fn eval(
        &self,
        worker: &str,
        spec: &EvalSpec,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<EvalResult, ApiError> {
        let session = self
            .lock()
            .get(worker)
            .cloned()
            .ok_or_else(|| not_found(worker))?;
        let mut guard = session.lock().await;
        let Some(open) = guard.as_mut() else {
            return Err(not_found(worker));
        };
        if open.engine != spec.engine {
            return Err(ApiError::new(
                ErrorCode::RequestInvalid,
                format!(
                    "spec.engine: worker {worker} runs {}, not {}",
                    open.engine, spec.engine
                ),
            ));
        }
        let request = WorkerRequest::from_spec(spec, open.console_bytes, true);
        let timeout = open.limits.timeout_ms.map(Duration::from_millis);
        let handed = Instant::now();
        open.run
            .channel
            .send_request(&request)
            .map_err(request_invalid)?;
        let awaited = open
            .run
            .await_reply(timeout.map(|t| handed + t), cancel)
            .await;
        let wall_ms = handed.elapsed().as_secs_f64() * 1000.0;
        let (result, ends) = match awaited {
            Awaited::Reply(Ok(Some(reply))) => (
                outcome::eval_result(Ok(Some(reply)), None, wall_ms, false),
                false,
            ),
            Awaited::Reply(Err(e)) => {
                let ended = open.run.end(KillReason::Cancelled).await.ok();
                (
                    outcome::eval_result(Err(&e), ended.as_ref(), wall_ms, false),
                    true,
                )
            }
            Awaited::Deadline => {
                let ended = open.run.end(KillReason::Timeout).await?;
                (
                    outcome::eval_result(Ok(None), Some(&ended), wall_ms, false),
                    true,
                )
            }
            Awaited::Reply(Ok(None)) | Awaited::Ended => {
                let ended = open.run.natural_end().await?;
                (
                    outcome::eval_result(Ok(None), Some(&ended), wall_ms, false),
                    true,
                )
            }
            Awaited::Cancelled => {
                let _ = open.run.end(KillReason::Cancelled).await;
                *guard = None;
                self.lock().remove(worker);
                return Err(cancelled());
            }
        };
        if ends {
            *guard = None;
            self.lock().remove(worker);
        }
        Ok(result)
    }
}
