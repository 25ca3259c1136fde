//! Every message between the supervisor and init, on their SOCK_SEQPACKET control socket: one
//! message per datagram, encoded one way (JSON, [`send`] and [`recv`]), its descriptors attached
//! (SCM_RIGHTS) in the order of the message's named slots, which [`Slots::fds`] counts and
//! [`recv`] checks.
//!
//! | direction | message | descriptors |
//! |---|---|---|
//! | supervisor → init | [`SupervisorMessage::Release`] | the cgroup's `tasks` files to join |
//! | supervisor → init | [`SupervisorMessage::Grants`] (as root) | one detached tree per [`SentGrant::Tree`], in order |
//! | supervisor → init | [`SupervisorMessage::Program`] (a prepared sandbox only) | with `stdin`: the program's stdin; then `extra_fds` descriptors, the program's fds 3, 4, ... |
//! | supervisor → init | [`SupervisorMessage::Teardown`] (with [`teardown_signal`]) | — |
//! | init → supervisor | [`InitMessage::Waiting`] (a prepared sandbox only) | — |
//! | init → supervisor | [`InitMessage::Ready`] | with `proxy_listeners`: the HTTP, then the SOCKS5 listener |
//! | init → supervisor | every other [`InitMessage`] | — |

use std::os::fd::{OwnedFd, RawFd};

use bunker_api::{Data, ErrorCode};
use bunker_sys::{fd, SysError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SandboxError;
use crate::grants::SentGrant;
use crate::result::LayerStatus;

/// Largest datagram either side sends.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What init tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitMessage {
    /// A setup step failed; nothing of the program ran.
    SetupFailed {
        step: String,
        errno: i32,
        detail: String,
        /// `setup_failed`, or `unenforceable` for a layer this host cannot enforce.
        code: ErrorCode,
    },
    /// A sandbox prepared without its program (`spawn::prepare`) is built up to its
    /// restrictions, which are compiled but not applied, and init waits for
    /// [`SupervisorMessage::Program`].
    Waiting,
    /// Setup is complete and init has restricted itself; the program is about to be started.
    Ready {
        landlock: LayerStatus,
        landlock_abi: u32,
        seccomp: LayerStatus,
        rlimits: LayerStatus,
        /// Partial when a deny glob could not be checked everywhere.
        filesystem: LayerStatus,
        /// Notes for `enforced.notes` (skipped paths, partial layers).
        notes: Vec<String>,
        /// Slots: the HTTP and the SOCKS5 proxy listeners, bound inside the sandbox's network
        /// namespace (when `allow.net` is non-empty).
        #[serde(default)]
        proxy_listeners: bool,
    },
    /// The program could not be executed (not found, not allowed).
    ExecFailed {
        program: String,
        errno: i32,
        detail: String,
    },
    /// The program was executed (its exec succeeded).
    Started,
    /// The program ended (init exits right after sending this).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Init has killed every process of the sandbox at the supervisor's teardown request and
    /// reaps them now (then exits).
    TearingDown,
}

/// What the supervisor tells init.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SupervisorMessage {
    /// The release: init's id maps are written and its cgroup made; init may go on, and joins
    /// the cgroup through the slots: `cgroup_tasks` `tasks` files.
    Release { cgroup_tasks: usize },
    /// As root, right after the release: the grants the supervisor opened with root's rights;
    /// slots: one detached tree per [`SentGrant::Tree`], in order.
    Grants { grants: Vec<SentGrant> },
    /// To a [`InitMessage::Waiting`] init: the program to run. Init enters `cwd`, makes the
    /// slot's descriptor (when `stdin`; else `/dev/null`) its fd 0, restricts itself and starts
    /// the program, exactly as a cold start does from there. `env` is the program's whole
    /// environment (already built from the policy) and `search_path` the PATH `argv[0]` is
    /// looked up on.
    Program {
        argv: Vec<Data>,
        env: Vec<Data>,
        search_path: String,
        /// The requested directory (an error if it cannot be entered), else `caller_cwd` when
        /// visible inside, else `/tmp`.
        cwd: Option<Data>,
        caller_cwd: Option<Data>,
        stdin: bool,
        /// Slots after stdin's: the program's fds 3, 4, ... in order.
        #[serde(default)]
        extra_fds: usize,
    },
    /// End the sandbox (init kills and reaps everything, then exits): the only message after
    /// the grants, sent before [`teardown_signal`] wakes init.
    Teardown,
}

/// How many descriptors a message's named slots hold.
pub trait Slots {
    fn fds(&self) -> usize;
}

impl Slots for InitMessage {
    fn fds(&self) -> usize {
        match self {
            InitMessage::Ready {
                proxy_listeners: true,
                ..
            } => 2,
            _ => 0,
        }
    }
}

impl Slots for SupervisorMessage {
    fn fds(&self) -> usize {
        match self {
            SupervisorMessage::Release { cgroup_tasks } => *cgroup_tasks,
            SupervisorMessage::Grants { grants } => grants
                .iter()
                .filter(|g| matches!(g, SentGrant::Tree { .. }))
                .count(),
            SupervisorMessage::Program {
                stdin, extra_fds, ..
            } => usize::from(*stdin) + extra_fds,
            SupervisorMessage::Teardown => 0,
        }
    }
}

/// [`SupervisorMessage::Teardown`] as it goes on the wire, for a sender that only ever sends
/// that (the supervise loop).
pub const TEARDOWN_REQUEST: &[u8] = br#"{"kind":"teardown"}"#;

/// The signal by which the supervisor wakes init for its teardown request (a kill for a limit,
/// the timeout or bunker's own termination): init kills and reaps everything itself, so the
/// CPU time of what it kills reaches its rusage. (SIGKILL to init would leave that to the
/// kernel, whose pid-namespace teardown reaps without accounting.) The first real-time signal:
/// no program convention gives it a meaning, and init never forwards it.
///
/// The signal only wakes init: the request itself is [`TEARDOWN_REQUEST`] on the control
/// socket, which the supervisor writes first. The program can signal init too, and no siginfo
/// field tells the two apart reliably: with the signal queue full, the kernel delivers a `kill`
/// without its siginfo, and init reads `SI_USER` from pid 0 — what a sender outside the pid
/// namespace looks like.
pub fn teardown_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Sends `msg` with `fds` in its slots (refused when their number is not the slots').
pub fn send<M: Serialize + Slots>(control: RawFd, msg: &M, fds: &[RawFd]) -> Result<(), SysError> {
    if fds.len() != msg.fds() {
        return Err(SysError::from_errno(
            format!(
                "send a control message with {} fd(s) for {} slot(s)",
                fds.len(),
                msg.fds()
            ),
            libc::EINVAL,
        ));
    }
    let data = serde_json::to_vec(msg).map_err(|e| {
        SysError::from_errno(format!("encode a control message: {e}"), libc::EINVAL)
    })?;
    fd::send_with_fds(control, &data, fds)
}

/// Receives one message and the descriptors of its slots; `None` when the peer closed the
/// socket. `step` names the read in errors.
pub fn recv<M: DeserializeOwned + Slots>(
    control: RawFd,
    step: &str,
) -> Result<Option<(M, Vec<OwnedFd>)>, SandboxError> {
    let (data, fds) =
        fd::recv_with_fds(control, MAX_MESSAGE).map_err(|source| SandboxError::Setup {
            step: step.to_string(),
            source,
        })?;
    if data.is_empty() && fds.is_empty() {
        return Ok(None);
    }
    let bad = |detail: String| SandboxError::Init {
        step: step.to_string(),
        detail,
    };
    let msg: M = serde_json::from_slice(&data).map_err(|e| {
        bad(format!(
            "unreadable control message ({e}): {:?}",
            String::from_utf8_lossy(&data)
        ))
    })?;
    if msg.fds() != fds.len() {
        return Err(bad(format!(
            "the message carried {} fd(s) for {} slot(s)",
            fds.len(),
            msg.fds()
        )));
    }
    Ok(Some((msg, fds)))
}

impl InitMessage {
    /// The [`InitMessage::SetupFailed`] report of an error; [`InitMessage::setup_error`] turns
    /// it back into the same kind of error on the other side.
    pub fn setup_failed(e: &SandboxError) -> InitMessage {
        let (step, errno, detail) = match e {
            SandboxError::Setup { step, source } => {
                (step.clone(), source.errno, source.call.clone())
            }
            SandboxError::Unsupported { layer, reason } => (layer.clone(), 0, reason.clone()),
            SandboxError::Init { step, detail } => (step.clone(), 0, detail.clone()),
            other => (
                other.step().unwrap_or("setup").to_string(),
                0,
                other.to_string(),
            ),
        };
        InitMessage::SetupFailed {
            step,
            errno,
            detail,
            code: e.code(),
        }
    }

    /// The error an [`InitMessage::SetupFailed`] reports (`None` for any other message).
    pub fn setup_error(self) -> Option<SandboxError> {
        let InitMessage::SetupFailed {
            step,
            errno,
            detail,
            code,
        } = self
        else {
            return None;
        };
        Some(if code == ErrorCode::Unenforceable {
            SandboxError::Unsupported {
                layer: step,
                reason: detail,
            }
        } else if errno != 0 {
            SandboxError::Setup {
                step,
                source: SysError::from_errno(detail, errno),
            }
        } else {
            SandboxError::Init { step, detail }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_failure_inside_init_keeps_its_code_and_step_across_the_socket() {
        let errors = [
            SandboxError::Unsupported {
                layer: "seccomp".into(),
                reason: "no filter".into(),
            },
            SandboxError::Setup {
                step: "bind mount /x → /x".into(),
                source: SysError::from_errno("mount", libc::ENOENT),
            },
            SandboxError::Init {
                step: "landlock".into(),
                detail: "ruleset".into(),
            },
        ];
        let (sup, init) = fd::seqpacket_pair().unwrap();
        for sent in errors {
            send(init_fd(&init), &InitMessage::setup_failed(&sent), &[]).unwrap();
            let (msg, _) = recv::<InitMessage>(init_fd(&sup), "test").unwrap().unwrap();
            let back = msg.setup_error().unwrap();
            assert_eq!(back.code(), sent.code(), "{sent}");
            assert_eq!(back.step(), sent.step(), "{sent}");
            assert_eq!(back.to_string(), sent.to_string());
        }
    }

    fn init_fd(fd: &OwnedFd) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(fd)
    }

    #[test]
    fn the_teardown_request_is_the_teardown_message() {
        assert_eq!(
            serde_json::to_vec(&SupervisorMessage::Teardown).unwrap(),
            TEARDOWN_REQUEST
        );
    }

    #[test]
    fn descriptors_must_fill_the_slots_exactly() {
        let (a, b) = fd::seqpacket_pair().unwrap();
        let (r, _w) = fd::pipe().unwrap();
        let release = SupervisorMessage::Release { cgroup_tasks: 2 };
        // The sender refuses a wrong count…
        assert!(send(init_fd(&a), &release, &[init_fd(&r)]).is_err());
        // …and the receiver refuses one that arrives anyway.
        fd::send_with_fds(
            init_fd(&a),
            &serde_json::to_vec(&release).unwrap(),
            &[init_fd(&r)],
        )
        .unwrap();
        let err = recv::<SupervisorMessage>(init_fd(&b), "join the sandbox's cgroup").unwrap_err();
        assert!(err.to_string().contains("1 fd(s) for 2 slot(s)"), "{err}");
        send(init_fd(&a), &release, &[init_fd(&r), init_fd(&r)]).unwrap();
        let (got, fds) = recv::<SupervisorMessage>(init_fd(&b), "x")
            .unwrap()
            .unwrap();
        assert!(matches!(
            got,
            SupervisorMessage::Release { cgroup_tasks: 2 }
        ));
        assert_eq!(fds.len(), 2);
        drop(a);
        assert!(recv::<SupervisorMessage>(init_fd(&b), "x")
            .unwrap()
            .is_none());
    }
}
