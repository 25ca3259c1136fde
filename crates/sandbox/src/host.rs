//! What a run takes from the process that asks for it, passed in explicitly: the caller's
//! environment (what `allow.env` passes on), its working directory (the sandbox's default one,
//! when visible inside), the host ids the sandbox runs as, and whether init is to be the
//! caller's sibling rather than its child. Nothing on the run path reads `std::env`,
//! `current_dir` or the process's ids itself, so a service can run sandboxes for many clients,
//! each with its own context.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::SandboxError;
use crate::idmap::{IdLease, IdMode, IdRange};

/// The host side of one run.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// The caller's environment: the values `allow.env` names are taken from here.
    pub env: Vec<(OsString, OsString)>,
    /// The caller's working directory: the program starts there when it is visible inside and
    /// the request names no `cwd`; otherwise in `/tmp`.
    pub cwd: Option<PathBuf>,
    /// The host ids the sandbox runs as (`idmap.rs`). As root, ids leased for this sandbox
    /// alone: a daemon leases them per sandbox ([`IdLease::acquire`] from the range its
    /// configuration sets) and holds the lease until the sandbox is gone.
    pub id_mode: IdMode,
    /// The lease behind `id_mode` as root, kept as long as this context (the CLI's).
    pub id_lease: Option<Arc<IdLease>>,
    /// Clone init with `CLONE_PARENT`: its parent is the caller's parent, not the caller. A
    /// fork server (`spawner.rs`) sets it, so that the daemon that forked the spawner is init's
    /// parent: it reaps init through its pidfd, and init's parent-death signal follows the
    /// daemon. The one-shot CLI leaves it false.
    pub clone_parent: bool,
}

impl HostContext {
    /// This process's environment, working directory and ids, init as its own child: what
    /// `bunker run` passes. As root, a host id is leased from the range `BUNKER_ROOT_IDS` sets
    /// (default [`IdRange::DEFAULT`]), for as long as the context lives.
    pub fn of_this_process() -> Result<HostContext, SandboxError> {
        let (uid, gid) = bunker_sys::process::ids();
        let (id_mode, id_lease) = if bunker_sys::process::euid() == 0 {
            let range = IdRange::from_env().map_err(|detail| SandboxError::Init {
                step: "lease a host id for the sandbox".into(),
                detail,
            })?;
            let lease = IdLease::acquire(range)?;
            (lease.id_mode(), Some(Arc::new(lease)))
        } else {
            (IdMode::Rootless { uid, gid }, None)
        };
        Ok(HostContext {
            env: std::env::vars_os().collect(),
            cwd: std::env::current_dir().ok(),
            id_mode,
            id_lease,
            clone_parent: false,
        })
    }
}
