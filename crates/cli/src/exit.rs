//! Exit codes of `bunker`, documented in docs/cli.md. The codes of a run are the API contract's
//! (`bunker_api::exit`, mapped from each `ErrorCode`); the rest are the CLI's own.

pub use bunker_api::exit::*;

/// `bunker doctor`: a layer of the default policy cannot be enforced on this host.
pub const DOCTOR_UNENFORCEABLE: i32 = 1;
