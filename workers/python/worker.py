# bunker's eval worker for Python (docs/workers.md). Started by bunker as
# `python3 -I -c <this file>` in a sandbox of the `eval:python` profile, with its channel as
# fd 3 (a SOCK_SEQPACKET control socket) and fd 4 (a memfd holding the `in` ring at offset 0
# and the `out` ring after it). It waits for the doorbell `R`, reads one request record from
# `in`, runs it, writes one reply record to `out`, rings `D`, and exits (or, with `keep_open`,
# waits for the next `R`).
import ast
import builtins
import json
import mmap
import os
import struct
import sys
import traceback

HEADER = 64
MAGIC = 0x474E5242
CONTROL_FD = 3

mem = mmap.mmap(4, 0)  # the whole memfd, MAP_SHARED


class Ring:
    """A ring in `buf` at `base`: the shared memfd's two, or the warm-up's private pair."""

    def __init__(self, buf, base):
        magic, _version, capacity = struct.unpack_from("<IIQ", buf, base)
        if magic != MAGIC:
            raise SystemExit("bunker worker: bad ring magic")
        self.buf, self.base, self.capacity, self.own = buf, base, capacity, 0

    def copy_out(self, pos, count):
        out = bytearray()
        while len(out) < count:
            at = (pos + len(out)) % self.capacity
            n = min(count - len(out), self.capacity - at)
            start = self.base + HEADER + at
            out += self.buf[start:start + n]
        return bytes(out)

    def copy_in(self, pos, data):
        done = 0
        while done < len(data):
            at = (pos + done) % self.capacity
            n = min(len(data) - done, self.capacity - at)
            start = self.base + HEADER + at
            self.buf[start:start + n] = data[done:done + n]
            done += n


inp = Ring(mem, 0)
out = Ring(mem, HEADER + inp.capacity)


def read_request(inp):
    (tail,) = struct.unpack_from("<Q", inp.buf, inp.base + 24)
    if tail - inp.own < 4:
        raise SystemExit("bunker worker: doorbell without a request")
    (length,) = struct.unpack("<I", inp.copy_out(inp.own, 4))
    body = inp.copy_out(inp.own + 4, length)
    inp.own += 4 + length
    struct.pack_into("<Q", inp.buf, inp.base + 16, inp.own)
    return json.loads(body.decode("utf-8"))


def write_reply(out, text):
    data = text.encode("utf-8")
    (head,) = struct.unpack_from("<Q", out.buf, out.base + 16)
    free = out.capacity - (out.own - head)
    if 4 + len(data) > free:
        data = reply("null", "", False, {
            "kind": "thrown", "name": "MemoryError",
            "message": f"the result ({len(data)} bytes of JSON) does not fit the channel's {free - 4}",
        }).encode("utf-8")
    out.copy_in(out.own, struct.pack("<I", len(data)))
    out.copy_in(out.own + 4, data)
    out.own += 4 + len(data)
    struct.pack_into("<Q", out.buf, out.base + 24, out.own)


class Console:
    """sys.stdout and sys.stderr while code runs: kept up to `cap` bytes (cut at a character
    boundary), the rest dropped and `truncated` set."""

    def __init__(self, cap):
        self.parts, self.used, self.cap, self.truncated = [], 0, cap, False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.truncated:
            return len(text)
        data = text.encode("utf-8", "replace")
        if self.used + len(data) <= self.cap:
            self.parts.append(text)
            self.used += len(data)
        else:
            keep = data[: self.cap - self.used].decode("utf-8", "ignore")
            self.parts.append(keep)
            self.used = self.cap
            self.truncated = True
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def text(self):
        return "".join(self.parts)


def to_json(value):
    """Value conversion (docs/workers.md): JSON as it is; None -> null; anything json refuses
    as a type -> str(); what it refuses as a value (circular, NaN, infinity) -> repr()."""
    try:
        return json.dumps(value, allow_nan=False, default=str, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return json.dumps(repr(value), ensure_ascii=False)


def reply(value_json, console_output, truncated, error):
    return (
        '{"value":' + (value_json or "null")
        + ',"console_output":' + json.dumps(console_output, ensure_ascii=False)
        + ',"console_truncated":' + ("true" if truncated else "false")
        + ',"error":' + (json.dumps(error, ensure_ascii=False) if error else "null") + "}"
    )


def describe(e, kind):
    tb = e.__traceback__
    # Only the code's own frames: the worker's are not the caller's business.
    while tb is not None and tb.tb_frame.f_code.co_filename != "<eval>":
        tb = tb.tb_next
    stack = "".join(traceback.format_exception(type(e), e, tb))
    message = e.msg if isinstance(e, SyntaxError) and e.msg else str(e)
    return {"kind": kind, "name": type(e).__name__, "message": message, "stack": stack}


def settle(value):
    """A coroutine's result (the Python counterpart of awaiting a promise)."""
    if hasattr(value, "__await__") and hasattr(value, "send"):
        import asyncio
        return asyncio.run(value)
    return value


def fresh_namespace():
    return {"__name__": "__main__", "__builtins__": builtins}


namespace = fresh_namespace()


def run(request, namespace):
    console = Console(request["console_bytes"])
    real = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = console
    value_json, error = None, None
    try:
        try:
            tree = ast.parse(request["code"], "<eval>", "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = compile(ast.Expression(tree.body.pop().value), "<eval>", "eval")
            body = compile(tree, "<eval>", "exec")
        except SyntaxError as e:
            error = describe(e, "syntax")
        else:
            try:
                namespace.update(request.get("globals") or {})
                exec(body, namespace)
                value = settle(eval(last, namespace) if last else None)
                name = request.get("function")
                if name is not None:
                    f = namespace.get(name)
                    if not callable(f):
                        raise TypeError(f"{name} is not a function")
                    value = settle(f(*(request.get("args") or [])))
                value_json = to_json(value)
            except BaseException as e:  # SystemExit too: the code does not end the worker
                error = describe(e, "thrown")
    finally:
        sys.stdout, sys.stderr = real
    return reply(value_json, console.text(), console.truncated, error)


def warm_up():
    """The request path run once before the first `R` (a private ring pair, its own namespace,
    a read of /dev/zero for the doorbell's), so the first real request does not pay for its
    first-call work (lazy imports and caches). Nothing of it touches fd 3 or the shared rings."""
    capacity = 512
    pair = bytearray(2 * (HEADER + capacity))
    for base in (0, HEADER + capacity):
        struct.pack_into("<IIQ", pair, base, MAGIC, 1, capacity)
    warm_in, warm_out = Ring(pair, 0), Ring(pair, HEADER + capacity)
    record = json.dumps({"code": "print(1)\n1+1", "console_bytes": 64}).encode("utf-8")
    warm_in.copy_in(0, struct.pack("<I", len(record)) + record)
    struct.pack_into("<Q", pair, 24, 4 + len(record))
    zero = os.open("/dev/zero", os.O_RDONLY)
    try:
        os.read(zero, 16)
    finally:
        os.close(zero)
    write_reply(warm_out, run(read_request(warm_in), fresh_namespace()))


try:
    warm_up()
except Exception:  # a failed warm-up only leaves the first request slower
    pass

while True:
    if os.read(CONTROL_FD, 16) == b"":
        break
    request = read_request(inp)
    write_reply(out, run(request, namespace))
    os.write(CONTROL_FD, b"D")
    if not request.get("keep_open"):
        break
os._exit(0)
