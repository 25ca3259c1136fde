"""The suites' harness: which mode (a daemon this harness starts, or the CLI fallback), the
bunker binary, a loopback HTTP server, and temporary directories the sandbox can reach.

`BUNKER_PY_TEST_MODE=daemon` (the default) starts one `bunker serve --socket <tmp>` for the
whole process (with `--pool eval:bun=1 --pool eval:python=1`),
points `BUNKER_SOCKET` at it and kills it by PID at exit; `cli` unsets `BUNKER_SOCKET`, so every
call goes through `bunker run --report-fd` / `bunker eval`.
"""

from __future__ import annotations

import atexit
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[3]
# Where `bunker` is imported from: the source tree, or (test.sh) the copy `pip install` made.
SRC = Path(os.environ.get("BUNKER_PY_PATH") or REPO / "clients" / "python" / "src")
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

MODE = os.environ.get("BUNKER_PY_TEST_MODE", "daemon")
if MODE not in ("daemon", "cli"):
    raise SystemExit(f"BUNKER_PY_TEST_MODE: 'daemon' or 'cli', not {MODE!r}")
BIN = os.environ.get("BUNKER_BIN") or str(REPO / "target" / "x86_64-unknown-linux-gnu" / "debug" / "bunker")
os.environ["BUNKER_BIN"] = BIN
IN_CI = bool(os.environ.get("CI"))

_daemon: Optional[subprocess.Popen] = None
_daemon_dir: Optional[str] = None


def require(condition: bool, what: str) -> None:
    """Skip a test whose prerequisite is missing, except in CI, where it must be there."""
    if not condition:
        if IN_CI:
            raise AssertionError(f"{what} (CI has everything installed)")
        raise unittest.SkipTest(what)


def setup_mode() -> None:
    """Called by every test module at import: the daemon is started once per process."""
    global _daemon, _daemon_dir
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} does not exist: build it (cargo build -p bunker-cli) or set BUNKER_BIN")
    if MODE == "cli":
        os.environ.pop("BUNKER_SOCKET", None)
        return
    if _daemon is not None:
        return
    _daemon_dir = tempfile.mkdtemp(prefix="bunker-py-daemon-")
    path = os.path.join(_daemon_dir, "bunker.sock")
    cmd = [BIN, "serve", "--socket", path, "--pool", "eval:bun=1", "--pool", "eval:python=1"]
    log = open(os.path.join(_daemon_dir, "serve.log"), "wb")
    _daemon = subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=_die_with_parent)
    atexit.register(_stop_daemon)
    deadline = time.monotonic() + 30
    while True:
        if _daemon.poll() is not None:
            raise SystemExit(f"bunker serve exited {_daemon.returncode}: {Path(log.name).read_text()}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("bunker serve did not listen within 30 s")
            time.sleep(0.02)
    os.environ["BUNKER_SOCKET"] = path


def _die_with_parent() -> None:
    """In the daemon's child before exec: SIGKILL when this test process dies, even by a signal
    that skips atexit (a `timeout` around the suite)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_daemon() -> None:
    if _daemon is not None and _daemon.poll() is None:
        _daemon.kill()  # by its PID: only the daemon this harness started
        _daemon.wait()
    if _daemon_dir is not None:
        shutil.rmtree(_daemon_dir, ignore_errors=True)


_scratch: Optional[str] = None


def shared_tempdir() -> str:
    """A fresh directory readable by anyone, under one scratch directory of this process
    (removed at exit)."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="bunker-py-test-")
        os.chmod(_scratch, 0o755)
        atexit.register(shutil.rmtree, _scratch, True)
    d = tempfile.mkdtemp(prefix="t-", dir=_scratch)
    os.chmod(d, 0o755)
    return d


class LoopbackServer:
    """An http.server on 127.0.0.1 (a free port) that records the paths it was asked for."""

    def __init__(self) -> None:
        paths: List[str] = []
        self.paths = paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                body = b"hello from the host\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def alive_with(marker: str) -> List[int]:
    """PIDs of host processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found
