//! Stable error codes: every error a client can see has one [`ErrorCode`] and a message. The
//! CLI's exit codes, the report's `error_code` and every client map from this one enum.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exit;

/// What went wrong, as a stable `snake_case` code. Codes are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The policy could not be loaded or is invalid (the error's `policy` says where).
    PolicyInvalid,
    /// The policy is valid but goes beyond what the caller may use.
    PolicyNotPermitted,
    /// The request itself is not well-formed (no program, a NUL byte in an argument).
    RequestInvalid,
    /// A setup step failed (the error's `step` names it); nothing of the program ran.
    SetupFailed,
    /// The host cannot enforce a layer the policy requires (not marked best effort).
    Unenforceable,
    /// The program was not found inside the sandbox.
    CommandNotFound,
    /// The program was found but could not be executed.
    CannotExecute,
    /// Killed at the wall-clock timeout (`limits.timeout`).
    LimitTimeout,
    /// Killed when the sandbox used up its CPU time (`limits.cpu_time`, RLIMIT_CPU).
    LimitCpuTime,
    /// Killed by the memory limit (`limits.memory`).
    LimitMemory,
    /// The program failed after the pids limit (`limits.pids`) refused a fork.
    LimitPids,
    /// Killed when its output exceeded `limits.output` (`kill_on_output_overflow`).
    LimitOutput,
    /// bunker was told to stop (SIGTERM, SIGINT, SIGHUP) and killed the sandbox.
    Terminated,
    /// The report could not be written to its destination.
    ReportFailed,
    /// The service has no room for the request now (concurrency and queue full).
    Busy,
    /// The named thing (a sandbox id, a policy name) does not exist.
    NotFound,
    /// A frame was malformed, oversized or too slow.
    ProtocolError,
    /// The request was cancelled before it finished.
    Cancelled,
    /// bunker itself failed while supervising (an I/O error of the supervisor).
    InternalError,
    /// The service could not be reached, or the connection to it was lost before the answer
    /// (no socket at the path, nobody listening, a refused connect, the daemon gone mid-run).
    Unavailable,
}

impl ErrorCode {
    /// Every code, in declaration order (for docs and tests).
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::PolicyInvalid,
        ErrorCode::PolicyNotPermitted,
        ErrorCode::RequestInvalid,
        ErrorCode::SetupFailed,
        ErrorCode::Unenforceable,
        ErrorCode::CommandNotFound,
        ErrorCode::CannotExecute,
        ErrorCode::LimitTimeout,
        ErrorCode::LimitCpuTime,
        ErrorCode::LimitMemory,
        ErrorCode::LimitPids,
        ErrorCode::LimitOutput,
        ErrorCode::Terminated,
        ErrorCode::ReportFailed,
        ErrorCode::Busy,
        ErrorCode::NotFound,
        ErrorCode::ProtocolError,
        ErrorCode::Cancelled,
        ErrorCode::InternalError,
        ErrorCode::Unavailable,
    ];

    /// The stable code, e.g. `"setup_failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PolicyInvalid => "policy_invalid",
            ErrorCode::PolicyNotPermitted => "policy_not_permitted",
            ErrorCode::RequestInvalid => "request_invalid",
            ErrorCode::SetupFailed => "setup_failed",
            ErrorCode::Unenforceable => "unenforceable",
            ErrorCode::CommandNotFound => "command_not_found",
            ErrorCode::CannotExecute => "cannot_execute",
            ErrorCode::LimitTimeout => "limit_timeout",
            ErrorCode::LimitCpuTime => "limit_cpu_time",
            ErrorCode::LimitMemory => "limit_memory",
            ErrorCode::LimitPids => "limit_pids",
            ErrorCode::LimitOutput => "limit_output",
            ErrorCode::Terminated => "terminated",
            ErrorCode::ReportFailed => "report_failed",
            ErrorCode::Busy => "busy",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ProtocolError => "protocol_error",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The `bunker` CLI's exit code for a run that ended with this error; `None` for
    /// [`ErrorCode::Terminated`], which exits with 128 + the signal bunker received.
    pub fn cli_exit_code(self) -> Option<i32> {
        Some(match self {
            ErrorCode::PolicyInvalid | ErrorCode::PolicyNotPermitted => exit::POLICY_ERROR,
            ErrorCode::RequestInvalid => exit::USAGE,
            ErrorCode::SetupFailed | ErrorCode::Unenforceable | ErrorCode::InternalError => {
                exit::SETUP_ERROR
            }
            ErrorCode::CommandNotFound => exit::NOT_FOUND,
            ErrorCode::CannotExecute => exit::CANNOT_EXECUTE,
            ErrorCode::LimitTimeout => exit::TIMEOUT,
            ErrorCode::LimitCpuTime
            | ErrorCode::LimitMemory
            | ErrorCode::LimitPids
            | ErrorCode::LimitOutput => exit::LIMIT,
            ErrorCode::Terminated => return None,
            ErrorCode::ReportFailed => exit::REPORT_ERROR,
            ErrorCode::Busy
            | ErrorCode::NotFound
            | ErrorCode::ProtocolError
            | ErrorCode::Cancelled
            | ErrorCode::Unavailable => exit::SERVICE_ERROR,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as a client sees it: a stable code, a message for people, and where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    /// What went wrong; clients branch on this.
    pub code: ErrorCode,
    /// What went wrong, for people ("bind mount /data → /data: ENOENT"). Not meant to be parsed.
    pub message: String,
    /// For `setup_failed` and `unenforceable`: the step that failed or the layer that cannot be
    /// enforced ("bind mount /data → /data", "limits.memory").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For `policy_invalid`: which file, where in it, and what kind of mistake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyProblem>,
}

impl ApiError {
    /// An error with no step and no policy location.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            step: None,
            policy: None,
        }
    }

    /// The same error, naming the step that failed.
    pub fn at_step(mut self, step: impl Into<String>) -> ApiError {
        self.step = Some(step.into());
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Where a policy is wrong (the fields of the policy crate's `PolicyError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyProblem {
    /// What kind of mistake.
    pub kind: PolicyErrorKind,
    /// The policy file as named by the caller or by `extends`, a built-in profile name
    /// (`runtime:bun`), or `command line` for flags.
    pub file: String,
    /// Where in the document: `allow.net[2]`, `limits.memory`; empty for the whole file.
    pub json_path: String,
}

/// The kind of mistake in a policy, as a stable `snake_case` code (`bunker check` and the policy
/// crate's `PolicyError::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid JSON.
    Syntax,
    /// A key the language does not have.
    UnknownKey,
    /// A value of the wrong type or an unknown enum value.
    InvalidValue,
    /// A size that is not a size.
    InvalidSize,
    /// A duration that is not a duration.
    InvalidDuration,
    /// A limit that is zero or negative.
    InvalidLimit,
    /// A path that cannot be resolved.
    InvalidPath,
    /// A glob that does not compile, or a glob in an allow list.
    InvalidGlob,
    /// A net rule that is not a host, wildcard, address or CIDR.
    InvalidNetRule,
    /// An environment variable name that cannot be one.
    InvalidEnvName,
    /// An empty string.
    EmptyString,
    /// The same thing both allowed and denied.
    Contradiction,
    /// `~` used while HOME is not set.
    MissingHome,
    /// `extends` loops back on itself.
    ExtendsCycle,
    /// `extends` names a built-in profile that does not exist.
    UnknownProfile,
    /// A runtime profile whose program is not on PATH.
    RuntimeNotFound,
    /// A setting no layer of this version enforces.
    NotEnforced,
}

impl PolicyErrorKind {
    /// The stable code, e.g. `"unknown_key"`.
    pub fn code(self) -> &'static str {
        match self {
            PolicyErrorKind::Io => "io",
            PolicyErrorKind::Syntax => "syntax",
            PolicyErrorKind::UnknownKey => "unknown_key",
            PolicyErrorKind::InvalidValue => "invalid_value",
            PolicyErrorKind::InvalidSize => "invalid_size",
            PolicyErrorKind::InvalidDuration => "invalid_duration",
            PolicyErrorKind::InvalidLimit => "invalid_limit",
            PolicyErrorKind::InvalidPath => "invalid_path",
            PolicyErrorKind::InvalidGlob => "invalid_glob",
            PolicyErrorKind::InvalidNetRule => "invalid_net_rule",
            PolicyErrorKind::InvalidEnvName => "invalid_env_name",
            PolicyErrorKind::EmptyString => "empty_string",
            PolicyErrorKind::Contradiction => "contradiction",
            PolicyErrorKind::MissingHome => "missing_home",
            PolicyErrorKind::ExtendsCycle => "extends_cycle",
            PolicyErrorKind::UnknownProfile => "unknown_profile",
            PolicyErrorKind::RuntimeNotFound => "runtime_not_found",
            PolicyErrorKind::NotEnforced => "not_enforced",
        }
    }
}

impl fmt::Display for PolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, code.as_str(), "{code:?}");
        }
    }
}
