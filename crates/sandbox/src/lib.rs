//! Builds a kernel sandbox from a [`bunker_policy::Policy`], runs a program in it, enforces the
//! limits, and returns one structured [`RunResult`].
//!
//! Two ways in, both given the caller's side explicitly ([`host::HostContext`]: environment,
//! working directory, host ids):
//! - [`spawn::run`] (the one-shot CLI): builds, runs and supervises to the end. [`spawn::start`]
//!   is its first half, returning the [`spawn::Sandbox`] handle once init is Ready. Both fork:
//!   call them while the process is single-threaded (before any async runtime starts).
//! - [`spawner::Spawner`] (a daemon): a single-threaded fork server forked before the runtime,
//!   asked for sandboxes from any thread; each comes back as a handle whose init is the
//!   daemon's child.
//!
//! See `spawn.rs` for the setup order.
#![forbid(unsafe_code)]

pub mod console;
pub mod egress;
pub mod env;
pub mod error;
pub mod events;
pub mod grants;
pub mod host;
pub mod idmap;
pub mod init;
pub mod landlock;
pub mod limits;
pub mod mounts;
pub mod preflight;
pub mod prewarm;
pub mod seccomp;
#[cfg(test)]
#[path = "../../test-support/skip.rs"]
mod skip;
pub mod spawn;
pub mod spawner;
pub mod stdin;
pub mod supervise;
pub mod user_counters;
pub mod walk;
pub mod worker;

/// The result types are the API contract's (`bunker-api`), re-exported where they always were.
pub use bunker_api::result;
pub use error::SandboxError;
pub use result::*;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use bunker_policy::Policy;

/// What to run, and under which policy.
#[derive(Debug)]
pub struct RunRequest {
    /// The effective policy.
    pub policy: Policy,
    /// The program and its arguments. `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<OsString>,
    /// Working directory inside the sandbox (default: the caller's, [`host::HostContext::cwd`],
    /// when it is visible inside; otherwise `/tmp`).
    pub cwd: Option<PathBuf>,
    /// What the program reads on stdin: `/dev/null`, a descriptor handed over, or the caller's
    /// own stdin, passed on or relayed through a pipe or a pty of bunker's as `stdin.rs` decides.
    pub stdin: stdin::ProgramStdin,
    /// Copy the program's output to the supervisor's own stdout/stderr as it arrives (the CLI);
    /// otherwise it is only captured into the result (the clients).
    pub stream_output: bool,
    /// Where bunker's own lines go while the output streams (see [`console`]); `None` for
    /// callers that capture.
    pub console: Option<console::Console>,
    /// Told of each decision as it happens ([`events::RunEvent`]).
    pub observer: Option<Arc<dyn events::Observer>>,
}
