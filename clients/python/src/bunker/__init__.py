"""bunker: run programs and evaluate code in bunker sandboxes (docs/protocol.md).

Through a `bunker serve` daemon (`socket=` or `BUNKER_SOCKET`), else through the `bunker` CLI.
Standard library only.
"""

from ._async import AsyncSandbox
from ._errors import (
    ArgumentError,
    BunkerError,
    BusyError,
    CancelledError,
    CommandError,
    EvalError,
    HTTPBlockedError,
    HTTPError,
    HTTPLimitError,
    JavascriptError,
    MemoryLimitError,
    NotFoundError,
    OutputLimitError,
    PolicyError,
    ProtocolError,
    PythonError,
    ScriptError,
    SetupError,
    SyntaxError,
    TimeoutError,
    UnavailableError,
    WorkerCrashedError,
)
from ._eval import EvalResult, eval_js, eval_python
from ._policy import Policy
from ._result import Result
from ._run import Sandbox, run

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "AsyncSandbox",
    "BunkerError",
    "BusyError",
    "CancelledError",
    "CommandError",
    "EvalError",
    "EvalResult",
    "HTTPBlockedError",
    "HTTPError",
    "HTTPLimitError",
    "JavascriptError",
    "MemoryLimitError",
    "NotFoundError",
    "OutputLimitError",
    "Policy",
    "PolicyError",
    "ProtocolError",
    "PythonError",
    "Result",
    "Sandbox",
    "ScriptError",
    "SetupError",
    "SyntaxError",
    "TimeoutError",
    "UnavailableError",
    "WorkerCrashedError",
    "eval_js",
    "eval_python",
    "run",
]
