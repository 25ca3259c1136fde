//! Errors of sandbox construction and supervision.

use bunker_sys::SysError;

/// Why a sandbox could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A setup step failed; `step` names it ("bind mount /data → /data").
    #[error("{step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: SysError,
    },
    /// A setup step inside the sandbox failed without an errno (reported by init).
    #[error("{step}: {detail}")]
    Init { step: String, detail: String },
    /// A layer the policy requires cannot be enforced on this host.
    #[error("cannot enforce {layer}: {reason}")]
    Unsupported { layer: String, reason: String },
    /// A cgroup operation failed.
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// The command could not be found or executed inside the sandbox.
    #[error("{0}")]
    Exec(String),
    /// An I/O error in the supervisor.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
