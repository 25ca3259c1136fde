//! Builds a kernel sandbox from a [`bunker_policy::Policy`], runs a program in it, enforces the
//! limits, and returns one structured [`RunResult`].
//!
//! [`run`] must be called while the process is still single-threaded (before any async runtime
//! starts): it forks. See `spawn.rs` for the setup order.
#![forbid(unsafe_code)]

pub mod egress;
pub mod env;
pub mod error;
pub mod idmap;
pub mod init;
pub mod landlock;
pub mod limits;
pub mod mounts;
pub mod result;
pub mod seccomp;
pub mod spawn;
pub mod supervise;
pub mod walk;

pub use error::SandboxError;
pub use result::*;

use std::ffi::OsString;
use std::path::PathBuf;

use bunker_policy::Policy;

/// What to run, and under which policy.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The effective policy.
    pub policy: Policy,
    /// The program and its arguments. `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<OsString>,
    /// Working directory inside the sandbox (default: the caller's, when it is visible inside;
    /// otherwise `/tmp`).
    pub cwd: Option<PathBuf>,
    /// Whether the program gets the caller's stdin (otherwise /dev/null).
    pub inherit_stdin: bool,
    /// Copy the program's output to the supervisor's own stdout/stderr as it arrives (the CLI);
    /// otherwise it is only captured into the result (the clients).
    pub stream_output: bool,
}
