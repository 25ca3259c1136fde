//! `eval`: a piece of code run by a worker library (Bun or Python) in a sandbox, and what came of
//! it. The request is [`EvalSpec`] (the daemon's op `eval`, `bunker eval`), the reply
//! [`EvalResult`]. docs/workers.md describes the worker side; docs/api.md the types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::request::PolicyChoice;
use crate::result::{HttpRecord, Status};

/// The runtime that evaluates the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Bun (JavaScript / TypeScript), profile `eval:bun`.
    Bun,
    /// CPython 3, profile `eval:python`.
    Python,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Bun, Engine::Python];

    /// As the API spells it: `bun`, `python`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Bun => "bun",
            Engine::Python => "python",
        }
    }

    /// The built-in policy profile evals of this engine run under: `eval:bun`, `eval:python`.
    pub fn profile(self) -> &'static str {
        match self {
            Engine::Bun => "eval:bun",
            Engine::Python => "eval:python",
        }
    }

    /// The engine of an API name (`bun`, `python`).
    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Code to evaluate, and under which limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    pub engine: Engine,
    /// A script; its value is that of its last expression (awaited when it is a promise).
    pub code: String,
    /// Then call this global function with `args`; the value is its (awaited) return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The arguments of `function`, as JSON values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<serde_json::Value>,
    /// JSON values set as globals before `code` runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub globals: BTreeMap<String, serde_json::Value>,
    /// Limits narrowing the engine profile's (docs/workers.md, "Limits").
    #[serde(default)]
    pub limits: EvalLimits,
    /// Network access through the egress proxy; absent: no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOptions>,
    /// A policy extending the engine's profile (e.g. read grants for modules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyChoice>,
    /// Run in this opened worker (the opt-in multi-request mode, op `open_worker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl EvalSpec {
    /// `code` for `engine`, everything else at its default.
    pub fn new(engine: Engine, code: impl Into<String>) -> EvalSpec {
        EvalSpec {
            engine,
            code: code.into(),
            function: None,
            args: Vec::new(),
            globals: BTreeMap::new(),
            limits: EvalLimits::default(),
            http: None,
            policy: None,
            worker: None,
        }
    }
}

/// Limits of one eval; each can only lower the profile's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalLimits {
    /// Wall-clock bound, from the hand-over of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory of the whole sandbox (cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Console output kept in the result (`console_output`), in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_bytes: Option<u64>,
}

/// HTTP access of an eval, in the key names of the first seed's Ruby API; mapped onto the
/// policy's `allow.net`, `deny.net` and `http` (`bunker_policy::eval::ApplyHttp`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// Hosts that may be reached (`allow.net` patterns: `example.com`, `*.example.com`,
    /// `10.0.0.0/8`), on each of `allowed_ports`.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Hosts that may never be reached (`deny.net`).
    #[serde(default)]
    pub denylist: Vec<String>,
    /// Refuse private, loopback and link-local addresses unless a rule names them (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_private_ips: Option<bool>,
    /// Ports the allowlist applies to (default: 80 and 443).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ports: Vec<u16>,
    /// HTTP methods allowed. The proxy cannot see methods inside TLS, so only an empty list
    /// (every method) is accepted; anything else is refused as unenforceable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_methods: Vec<String>,
    /// Requests (connections) in all (`http.max_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u64>,
    /// Bytes sent per request (`http.max_request_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_size: Option<u64>,
    /// Bytes received per request (`http.max_response_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_size: Option<u64>,
    /// Milliseconds per request (`http.request_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
}

/// What came of an eval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvalResult {
    /// The value as JSON (docs/workers.md, "Value conversion"); null with an error.
    pub value: serde_json::Value,
    /// What the code wrote to its console (console.*, print, stdout/stderr), up to
    /// `limits.console_bytes`.
    pub console_output: String,
    /// Whether console output was cut at `limits.console_bytes`.
    pub console_truncated: bool,
    /// Why there is no value; null when the eval succeeded.
    pub error: Option<EvalError>,
    /// How the worker's run ended (`ok` for a worker that answered and exited).
    pub status: Status,
    /// Served by a pre-started worker of a `bunker serve` pool.
    pub warm: bool,
    /// Milliseconds from the hand-over of the request to the result.
    pub wall_ms: f64,
    /// The egress proxy's decisions (empty without `http`).
    #[serde(default)]
    pub http_requests: Vec<HttpRecord>,
}

/// Why an eval has no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EvalError {
    pub kind: EvalErrorKind,
    /// The exception's class or name (`TypeError`, `ZeroDivisionError`), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub message: String,
    /// The exception's stack or traceback, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl EvalError {
    /// An error of `kind` with only a message.
    pub fn new(kind: EvalErrorKind, message: impl Into<String>) -> EvalError {
        EvalError {
            kind,
            name: None,
            message: message.into(),
            stack: None,
        }
    }
}

/// The stable kinds of [`EvalError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvalErrorKind {
    /// The code does not parse.
    Syntax,
    /// An exception escaped the code (`name`, `message`, `stack`).
    Thrown,
    /// The wall-clock limit ended the worker.
    Timeout,
    /// The memory limit ended the worker.
    MemoryLimit,
    /// The worker's output limit ended it.
    OutputLimit,
    /// An exception while the egress proxy refused a request.
    HttpBlocked,
    /// An HTTP limit (`max_requests`, sizes, timeout) ended a request.
    HttpLimit,
    /// The worker broke the ring protocol; its sandbox was killed.
    ProtocolError,
    /// The worker ended without a result (exit code or signal in `message`).
    Crashed,
}

impl EvalErrorKind {
    /// Every kind.
    pub const ALL: [EvalErrorKind; 9] = [
        EvalErrorKind::Syntax,
        EvalErrorKind::Thrown,
        EvalErrorKind::Timeout,
        EvalErrorKind::MemoryLimit,
        EvalErrorKind::OutputLimit,
        EvalErrorKind::HttpBlocked,
        EvalErrorKind::HttpLimit,
        EvalErrorKind::ProtocolError,
        EvalErrorKind::Crashed,
    ];

    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalErrorKind::Syntax => "syntax",
            EvalErrorKind::Thrown => "thrown",
            EvalErrorKind::Timeout => "timeout",
            EvalErrorKind::MemoryLimit => "memory_limit",
            EvalErrorKind::OutputLimit => "output_limit",
            EvalErrorKind::HttpBlocked => "http_blocked",
            EvalErrorKind::HttpLimit => "http_limit",
            EvalErrorKind::ProtocolError => "protocol_error",
            EvalErrorKind::Crashed => "crashed",
        }
    }

    /// `bunker eval`'s exit code for an eval that ended with this kind (docs/cli.md), from the
    /// CLI's table ([`crate::exit`]): what the code itself did is 1, as a failing program's
    /// exit; a limit is the limit's code; a broken worker is the service error.
    pub fn cli_exit_code(self) -> i32 {
        match self {
            EvalErrorKind::Syntax
            | EvalErrorKind::Thrown
            | EvalErrorKind::HttpBlocked
            | EvalErrorKind::Crashed => 1,
            EvalErrorKind::Timeout => crate::exit::TIMEOUT,
            EvalErrorKind::MemoryLimit | EvalErrorKind::OutputLimit | EvalErrorKind::HttpLimit => {
                crate::exit::LIMIT
            }
            EvalErrorKind::ProtocolError => crate::exit::SERVICE_ERROR,
        }
    }
}

impl std::fmt::Display for EvalErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_as_their_names() {
        for kind in EvalErrorKind::ALL {
            let text = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(text, format!("\"{kind}\""));
        }
    }

    #[test]
    fn the_plan_example_parses() {
        let spec: EvalSpec = serde_json::from_str(
            r#"{"engine": "bun", "code": "1+1", "function": "handler", "args": [1],
                "globals": {"x": 41},
                "limits": {"timeout_ms": 1000, "memory_bytes": 134217728, "console_bytes": 10000},
                "http": {"allowlist": ["example.com"], "denylist": [], "block_private_ips": true,
                         "allowed_ports": [443], "max_requests": 10, "max_request_size": 1048576,
                         "max_response_size": 1048576, "request_timeout": 5000}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.engine, Engine::Bun);
        assert_eq!(spec.limits.console_bytes, Some(10000));
    }
}
