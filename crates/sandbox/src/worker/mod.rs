//! Workers: a Bun or Python process in a sandbox that evaluates code it is handed over a
//! channel (docs/workers.md).
//!
//! - [`ring`]: the shared-memory ring format and its validation (pure, fuzzed).
//! - [`channel`]: bunker's end of one worker's channel: a `SOCK_SEQPACKET` control socket for
//!   the doorbells and a sealed memfd holding the `in` and `out` rings; the worker's end is
//!   [`channel::WorkerFds`], its fds 3 and 4 ([`crate::spawn::Program::extra_fds`]).
//! - [`program`]: the argv that starts an engine's worker library.
//! - [`outcome`]: the worker's reply and the run's result → [`bunker_api::EvalResult`].
//!
//! The one-shot flow (the CLI's cold path; a daemon does the same steps asynchronously):
//! [`channel::Channel::new`], [`channel::Channel::send_request`], launch the
//! [`program::argv`] with [`channel::WorkerFds::into_extra_fds`], supervise, then
//! [`channel::Channel::take_reply`] and [`outcome::eval_result`].

pub mod channel;
pub mod outcome;
pub mod program;
pub mod ring;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The record bunker writes into the `in` ring: one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRequest {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    #[serde(default)]
    pub globals: BTreeMap<String, serde_json::Value>,
    /// Console bytes to keep.
    pub console_bytes: u64,
    /// Wait for another request after this one (the opt-in multi-request mode).
    #[serde(default)]
    pub keep_open: bool,
}

impl WorkerRequest {
    /// The request of an eval spec, with the console cap in force.
    pub fn from_spec(
        spec: &bunker_api::EvalSpec,
        console_bytes: u64,
        keep_open: bool,
    ) -> WorkerRequest {
        WorkerRequest {
            code: spec.code.clone(),
            function: spec.function.clone(),
            args: spec.args.clone(),
            globals: spec.globals.clone(),
            console_bytes,
            keep_open,
        }
    }
}

/// The record a worker writes into the `out` ring: exactly this shape, or it is a protocol
/// error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerReply {
    pub value: serde_json::Value,
    pub console_output: String,
    pub console_truncated: bool,
    pub error: Option<WorkerError>,
}

/// An error as the worker reports it: only the kinds a worker can know of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerError {
    pub kind: WorkerErrorKind,
    #[serde(default)]
    pub name: Option<String>,
    pub message: String,
    #[serde(default)]
    pub stack: Option<String>,
}

/// `syntax` or `thrown`; the other kinds are bunker's to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerErrorKind {
    Syntax,
    Thrown,
}
