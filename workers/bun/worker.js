// bunker's eval worker for Bun (docs/workers.md). Started by bunker as `bun -e <this file>` in
// a sandbox of the `eval:bun` profile, with its channel as fd 3 (a SOCK_SEQPACKET control
// socket) and fd 4 (a memfd holding the `in` ring at offset 0 and the `out` ring after it).
// It waits for the doorbell `R`, reads one request record from `in`, runs it, writes one reply
// record to `out`, rings `D`, and exits (or, with `keep_open`, waits for the next `R`).
"use strict";
const fs = require("node:fs");

const HEADER = 64;
const MAGIC = 0x474e5242;
const CONTROL_FD = 3;
const EXIT_DELAY_MS = 3;

const mem = Bun.mmap("/proc/self/fd/4", { shared: true });

// A ring in `bytes` at `base`: the shared memfd's two, or the warm-up's private pair.
function ring(bytes, base) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(base, true) !== MAGIC) throw new Error("bunker worker: bad ring magic");
  return { bytes, view, base, capacity: Number(view.getBigUint64(base + 8, true)), own: 0 };
}
const input = ring(mem, 0);
const output = ring(mem, HEADER + input.capacity);

// Copies `count` bytes at ring position `pos` out of (or `bytes` into) the data area, wrapping.
function copyOut(r, pos, count) {
  const out = new Uint8Array(count);
  for (let done = 0; done < count; ) {
    const at = (pos + done) % r.capacity;
    const n = Math.min(count - done, r.capacity - at);
    out.set(r.bytes.subarray(r.base + HEADER + at, r.base + HEADER + at + n), done);
    done += n;
  }
  return out;
}
function copyIn(r, pos, bytes) {
  for (let done = 0; done < bytes.length; ) {
    const at = (pos + done) % r.capacity;
    const n = Math.min(bytes.length - done, r.capacity - at);
    r.bytes.set(bytes.subarray(done, done + n), r.base + HEADER + at);
    done += n;
  }
}

function readRequest(r) {
  const tail = Number(r.view.getBigUint64(r.base + 24, true));
  if (tail - r.own < 4) throw new Error("bunker worker: doorbell without a request");
  const len = new DataView(copyOut(r, r.own, 4).buffer).getUint32(0, true);
  const body = copyOut(r, r.own + 4, len);
  r.own += 4 + len;
  r.view.setBigUint64(r.base + 16, BigInt(r.own), true);
  return JSON.parse(new TextDecoder().decode(body));
}

function writeReply(r, text) {
  let bytes = new TextEncoder().encode(text);
  const head = Number(r.view.getBigUint64(r.base + 16, true));
  const free = r.capacity - (r.own - head);
  if (4 + bytes.length > free) {
    bytes = new TextEncoder().encode(
      reply(null, "", false, {
        kind: "thrown",
        name: "RangeError",
        message: `the result (${bytes.length} bytes of JSON) does not fit the channel's ${free - 4}`,
      }),
    );
  }
  const prefix = new Uint8Array(4);
  new DataView(prefix.buffer).setUint32(0, bytes.length, true);
  copyIn(r, r.own, prefix);
  copyIn(r, r.own + 4, bytes);
  r.own += 4 + bytes.length;
  r.view.setBigUint64(r.base + 24, BigInt(r.own), true);
}

function waitForDoorbell(fd) {
  const buf = Buffer.alloc(16);
  // Position null: a plain read (a position makes Bun use pread, EINVAL on a socket).
  const n = fs.readSync(fd, buf, 0, buf.length, null);
  return n === 0 ? null : buf.toString("latin1", 0, n);
}

// The console, capped at the request's console_bytes (cut at a character boundary).
const consoleState = { parts: [], used: 0, cap: 0, truncated: false };
function record(text) {
  if (consoleState.truncated) return;
  const bytes = Buffer.byteLength(text);
  if (consoleState.used + bytes <= consoleState.cap) {
    consoleState.parts.push(text);
    consoleState.used += bytes;
    return;
  }
  const encoded = Buffer.from(text);
  let keep = consoleState.cap - consoleState.used;
  while (keep > 0 && (encoded[keep] & 0xc0) === 0x80) keep--;
  consoleState.parts.push(encoded.subarray(0, keep).toString());
  consoleState.used += keep;
  consoleState.truncated = true;
}
const format = (args) =>
  args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" ") + "\n";
for (const name of ["log", "info", "warn", "error", "debug", "trace"]) {
  console[name] = (...args) => record(format(args));
}
// process.stdout/stderr writes are captured only for code that names them: making the streams
// costs Bun ~10 ms of start-up (even a property descriptor materializes them), which most evals
// should not pay. docs/workers.md says so.
let streamsCaptured = false;
function captureStreams(code) {
  if (streamsCaptured || !/\bprocess\b[\s\S]*\bstd(out|err)\b|\bprocess\s*\[/.test(code)) return;
  streamsCaptured = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.write = (chunk, encoding, callback) => {
      record(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString());
      if (typeof encoding === "function") encoding();
      else if (typeof callback === "function") callback();
      return true;
    };
  }
}

// Value conversion (docs/workers.md): JSON as it is; undefined → null; BigInt → its decimal
// string; functions and symbols → their string form; anything JSON.stringify refuses
// (circular structures) → Bun.inspect's string form.
function toJson(value) {
  if (value === undefined) return "null";
  if (typeof value === "function" || typeof value === "symbol") return JSON.stringify(String(value));
  try {
    const text = JSON.stringify(value, (_k, v) =>
      typeof v === "bigint" ? v.toString() : typeof v === "function" || typeof v === "symbol" ? String(v) : v,
    );
    return text === undefined ? "null" : text;
  } catch {
    return JSON.stringify(Bun.inspect(value));
  }
}

function reply(valueJson, consoleOutput, truncated, error) {
  return (
    `{"value":${valueJson ?? "null"},"console_output":${JSON.stringify(consoleOutput)},` +
    `"console_truncated":${truncated},"error":${error ? JSON.stringify(error) : "null"}}`
  );
}

// The code runs as a global script (indirect eval), where a module's `require` is not in
// scope: given to it as a global, like Node's REPL has it. The sandbox is the boundary.
globalThis.require = require;

const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;

// A SyntaxError from eval is `syntax` when the code itself does not parse (checked by compiling
// it as an async function body, which allows top-level await too), else an ordinary `thrown`.
function describe(e, code) {
  let kind = "thrown";
  if (e instanceof SyntaxError) {
    try {
      new AsyncFunction(code);
    } catch {
      kind = "syntax";
    }
  }
  if (e instanceof Error) {
    // The code's frames only: the worker's own start at its call of eval.
    const stack = typeof e.stack === "string" ? e.stack.split("\n    at eval (unknown)")[0] : null;
    return { kind, name: e.name, message: e.message, stack };
  }
  return { kind, name: null, message: typeof e === "string" ? e : Bun.inspect(e), stack: null };
}

async function run(request) {
  consoleState.parts = [];
  consoleState.used = 0;
  consoleState.cap = request.console_bytes;
  consoleState.truncated = false;
  let valueJson = null;
  let error = null;
  try {
    captureStreams(request.code);
    for (const [name, value] of Object.entries(request.globals ?? {})) globalThis[name] = value;
    let value = (0, eval)(request.code);
    if (value && typeof value.then === "function") value = await value;
    if (request.function != null) {
      const f = globalThis[request.function];
      if (typeof f !== "function") throw new TypeError(`${request.function} is not a function`);
      value = await f(...(request.args ?? []));
    }
    valueJson = toJson(value);
  } catch (e) {
    error = describe(e, request.code);
  }
  return reply(valueJson, consoleState.parts.join(""), consoleState.truncated, error);
}

// Warm-up: the request path run once before the first `R` (a read of /dev/zero for the
// doorbell's, a private ring pair for the channel's, a write of /dev/null for `D`), so the first real request does not pay
// for its first-call work (JIT tiers, inline caches, lazily made bindings): about 0.5 ms of a
// warm eval. Nothing of it touches fd 3 or the shared rings; a failure only skips it.
async function warmUp() {
  const capacity = 512;
  const pair = new Uint8Array(2 * (HEADER + capacity));
  const pairView = new DataView(pair.buffer);
  for (const base of [0, HEADER + capacity]) {
    pairView.setUint32(base, MAGIC, true);
    pairView.setUint32(base + 4, 1, true);
    pairView.setBigUint64(base + 8, BigInt(capacity), true);
  }
  const warmIn = ring(pair, 0);
  const warmOut = ring(pair, HEADER + capacity);
  const request = new TextEncoder().encode(
    JSON.stringify({ code: "console.log(1); 1+1", console_bytes: 64, keep_open: false }),
  );
  const lenPrefix = new Uint8Array(4);
  new DataView(lenPrefix.buffer).setUint32(0, request.length, true);
  copyIn(warmIn, 0, lenPrefix);
  copyIn(warmIn, 4, request);
  pairView.setBigUint64(24, BigInt(4 + request.length), true);
  const zero = fs.openSync("/dev/zero", "r");
  try {
    waitForDoorbell(zero);
  } finally {
    fs.closeSync(zero);
  }
  writeReply(warmOut, await run(readRequest(warmIn)));
  const sink = fs.openSync("/dev/null", "w");
  try {
    fs.writeSync(sink, "D");
  } finally {
    fs.closeSync(sink);
  }
}
try {
  await warmUp();
} catch {}

for (;;) {
  const bell = waitForDoorbell(CONTROL_FD);
  if (bell === null) break;
  const request = readRequest(input);
  writeReply(output, await run(request));
  fs.writeSync(CONTROL_FD, "D");
  if (!request.keep_open) {
    // Done: the exit waits EXIT_DELAY_MS, so that it does not compete with the reply for the
    // CPU (a daemon kills the sandbox behind its reply meanwhile).
    Bun.sleepSync(EXIT_DELAY_MS);
    break;
  }
}
process.exit(0);
