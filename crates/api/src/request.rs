//! What a client asks for: a program to run, under which policy, with which options.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::Data;

/// One program to run in a new sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The policy to run under.
    pub policy: PolicyChoice,
    /// The program and its arguments; `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<String>,
    /// Working directory inside the sandbox (default `/tmp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Environment variables to set, on top of what the policy passes (`allow.env`, `set_env`).
    /// The policy still decides: a name it does not allow is refused with `policy_not_permitted`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What the program reads on stdin.
    #[serde(default)]
    pub stdin: StdinSource,
    /// How the run is carried out.
    #[serde(default)]
    pub options: RunOptions,
}

/// A policy given in full, or the name of one the service knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChoice {
    /// A policy document (docs/policy.schema.json). Its relative paths and `extends` files are
    /// resolved by the service, not the client.
    Inline(serde_json::Value),
    /// A built-in profile (`default`, `runtime:bun`) or a policy the service's configuration
    /// names.
    Name(String),
}

/// Where the program's stdin comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StdinSource {
    /// Nothing: stdin is /dev/null.
    #[default]
    Null,
    /// These bytes, then end of file.
    Data(Data),
    /// Written by the client while the program runs (a `start`ed sandbox), until it closes it.
    Stream,
    /// A descriptor the client passes along with the request (SCM_RIGHTS).
    Fd,
}

/// Per-request options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Where the program's stdout and stderr go.
    #[serde(default)]
    pub output: OutputMode,
    /// A wall-clock bound for this request, in milliseconds. It can only shorten the policy's
    /// `limits.timeout`, never lengthen it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Whether the run must start in a prepared sandbox (docs/protocol.md, "Warm pools").
    #[serde(default, skip_serializing_if = "WarmMode::is_auto")]
    pub warm: WarmMode,
}

/// Whether a run may start cold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarmMode {
    /// A pooled sandbox when one fits, else a cold start.
    #[default]
    Auto,
    /// A pooled sandbox when one fits, else one prepared for this request through the same
    /// steps a pooled one takes (built without its program, then handed it): the result is
    /// always `warm`. For testing that the warm path gives what a cold start gives.
    Require,
}

impl WarmMode {
    /// Whether this is the default, `auto` (left out of a serialized request).
    pub fn is_auto(&self) -> bool {
        *self == WarmMode::Auto
    }
}

/// Where a run's output goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// Kept (up to `limits.output`) and returned in the result's `stdout.data`/`stderr.data`.
    #[default]
    Capture,
    /// Sent as `stdout`/`stderr` events while the program runs; the result carries no data.
    Events,
    /// Written to descriptors the client passes along with the request (SCM_RIGHTS).
    Fds,
}
