//! The fork server: a single-threaded process that builds sandboxes for a multi-threaded one.
//!
//! A sandbox's init is made by a fork-like clone, which only a single-threaded process may do
//! (`process::clone_fork` refuses otherwise). So a daemon forks its spawner with
//! [`Spawner::start`] before it starts any thread or runtime, and asks it for each sandbox with
//! [`Spawner::spawn`], from any task of its tokio runtime (no thread hand-off: the socket is
//! on the runtime's reactor). The spawner runs [`spawn::start_or_hand_back`] with
//! `clone_parent`: init is cloned with `CLONE_PARENT`, so its parent is the daemon, not the
//! spawner. The daemon reaps init through its pidfd, and init's parent-death signal follows the
//! daemon: the spawner dying kills no handed-over sandbox, and the daemon dying kills them all
//! (and the spawner, whose parent-death signal is SIGKILL too). A sandbox the spawner dies
//! holding (before the handover) ends with its lifeline, whose only write end the spawner had;
//! after the handover the daemon holds it in [`Sandbox::lifeline`], and must keep it until the
//! sandbox is supervised to its end: dropping it ends the sandbox.
//!
//! The two talk over a SOCK_SEQPACKET pair, one datagram per message, JSON:
//! - daemon → spawner: a [`SpawnRequest`], with the program's stdin attached (SCM_RIGHTS) when
//!   the request says so;
//! - spawner → daemon: the started sandbox as a [`SandboxTransfer`] with its fds attached in
//!   the order of its named slots ([`FdSlot`]), or the [`ApiError`] of why not (with the pidfd
//!   of an init that died after the clone, which only the daemon can reap).
//!
//! Each sandbox's cgroup is named after the daemon (`bunker-<daemon pid>-<n>`), whose death is
//! what makes it stale. The spawner keeps every descriptor the daemon had open when it forked:
//! start it before opening anything a sandbox must not reach.
//!
//! A spawner that died cannot be replaced from a multi-threaded daemon (the fork is refused
//! there): [`Spawner::spawn`] then answers `internal_error` ("the spawner is gone"), and the
//! daemon should stop and be restarted.
//!
//! A message is at most [`MAX_SPAWN_MESSAGE`] bytes: a larger request is refused before it is
//! sent, with an error saying so. The spawner exits when the socket closes (the daemon is gone
//! or dropped its [`Spawner`]).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunker_api::{ApiError, ErrorCode};
use bunker_cgroup::{Controller, GroupDirParts, SandboxGroup, Version};
use bunker_policy::Policy;
use bunker_sys::process::{self, Forked};
use bunker_sys::{event, fd, reactor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::error::SandboxError;
use crate::host::HostContext;
use crate::idmap::IdMode;
use crate::limits::SandboxCgroup;
use crate::result::Enforced;
use crate::spawn::{self, Prepared, Sandbox};
use crate::stdin::ProgramStdin;
use crate::supervise::Supervised;
use crate::RunRequest;

/// Largest message either side sends (a request carries the whole effective policy). Below
/// the kernel's default socket buffer (`net.core.wmem_default`, 208 KiB), which bounds one
/// datagram.
pub const MAX_SPAWN_MESSAGE: usize = 128 * 1024;

/// What to start: everything [`spawn::start`] needs, as data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpawnRequest {
    /// The effective policy (already loaded and authorized by the daemon). Decoded only from
    /// JSON text, the last few kept by that text (`recent_policies`).
    #[serde(deserialize_with = "recent_policies::decode")]
    pub policy: Policy,
    /// The program and its arguments.
    #[serde(with = "bytes::list")]
    pub argv: Vec<OsString>,
    /// Working directory inside the sandbox (else the caller's, when visible; else `/tmp`).
    #[serde(with = "bytes::path")]
    pub cwd: Option<PathBuf>,
    /// The caller's environment, which `allow.env` passes values from (`HostContext::env`).
    #[serde(with = "bytes::pairs")]
    pub env: Vec<(OsString, OsString)>,
    /// The caller's working directory (`HostContext::cwd`).
    #[serde(with = "bytes::path")]
    pub caller_cwd: Option<PathBuf>,
    /// The host ids the sandbox runs as (`HostContext::id_mode`).
    pub id_mode: IdMode,
}

/// A daemon sends the same few policies over and over (its named ones), and decoding one
/// parses every pattern again: the spawner keeps the last few it decoded, keyed by their exact
/// JSON text, and a repeat is a clone of the same result.
mod recent_policies {
    use std::collections::VecDeque;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use bunker_policy::Policy;
    use serde::{Deserialize, Deserializer};
    use serde_json::value::RawValue;

    /// How many decoded policies are kept (the oldest goes first).
    const KEPT: usize = 4;

    static RECENT: Mutex<VecDeque<(Box<str>, Policy)>> = Mutex::new(VecDeque::new());

    pub(super) fn recent() -> MutexGuard<'static, VecDeque<(Box<str>, Policy)>> {
        RECENT.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        if let Some((_, policy)) = recent().iter().find(|(kept, _)| **kept == *text) {
            return Ok(policy.clone());
        }
        let policy: Policy = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
        let mut recent = recent();
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back((text.into(), policy.clone()));
        Ok(policy)
    }
}

/// Arguments, environment and paths are bytes, not text: they cross as [`bunker_api::Data`]
/// (UTF-8 as it is, anything else base64), exactly.
mod bytes {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    use bunker_api::Data;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    fn data(s: &OsStr) -> Data {
        Data::from_bytes(s.as_bytes().to_vec())
    }

    fn os<E: Error>(d: Data) -> Result<OsString, E> {
        d.to_bytes()
            .map(OsString::from_vec)
            .ok_or_else(|| E::custom("invalid base64"))
    }

    pub mod list {
        use super::*;
        pub fn serialize<S: Serializer>(v: &[OsString], s: S) -> Result<S::Ok, S::Error> {
            v.iter().map(|a| data(a)).collect::<Vec<_>>().serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
            Vec::<Data>::deserialize(d)?.into_iter().map(os).collect()
        }
    }

    pub mod pairs {
        use super::*;
        pub fn serialize<S: Serializer>(
            v: &[(OsString, OsString)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            v.iter()
                .map(|(k, v)| (data(k), data(v)))
                .collect::<Vec<_>>()
                .serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(OsString, OsString)>, D::Error> {
            Vec::<(Data, Data)>::deserialize(d)?
                .into_iter()
                .map(|(k, v)| Ok((os(k)?, os(v)?)))
                .collect()
        }
    }

    pub mod path {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            v.as_ref().map(|p| data(p.as_os_str())).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            Option::<Data>::deserialize(d)?
                .map(|p| os(p).map(PathBuf::from))
                .transpose()
        }
    }
}

/// What a descriptor sent with a [`SandboxTransfer`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdSlot {
    Pidfd,
    Control,
    Stdout,
    Stderr,
    Lifeline,
    ProxyHttp,
    ProxySocks,
}

/// One cgroup directory of a transferred sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupDirTransfer {
    pub v2: bool,
    pub own_dir: PathBuf,
    pub path: PathBuf,
    /// Controller names as in cgroup v1 (`memory`, `pids`, `cpu`, `cpuacct`).
    pub controllers: Vec<String>,
}

/// A started [`Sandbox`] as data; its descriptors travel beside it, in the order of `fds`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SandboxTransfer {
    pub init_pid: i32,
    /// Time since init was cloned, when the handle was packed (wall time counts from the clone).
    pub since_clone_ns: u64,
    pub enforced: Enforced,
    /// The cgroup's name and directories; `None` without one.
    pub cgroup: Option<(String, Vec<CgroupDirTransfer>)>,
    /// What each descriptor sent along is, in order.
    pub fds: Vec<FdSlot>,
}

const CONTROLLERS: [Controller; 4] = [
    Controller::Memory,
    Controller::Pids,
    Controller::Cpu,
    Controller::CpuAcct,
];

fn transfer_error(detail: String) -> SandboxError {
    SandboxError::Init {
        step: "receive the started sandbox".into(),
        detail,
    }
}

impl Sandbox {
    /// The sandbox as data plus its descriptors (named by `SandboxTransfer::fds`), to send to
    /// another process. What cannot travel is dropped: the stdin relay, the console, the
    /// observer (the receiving side sets its own).
    pub fn into_transfer(self) -> (SandboxTransfer, Vec<OwnedFd>) {
        let Sandbox {
            supervised,
            lifeline,
            proxy_listeners,
        } = self;
        let Supervised {
            init_pid,
            pidfd,
            control,
            stdout,
            stderr,
            cgroup,
            started,
            enforced,
            ..
        } = supervised;
        let mut slots = vec![
            FdSlot::Pidfd,
            FdSlot::Control,
            FdSlot::Stdout,
            FdSlot::Stderr,
            FdSlot::Lifeline,
        ];
        let mut fds = vec![pidfd, control, stdout, stderr, lifeline];
        if let Some((http, socks)) = proxy_listeners {
            slots.extend([FdSlot::ProxyHttp, FdSlot::ProxySocks]);
            fds.extend([http, socks]);
        }
        let cgroup = cgroup.into_group().map(|group| {
            let (name, dirs) = group.into_parts();
            let dirs = dirs
                .into_iter()
                .map(|d| CgroupDirTransfer {
                    v2: d.version == Version::V2,
                    own_dir: d.own_dir,
                    path: d.path,
                    controllers: d
                        .controllers
                        .iter()
                        .map(|c| c.v1_name().to_string())
                        .collect(),
                })
                .collect();
            (name, dirs)
        });
        let transfer = SandboxTransfer {
            init_pid,
            since_clone_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            enforced,
            cgroup,
            fds: slots,
        };
        (transfer, fds)
    }

    /// The sandbox [`into_transfer`](Self::into_transfer) packed, in the receiving process.
    /// Output is captured (not streamed), with no console, observer or stdin relay: set
    /// `supervised.observer` to hear its events.
    pub fn from_transfer(t: SandboxTransfer, fds: Vec<OwnedFd>) -> Result<Sandbox, SandboxError> {
        if t.fds.len() != fds.len() {
            return Err(transfer_error(format!(
                "{} descriptor(s) arrived for {} named slot(s)",
                fds.len(),
                t.fds.len()
            )));
        }
        let mut named: Vec<(FdSlot, Option<OwnedFd>)> = t
            .fds
            .iter()
            .copied()
            .zip(fds.into_iter().map(Some))
            .collect();
        let mut take = |slot: FdSlot| -> Option<OwnedFd> {
            named
                .iter_mut()
                .find(|(s, fd)| *s == slot && fd.is_some())
                .and_then(|(_, fd)| fd.take())
        };
        let mut required = |slot: FdSlot| {
            take(slot).ok_or_else(|| transfer_error(format!("no descriptor for {slot:?}")))
        };
        let pidfd = required(FdSlot::Pidfd)?;
        let control = required(FdSlot::Control)?;
        let stdout = required(FdSlot::Stdout)?;
        let stderr = required(FdSlot::Stderr)?;
        let lifeline = required(FdSlot::Lifeline)?;
        let proxy_listeners = match (take(FdSlot::ProxyHttp), take(FdSlot::ProxySocks)) {
            (Some(http), Some(socks)) => Some((http, socks)),
            (None, None) => None,
            _ => {
                return Err(transfer_error(
                    "one proxy listener without the other".into(),
                ))
            }
        };
        let group = match t.cgroup {
            None => None,
            Some((name, dirs)) => {
                let dirs = dirs
                    .into_iter()
                    .map(|d| {
                        let controllers = d
                            .controllers
                            .iter()
                            .map(|name| {
                                CONTROLLERS
                                    .into_iter()
                                    .find(|c| c.v1_name() == name)
                                    .ok_or_else(|| {
                                        transfer_error(format!(
                                            "unknown cgroup controller {name:?}"
                                        ))
                                    })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(GroupDirParts {
                            version: if d.v2 { Version::V2 } else { Version::V1 },
                            own_dir: d.own_dir,
                            path: d.path,
                            controllers,
                        })
                    })
                    .collect::<Result<Vec<_>, SandboxError>>()?;
                Some(SandboxGroup::from_parts(name, dirs))
            }
        };
        let since_clone = Duration::from_nanos(t.since_clone_ns);
        let started = Instant::now()
            .checked_sub(since_clone)
            .unwrap_or_else(Instant::now);
        Ok(Sandbox {
            supervised: Supervised {
                init_pid: t.init_pid,
                pidfd,
                control,
                stdout,
                stderr,
                cgroup: SandboxCgroup::from_group(group),
                started,
                enforced: t.enforced,
                output: crate::supervise::OutputMode::Capture,
                console: None,
                observer: None,
                stdin: None,
                termination: None,
            },
            lifeline,
            proxy_listeners,
        })
    }
}

/// Daemon → spawner.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct WireRequest {
    request: SpawnRequest,
    /// The datagram carries one descriptor: the program's stdin.
    stdin: bool,
    /// Build the sandbox without its program (`spawn::prepare`; `argv` is empty).
    #[serde(default)]
    prepare: bool,
}

/// Spawner → daemon.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireReply {
    Started {
        sandbox: SandboxTransfer,
    },
    Failed {
        error: ApiError,
        /// The datagram carries the pidfd of an init that died after the clone: its parent
        /// (the daemon) reaps it.
        unreaped: bool,
    },
}

fn internal(message: String) -> ApiError {
    ApiError {
        code: ErrorCode::InternalError,
        message,
        step: None,
        policy: None,
    }
}

/// The daemon's side of the fork server.
#[derive(Debug)]
pub struct Spawner {
    /// Requests are serialized on the socket: one in flight at a time, its answer read before
    /// the lock is let go. `None` once the spawner is stopped, or its socket was dropped in the
    /// middle of a round trip (the runtime shut down under it).
    socket: Arc<tokio::sync::Mutex<Option<Socket>>>,
    pid: i32,
    pidfd: OwnedFd,
}

/// The daemon's end of the seqpacket pair: on the runtime's reactor from the first request on
/// (the spawner is started before the runtime is).
#[derive(Debug)]
enum Socket {
    Unregistered(OwnedFd),
    Registered(AsyncFd<OwnedFd>),
}

impl Socket {
    fn registered(self) -> Result<AsyncFd<OwnedFd>, ApiError> {
        match self {
            Socket::Registered(fd) => Ok(fd),
            Socket::Unregistered(fd) => {
                event::set_nonblocking(fd.as_fd()).map_err(|e| {
                    internal(format!("make the spawner's socket non-blocking: {e}"))
                })?;
                reactor::register(fd, Interest::READABLE | Interest::WRITABLE)
                    .map_err(|e| internal(format!("watch the spawner's socket: {e}")))
            }
        }
    }
}

impl Spawner {
    /// Forks the spawner. Must be called while the process is single-threaded (before any
    /// runtime or thread starts); refused otherwise.
    pub fn start() -> Result<Spawner, SandboxError> {
        let setup = |step: &str| {
            let step = step.to_string();
            move |source| SandboxError::Setup { step, source }
        };
        let (ours, theirs) = fd::seqpacket_pair().map_err(setup("create the spawner's socket"))?;
        match process::clone_fork(0).map_err(setup("fork the spawner"))? {
            Forked::Child => {
                drop(ours);
                serve(&theirs)
            }
            Forked::Parent { pid, pidfd } => {
                drop(theirs);
                Ok(Spawner {
                    socket: Arc::new(tokio::sync::Mutex::new(Some(Socket::Unregistered(ours)))),
                    pid,
                    pidfd,
                })
            }
        }
    }

    /// The spawner's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Starts a sandbox; done when its init is Ready or the start failed. Called on a tokio
    /// runtime (IO driver enabled) of the process that started the spawner, which becomes
    /// init's parent: it must reap init (the supervise drivers do). `stdin` becomes the
    /// program's fd 0 (`/dev/null` without).
    ///
    /// The round trip runs in a task of its own, which the caller awaits: a caller dropped
    /// mid-request cuts nothing off (the answer is still read, so the next request gets its
    /// own), and the sandbox it would have got is killed and reaped.
    pub async fn spawn(
        &self,
        request: SpawnRequest,
        stdin: Option<OwnedFd>,
    ) -> Result<Sandbox, ApiError> {
        self.ask(
            request,
            stdin,
            false,
            |(t, fds)| Sandbox::from_transfer(t, fds),
            discard,
        )
        .await
    }

    /// Builds a sandbox under `policy` without its program (`spawn::prepare`; done when its
    /// init waits for the program). The caller, init's parent, hands it the program with
    /// [`Prepared::launch`]; dropping the handle unlaunched kills and reaps init, which is also
    /// what becomes of one whose caller is gone.
    pub async fn prepare(&self, policy: Policy, id_mode: IdMode) -> Result<Prepared, ApiError> {
        let request = SpawnRequest {
            policy,
            argv: Vec::new(),
            cwd: None,
            env: Vec::new(),
            caller_cwd: None,
            id_mode,
        };
        self.ask(
            request,
            None,
            true,
            |(t, fds)| Prepared::from_transfer(t, fds),
            drop,
        )
        .await
    }

    /// One request and the handle its answer makes (`into`). The round trip runs in a task of
    /// its own, which the caller awaits: a caller dropped mid-request cuts nothing off (the
    /// answer is still read, so the next request gets its own), and the handle it would have
    /// got goes to `orphan` (which kills and reaps its init).
    async fn ask<T: Send + 'static>(
        &self,
        request: SpawnRequest,
        stdin: Option<OwnedFd>,
        prepare: bool,
        into: fn((SandboxTransfer, Vec<OwnedFd>)) -> Result<T, SandboxError>,
        orphan: fn(T),
    ) -> Result<T, ApiError> {
        let wire = WireRequest {
            request,
            stdin: stdin.is_some(),
            prepare,
        };
        let data = serde_json::to_vec(&wire)
            .map_err(|e| internal(format!("encode the spawn request: {e}")))?;
        if data.len() > MAX_SPAWN_MESSAGE {
            return Err(ApiError {
                code: ErrorCode::RequestInvalid,
                message: format!(
                    "the spawn request is {} bytes, more than the spawner takes ({MAX_SPAWN_MESSAGE}): \
                     the policy, argv or environment is too large",
                    data.len()
                ),
                step: None,
                policy: None,
            });
        }
        let socket = self.socket.clone();
        let (answer_tx, answer) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let started = round_trip(&socket, &data, stdin)
                .await
                .and_then(decode)
                .and_then(|answer| into(answer).map_err(|e| e.to_api_error()));
            if let Err(Ok(handle)) = answer_tx.send(started) {
                // Its caller is gone: nobody will supervise it.
                tokio::task::spawn_blocking(move || orphan(handle));
            }
        });
        answer
            .await
            .map_err(|_| internal("the spawner's round trip ended without an answer".into()))?
    }
}

/// One request and its answer, the socket locked over both. The socket is out of the lock
/// while the round trip runs: if this future is dropped between the two (only when the runtime
/// shuts down: [`Spawner::spawn`] never drops it), the socket is closed with it, so no later
/// request can read this one's answer.
async fn round_trip(
    lock: &tokio::sync::Mutex<Option<Socket>>,
    data: &[u8],
    stdin: Option<OwnedFd>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ApiError> {
    let mut guard = lock.lock().await;
    let socket = guard
        .take()
        .ok_or_else(|| {
            internal("the spawner is gone (stopped, or its socket failed mid-request)".into())
        })?
        .registered()?;
    let attached: Vec<RawFd> = stdin.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = loop {
        let mut ready = match socket.writable().await {
            Ok(ready) => ready,
            Err(e) => break Err(internal(format!("wait to send to the spawner: {e}"))),
        };
        match fd::send_with_fds(socket.as_raw_fd(), data, &attached) {
            Err(e) if e.errno == libc::EAGAIN => ready.clear_ready(),
            other => break other.map_err(|e| internal(format!("send to the spawner: {e}"))),
        }
    };
    drop(stdin);
    let answer = match sent {
        // Nothing went out: the socket is as it was.
        Err(e) => {
            *guard = Some(Socket::Registered(socket));
            return Err(e);
        }
        Ok(()) => loop {
            let mut ready = match socket.readable().await {
                Ok(ready) => ready,
                Err(e) => break Err(internal(format!("wait for the spawner's answer: {e}"))),
            };
            match fd::recv_with_fds(socket.as_raw_fd(), MAX_SPAWN_MESSAGE) {
                Err(e) if e.errno == libc::EAGAIN => ready.clear_ready(),
                other => {
                    break other.map_err(|e| internal(format!("read the spawner's answer: {e}")))
                }
            }
        },
    };
    // An answer not read (a failed recvmsg) could still come and be taken for the next
    // request's: the socket goes instead, and with it the spawner.
    if answer.is_ok() {
        *guard = Some(Socket::Registered(socket));
    }
    answer
}

/// The spawner's answer as the started sandbox's data and descriptors, or its error (an init that died after the
/// clone reaped first: its pidfd is readable, so the wait is short).
fn decode(
    (reply, fds): (Vec<u8>, Vec<OwnedFd>),
) -> Result<(SandboxTransfer, Vec<OwnedFd>), ApiError> {
    if reply.is_empty() {
        return Err(internal(
            "the spawner is gone (its socket closed without an answer)".into(),
        ));
    }
    let reply: WireReply = serde_json::from_slice(&reply)
        .map_err(|e| internal(format!("read the spawner's answer: {e}")))?;
    match reply {
        WireReply::Started { sandbox } => Ok((sandbox, fds)),
        WireReply::Failed { error, unreaped } => {
            if unreaped {
                for pidfd in &fds {
                    let _ = event::wait_pidfd(pidfd.as_fd(), true);
                }
            }
            Err(error)
        }
    }
}

/// Kills and reaps a sandbox nobody will supervise, then lets go of the rest (its cgroup is
/// removed once init is reaped). Blocking.
fn discard(sandbox: Sandbox) {
    let pidfd = sandbox.supervised.pidfd.as_fd();
    let _ = event::pidfd_send_signal(pidfd, libc::SIGKILL);
    let _ = event::wait_pidfd(pidfd, true);
    drop(sandbox);
}

impl Drop for Spawner {
    /// Closing the socket ends the spawner; it is reaped here. A round trip still running (its
    /// caller gone) holds the socket: the spawner is killed instead, which ends that too.
    fn drop(&mut self) {
        match self.socket.try_lock() {
            Ok(mut socket) => drop(socket.take()),
            Err(_) => {
                let _ = event::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            }
        }
        let _ = event::wait_pidfd(self.pidfd.as_fd(), true);
    }
}

/// The spawner's loop: one request at a time until the socket closes. Never returns.
fn serve(socket: &OwnedFd) -> ! {
    // The daemon dying ends the spawner (its sandboxes die of their own parent-death signal).
    if process::set_parent_death_signal(libc::SIGKILL).is_err() {
        process::exit_now(1);
    }
    // The sandboxes' cgroups are the daemon's: named after it, they stay live while it does.
    bunker_cgroup::name_groups_after(std::os::unix::process::parent_id());
    loop {
        let (data, mut fds) = match fd::recv_with_fds(socket.as_raw_fd(), MAX_SPAWN_MESSAGE) {
            Ok((data, _)) if data.is_empty() => process::exit_now(0),
            Ok(received) => received,
            Err(e) if e.errno == libc::EINTR => continue,
            Err(_) => process::exit_now(1),
        };
        let (reply, reply_fds) = match serde_json::from_slice::<WireRequest>(&data) {
            Err(e) => failed(
                ApiError {
                    code: ErrorCode::ProtocolError,
                    message: format!("the spawner could not read a request: {e}"),
                    step: None,
                    policy: None,
                },
                None,
            ),
            Ok(wire) if usize::from(wire.stdin) != fds.len() => failed(
                ApiError {
                    code: ErrorCode::ProtocolError,
                    message: format!(
                        "a spawn request came with {} descriptor(s), expected {}",
                        fds.len(),
                        usize::from(wire.stdin)
                    ),
                    step: None,
                    policy: None,
                },
                None,
            ),
            Ok(wire) => start_one(wire.request, fds.pop(), wire.prepare),
        };
        let (encoded, reply_fds) = bounded(reply, reply_fds);
        let raw: Vec<RawFd> = reply_fds.iter().map(AsRawFd::as_raw_fd).collect();
        if fd::send_with_fds(socket.as_raw_fd(), &encoded, &raw).is_err() {
            // The daemon is gone (or cannot be told): a sandbox just started must not run
            // unsupervised until the daemon's death kills it.
            if let Some(pidfd) = reply_fds.first() {
                let _ = event::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            }
            process::exit_now(1);
        }
    }
}

/// The reply, encoded; one too large for a message becomes an error, its sandbox killed and
/// handed back unreaped.
fn bounded(reply: WireReply, fds: Vec<OwnedFd>) -> (Vec<u8>, Vec<OwnedFd>) {
    let encoded = serde_json::to_vec(&reply).map_err(|e| e.to_string());
    let too_large = match &encoded {
        Ok(bytes) if bytes.len() <= MAX_SPAWN_MESSAGE => None,
        Ok(bytes) => Some(format!(
            "the started sandbox's description is {} bytes, more than one message takes \
             ({MAX_SPAWN_MESSAGE})",
            bytes.len()
        )),
        Err(e) => Some(format!("encode the spawner's answer: {e}")),
    };
    let Some(message) = too_large else {
        return (encoded.unwrap_or_default(), fds);
    };
    let unreaped = match reply {
        WireReply::Started { sandbox } => {
            Sandbox::from_transfer(sandbox, fds).ok().map(|sandbox| {
                let pidfd = sandbox.supervised.pidfd;
                let _ = event::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                let _ = event::poll(&[pidfd.as_fd()], None);
                // The rest (cgroup included) goes now that init is dead.
                pidfd
            })
        }
        WireReply::Failed { .. } => fds.into_iter().next(),
    };
    let (reply, fds) = failed(internal(message), unreaped);
    (serde_json::to_vec(&reply).unwrap_or_default(), fds)
}

fn failed(error: ApiError, unreaped: Option<OwnedFd>) -> (WireReply, Vec<OwnedFd>) {
    (
        WireReply::Failed {
            error,
            unreaped: unreaped.is_some(),
        },
        unreaped.into_iter().collect(),
    )
}

fn start_one(
    request: SpawnRequest,
    stdin: Option<OwnedFd>,
    prepare: bool,
) -> (WireReply, Vec<OwnedFd>) {
    let SpawnRequest {
        policy,
        argv,
        cwd,
        env,
        caller_cwd,
        id_mode,
    } = request;
    let run = RunRequest {
        policy,
        argv,
        cwd,
        stdin: stdin.map_or(ProgramStdin::Null, ProgramStdin::Fd),
        stream_output: false,
        console: None,
        observer: None,
    };
    let host = HostContext {
        env,
        cwd: caller_cwd,
        id_mode,
        // The daemon holds the lease behind `id_mode`.
        id_lease: None,
        clone_parent: true,
    };
    let started = if prepare {
        spawn::prepare(&run.policy, &host).map(|prepared| prepared.into_transfer())
    } else {
        spawn::start_or_hand_back(&run, &host).map(|sandbox| Some(sandbox.into_transfer()))
    };
    match started {
        Ok(Some((sandbox, fds))) => (WireReply::Started { sandbox }, fds),
        Ok(None) => failed(internal("the prepared sandbox is gone".into()), None),
        Err(failure) => failed(failure.error.to_api_error(), failure.unreaped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn a_request_crosses_exactly_even_with_bytes_that_are_not_utf8() {
        let odd = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let request = SpawnRequest {
            policy: Policy::default(),
            argv: vec!["/bin/echo".into(), odd.clone()],
            cwd: Some(PathBuf::from(odd.clone())),
            env: vec![("HOME".into(), "/root".into()), (odd.clone(), odd.clone())],
            caller_cwd: None,
            id_mode: IdMode::Root {
                uid: 1879048192,
                gid: 1879048192,
            },
        };
        let wire = serde_json::to_string(&request).unwrap();
        assert!(wire.contains(r#"{"utf8":"/bin/echo"}"#), "{wire}");
        let back: SpawnRequest = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn the_last_policies_decoded_are_kept_by_their_exact_text() {
        let decode = |text: &str| -> Policy {
            let mut de = serde_json::Deserializer::from_str(text);
            recent_policies::decode(&mut de).unwrap()
        };
        let mut policy = Policy::default();
        policy.limits.timeout = Some(std::time::Duration::from_millis(1));
        let text = serde_json::to_string(&policy).unwrap();
        // Miss: decoded, and kept.
        assert_eq!(decode(&text), policy);
        assert!(recent_policies::recent().iter().any(|(t, _)| **t == *text));
        // Hit: what is kept for the text is what it decodes to (a marked entry shows it is
        // not parsed again).
        let mut marked = policy.clone();
        marked.limits.timeout = Some(std::time::Duration::from_millis(2));
        for (t, kept) in recent_policies::recent().iter_mut() {
            if **t == *text {
                *kept = marked.clone();
            }
        }
        assert_eq!(decode(&text), marked);
        // Other text is another key, even for an equal policy; the oldest make room.
        let spaced = format!(" {text}");
        for ms in 3..10 {
            policy.limits.timeout = Some(std::time::Duration::from_millis(ms));
            decode(&serde_json::to_string(&policy).unwrap());
        }
        assert!(!recent_policies::recent().iter().any(|(t, _)| **t == *text));
        assert!(recent_policies::recent().len() <= 4);
        policy.limits.timeout = Some(std::time::Duration::from_millis(1));
        assert_eq!(decode(&text), policy);
        assert_eq!(decode(&spaced), policy);
    }

    #[test]
    fn a_transfer_without_its_named_descriptors_is_refused() {
        let transfer = |slots: Vec<FdSlot>| SandboxTransfer {
            init_pid: 1,
            since_clone_ns: 0,
            enforced: Enforced::default(),
            cgroup: None,
            fds: slots,
        };
        let fds =
            |n: usize| -> Vec<OwnedFd> { (0..n).map(|_| fd::open_dev_null().unwrap()).collect() };
        let four = vec![
            FdSlot::Control,
            FdSlot::Stdout,
            FdSlot::Stderr,
            FdSlot::Lifeline,
        ];
        let err = Sandbox::from_transfer(transfer(four.clone()), fds(4)).unwrap_err();
        assert!(err.to_string().contains("no descriptor for Pidfd"), "{err}");
        let err = Sandbox::from_transfer(transfer(four), fds(3)).unwrap_err();
        assert!(
            err.to_string().contains("3 descriptor(s) arrived for 4"),
            "{err}"
        );
        let mut lone_proxy = vec![
            FdSlot::Pidfd,
            FdSlot::Control,
            FdSlot::Stdout,
            FdSlot::Stderr,
            FdSlot::Lifeline,
        ];
        lone_proxy.push(FdSlot::ProxyHttp);
        let err = Sandbox::from_transfer(transfer(lone_proxy), fds(6)).unwrap_err();
        assert!(err.to_string().contains("one proxy listener"), "{err}");
    }
}
