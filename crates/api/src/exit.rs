//! Exit codes of the `bunker` CLI, documented in docs/cli.md. When the program ran, bunker exits
//! with the program's own code (or 128 + the signal that killed it); these codes mean bunker itself
//! ended or refused it. Each [`ErrorCode`](crate::ErrorCode) maps to one of them
//! ([`ErrorCode::cli_exit_code`](crate::ErrorCode::cli_exit_code)).

/// The policy could not be loaded, is invalid, or is not permitted.
pub const POLICY_ERROR: i32 = 120;
/// The sandbox could not be built (a setup step failed, or the host cannot enforce a layer).
pub const SETUP_ERROR: i32 = 121;
/// A limit was hit: memory, pids, CPU time or output.
pub const LIMIT: i32 = 122;
/// The report (`--report-fd`, `--report-file`, `--report json`) could not be written, or its
/// destination could not be opened before the run.
pub const REPORT_ERROR: i32 = 123;
/// The wall-clock timeout was hit.
pub const TIMEOUT: i32 = 124;
/// A daemon refused or lost the request (busy, not found, protocol error, cancelled), or could
/// not be reached (unavailable).
pub const SERVICE_ERROR: i32 = 125;
/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found in the sandbox.
pub const NOT_FOUND: i32 = 127;
/// Command-line usage errors (clap's own code), and requests that are not well-formed.
pub const USAGE: i32 = 2;
