"""`Result`: what a run gave, built from its `RunResult` (docs/report.md) and its output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

Json = Dict[str, Any]


@dataclass(frozen=True)
class Result:
    """The outcome of a run. A program that exits non-zero is a result, not an error.

    - `status`: `ok`, `exit`, `signal`, `timeout`, `cpu_time`, `memory_limit`, `pids_limit`,
      `output_limit` (docs/report.md); `success` is `status == "ok"`.
    - `exit_code` / `signal`: the program's code, or the signal that ended it.
    - `stdout` / `stderr`: the bytes delivered (at most `limits.output` together); `truncated`
      says some were cut.
    - `error_code`: the API's code when the run ended for a reason of bunker's (`limit_timeout`,
      `limit_memory`, `cancelled`, ...), else `None`.
    - `violations`: what the policy refused and bunker saw: the daemon's `violation` events and
      the egress proxy's denied requests (`{"layer": "net", "rule": ..., "attempt": ...}`).
    - `http_requests`: the proxy's decisions (`report["http"]["requests"]`).
    - `usage`: `wall_ms`, `cpu_ms` and, where a memory cgroup was used, `peak_memory_bytes`.
    - `warm`: a daemon's warm pool supplied the sandbox.
    - `report`: the whole `RunResult` dict.
    """

    report: Json
    stdout: bytes = b""
    stderr: bytes = b""
    events: List[Json] = field(default_factory=list, repr=False)

    @property
    def status(self) -> str:
        return str(self.report.get("status", ""))

    @property
    def success(self) -> bool:
        return self.status == "ok"

    @property
    def exit_code(self) -> Optional[int]:
        code = self.report.get("exit_code")
        return int(code) if code is not None else None

    @property
    def signal(self) -> Optional[int]:
        sig = self.report.get("signal")
        return int(sig) if sig is not None else None

    @property
    def error_code(self) -> Optional[str]:
        code = self.report.get("error_code")
        return str(code) if code is not None else None

    @property
    def error(self) -> Optional[str]:
        message = self.report.get("error")
        return str(message) if message is not None else None

    @property
    def timed_out(self) -> bool:
        return self.status == "timeout"

    @property
    def truncated(self) -> bool:
        return bool(
            self.report.get("stdout", {}).get("truncated") or self.report.get("stderr", {}).get("truncated")
        )

    @property
    def http_requests(self) -> List[Json]:
        return list(self.report.get("http", {}).get("requests", []))

    @property
    def violations(self) -> List[Json]:
        seen = [
            {k: v for k, v in e.items() if k != "event"} for e in self.events if e.get("event") == "violation"
        ]
        for r in self.http_requests:
            if not r.get("allowed", True):
                seen.append(
                    {"layer": "net", "rule": r.get("rule", ""), "attempt": f"{r.get('kind')} {r.get('host')}:{r.get('port')}"}
                )
        return seen

    @property
    def usage(self) -> Dict[str, float]:
        usage = {"wall_ms": float(self.report.get("wall_ms", 0.0)), "cpu_ms": float(self.report.get("cpu_ms", 0.0))}
        if "peak_memory_bytes" in self.report:
            usage["peak_memory_bytes"] = float(self.report["peak_memory_bytes"])
        return usage

    @property
    def warm(self) -> bool:
        return bool(self.report.get("warm", False))

    def text(self, stream: str = "stdout", encoding: str = "utf-8", errors: str = "replace") -> str:
        """`stdout` (or `stderr`) decoded."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream: 'stdout' or 'stderr', not {stream!r}")
        return (self.stdout if stream == "stdout" else self.stderr).decode(encoding, errors)
