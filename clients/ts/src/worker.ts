// `SandboxedWorker`: a Worker-like object whose module runs in a sandbox of its own. The sandbox
// runs bun with a small shim (`shimMain` below, passed as `bun -e`): the shim imports the module,
// gives it `self.onmessage` / `postMessage`, reads the parent's messages as JSON lines on stdin
// and writes its own as marked JSON lines on stdout. `serve` and `build` drive the same shim in
// their own modes, so the process plumbing, the framing and the error mapping live here once.
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BunkerError, badOption, checkKeys } from "./errors";
import { classifyPolicy } from "./policy";
import { spawn } from "./spawn";
import type { Policy, RunResult, SandboxOption } from "./types";

/** What the shim runs: a Worker module, a `serve` handler, or one `Bun.build`. */
export type ShimMode = "worker" | "serve" | "build";

/** A frame the shim writes (after its marker, one JSON document, then a newline). */
export type ShimFrame =
  | { t: "ready" }
  | { t: "message"; data?: unknown }
  | { t: "error"; phase: "load" | "run"; error: ErrorInfo }
  | { t: "response"; response: SerializedResponse }
  | { t: "built"; result: SerializedBuild };

/** An exception, as the shim reports it. */
export interface ErrorInfo {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  /** The module does not parse. */
  syntax?: boolean;
}

/** A Response carried out of the sandbox (body base64). */
export interface SerializedResponse {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: string;
}

/** `Bun.build`'s output, carried out of the sandbox (the artifacts stay in `outdir`). */
export interface SerializedBuild {
  success: boolean;
  logs: Record<string, unknown>[];
  outputs: { path: string; kind: string; hash: string | null; loader: string; size: number }[];
}

/** A Request carried into the sandbox (body base64, null for none). */
export interface SerializedRequest {
  method: string;
  url: string;
  headers: [string, string][];
  body: string | null;
}

/**
 * Inside the sandbox: calls the handler module's fetch with the request and serialises its
 * Response. Self-contained (sent as source text, in the shim and in `serve`'s eval bundle).
 */
export async function answerRequest(handler: any, req: SerializedRequest): Promise<SerializedResponse> {
  const init: RequestInit = { method: req.method, headers: req.headers };
  if (req.body !== null) init.body = Buffer.from(req.body, "base64");
  const fetch = typeof handler === "function" ? handler : handler?.fetch;
  const response = await fetch.call(handler, new Request(req.url, init));
  if (!(response instanceof Response)) {
    throw new TypeError(`the handler returned ${typeof response}, not a Response`);
  }
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers],
    body: Buffer.from(await response.arrayBuffer()).toString("base64"),
  };
}

declare const __answerRequest: typeof answerRequest;

/**
 * The code bun runs inside the sandbox (`bun -e`). Self-contained: it is sent as its own source
 * text, so it must not refer to anything outside itself. argv: nonce, mode, module path.
 */
function shimMain(): void {
  const [nonce, mode, modulePath] = process.argv.slice(1);
  const mark = `\x1e${nonce}`;
  const send = (frame: unknown): void => {
    process.stdout.write(`${mark}${JSON.stringify(frame)}\n`);
  };
  // Bun reports a module that does not parse as an AggregateError of its build messages.
  const describe = (e: any) =>
    e instanceof Error
      ? {
          name: e.name,
          message: Array.isArray((e as any).errors)
            ? `${e.message}: ${(e as any).errors.map((x: any) => x?.message ?? String(x)).join("; ")}`
            : e.message,
          stack: e.stack,
          code: (e as any).code,
          syntax: e instanceof SyntaxError || (e instanceof AggregateError && / building /.test(e.message)),
        }
      : { name: "Error", message: String(e) };
  const listeners = new Set<(event: MessageEvent) => unknown>();
  let onmessage: ((event: MessageEvent) => unknown) | null = null;
  const g = globalThis as any;
  g.self = globalThis;
  g.postMessage = (data: unknown) => {
    const text = JSON.stringify({ t: "message", data });
    if (text === undefined) throw new TypeError("postMessage: the message is not JSON-serialisable");
    process.stdout.write(`${mark}${text}\n`);
  };
  Object.defineProperty(globalThis, "onmessage", {
    get: () => onmessage,
    set: (f) => {
      onmessage = typeof f === "function" ? f : null;
    },
    configurable: true,
  });
  const origAdd = g.addEventListener?.bind(globalThis);
  const origRemove = g.removeEventListener?.bind(globalThis);
  g.addEventListener = (type: string, f: any, o?: any) =>
    type === "message" ? listeners.add(f) : origAdd?.(type, f, o);
  g.removeEventListener = (type: string, f: any, o?: any) =>
    type === "message" ? listeners.delete(f) : origRemove?.(type, f, o);
  g.close = () => process.exit(0);
  process.on("uncaughtException", (e) => send({ t: "error", phase: "run", error: describe(e) }));
  process.on("unhandledRejection", (e) => send({ t: "error", phase: "run", error: describe(e) }));

  const deliver = (data: unknown): void => {
    const event = new MessageEvent("message", { data });
    for (const f of [onmessage, ...listeners]) {
      if (f === null) continue;
      try {
        const r = f(event) as any;
        if (r && typeof r.then === "function") {
          r.then(undefined, (e: unknown) => send({ t: "error", phase: "run", error: describe(e) }));
        }
      } catch (e) {
        send({ t: "error", phase: "run", error: describe(e) });
      }
    }
  };

  const serveOne = async (handler: unknown, req: SerializedRequest): Promise<void> => {
    try {
      send({ t: "response", response: await __answerRequest(handler, req) });
    } catch (e) {
      send({ t: "error", phase: "run", error: describe(e) });
    }
  };

  const buildOne = async (options: any): Promise<void> => {
    const output = await Bun.build({ ...options, throw: false });
    send({
      t: "built",
      result: {
        success: output.success,
        logs: output.logs.map((log) => JSON.parse(JSON.stringify(log))),
        outputs: output.outputs.map((o) => ({ path: o.path, kind: o.kind, hash: o.hash, loader: o.loader, size: o.size })),
      },
    });
  };

  const main = async (): Promise<void> => {
    let handler: any;
    if (mode !== "build") {
      try {
        const module = await import(modulePath as string);
        handler = module.default ?? module;
        if (mode === "serve" && typeof handler !== "function" && typeof handler?.fetch !== "function") {
          throw new TypeError(`${modulePath} exports neither a default function nor a fetch(request) handler`);
        }
      } catch (e) {
        send({ t: "error", phase: "load", error: describe(e) });
        process.exit(1);
      }
    }
    send({ t: "ready" });
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of Bun.stdin.stream()) {
      pending += decoder.decode(chunk, { stream: true });
      let newline = pending.indexOf("\n");
      while (newline !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf("\n");
        if (line === "") continue;
        const frame = JSON.parse(line);
        if (mode === "worker") deliver(frame.data);
        else if (mode === "serve") await serveOne(handler, frame.request);
        else await buildOne(frame.options);
      }
    }
  };
  main();
}

/** The shim's source text, as `bun -e` takes it. */
const SHIM_SOURCE = `const __answerRequest = ${answerRequest.toString()};\n(${shimMain.toString()})();`;

const FRAME_TYPES = new Set(["ready", "message", "error", "response", "built"]);

function isFrame(value: unknown): value is ShimFrame {
  return typeof value === "object" && value !== null && FRAME_TYPES.has((value as { t?: unknown }).t as string);
}

/** Splits the shim's stdout into its frames and the module's own output. */
export class FrameSplitter {
  private buffer = "";
  private readonly decoder = new TextDecoder();
  constructor(
    private readonly mark: string,
    private readonly onFrame: (frame: ShimFrame) => void,
    private readonly onText: (text: string) => void,
  ) {}

  push(chunk: Uint8Array): void {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    for (;;) {
      const at = this.buffer.indexOf(this.mark);
      if (at === -1) {
        // Keep a tail that could be the start of a marker split across chunks.
        const last = this.buffer.lastIndexOf("\x1e");
        const cut = last !== -1 && this.mark.startsWith(this.buffer.slice(last)) ? last : this.buffer.length;
        if (cut > 0) this.onText(this.buffer.slice(0, cut));
        this.buffer = this.buffer.slice(cut);
        return;
      }
      if (at > 0) this.onText(this.buffer.slice(0, at));
      const end = this.buffer.indexOf("\n", at);
      if (end === -1) {
        this.buffer = this.buffer.slice(at);
        return;
      }
      const json = this.buffer.slice(at + this.mark.length, end);
      this.buffer = this.buffer.slice(end + 1);
      // The module can see the marker (it is in argv), so a frame is checked, never trusted:
      // one that is not a JSON object with a known `t` is passed on as text.
      let frame: unknown;
      try {
        frame = JSON.parse(json);
      } catch {
        frame = undefined;
      }
      if (isFrame(frame)) this.onFrame(frame);
      else this.onText(`${this.mark}${json}\n`);
    }
  }

  /** What is left at the end of the stream. */
  flush(): void {
    if (this.buffer !== "") this.onText(this.buffer);
    this.buffer = "";
  }
}

/** Paths a shim's sandbox must reach on top of the caller's policy. */
export interface Grants {
  read?: string[];
  write?: string[];
}

/**
 * The caller's `sandbox` option with `runtime:bun` below it and `grants` added. A policy object
 * gets the grants merged into its lists; a file or a built-in profile is extended. A policy name
 * only the daemon knows cannot be extended here (its content is the daemon's), so it is refused.
 */
export function policyWithGrants(sandbox: SandboxOption | undefined, grants: Grants, where: string): Policy {
  const source = classifyPolicy(sandbox ?? "runtime:bun", where);
  const base: Policy =
    source.kind === "object"
      ? structuredClone(source.policy)
      : source.kind === "file"
        ? { extends: [resolve(source.path)] }
        : BUILTIN_PROFILES.has(source.name)
          ? { extends: [source.name] }
          : (() => {
              throw badOption(
                where,
                `sandbox: "${source.name}" is not a built-in profile; a policy the daemon defines cannot be extended with the grants ${where} needs (pass a policy object or a policy file)`,
              );
            })();
  base.extends = ["runtime:bun", ...(base.extends ?? []).filter((e) => e !== "runtime:bun")];
  const allow = { ...(base.allow ?? {}) };
  if (grants.read?.length) allow.read = [...(allow.read ?? []), ...grants.read];
  if (grants.write?.length) allow.write = [...(allow.write ?? []), ...grants.write];
  base.allow = allow;
  return base;
}

const BUILTIN_PROFILES = new Set(["default", "runtime:bun"]);

/** Where to reach bunker: the daemon socket and the binary, as `spawn` takes them. */
export interface Transport {
  /** The daemon's socket (else env BUNKER_SOCKET, else the CLI fallback); `false` forces the fallback. */
  socket?: string | false;
  /** The bunker binary for the CLI fallback (else env BUNKER_BIN, else `bunker` on PATH). */
  bunkerBin?: string;
}

export interface ShimOptions extends Transport {
  mode: ShimMode;
  /** The module (absolute path), unused in build mode. */
  modulePath: string;
  policy: Policy;
  cwd: string;
  onFrame: (frame: ShimFrame) => void;
  /** The module's own stdout / stderr (default: this process's). */
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
}

/** A running shim: its sandbox, and the end of it. */
export class ShimProcess {
  /** Resolves with the run's result once the sandbox is gone. */
  readonly exited: Promise<RunResult>;
  private readonly proc: ReturnType<typeof spawn>;
  private ended = false;

  constructor(options: ShimOptions) {
    const nonce = crypto.randomUUID();
    this.proc = spawn(["bun", "-e", SHIM_SOURCE, nonce, options.mode, options.modulePath], {
      sandbox: options.policy,
      cwd: options.cwd,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      socket: options.socket,
      bunkerBin: options.bunkerBin,
    } as any);
    const splitter = new FrameSplitter(`\x1e${nonce}`, options.onFrame, options.onStdout ?? ((t) => process.stdout.write(t)));
    const onStderr = options.onStderr ?? ((t: string) => process.stderr.write(t));
    const stderrText = new TextDecoder();
    const pumped = Promise.all([
      pump(this.proc.stdout as ReadableStream<Uint8Array>, (chunk) => splitter.push(chunk)).then(() => splitter.flush()),
      pump(this.proc.stderr as ReadableStream<Uint8Array>, (chunk) => onStderr(stderrText.decode(chunk, { stream: true }))),
    ]);
    // The result comes after the last frame: a frame is never reported after the exit.
    this.exited = Promise.all([this.proc.report as Promise<RunResult>, pumped]).then(([report]) => {
      this.ended = true;
      return report;
    });
    this.exited.catch(() => {
      this.ended = true;
    });
  }

  /** Sends one JSON line to the shim's stdin. */
  send(frame: unknown): void {
    // No stdin: the sandbox never started, and `exited` rejects with why.
    const stdin = this.proc.stdin as any;
    if (this.ended || stdin === undefined) return;
    stdin.write(`${JSON.stringify(frame)}\n`);
    stdin.flush?.();
  }

  /** Closes the shim's stdin: it ends once its work is done. */
  end(): void {
    if (!this.ended) void (this.proc.stdin as any)?.end();
  }

  /** Kills the sandbox (every process of it). */
  kill(): void {
    if (!this.ended) this.proc.kill();
  }
}

async function pump(stream: ReadableStream<Uint8Array> | undefined, onChunk: (chunk: Uint8Array) => void): Promise<void> {
  if (stream === undefined) return;
  for await (const chunk of stream as any as AsyncIterable<Uint8Array>) onChunk(chunk);
}

/** Why a sandbox ended without finishing its work, from its result. */
export function endReason(result: RunResult): { kind: string; message: string } {
  if (result.stdout?.truncated === true) {
    return { kind: "output_limit", message: `the answer did not fit in limits.output (${result.stdout.kept} of ${result.stdout.bytes} bytes kept)` };
  }
  if (result.status === "ok" || result.status === "exit" || result.status === "signal") {
    const how = result.signal !== undefined ? `signal ${result.signal}` : `exit code ${result.exit_code}`;
    return { kind: "crashed", message: `the sandbox ended (${how}) without an answer` };
  }
  return { kind: result.status, message: result.error ?? `the sandbox ended: ${result.status}` };
}

export interface SandboxedWorkerOptions extends Transport {
  /** The policy: an object, a policy file path, or a built-in profile (default `runtime:bun`). */
  sandbox?: SandboxOption;
  /** A name for the worker (as Worker's `name`). */
  name?: string;
}

type Listener = (event: any) => void;

/**
 * A Worker whose module runs in its own sandbox (bun under `runtime:bun` plus `sandbox`, with
 * read access to the module's directory). Messages are JSON values; the worker's console output
 * goes to this process's stdout/stderr. An uncaught error in the worker fires `error` (the worker
 * goes on, as a Worker does); the sandbox ending on its own fires `error` when it was not a clean
 * exit, then `close`.
 */
export class SandboxedWorker extends EventTarget {
  onmessage: ((event: MessageEvent) => void) | null = null;
  onerror: ((event: ErrorEvent) => void) | null = null;
  onmessageerror: ((event: MessageEvent) => void) | null = null;
  /** The module's path. */
  readonly path: string;
  /** Resolves with the sandbox's result once it is gone (after `terminate()` or its own end). */
  readonly exited: Promise<RunResult>;
  private readonly shim: ShimProcess;
  private terminated = false;

  constructor(url: string | URL, options: SandboxedWorkerOptions = {}) {
    super();
    checkKeys("SandboxedWorker", options, ["sandbox", "socket", "bunkerBin", "name"]);
    this.path = modulePathOf(url, "SandboxedWorker");
    const policy = policyWithGrants(options.sandbox, { read: [dirname(this.path)] }, "SandboxedWorker");
    this.shim = new ShimProcess({
      mode: "worker",
      modulePath: this.path,
      policy,
      cwd: dirname(this.path),
      socket: options.socket,
      bunkerBin: options.bunkerBin,
      onFrame: (frame) => this.onFrame(frame),
    });
    this.exited = this.shim.exited.then(
      (result) => {
        this.ended(result);
        return result;
      },
      (error: unknown) => {
        // After terminate() a run that ends without its report is no news to the caller.
        if (!this.terminated) this.fireError(error instanceof Error ? error : new Error(String(error)));
        this.dispatchEvent(new Event("close"));
        throw error;
      },
    );
    // A caller that never awaits `exited` must not see an unhandled rejection: `error` told it.
    this.exited.catch(() => undefined);
  }

  /** Sends a JSON-serialisable message to the worker. */
  postMessage(data: unknown): void {
    const text = JSON.stringify(data);
    if (text === undefined && data !== undefined) {
      throw new TypeError(`postMessage: a ${typeof data} is not JSON-serialisable`);
    }
    this.shim.send({ data });
  }

  /** Ends the worker: its sandbox is killed, every process of it. */
  terminate(): void {
    this.terminated = true;
    this.shim.kill();
  }

  private onFrame(frame: ShimFrame): void {
    if (frame.t === "message") {
      const event = new MessageEvent("message", { data: frame.data });
      this.onmessage?.(event);
      this.dispatchEvent(event);
    } else if (frame.t === "error") {
      const error = Object.assign(new Error(frame.error.message), frame.error);
      this.fireError(error);
    }
  }

  private fireError(error: Error): void {
    const event = new ErrorEvent("error", { message: `${error.name}: ${error.message}`, error });
    this.onerror?.(event);
    this.dispatchEvent(event);
  }

  private ended(result: RunResult): void {
    if (!this.terminated && !(result.status === "ok" || (result.status === "exit" && result.exit_code === 0))) {
      const reason = endReason(result);
      // A limit or a kill is a BunkerError with the API's code; a program's own exit is not.
      const error =
        result.error_code !== undefined
          ? new BunkerError(result.error_code, reason.message, { result })
          : new Error(`the worker ended: ${result.signal !== undefined ? `signal ${result.signal}` : `exit code ${result.exit_code}`}`);
      this.fireError(error);
    }
    this.dispatchEvent(new Event("close"));
  }
}

/** A module given as a path or a file: URL, made absolute against this process's directory. */
export function modulePathOf(url: string | URL, where: string): string {
  if (url instanceof URL || url.startsWith("file:")) {
    const parsed = url instanceof URL ? url : new URL(url);
    if (parsed.protocol !== "file:") throw badOption(where, `only file: URLs name a module, got ${parsed.href}`);
    return fileURLToPath(parsed);
  }
  if (url === "") throw badOption(where, "the module path is empty");
  return isAbsolute(url) ? url : resolve(url);
}

