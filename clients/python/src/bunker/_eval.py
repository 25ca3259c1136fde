"""`eval_js` / `eval_python`: evaluate code in a sandboxed worker (the `eval` op of the daemon,
else `bunker eval` locally) and return its value, or raise the error it ended with."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type, Union

from . import _errors as errors
from ._policy import PolicyArg, as_policy, bunker_bin as find_bunker_bin, load_file
from ._protocol import Json, PathArg, resolve_socket
from ._run import daemon_request

ENGINES = ("bun", "python")
# The `http` keys (the Ruby client's names, which the API uses), onto allow.net / deny.net / http.
HTTP_KEYS = frozenset(
    {
        "allowlist",
        "denylist",
        "block_private_ips",
        "allowed_ports",
        "allowed_methods",
        "max_requests",
        "max_request_size",
        "max_response_size",
        "request_timeout",
    }
)


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation gave: `value` (JSON; `undefined`/`None` is `None`), the captured
    `console_output` (cut at `console_log_max_size`: `console_truncated`), the egress proxy's
    `http_requests`, whether a pre-started worker served it (`warm`), and the whole reply
    (`raw`). `error` is set only on results carried by an `EvalError`."""

    value: Any
    console_output: str
    console_truncated: bool
    http_requests: List[Json]
    status: str
    warm: bool
    wall_ms: float
    error: Optional[Json]
    raw: Json = field(repr=False)

    @staticmethod
    def from_json(raw: Json) -> "EvalResult":
        return EvalResult(
            value=raw.get("value"),
            console_output=str(raw.get("console_output") or ""),
            console_truncated=bool(raw.get("console_truncated", False)),
            http_requests=list(raw.get("http_requests") or []),
            status=str(raw.get("status", "ok")),
            warm=bool(raw.get("warm", False)),
            wall_ms=float(raw.get("wall_ms", 0.0)),
            error=raw.get("error"),
            raw=raw,
        )


# error.kind -> (class, the API's code where the kind is one)
_KINDS: Dict[str, "tuple[Type[errors.EvalError], Optional[str]]"] = {
    "syntax": (errors.SyntaxError, None),
    "timeout": (errors.TimeoutError, "limit_timeout"),
    "memory_limit": (errors.MemoryLimitError, "limit_memory"),
    "output_limit": (errors.OutputLimitError, "limit_output"),
    "http_blocked": (errors.HTTPBlockedError, None),
    "http_limit": (errors.HTTPLimitError, None),
    "protocol_error": (errors.WorkerCrashedError, "protocol_error"),
    "crashed": (errors.WorkerCrashedError, None),
}


def raise_for(result: EvalResult, engine: str) -> EvalResult:
    """`result`, or the `EvalError` its `error` names."""
    error = result.error
    if not error:
        return result
    kind = str(error.get("kind", ""))
    if kind == "thrown":
        cls: Type[errors.EvalError] = errors.PythonError if engine == "python" else errors.JavascriptError
        code: Optional[str] = None
    else:
        cls, code = _KINDS.get(kind, (errors.EvalError, None))
    name, message = error.get("name"), str(error.get("message", ""))
    text = f"{name}: {message}" if name and kind in ("thrown", "syntax") else message or kind
    raise cls(text, kind, code, result)


def _check_http(http: Optional[Mapping[str, Any]]) -> Optional[Json]:
    if http is None:
        return None
    if not isinstance(http, Mapping):
        raise TypeError(f"http: a dict of {', '.join(sorted(HTTP_KEYS))}, not {type(http).__name__}")
    unknown = sorted(set(http) - HTTP_KEYS)
    if unknown:
        raise errors.ArgumentError(
            f"http: unknown key {unknown[0]!r} (known: {', '.join(sorted(HTTP_KEYS))})", "request_invalid"
        )
    return dict(http)


def _positive(name: str, value: Optional[int]) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise errors.ArgumentError(f"{name}: expected a positive int, got {value!r}", "request_invalid")
    return value


def eval_spec(
    engine: str,
    code: str,
    *,
    timeout_ms: Optional[int],
    memory_limit_bytes: Optional[int],
    console_log_max_size: Optional[int],
    http: Optional[Mapping[str, Any]],
    function: Optional[str],
    args: Optional[Sequence[Any]],
    globals: Optional[Mapping[str, Any]],
    policy: PolicyArg,
    bin_path: Optional[str],
) -> Json:
    """The daemon's `EvalSpec`, checked here so that bad input fails the same in both modes."""
    if engine not in ENGINES:
        raise errors.ArgumentError(f"engine: one of {', '.join(ENGINES)}, not {engine!r}", "request_invalid")
    if not isinstance(code, str):
        raise TypeError(f"code: a str, not {type(code).__name__}")
    spec: Json = {"engine": engine, "code": code}
    limits = {
        k: v
        for k, v in (
            ("timeout_ms", _positive("timeout_ms", timeout_ms)),
            ("memory_bytes", _positive("memory_limit_bytes", memory_limit_bytes)),
            ("console_bytes", _positive("console_log_max_size", console_log_max_size)),
        )
        if v is not None
    }
    if limits:
        spec["limits"] = limits
    checked_http = _check_http(http)
    if checked_http is not None:
        spec["http"] = checked_http
    if function is not None:
        spec["function"] = function
        spec["args"] = list(args or [])
    elif args is not None:
        raise errors.ArgumentError("args: only with function=", "request_invalid")
    if globals is not None:
        spec["globals"] = dict(globals)
        json.dumps(spec["globals"])  # TypeError here, not on the wire, for a non-JSON value
    if policy is not None:
        choice = as_policy(policy)
        if choice.name_ is not None:
            spec["policy"] = {"name": choice.name_}
        elif choice.path is not None:
            spec["policy"] = {"inline": load_file(choice.path, bin_path)}
        else:
            spec["policy"] = {"inline": dict(choice.document or {})}
    return spec


def _cli_eval(spec: Json, bin_path: Optional[str]) -> Json:
    """`bunker eval --local --spec -` (cold, here), the whole spec on its stdin: bunker composes
    its policy (the eval profile, `policy`, then `http` and `limits`) as the daemon does. It
    prints the EvalResult as one JSON line, or an ApiError as the last line of stderr."""
    cmd = [find_bunker_bin(bin_path), "eval", "--local", "--spec", "-"]
    proc = subprocess.run(cmd, input=json.dumps(spec).encode("utf-8"), capture_output=True)
    out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    if out:
        try:
            reply = json.loads(out[-1])
        except ValueError:
            reply = None
        if isinstance(reply, dict) and "value" in reply:
            return reply
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if err:
        try:
            api_error = json.loads(err[-1])
        except ValueError:
            api_error = None
        if isinstance(api_error, dict) and "code" in api_error:
            raise errors.from_api(api_error)
    code = "request_invalid" if proc.returncode == 2 else "internal_error"
    raise errors.from_api({"code": code, "message": "\n".join(err) or f"bunker eval exited {proc.returncode}"})


def _evaluate(engine: str, code: str, socket: Union[PathArg, None, bool], bin_path: Optional[str], **options: Any) -> EvalResult:
    spec = eval_spec(engine, code, bin_path=bin_path, **options)
    path = resolve_socket(socket)
    reply = daemon_request(path, "eval", spec=spec) if path is not None else _cli_eval(spec, bin_path)
    return raise_for(EvalResult.from_json(reply), engine)


def eval_js(
    code: str,
    *,
    engine: str = "bun",
    timeout_ms: Optional[int] = None,
    memory_limit_bytes: Optional[int] = None,
    console_log_max_size: Optional[int] = None,
    http: Optional[Mapping[str, Any]] = None,
    socket: Union[PathArg, None, bool] = None,
    function: Optional[str] = None,
    args: Optional[Sequence[Any]] = None,
    globals: Optional[Mapping[str, Any]] = None,
    policy: PolicyArg = None,
    bunker_bin: Optional[str] = None,
) -> EvalResult:
    """Evaluates JavaScript; the value is that of the last expression (or, with `function`, the
    awaited return of that global function called with `args`). No network unless `http` allows
    hosts. Raises `SyntaxError`, `JavascriptError`, `TimeoutError`, `MemoryLimitError`,
    `HTTPBlockedError`, `HTTPLimitError`, ... (all `EvalError`, all `BunkerError`)."""
    return _evaluate(
        engine,
        code,
        socket,
        bunker_bin,
        timeout_ms=timeout_ms,
        memory_limit_bytes=memory_limit_bytes,
        console_log_max_size=console_log_max_size,
        http=http,
        function=function,
        args=args,
        globals=globals,
        policy=policy,
    )


def eval_python(
    code: str,
    *,
    timeout_ms: Optional[int] = None,
    memory_limit_bytes: Optional[int] = None,
    console_log_max_size: Optional[int] = None,
    http: Optional[Mapping[str, Any]] = None,
    socket: Union[PathArg, None, bool] = None,
    function: Optional[str] = None,
    args: Optional[Sequence[Any]] = None,
    globals: Optional[Mapping[str, Any]] = None,
    policy: PolicyArg = None,
    bunker_bin: Optional[str] = None,
) -> EvalResult:
    """`eval_js` for Python code (engine `python`); an escaping exception is a `PythonError`."""
    return _evaluate(
        "python",
        code,
        socket,
        bunker_bin,
        timeout_ms=timeout_ms,
        memory_limit_bytes=memory_limit_bytes,
        console_log_max_size=console_log_max_size,
        http=http,
        function=function,
        args=args,
        globals=globals,
        policy=policy,
    )
