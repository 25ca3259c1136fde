"""The exceptions of the client: every one is a `BunkerError` with a `.code`.

`.code` is one of the API's stable error codes (docs/api.md, `ErrorCode`), spelled as the API
spells it, or `None` for a failure of evaluated code itself (a thrown exception, a syntax error,
a refused HTTP request), which has no API code: those carry the eval error's `.kind` instead.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Type

if TYPE_CHECKING:
    from ._eval import EvalResult
    from ._result import Result


class BunkerError(Exception):
    """Any error of bunker. `code` is the API's error code; `details` the whole `ApiError` dict."""

    def __init__(
        self, message: str, code: Optional[str] = None, details: Optional[Mapping[str, Any]] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details: Dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class UnavailableError(BunkerError):
    """The daemon could not be reached (no socket, nobody listening) or the connection was lost."""


class PolicyError(BunkerError):
    """`policy_invalid` (the policy does not load; `details["policy"]` says where) or
    `policy_not_permitted` (it goes beyond what the caller may use)."""


class ArgumentError(BunkerError, ValueError):
    """A request that is not well-formed (`request_invalid`): an empty argv, a bad option value."""


class NotFoundError(BunkerError):
    """`not_found`: an unknown sandbox, worker or policy name."""


class BusyError(BunkerError):
    """`busy`: the daemon's sandbox slots and queue are full."""


class ProtocolError(BunkerError):
    """`protocol_error`: a frame one side could not read."""


class CancelledError(BunkerError):
    """`cancelled`: the request was cancelled or killed before it finished."""


class SetupError(BunkerError):
    """`setup_failed` / `unenforceable`: the sandbox could not be built (`details["step"]`)."""


class CommandError(BunkerError):
    """Raised by `run(..., check=True)` when the run did not succeed; `.result` is the `Result`."""

    def __init__(self, result: "Result") -> None:
        what = result.report.get("error") or (
            f"exit code {result.exit_code}" if result.exit_code is not None else result.status
        )
        super().__init__(f"command failed ({result.status}): {what}", result.error_code)
        self.result = result


# -- eval errors (mirroring the Ruby client's classes) --------------------------------------


class EvalError(BunkerError):
    """An `eval_js` / `eval_python` that did not produce a value. `kind` is the eval error's kind
    (`syntax`, `thrown`, `timeout`, `memory_limit`, `output_limit`, `http_blocked`, `http_limit`,
    `protocol_error`, `crashed`); `result` the whole `EvalResult`."""

    def __init__(self, message: str, kind: str, code: Optional[str], result: "EvalResult") -> None:
        super().__init__(message, code, result.error)
        self.kind = kind
        self.result = result
        self.console_output = result.console_output
        self.name: Optional[str] = result.error.get("name") if result.error else None
        self.stack: Optional[str] = result.error.get("stack") if result.error else None


class SyntaxError(EvalError):  # noqa: A001 - mirrors Bunker::SyntaxError; builtins.SyntaxError is untouched
    """The code does not parse."""


class ScriptError(EvalError):
    """An exception escaped the evaluated code: `name`, `message` (str(e)), `stack`."""


class JavascriptError(ScriptError):
    """An exception escaped JavaScript code (`eval_js`)."""


class PythonError(ScriptError):
    """An exception escaped Python code (`eval_python`)."""


class TimeoutError(EvalError, builtins.TimeoutError):  # noqa: A001
    """The evaluation ran into its timeout (`limit_timeout`)."""


class MemoryLimitError(EvalError):
    """The evaluation ran into its memory limit (`limit_memory`)."""


class OutputLimitError(EvalError):
    """The evaluation's output went past its limit (`limit_output`)."""


class HTTPError(EvalError):
    """An HTTP request of the evaluated code failed because of the sandbox's HTTP rules."""


class HTTPBlockedError(HTTPError):
    """The egress proxy refused a request (not in the allowlist, a private address, ...)."""


class HTTPLimitError(HTTPError):
    """An HTTP limit was hit (`max_requests`, `max_response_size`, ...)."""


class WorkerCrashedError(EvalError):
    """The worker ended without a result (`crashed`) or broke the ring protocol (`protocol_error`)."""


_BY_CODE: Dict[str, Type[BunkerError]] = {
    "unavailable": UnavailableError,
    "policy_invalid": PolicyError,
    "policy_not_permitted": PolicyError,
    "request_invalid": ArgumentError,
    "not_found": NotFoundError,
    "busy": BusyError,
    "protocol_error": ProtocolError,
    "cancelled": CancelledError,
    "setup_failed": SetupError,
    "unenforceable": SetupError,
}


def from_api(error: Mapping[str, Any]) -> BunkerError:
    """The exception for an `ApiError` dict (`code`, `message`, ...)."""
    code = str(error.get("code", "internal_error"))
    cls = _BY_CODE.get(code, BunkerError)
    return cls(str(error.get("message", "")), code, error)
