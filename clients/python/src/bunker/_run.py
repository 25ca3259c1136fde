"""`run()` and the streaming `Sandbox`, through the daemon or the CLI fallback."""

from __future__ import annotations

import os
import signal as _signal
import subprocess
import threading
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ._errors import BunkerError, CommandError, UnavailableError, from_api
from ._policy import PolicyArg
from ._protocol import Connection, Json, PathArg, bytes_to_data, data_to_bytes, resolve_socket
from ._result import Result
from ._spec import Call, StdinArg, cli_argv, finish, parse_cli_report, prepare, run_spec, stdin_bytes

Callback = Callable[[bytes], None]
READ_CHUNK = 65536


class _ConnectionPool:
    """Idle handshaken connections per socket path, so that a `run()` after the first costs one
    round trip, not a connect and a hello."""

    def __init__(self) -> None:
        self._idle: Dict[str, List[Connection]] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> Tuple[Connection, bool]:
        with self._lock:
            idle = self._idle.get(path)
            if idle:
                return idle.pop(), True
        return Connection(path), False

    def put(self, conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(conn.path, [])
            if len(idle) < 4:
                idle.append(conn)
                return
        conn.close()


_pool = _ConnectionPool()


def daemon_request(path: str, op: str, on_event: Optional[Callable[[Json], None]] = None, **fields: object) -> Json:
    """One request on a pooled connection. A reused connection the daemon has since closed fails
    on send or before any reply (nothing was run for it): it is replaced once."""
    conn, reused = _pool.get(path)
    try:
        try:
            request_id = conn.send_request(op, **fields)
        except UnavailableError:
            conn.close()
            if not reused:
                raise
            conn = Connection(path)
            request_id = conn.send_request(op, **fields)
        ok = conn.read_reply(request_id, on_event)
    except BunkerError as e:
        # An error reply leaves the connection usable; a lost connection does not.
        if isinstance(e, UnavailableError):
            conn.close()
        else:
            _pool.put(conn)
        raise
    except BaseException:
        conn.close()  # interrupted mid-frame: the stream is out of step
        raise
    _pool.put(conn)
    return ok


def run(
    argv: Sequence[str],
    *,
    policy: PolicyArg = None,
    socket: Union[PathArg, None, bool] = None,
    timeout_ms: Optional[int] = None,
    memory_limit_bytes: Optional[int] = None,
    stdin: StdinArg = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Union[None, str, "os.PathLike[str]"] = None,
    check: bool = False,
    bunker_bin: Optional[str] = None,
) -> Result:
    """Runs `argv` in a new sandbox and returns its `Result` once it ends.

    Through the daemon at `socket` (else `BUNKER_SOCKET`); with neither (or `socket=False`)
    through the CLI (`bunker run --report-fd`, `bunker_bin` or `BUNKER_BIN` or `bunker` on
    PATH). A program that fails is a `Result` (`check=True` raises `CommandError` instead); a run
    that cannot start (bad policy, setup failure, no daemon) raises a `BunkerError`.
    """
    call = prepare(argv, policy, timeout_ms, memory_limit_bytes, env, cwd, bunker_bin)
    data = stdin_bytes(stdin)
    path = resolve_socket(socket)
    if path is not None:
        events: List[Json] = []
        report = daemon_request(
            path, "run", lambda frame: events.append(frame["event"]), spec=run_spec(call, data, "capture")
        )
        out = data_to_bytes(report.get("stdout", {}).get("data"))
        err = data_to_bytes(report.get("stderr", {}).get("data"))
        result = finish(report, out, err, events)
    else:
        result = _cli_run(call, data)
    if check and not result.success:
        raise CommandError(result)
    return result


def _cli_run(call: Call, stdin: Optional[bytes]) -> Result:
    read_end, write_end = os.pipe()
    try:
        try:
            proc = subprocess.Popen(
                cli_argv(call, write_end),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        # The report is at most 60 KiB (docs/report.md), within a pipe's buffer: it can be read
        # after the run without deadlocking.
        out, err = proc.communicate(stdin)
        with os.fdopen(read_end, "rb", closefd=False) as f:
            raw = f.read()
    finally:
        os.close(read_end)
    return finish(parse_cli_report(raw, proc.returncode, err), out, err, [])


class _DaemonBackend:
    """A `start`ed sandbox: output and the end arrive as events on its own connection."""

    def __init__(self, owner: "Sandbox", path: str, call: Call, stdin: Optional[bytes]) -> None:
        self._owner = owner
        self.conn = Connection(path)
        self.conn.start_reader(self._on_frame, owner._fail)
        try:
            ok = self.conn.call("start", spec=run_spec(call, "stream", "events"))
        except BaseException:
            self.conn.close()
            raise
        self.sandbox = str(ok["sandbox"])
        if stdin is not None:
            self.write(stdin)
            self.close_stdin()

    def _on_frame(self, frame: Json) -> None:
        event = frame.get("event", {})
        kind = event.get("event")
        if kind in ("stdout", "stderr"):
            self._owner._chunk(kind, data_to_bytes(event.get("data")))
        elif kind == "exit":
            self._owner._finish(lambda: finish(event["result"], *self._owner._collected(), []))
        elif kind == "error":
            self._owner._fail(from_api(event.get("error", {})))
        else:
            self._owner._events.append(event)

    def write(self, data: bytes) -> None:
        self.conn.call("stdin", sandbox=self.sandbox, data=bytes_to_data(data))

    def close_stdin(self) -> None:
        self.conn.call("close_stdin", sandbox=self.sandbox)

    def kill(self) -> None:
        self.conn.call("kill", sandbox=self.sandbox)

    def close(self) -> None:
        self.conn.close()


class _CliBackend:
    """`bunker run --report-fd N` as a child: output from its pipes, the result from fd N."""

    def __init__(self, owner: "Sandbox", call: Call, stdin: Optional[bytes]) -> None:
        self._owner = owner
        self._killed = False
        read_end, write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                cli_argv(call, write_end),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._report = bytearray()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=("stdout", self.proc.stdout.fileno()), daemon=True),
            threading.Thread(target=self._pump, args=("stderr", self.proc.stderr.fileno()), daemon=True),
            threading.Thread(target=self._read_report, args=(read_end,), daemon=True),
        ]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._reap, daemon=True).start()
        if stdin is not None:
            self.write(stdin)
            self.close_stdin()

    def _pump(self, stream: str, fd: int) -> None:
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return
            self._owner._chunk(stream, chunk)

    def _read_report(self, fd: int) -> None:
        try:
            while True:
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    return
                self._report += chunk
        finally:
            os.close(fd)

    def _reap(self) -> None:
        for t in self._readers:
            t.join()
        returncode = self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

        def result() -> Result:
            out, err = self._owner._collected()
            return finish(
                parse_cli_report(bytes(self._report), returncode, err, self._killed), out, err, [], self._killed
            )

        self._owner._finish(result)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def kill(self) -> None:
        # bunker kills every process of the sandbox on SIGTERM and still writes its report.
        self._killed = True
        if self.proc.poll() is None:
            self.proc.send_signal(_signal.SIGTERM)

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


class Sandbox:
    """A program running in a sandbox, streamed: `with bunker.Sandbox(argv, policy=...) as p:`.

    Output arrives as it is produced: iterate `chunks()` (`(stream, bytes)` pairs in order),
    `stdout_chunks()` / `stderr_chunks()`, or `lines()`; or pass `on_stdout` / `on_stderr`
    callbacks (called on the client's reader thread with each chunk). Every iterator starts from
    the first chunk, so output is never lost to a late reader. `write()` feeds stdin,
    `close_stdin()` ends it, `kill()` ends the sandbox, `wait()` returns the `Result` (with all
    the output in `stdout` / `stderr`). Leaving the `with` block closes stdin and waits; leaving
    it by an exception kills the sandbox first. `stdin` given as bytes/str is written and closed
    at once. A sandbox that cannot start (an invalid policy, a setup failure) raises its
    `BunkerError` from the constructor through the daemon (`start` is refused) and from `wait()`
    (and leaving the `with` block) through the CLI, which only says so in its report.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        policy: PolicyArg = None,
        socket: Union[PathArg, None, bool] = None,
        timeout_ms: Optional[int] = None,
        memory_limit_bytes: Optional[int] = None,
        stdin: StdinArg = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Union[None, str, "os.PathLike[str]"] = None,
        on_stdout: Optional[Callback] = None,
        on_stderr: Optional[Callback] = None,
        bunker_bin: Optional[str] = None,
    ) -> None:
        self._cond = threading.Condition()
        self._chunks: List[Tuple[str, bytes]] = []
        self._events: List[Json] = []
        self._callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        self._callback_error: Optional[BaseException] = None
        self._result: Optional[Result] = None
        self._error: Optional[BaseException] = None
        self._done = False
        call = prepare(argv, policy, timeout_ms, memory_limit_bytes, env, cwd, bunker_bin)
        data = stdin_bytes(stdin)
        path = resolve_socket(socket)
        self._backend: Union[_DaemonBackend, _CliBackend] = (
            _DaemonBackend(self, path, call, data) if path is not None else _CliBackend(self, call, data)
        )

    # -- fed by the backends (on their threads) ----------------------------------------------

    def _chunk(self, stream: str, data: bytes) -> None:
        with self._cond:
            self._chunks.append((stream, data))
            self._cond.notify_all()
        callback = self._callbacks[stream]
        if callback is not None and self._callback_error is None:
            try:
                callback(data)
            except BaseException as e:  # re-raised by wait(): the reader thread must go on
                self._callback_error = e

    def _collected(self) -> Tuple[bytes, bytes]:
        with self._cond:
            chunks = list(self._chunks)
        return (
            b"".join(d for s, d in chunks if s == "stdout"),
            b"".join(d for s, d in chunks if s == "stderr"),
        )

    def _finish(self, make: Callable[[], Result]) -> None:
        try:
            result = make()
        except BaseException as e:
            self._fail(e)
            return
        # Keep the events seen so far on the result.
        result.events.extend(self._events)
        with self._cond:
            if not self._done:
                self._result, self._done = result, True
            self._cond.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            if not self._done:
                self._error, self._done = error, True
            self._cond.notify_all()

    # -- the caller's side -------------------------------------------------------------------

    @property
    def sandbox_id(self) -> Optional[str]:
        """The daemon's id of the sandbox (`None` in CLI-fallback mode)."""
        return self._backend.sandbox if isinstance(self._backend, _DaemonBackend) else None

    @property
    def done(self) -> bool:
        with self._cond:
            return self._done

    def write(self, data: Union[bytes, str]) -> None:
        """Writes to the program's stdin (returns once the daemon has taken the bytes)."""
        if self.done:
            raise BrokenPipeError("the sandbox has ended")
        self._backend.write(data.encode("utf-8") if isinstance(data, str) else bytes(data))

    def close_stdin(self) -> None:
        """Gives the program end of file on stdin."""
        if not self.done:
            try:
                self._backend.close_stdin()
            except (BunkerError, OSError):
                if not self.done:
                    raise

    def kill(self) -> None:
        """Ends every process of the sandbox; the result's `error_code` is `cancelled`."""
        if not self.done:
            try:
                self._backend.kill()
            except (BunkerError, OSError):
                if not self.done:
                    raise

    def wait(self, timeout: Optional[float] = None) -> Result:
        """The `Result` once the sandbox has ended (`TimeoutError` after `timeout` seconds)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done, timeout):
                raise TimeoutError(f"the sandbox did not end within {timeout} s")
        self._backend.close()
        if self._callback_error is not None:
            raise self._callback_error
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def chunks(self) -> Iterator[Tuple[str, bytes]]:
        """`(stream, bytes)` pairs as they arrive, `stream` being "stdout" or "stderr"; ends
        when the sandbox does."""
        i = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(self._chunks) > i or self._done)
                if len(self._chunks) <= i:
                    return
                batch = self._chunks[i:]
            i += len(batch)
            yield from batch

    def stdout_chunks(self) -> Iterator[bytes]:
        return (d for s, d in self.chunks() if s == "stdout")

    def stderr_chunks(self) -> Iterator[bytes]:
        return (d for s, d in self.chunks() if s == "stderr")

    def lines(self, stream: str = "stdout", encoding: str = "utf-8") -> Iterator[str]:
        """The stream's lines as they complete, without their line ending."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream: 'stdout' or 'stderr', not {stream!r}")
        pending = b""
        for s, data in self.chunks():
            if s != stream:
                continue
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode(encoding, "replace")
        if pending:
            yield pending.decode(encoding, "replace")

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.kill()
        else:
            self.close_stdin()
        try:
            self.wait()
        except BunkerError:
            if exc_type is None:
                raise
