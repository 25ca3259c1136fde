//! Errors of sandbox construction and supervision. Each variant carries its stable
//! [`ErrorCode`] ([`SandboxError::code`]); [`SandboxError::to_api_error`] is what a client sees.

use bunker_api::{ApiError, ErrorCode};
use bunker_cgroup::CgroupError;
use bunker_sys::SysError;

/// Why a sandbox could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A setup step failed on a system call; `step` names it ("bind mount /data → /data").
    #[error("{step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: SysError,
    },
    /// A setup step failed without an errno (often reported by init).
    #[error("{step}: {detail}")]
    Init { step: String, detail: String },
    /// A layer the policy requires cannot be enforced on this host.
    #[error("cannot enforce {layer}: {reason}")]
    Unsupported { layer: String, reason: String },
    /// A cgroup operation of a setup or teardown step failed.
    #[error("cgroup: {step}: {source}")]
    Cgroup {
        step: String,
        /// Boxed: it is large, and every `Result` of the crate carries this enum.
        #[source]
        source: Box<CgroupError>,
    },
    /// The request names no program.
    #[error("no program given")]
    NoProgram,
    /// An I/O error in the supervisor.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SandboxError::Setup { .. }
            | SandboxError::Init { .. }
            | SandboxError::Cgroup { .. } => ErrorCode::SetupFailed,
            SandboxError::Unsupported { .. } => ErrorCode::Unenforceable,
            SandboxError::NoProgram => ErrorCode::RequestInvalid,
            SandboxError::Io { .. } => ErrorCode::InternalError,
        }
    }

    /// The step that failed, or the layer that cannot be enforced.
    pub fn step(&self) -> Option<&str> {
        match self {
            SandboxError::Setup { step, .. }
            | SandboxError::Init { step, .. }
            | SandboxError::Cgroup { step, .. } => Some(step),
            SandboxError::Unsupported { layer, .. } => Some(layer),
            SandboxError::NoProgram => None,
            SandboxError::Io { context, .. } => Some(context),
        }
    }

    /// The error as a client sees it: code, message (this error's display) and step.
    pub fn to_api_error(&self) -> ApiError {
        ApiError {
            code: self.code(),
            message: self.to_string(),
            step: self.step().map(str::to_owned),
            policy: None,
        }
    }
}
