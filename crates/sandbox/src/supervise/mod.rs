//! Supervision of a started sandbox: output capture with caps, timeouts, CPU time, OOM
//! detection, and the final [`RunResult`](crate::result::RunResult).
//!
//! The supervision of a run is one state machine with two drivers, one concern per file:
//! - `machine.rs`: [`Supervision`], the state of one run. It owns the run's fds and counters,
//!   says what it waits for (fds with a [`Role`], and the next instant it must look at the
//!   clock), and is told what happened. It never waits, and reads no process-wide state: the
//!   termination pipe comes in as [`Supervised::termination`].
//! - `blocking.rs`: [`supervise`], the CLI's driver: one thread, one `ppoll` over init's pidfd
//!   (readable when init — and with it the whole pid namespace — is gone), the control socket
//!   (init's messages), the program's stdout and stderr (or the pty's master, `stdin.rs`), the
//!   caller's stdin and the relay's pipe when stdin is relayed, and the termination self-pipe
//!   (SIGTERM/SIGINT/SIGHUP to the supervisor; SIGWINCH too when bunker's pty follows the
//!   caller's window size). The poll timeout is the time left to the machine's next wake-up
//!   (the wall-clock deadline at nanosecond precision, or the 10 ms accounting tick when CPU
//!   time or memory must be watched), with the thread's timer slack at 1 ns meanwhile.
//! - `asynchronous.rs`: [`supervise_async`], the daemon's driver: the same machine as one task
//!   on a tokio runtime (any number of them, on any number of threads), waking on
//!   `AsyncFd`s and `sleep_until`; a [`SupervisionControl`] kills or cancels the run and feeds
//!   the program's stdin.
//! - `verdict.rs`: [`classify`], how the run ended, from what was observed ([`Observed`]).
//! - `output.rs`: [`Output`], the output budget shared by both streams, and where the kept
//!   bytes go ([`OutputMode`]: captured, streamed to this process's stdout and stderr, or sent
//!   to the observer as `RunEvent::Stdout` / `RunEvent::Stderr`).
//!
//! Both drivers end the same way: init is killed if the driver failed, reaped with
//! `waitid(P_PIDFD)`, and [`Supervision::finish`] reads the cgroup's last counters, removes it
//! and classifies. A machine dropped before that (a driver's future dropped mid-run) kills,
//! reaps and cleans up in its drop.

mod asynchronous;
mod blocking;
mod machine;
mod output;
mod verdict;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::console::Console;
use crate::events::Observer;
use crate::limits::SandboxCgroup;
use crate::result::Enforced;
use crate::stdin::Relay;

pub use asynchronous::{supervise_async, StdinFeed, SupervisionControl};
pub use blocking::supervise;
pub use machine::{Role, Supervision};
pub use output::{Output, OutputMode};
pub use verdict::{classify, Messages, Observed, Verdict};

/// A started sandbox, handed over by spawn.rs.
#[derive(Debug)]
pub struct Supervised {
    /// Host pid of the sandbox's init (pid 1 inside). Killing it kills the whole pid namespace.
    pub init_pid: i32,
    /// pidfd of init (readable when it exits).
    pub pidfd: OwnedFd,
    /// SOCK_SEQPACKET control socket: `InitMessage`s from init, one per datagram (JSON).
    pub control: OwnedFd,
    /// Read ends of the program's stdout and stderr pipes.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub cgroup: SandboxCgroup,
    /// When the clone happened (wall time is measured from here).
    pub started: Instant,
    pub enforced: Enforced,
    /// Where the program's kept output goes.
    pub output: OutputMode,
    /// bunker's own lines, relayed into the streamed stderr (see `console.rs`).
    pub console: Option<Console>,
    pub observer: Option<Arc<dyn Observer>>,
    /// The relay of the caller's stdin, when the program does not read it directly.
    pub stdin: Option<Relay>,
    /// The read end of the caller's termination self-pipe, non-blocking
    /// ([`bunker_sys::event::termination_fd`]): a signal to the supervisor ends the run
    /// ([`KillReason::Terminated`]). The CLI passes its own; a daemon, whose signals are not any
    /// one sandbox's, passes `None`.
    pub termination: Option<BorrowedFd<'static>>,
}

/// Why bunker killed the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Timeout,
    CpuTime,
    MemoryLimit,
    /// At the memory limit, the sandbox kept faulting back in what it lost (`ThrashWatch`).
    MemoryThrash,
    OutputLimit,
    /// The supervisor itself received this signal (SIGTERM, SIGINT, SIGHUP).
    Terminated(i32),
    /// The run's client asked for its end (a `kill` or `cancel`) or went away
    /// ([`SupervisionControl`]). Error code `cancelled`.
    Cancelled,
}

#[cfg(test)]
mod stand_in;
