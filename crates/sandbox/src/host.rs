//! What a run takes from the process that asks for it, passed in explicitly: the caller's
//! environment (what `allow.env` passes on), its working directory (the sandbox's default one,
//! when visible inside), the host ids the sandbox runs as, and whether init is to be the
//! caller's sibling rather than its child. Nothing on the run path reads `std::env`,
//! `current_dir` or the process's ids itself, so a service can run sandboxes for many clients,
//! each with its own context.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::idmap::IdMode;

/// The host side of one run.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// The caller's environment: the values `allow.env` names are taken from here.
    pub env: Vec<(OsString, OsString)>,
    /// The caller's working directory: the program starts there when it is visible inside and
    /// the request names no `cwd`; otherwise in `/tmp`.
    pub cwd: Option<PathBuf>,
    /// The host ids the sandbox runs as (`idmap.rs`).
    pub id_mode: IdMode,
    /// Clone init with `CLONE_PARENT`: its parent is the caller's parent, not the caller. A
    /// fork server (`spawner.rs`) sets it, so that the daemon that forked the spawner is init's
    /// parent: it reaps init through its pidfd, and init's parent-death signal follows the
    /// daemon. The one-shot CLI leaves it false.
    pub clone_parent: bool,
}

impl HostContext {
    /// This process's environment, working directory and ids, init as its own child: what
    /// `bunker run` passes.
    pub fn of_this_process() -> HostContext {
        HostContext {
            env: std::env::vars_os().collect(),
            cwd: std::env::current_dir().ok(),
            id_mode: IdMode::current(),
            clone_parent: false,
        }
    }
}
