//! The supervisor's loop: output capture with caps, timeouts, CPU time, OOM detection, and the
//! final RunResult. (being written by the limits engineer — signatures are the contract)

use std::os::fd::OwnedFd;
use std::time::Instant;

use bunker_policy::Policy;

use crate::error::SandboxError;
use crate::limits::SandboxCgroup;
use crate::result::{Enforced, RunResult};

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
    /// Copy output to the supervisor's stdout/stderr as it arrives (else capture into the result).
    pub stream_output: bool,
}

/// Runs until the sandbox is gone; kills it on timeout or limit; reaps init; returns the result.
pub fn supervise(sandbox: Supervised, policy: &Policy) -> Result<RunResult, SandboxError> {
    let _ = (sandbox, policy);
    todo!("limits engineer")
}
