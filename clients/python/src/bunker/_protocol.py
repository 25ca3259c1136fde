"""The daemon protocol (docs/protocol.md): AF_UNIX stream, frames of a 4-byte big-endian length
and that many bytes of UTF-8 JSON, a `hello` v1 handshake, then requests with ids, replies
echoing them, and event frames (`{"id", "sandbox", "event"}`) of the sandboxes a connection made.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket as _socket
import struct
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from ._errors import BunkerError, ProtocolError, UnavailableError, from_api

PROTOCOL_VERSION = 1
# The largest frame accepted from the daemon: a captured result carries up to limits.output of
# output as JSON text or base64, well over the daemon's own bound on client frames.
MAX_SERVER_FRAME = 64 << 20
SOCKET_ENV = "BUNKER_SOCKET"

Json = Dict[str, Any]
PathArg = Union[str, "os.PathLike[str]"]


def encode_frame(message: Mapping[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload


def decode_payload(payload: bytes) -> Json:
    try:
        frame = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"the daemon sent a frame that is not UTF-8 JSON: {e}", "protocol_error")
    if not isinstance(frame, dict):
        raise ProtocolError("the daemon sent a frame that is not a JSON object", "protocol_error")
    return frame


def frame_length(header: bytes) -> int:
    (length,) = struct.unpack(">I", header)
    if length == 0 or length > MAX_SERVER_FRAME:
        raise ProtocolError(f"the daemon announced a frame of {length} bytes", "protocol_error")
    return int(length)


def data_to_bytes(data: Optional[Mapping[str, Any]]) -> bytes:
    """A protocol `Data` (`{"utf8": ...}` or `{"base64": ...}`) as bytes."""
    if not data:
        return b""
    if "utf8" in data:
        return str(data["utf8"]).encode("utf-8")
    return base64.b64decode(str(data.get("base64", "")))


def bytes_to_data(raw: bytes) -> Json:
    try:
        return {"utf8": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def resolve_socket(socket: Union[PathArg, None, bool]) -> Optional[str]:
    """Which daemon: an explicit path, else a non-empty `BUNKER_SOCKET`; `None` means the CLI
    fallback. `socket=False` forces the fallback even when `BUNKER_SOCKET` is set."""
    if socket is False:
        return None
    if socket is True:
        raise TypeError("socket: a path, None or False, not True")
    if socket is not None:
        return os.fspath(socket)
    env = os.environ.get(SOCKET_ENV, "")
    return env or None


def _unavailable(path: str, why: object) -> UnavailableError:
    return UnavailableError(
        f"no bunker daemon answers at {path}: {why} (start one with `bunker serve --socket {path}`, "
        f"or pass socket=False / unset {SOCKET_ENV} to run through the CLI)",
        "unavailable",
    )


def _hello_reply(path: str, reply: Json) -> Json:
    if "error" in reply:
        raise from_api(reply["error"])
    ok = reply.get("ok")
    if not isinstance(ok, dict) or ok.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(f"{path}: unexpected hello reply {reply!r}", "protocol_error")
    return ok


class Connection:
    """One blocking connection to the daemon.

    Used two ways: by one thread that sends requests and reads frames itself (`request`), or,
    after `start_reader`, with a reader thread that routes replies to their waiting callers and
    hands event frames to a callback (what a streaming `Sandbox` needs).
    """

    def __init__(self, path: str, connect_timeout: float = 10.0) -> None:
        self.path = path
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.settimeout(None)
        except OSError as e:
            sock.close()
            raise _unavailable(path, e.strerror or e) from None
        self._sock = sock
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._pending: Dict[int, Tuple[threading.Event, List[Json]]] = {}
        self._pending_lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self._closed = False
        self.server: Json = {}
        try:
            self.send({"op": "hello", "version": PROTOCOL_VERSION})
            self.server = _hello_reply(path, self.recv())
        except BaseException:
            self.close()
            raise

    def next_id(self) -> int:
        return next(self._ids)

    def send(self, message: Mapping[str, Any]) -> None:
        data = encode_frame(message)
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as e:
                raise UnavailableError(f"{self.path}: the connection was lost: {e}", "unavailable") from None

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self._sock.recv_into(view[got:])
            except OSError as e:
                raise UnavailableError(f"{self.path}: the connection was lost: {e}", "unavailable") from None
            if k == 0:
                raise UnavailableError(
                    f"{self.path}: the daemon closed the connection before answering", "unavailable"
                )
            got += k
        return bytes(buf)

    def recv(self) -> Json:
        return decode_payload(self._read_exact(frame_length(self._read_exact(4))))

    def request(
        self, op: str, on_event: Optional[Callable[[Json], None]] = None, **fields: Any
    ) -> Json:
        """Sends one request and reads frames until its reply: the `ok` object, or raises the
        reply's error. Event frames read meanwhile go to `on_event`. Only without a reader thread."""
        return self.read_reply(self.send_request(op, **fields), on_event)

    def read_reply(self, request_id: int, on_event: Optional[Callable[[Json], None]] = None) -> Json:
        while True:
            frame = self.recv()
            if "event" in frame:
                if on_event is not None:
                    on_event(frame)
                continue
            if frame.get("id") == request_id or "id" not in frame:
                return reply_ok(frame)

    # -- with a reader thread ------------------------------------------------------------

    def start_reader(self, on_event: Callable[[Json], None], on_lost: Callable[[BunkerError], None]) -> None:
        def loop() -> None:
            try:
                while True:
                    frame = self.recv()
                    if "event" in frame:
                        on_event(frame)
                        continue
                    with self._pending_lock:
                        waiter = self._pending.pop(frame.get("id", -1), None)
                    if waiter is not None:
                        waiter[1].append(frame)
                        waiter[0].set()
                    elif "id" not in frame and "error" in frame:
                        raise from_api(frame["error"])
            except BunkerError as e:
                if self._closed:
                    return
                with self._pending_lock:
                    waiters = list(self._pending.values())
                    self._pending.clear()
                for event, slot in waiters:
                    slot.append({"error": {"code": e.code or "unavailable", "message": e.message}})
                    event.set()
                on_lost(e)

        self._reader = threading.Thread(target=loop, name="bunker-reader", daemon=True)
        self._reader.start()

    def call(self, op: str, **fields: Any) -> Json:
        """A request answered through the reader thread (any thread may call)."""
        request_id = self.next_id()
        waiter: Tuple[threading.Event, List[Json]] = (threading.Event(), [])
        with self._pending_lock:
            self._pending[request_id] = waiter
        self.send({"id": request_id, "op": op, **fields})
        waiter[0].wait()
        return reply_ok(waiter[1][0])

    def send_request(self, op: str, **fields: Any) -> int:
        request_id = self.next_id()
        self.send({"id": request_id, "op": op, **fields})
        return request_id

    def close(self) -> None:
        self._closed = True
        with self._pending_lock:
            waiters = list(self._pending.values())
            self._pending.clear()
        for event, slot in waiters:
            slot.append({"error": {"code": "unavailable", "message": f"{self.path}: the connection was closed"}})
            event.set()
        try:
            self._sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def reply_ok(frame: Json) -> Json:
    if "error" in frame:
        raise from_api(frame["error"])
    ok = frame.get("ok")
    if not isinstance(ok, dict):
        raise ProtocolError(f"unexpected reply {frame!r}", "protocol_error")
    return ok


class AsyncConnection:
    """The asyncio twin of `Connection`: a reader task routes replies to futures and event
    frames to a callback."""

    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: Dict[int, "asyncio.Future[Json]"] = {}
        self._task: Optional["asyncio.Task[None]"] = None
        self._closed = False
        self.server: Json = {}

    @classmethod
    async def open(cls, path: str) -> "AsyncConnection":
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_SERVER_FRAME)
        except OSError as e:
            raise _unavailable(path, e.strerror or e) from None
        conn = cls(path, reader, writer)
        try:
            await conn.send({"op": "hello", "version": PROTOCOL_VERSION})
            conn.server = _hello_reply(path, await conn.recv())
        except BaseException:
            await conn.close()
            raise
        return conn

    async def send(self, message: Mapping[str, Any]) -> None:
        try:
            self._writer.write(encode_frame(message))
            await self._writer.drain()
        except OSError as e:
            raise UnavailableError(f"{self.path}: the connection was lost: {e}", "unavailable") from None

    async def recv(self) -> Json:
        try:
            header = await self._reader.readexactly(4)
            return decode_payload(await self._reader.readexactly(frame_length(header)))
        except asyncio.IncompleteReadError:
            raise UnavailableError(
                f"{self.path}: the daemon closed the connection before answering", "unavailable"
            ) from None
        except OSError as e:
            raise UnavailableError(f"{self.path}: the connection was lost: {e}", "unavailable") from None

    def start_reader(self, on_event: Callable[[Json], None], on_lost: Callable[[BunkerError], None]) -> None:
        async def loop() -> None:
            try:
                while True:
                    frame = await self.recv()
                    if "event" in frame:
                        on_event(frame)
                        continue
                    future = self._pending.pop(frame.get("id", -1), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                    elif "id" not in frame and "error" in frame:
                        raise from_api(frame["error"])
            except BunkerError as e:
                if self._closed:
                    return
                for future in self._pending.values():
                    if not future.done():
                        future.set_result({"error": {"code": e.code or "unavailable", "message": e.message}})
                self._pending.clear()
                on_lost(e)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def call(self, op: str, **fields: Any) -> Json:
        request_id = next(self._ids)
        future: "asyncio.Future[Json]" = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self.send({"id": request_id, "op": op, **fields})
        return reply_ok(await future)

    async def send_request(self, op: str, **fields: Any) -> int:
        request_id = next(self._ids)
        await self.send({"id": request_id, "op": op, **fields})
        return request_id

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
