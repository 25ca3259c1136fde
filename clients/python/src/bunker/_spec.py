"""What run(), Sandbox and AsyncSandbox share: checking arguments, the daemon's `RunSpec`, the
CLI fallback's command line, and turning a finished run into a `Result` or an error."""

from __future__ import annotations

import json
import os
import signal as _signal
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._errors import ArgumentError, NotFoundError, from_api
from ._policy import BUILTIN_PROFILES, PolicyArg, bunker_bin, resolve
from ._protocol import bytes_to_data
from ._result import Result

Json = Dict[str, Any]
StdinArg = Union[None, bytes, bytearray, memoryview, str]

# Statuses of a run that never started: the daemon answers these with an error, the CLI with a
# report; both become the same exception.
_NOT_STARTED = ("policy_error", "setup_error")


@dataclass
class Call:
    """One run's arguments, checked."""

    argv: List[str]
    policy: Json  # the PolicyChoice
    env: Dict[str, str]
    timeout_ms: Optional[int]
    cwd: Optional[str]
    bin_path: Optional[str]


def prepare(
    argv: Sequence[str],
    policy: PolicyArg,
    timeout_ms: Optional[int],
    memory_limit_bytes: Optional[int],
    env: Optional[Mapping[str, str]],
    cwd: Union[None, str, "os.PathLike[str]"],
    bin_path: Optional[str],
) -> Call:
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv: a list of arguments (e.g. ['sh', '-c', 'echo hi']), not a single string")
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ArgumentError("argv: empty (no program to run)", "request_invalid")
    if any(not isinstance(a, str) for a in args):
        raise TypeError("argv: every argument must be a str")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0):
        raise ArgumentError(f"timeout_ms: expected a positive int, got {timeout_ms!r}", "request_invalid")
    choice, extra_env = resolve(policy, memory_limit_bytes=memory_limit_bytes, env=env, bin_path=bin_path)
    return Call(args, choice, extra_env, timeout_ms, os.fspath(cwd) if cwd is not None else None, bin_path)


def stdin_bytes(stdin: StdinArg) -> Optional[bytes]:
    if stdin is None:
        return None
    if isinstance(stdin, str):
        return stdin.encode("utf-8")
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        return bytes(stdin)
    raise TypeError(f"stdin: bytes or str, not {type(stdin).__name__}")


def run_spec(call: Call, stdin: Union[None, bytes, str], output: str) -> Json:
    """The `RunSpec` (docs/request.schema.json). `stdin` is bytes, `"stream"` or None."""
    spec: Json = {"policy": call.policy, "argv": call.argv, "options": {"output": output}}
    if call.timeout_ms is not None:
        spec["options"]["timeout_ms"] = call.timeout_ms
    if call.cwd is not None:
        spec["cwd"] = call.cwd
    if call.env:
        spec["env"] = call.env
    if isinstance(stdin, bytes):
        spec["stdin"] = {"data": bytes_to_data(stdin)}
    elif stdin == "stream":
        spec["stdin"] = "stream"
    return spec


def cli_policy_document(call: Call) -> Json:
    choice = call.policy
    if "inline" in choice:
        return dict(choice["inline"])
    name = str(choice["name"])
    if name not in BUILTIN_PROFILES:
        raise NotFoundError(
            f"policy {name!r} is not a built-in profile ({', '.join(sorted(BUILTIN_PROFILES))}); "
            "names of a daemon's config need the daemon (socket= or BUNKER_SOCKET)",
            "not_found",
        )
    document: Json = {"extends": [name]}
    if call.env:
        document["set_env"] = dict(call.env)
    return document


def cli_argv(call: Call, report_fd: int) -> List[str]:
    """`bunker run -q --report-fd N --policy-json DOC [--timeout] [--cwd] -- argv`."""
    cmd = [
        bunker_bin(call.bin_path),
        "run",
        "-q",
        "--report-fd",
        str(report_fd),
        "--policy-json",
        json.dumps(cli_policy_document(call), separators=(",", ":")),
    ]
    if call.timeout_ms is not None:
        cmd += ["--timeout", f"{call.timeout_ms}ms"]
    if call.cwd is not None:
        cmd += ["--cwd", call.cwd]
    return cmd + ["--", *call.argv]


def parse_cli_report(raw: bytes, returncode: int, stderr: bytes, killed: bool = False) -> Json:
    try:
        report = json.loads(raw.decode("utf-8"))
        if isinstance(report, dict) and "status" in report:
            return report
    except (UnicodeDecodeError, ValueError):
        pass
    if killed and returncode == -_signal.SIGTERM:
        # kill() came before bunker had set up its signal handling (and so before it built the
        # sandbox; what it had started dies with it): the result a kill gives otherwise.
        empty = {"bytes": 0, "kept": 0, "truncated": False}
        return {
            "status": "signal",
            "signal": int(_signal.SIGKILL),
            "error": "killed by kill() before the sandbox was built",
            "error_code": "cancelled",
            "wall_ms": 0.0,
            "cpu_ms": 0.0,
            "stdout": dict(empty),
            "stderr": dict(empty),
            "http": {"requests": []},
        }
    # No report: the CLI refused its command line (it exits 2) or died.
    message = stderr.decode("utf-8", "replace").strip() or f"bunker exited {returncode} without a report"
    code = "request_invalid" if returncode == 2 else "internal_error"
    raise from_api({"code": code, "message": message})


def finish(report: Json, stdout: bytes, stderr: bytes, events: List[Json], killed: bool = False) -> Result:
    """A finished run's `Result`, or the error of one that never started."""
    if report.get("status") in _NOT_STARTED or report.get("error_code") == "request_invalid":
        raise from_api(
            {
                "code": report.get("error_code", "setup_failed"),
                "message": report.get("error", ""),
                **({"step": report["error_step"]} if "error_step" in report else {}),
            }
        )
    if killed and report.get("error_code") == "terminated":
        # The CLI fallback is stopped with SIGTERM; through the daemon the same kill() is
        # `cancelled`, SIGKILL. Report it the daemon's way so both modes agree.
        report = dict(report, error_code="cancelled", signal=int(_signal.SIGKILL), status="signal")
        report.pop("exit_code", None)
    return Result(report=report, stdout=stdout, stderr=stderr, events=events)

