//! What an eval came to: the worker's reply (or the channel's error) and, when the run has
//! ended, its [`RunResult`] → one [`EvalResult`] with a stable error kind
//! (docs/workers.md, "Error kinds").

use bunker_api::{EvalError, EvalErrorKind, EvalResult, RunResult, Status};

use super::channel::ChannelError;
use super::{WorkerErrorKind, WorkerReply};

/// The result of an eval from what the channel gave (`Ok(Some)`: a checked reply; `Ok(None)`:
/// the worker ended without one; `Err`: the channel failed, a protocol error when
/// [`ChannelError::is_protocol_error`]) and the run's result, when the run has ended (a daemon
/// answering as soon as the reply is read passes `None`: the limits are then known not to
/// have ended the worker before its reply). `wall_ms` is from the hand-over of the request.
pub fn eval_result(
    reply: Result<Option<WorkerReply>, &ChannelError>,
    run: Option<&RunResult>,
    wall_ms: f64,
    warm: bool,
) -> EvalResult {
    let status = run.map_or(Status::Ok, |r| r.status);
    let http_requests = run.map(|r| r.http.requests.clone()).unwrap_or_default();
    let mut result = EvalResult {
        value: serde_json::Value::Null,
        console_output: String::new(),
        console_truncated: false,
        error: None,
        status,
        warm,
        wall_ms,
        http_requests,
    };
    match reply {
        Err(e) if e.is_protocol_error() => {
            result.error = Some(EvalError::new(
                EvalErrorKind::ProtocolError,
                format!("the worker broke the channel protocol and was killed: {e}"),
            ));
        }
        Err(e) => {
            result.error = Some(EvalError::new(
                EvalErrorKind::Crashed,
                format!("the worker's channel failed: {e}"),
            ));
        }
        Ok(Some(reply)) => {
            result.value = reply.value;
            result.console_output = reply.console_output;
            result.console_truncated = reply.console_truncated;
            result.error = reply.error.map(|e| {
                let kind = match e.kind {
                    WorkerErrorKind::Syntax => EvalErrorKind::Syntax,
                    WorkerErrorKind::Thrown => http_kind(run).unwrap_or(EvalErrorKind::Thrown),
                };
                EvalError {
                    kind,
                    name: e.name,
                    message: e.message,
                    stack: e.stack,
                }
            });
            if result.error.is_some() {
                result.value = serde_json::Value::Null;
            }
        }
        Ok(None) => result.error = Some(ended_without_reply(run)),
    }
    result
}

/// An exception raised while the proxy refused a request (`http_blocked`) or an HTTP limit
/// ended one (`http_limit`).
fn http_kind(run: Option<&RunResult>) -> Option<EvalErrorKind> {
    let http = &run?.http;
    if !http.limits_hit.is_empty() {
        Some(EvalErrorKind::HttpLimit)
    } else if http.denied > 0 {
        Some(EvalErrorKind::HttpBlocked)
    } else {
        None
    }
}

fn ended_without_reply(run: Option<&RunResult>) -> EvalError {
    let Some(run) = run else {
        return EvalError::new(EvalErrorKind::Crashed, "the worker ended without a result");
    };
    let kind = match run.status {
        Status::Timeout => EvalErrorKind::Timeout,
        Status::MemoryLimit => EvalErrorKind::MemoryLimit,
        Status::OutputLimit => EvalErrorKind::OutputLimit,
        _ => EvalErrorKind::Crashed,
    };
    let how = match (run.exit_code, run.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => format!("status {:?}", run.status).to_lowercase(),
    };
    let message = match (&run.error, kind) {
        (Some(error), _) => format!("the worker ended without a result ({how}): {error}"),
        (None, EvalErrorKind::Crashed) => {
            let stderr = run
                .stderr
                .data
                .as_ref()
                .and_then(|d| d.to_bytes())
                .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
                .unwrap_or_default();
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if tail.is_empty() {
                format!("the worker ended without a result ({how})")
            } else {
                format!("the worker ended without a result ({how}): {tail}")
            }
        }
        (None, _) => format!("the worker ended without a result ({how})"),
    };
    EvalError::new(kind, message)
}
