"""`AsyncSandbox`: the asyncio twin of `Sandbox` (asyncio.open_unix_connection to the daemon,
else the CLI as an asyncio subprocess)."""

from __future__ import annotations

import asyncio
import os
import signal as _signal
from typing import AsyncIterator, Callable, List, Mapping, Optional, Sequence, Tuple, Union

from ._errors import BunkerError, from_api
from ._policy import PolicyArg
from ._protocol import AsyncConnection, Json, PathArg, bytes_to_data, data_to_bytes, resolve_socket
from ._result import Result
from ._spec import Call, StdinArg, cli_argv, finish, parse_cli_report, prepare, run_spec, stdin_bytes

Callback = Callable[[bytes], None]
READ_CHUNK = 65536


def _read_all(fd: int) -> bytes:
    chunks: List[bytes] = []
    try:
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


class AsyncSandbox:
    """`async with bunker.AsyncSandbox(argv, policy=...) as p:` — the same arguments and methods
    as `Sandbox`, with `write`, `close_stdin`, `kill` and `wait` awaitable and `chunks()`,
    `stdout_chunks()`, `stderr_chunks()`, `lines()` async iterators. Callbacks run on the event
    loop. Without `async with`, `await p.start()` first."""

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
        # Checked now, so that bad arguments fail at the call, not at the first await.
        self._call: Call = prepare(argv, policy, timeout_ms, memory_limit_bytes, env, cwd, bunker_bin)
        self._stdin = stdin_bytes(stdin)
        self._path = resolve_socket(socket)
        self._callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        self._callback_error: Optional[BaseException] = None
        self._chunks: List[Tuple[str, bytes]] = []
        self._events: List[Json] = []
        self._waiters: List["asyncio.Future[None]"] = []
        self._result: Optional[Result] = None
        self._error: Optional[BaseException] = None
        self._done = False
        self._conn: Optional[AsyncConnection] = None
        self.sandbox_id: Optional[str] = None
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._killed = False
        self._tasks: List["asyncio.Task[None]"] = []
        self._started = False

    # -- state shared with the backends ------------------------------------------------------

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _chunk(self, stream: str, data: bytes) -> None:
        self._chunks.append((stream, data))
        self._wake()
        callback = self._callbacks[stream]
        if callback is not None and self._callback_error is None:
            try:
                callback(data)
            except BaseException as e:  # re-raised by wait()
                self._callback_error = e

    def _collected(self) -> Tuple[bytes, bytes]:
        return (
            b"".join(d for s, d in self._chunks if s == "stdout"),
            b"".join(d for s, d in self._chunks if s == "stderr"),
        )

    def _end(self, result: Optional[Result], error: Optional[BaseException]) -> None:
        if not self._done:
            self._result, self._error, self._done = result, error, True
        self._wake()

    def _finish(self, report: Json) -> None:
        out, err = self._collected()
        try:
            result = finish(report, out, err, list(self._events), self._killed)
        except BunkerError as e:
            self._end(None, e)
            return
        self._end(result, None)

    # -- starting ----------------------------------------------------------------------------

    async def start(self) -> "AsyncSandbox":
        if self._started:
            return self
        self._started = True
        if self._path is not None:
            await self._start_daemon(self._path)
        else:
            await self._start_cli()
        if self._stdin is not None:
            await self.write(self._stdin)
            await self.close_stdin()
        return self

    async def _start_daemon(self, path: str) -> None:
        conn = await AsyncConnection.open(path)
        self._conn = conn

        def on_event(frame: Json) -> None:
            event = frame.get("event", {})
            kind = event.get("event")
            if kind in ("stdout", "stderr"):
                self._chunk(kind, data_to_bytes(event.get("data")))
            elif kind == "exit":
                self._finish(event["result"])
            elif kind == "error":
                self._end(None, from_api(event.get("error", {})))
            else:
                self._events.append(event)

        conn.start_reader(on_event, lambda e: self._end(None, e))
        try:
            ok = await conn.call("start", spec=run_spec(self._call, "stream", "events"))
        except BaseException:
            await conn.close()
            raise
        self.sandbox_id = str(ok["sandbox"])

    async def _start_cli(self) -> None:
        read_end, write_end = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *cli_argv(self._call, write_end),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_end,),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._proc = proc
        loop = asyncio.get_running_loop()
        report = loop.run_in_executor(None, _read_all, read_end)

        async def pump(stream: str, reader: Optional[asyncio.StreamReader]) -> None:
            assert reader is not None
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    return
                self._chunk(stream, chunk)

        async def reap() -> None:
            await asyncio.gather(pump("stdout", proc.stdout), pump("stderr", proc.stderr))
            returncode = await proc.wait()
            raw = await report
            try:
                parsed = parse_cli_report(raw, returncode, self._collected()[1], self._killed)
            except BunkerError as e:
                self._end(None, e)
                return
            self._finish(parsed)

        self._tasks.append(loop.create_task(reap()))

    # -- the caller's side -------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done

    async def write(self, data: Union[bytes, str]) -> None:
        if self._done:
            raise BrokenPipeError("the sandbox has ended")
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if self._conn is not None:
            await self._conn.call("stdin", sandbox=self.sandbox_id, data=bytes_to_data(raw))
        else:
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(raw)
            await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self._done:
            return
        try:
            if self._conn is not None:
                await self._conn.call("close_stdin", sandbox=self.sandbox_id)
            elif self._proc is not None and self._proc.stdin is not None and not self._proc.stdin.is_closing():
                self._proc.stdin.close()
        except (BunkerError, OSError):
            if not self._done:
                raise

    async def kill(self) -> None:
        if self._done:
            return
        try:
            if self._conn is not None:
                await self._conn.call("kill", sandbox=self.sandbox_id)
            elif self._proc is not None and self._proc.returncode is None:
                self._killed = True
                self._proc.send_signal(_signal.SIGTERM)
        except (BunkerError, OSError, ProcessLookupError):
            if not self._done:
                raise

    async def _changed(self) -> None:
        waiter: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def wait(self) -> Result:
        while not self._done:
            await self._changed()
        if self._conn is not None:
            await self._conn.close()
        for task in self._tasks:
            await task
        if self._callback_error is not None:
            raise self._callback_error
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def chunks(self) -> AsyncIterator[Tuple[str, bytes]]:
        i = 0
        while True:
            if i < len(self._chunks):
                batch = self._chunks[i:]
                i += len(batch)
                for item in batch:
                    yield item
            elif self._done:
                return
            else:
                await self._changed()

    async def stdout_chunks(self) -> AsyncIterator[bytes]:
        async for s, d in self.chunks():
            if s == "stdout":
                yield d

    async def stderr_chunks(self) -> AsyncIterator[bytes]:
        async for s, d in self.chunks():
            if s == "stderr":
                yield d

    async def lines(self, stream: str = "stdout", encoding: str = "utf-8") -> AsyncIterator[str]:
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream: 'stdout' or 'stderr', not {stream!r}")
        pending = b""
        async for s, data in self.chunks():
            if s != stream:
                continue
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode(encoding, "replace")
        if pending:
            yield pending.decode(encoding, "replace")

    async def __aenter__(self) -> "AsyncSandbox":
        return await self.start()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            await self.kill()
        else:
            await self.close_stdin()
        try:
            await self.wait()
        except BunkerError:
            if exc_type is None:
                raise
