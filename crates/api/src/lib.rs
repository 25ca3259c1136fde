//! The contract of bunker, shared by the library, the CLI, the service and its clients:
//! what to run ([`RunSpec`]), what happened ([`RunResult`]), what a running sandbox reports
//! ([`RunEvent`]), what went wrong ([`ApiError`], with a stable [`ErrorCode`]) and how `bunker serve` speaks ([`protocol`]). Plain data:
//! serde and schemars only. The JSON Schemas in docs/ are generated from these types
//! ([`schemas`]); docs/api.md describes them.
#![forbid(unsafe_code)]

pub mod data;
pub mod error;
pub mod eval;
pub mod event;
pub mod exit;
pub mod protocol;
pub mod request;
pub mod result;

pub use data::Data;
pub use error::{ApiError, ErrorCode, PolicyErrorKind, PolicyProblem};
pub use eval::{Engine, EvalError, EvalErrorKind, EvalLimits, EvalResult, EvalSpec, HttpOptions};
pub use event::{RunEvent, Violation, ViolationLayer};
pub use request::{OutputMode, PolicyChoice, RunOptions, RunSpec, StdinSource};
pub use result::*;

/// The JSON Schemas of the contract, each with the name of its file in docs/.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn value(schema: schemars::Schema) -> serde_json::Value {
        serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
    }
    vec![
        (
            "report.schema.json",
            value(schemars::schema_for!(RunResult)),
        ),
        ("request.schema.json", value(schemars::schema_for!(RunSpec))),
        ("event.schema.json", value(schemars::schema_for!(RunEvent))),
        ("error.schema.json", value(schemars::schema_for!(ApiError))),
        ("eval.schema.json", value(schemars::schema_for!(EvalSpec))),
        (
            "eval-result.schema.json",
            value(schemars::schema_for!(EvalResult)),
        ),
        (
            "protocol.schema.json",
            value(schemars::schema_for!(protocol::ProtocolFrame)),
        ),
    ]
}
