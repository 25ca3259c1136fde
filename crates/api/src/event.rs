//! What a running sandbox reports while it runs, in order, ending with exactly one `exit` (or
//! `error`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::{ApiError, ErrorCode};
use crate::result::{Enforced, RunResult};

/// One event of a running sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The sandbox is built and the program is about to start; what is enforced. Comes before
    /// any output.
    Started { enforced: Enforced },
    /// A chunk of the program's standard output, in order.
    Stdout { data: Data },
    /// A chunk of the program's standard error, in order.
    Stderr { data: Data },
    /// Something the policy denies was attempted and refused.
    Violation(Violation),
    /// A limit was hit. For `limit_output` without `kill_on_output_overflow` the run goes on
    /// with the rest of the output counted, not delivered; the others end the run.
    LimitHit {
        /// One of the `limit_*` codes.
        code: ErrorCode,
        /// What was hit, for people ("the output limit (1 MiB)").
        message: String,
    },
    /// The run is over: the same result `run` returns. Always the last event of a run that
    /// started.
    Exit { result: Box<RunResult> },
    /// The run could not start or was lost (`setup_failed`, `cancelled`, ...). The last event.
    Error { error: ApiError },
}

/// A refused attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Violation {
    /// The layer that refused it.
    pub layer: ViolationLayer,
    /// The rule that decided (`no allow.net rule matches example.com:443`, `private address
    /// 127.0.0.1`).
    pub rule: String,
    /// What was attempted (`connect example.com:443`).
    pub attempt: String,
}

/// The layer of a `Violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationLayer {
    /// The egress proxy (`allow.net`, `http.*`).
    Net,
    /// The filesystem (a denied path).
    Filesystem,
    /// The seccomp filter (a refused system call).
    Syscall,
}
