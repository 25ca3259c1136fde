#!/usr/bin/env python3
"""Per-call overhead of the Python client against the raw protocol (small; not run in CI).

Starts its own `bunker serve --socket <tmp> --pool default=2` (and `--pool eval:bun=2`), then alternates, N times each: the raw protocol (one connection, a frame
written and the reply read by hand) and the client's call, for `run(["/bin/true"])` and
`eval_js("1+1")`, each once the pool has a ready sandbox (the wait is not timed). Prints p50 / p99 of each, their difference, and how many calls were warm.

    python3 clients/python/bench.py [N]        # BUNKER_BIN as for the tests
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))
import bunker  # noqa: E402

REPO = HERE.parent.parent
BIN = os.environ.get("BUNKER_BIN") or str(REPO / "target" / "x86_64-unknown-linux-gnu" / "debug" / "bunker")


class Raw:
    """The baseline: the protocol by hand on one connection."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.next_id = 1
        self.call({"op": "hello", "version": 1})

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def call(self, message: Dict[str, Any]) -> Dict[str, Any]:
        payload = json.dumps(message).encode()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)
        while True:
            (n,) = struct.unpack(">I", self._read(4))
            frame: Dict[str, Any] = json.loads(self._read(n))
            if "event" not in frame:
                return frame

    def request(self, op: str, **fields: Any) -> Dict[str, Any]:
        self.next_id += 1
        reply = self.call({"id": self.next_id, "op": op, **fields})
        if "ok" not in reply:
            raise RuntimeError(reply)
        ok: Dict[str, Any] = reply["ok"]
        return ok


def pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def wait_ready(raw: "Raw", pool: str) -> None:
    """Until the pool has a ready sandbox (not timed): every call measures a warm path."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pools = raw.request("stats").get("pools", {})
        if pools.get(pool, {}).get("ready", 0) > 0:
            return
        time.sleep(0.002)


def measure(
    n: int, raw: Callable[[], bool], client: Callable[[], bool], ready: Callable[[], None]
) -> Tuple[List[float], List[float], int, int]:
    raw_ms: List[float] = []
    client_ms: List[float] = []
    cpu = [0.0, 0.0]  # this process's CPU time in each path: the part the client adds
    warm_raw = warm_client = 0
    for i in range(n):
        # Which goes first alternates: the second of a pair finds the pool one sandbox lower.
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            ready()
            c = time.process_time()
            t = time.perf_counter()
            if which == 0:
                warm_raw += raw()
                raw_ms.append((time.perf_counter() - t) * 1000)
            else:
                warm_client += client()
                client_ms.append((time.perf_counter() - t) * 1000)
            cpu[which] += time.process_time() - c
    print(f"  this process's CPU per call: raw {cpu[0] / n * 1000:.3f} ms, client {cpu[1] / n * 1000:.3f} ms")
    return raw_ms, client_ms, warm_raw, warm_client


def report(name: str, n: int, result: Tuple[List[float], List[float], int, int]) -> None:
    raw_ms, client_ms, warm_raw, warm_client = result
    for label, xs, warm in (("raw protocol", raw_ms, warm_raw), ("bunker (python)", client_ms, warm_client)):
        print(f"{name:<22} {label:<16} p50 {pct(xs, 0.5):7.3f} ms  p99 {pct(xs, 0.99):7.3f} ms  warm {warm}/{n}")
    print(f"{name:<22} {'overhead':<16} p50 {pct(client_ms, 0.5) - pct(raw_ms, 0.5):+7.3f} ms  "
          f"p99 {pct(client_ms, 0.99) - pct(raw_ms, 0.99):+7.3f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    d = tempfile.mkdtemp(prefix="bunker-py-bench-")
    path = os.path.join(d, "bunker.sock")
    cmd = [BIN, "serve", "--socket", path, "--pool", "default=2", "--pool", "eval:bun=2"]
    daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if os.path.exists(path):
                break
            time.sleep(0.02)
        time.sleep(1.0)  # let the pools fill
        raw = Raw(path)
        spec = {"policy": {"name": "default"}, "argv": ["/bin/true"]}
        for _ in range(10):  # warm up both paths
            raw.request("run", spec=spec)
            bunker.run(["/bin/true"], socket=path)
        print(f"bunker {BIN}, {n} calls each, alternating raw / client (order swapped every pair)")
        report(
            'run(["/bin/true"])',
            n,
            measure(
                n,
                lambda: bool(raw.request("run", spec=spec).get("warm")),
                lambda: bunker.run(["/bin/true"], socket=path).warm,
                lambda: wait_ready(raw, "default"),
            ),
        )
        espec = {"engine": "bun", "code": "1+1"}
        report(
            'eval_js("1+1")',
            n,
            measure(
                n,
                lambda: bool(raw.request("eval", spec=espec).get("warm")),
                lambda: bunker.eval_js("1+1", socket=path).warm,
                lambda: wait_ready(raw, "eval:bun"),
            ),
        )
    finally:
        daemon.kill()  # the daemon this script started, by its PID
        daemon.wait()


if __name__ == "__main__":
    main()
