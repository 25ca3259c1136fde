// `evalJs`: code evaluated by a Bun worker in a sandbox (op `eval`, docs/protocol.md; without a
// daemon `bunker eval`, which prints the same EvalResult).
import { type Connection, daemonSocket, sharedConnection } from "./connection";
import { BunkerError, badOption, checkKeys } from "./errors";
import { bunkerBinary, classifyPolicy, policyForDaemon, type PolicySource } from "./policy";
import type { ApiError, EvalHttpOptions, EvalResult, EvalSpec, HttpRecord, SandboxOption, Status } from "./types";

export interface EvalOptions {
  /** Wall-clock bound in milliseconds (can only lower the eval profile's). */
  timeoutMs?: number;
  /** Memory of the whole sandbox in bytes (can only lower the profile's). */
  memoryLimitBytes?: number;
  /** Console output kept, in bytes. */
  consoleLogMaxSize?: number;
  /** Network access (absent: none): allowlist, denylist, ports, limits. */
  http?: EvalHttpOptions;
  /** JSON values set as globals before the code runs. */
  globals?: Record<string, unknown>;
  /** Call this global function with `args` after the code ran; the value is its return. */
  function?: string;
  args?: unknown[];
  /** A policy extending the engine's eval profile (e.g. read grants for modules). */
  sandbox?: SandboxOption;
  /** The daemon's socket (default env BUNKER_SOCKET); `false` forces `bunker eval`. */
  socket?: string | false;
  /** The bunker binary for the CLI fallback (default env BUNKER_BIN, else PATH). */
  bunkerBin?: string;
}

export const EVAL_OPTION_KEYS = [
  "timeoutMs",
  "memoryLimitBytes",
  "consoleLogMaxSize",
  "http",
  "globals",
  "function",
  "args",
  "sandbox",
  "socket",
  "bunkerBin",
] as const;

const HTTP_KEYS = [
  "allowlist",
  "denylist",
  "block_private_ips",
  "allowed_ports",
  "allowed_methods",
  "max_requests",
  "max_request_size",
  "max_response_size",
  "request_timeout",
] as const;

/** A successful eval. */
export interface EvalOutput {
  /** The value of the code's last expression (or of `function`), as JSON. */
  value: unknown;
  consoleOutput: string;
  consoleTruncated: boolean;
  httpRequests: HttpRecord[];
  /** Served by a pre-started worker. */
  warm: boolean;
  wallMs: number;
  status: Status;
  /** The whole EvalResult. */
  result: EvalResult;
}

/**
 * An eval whose code failed: `kind` is the stable string (`syntax`, `thrown`, `timeout`,
 * `memory_limit`, `output_limit`, `http_blocked`, `http_limit`, `protocol_error`, `crashed`).
 */
export class EvalError extends Error {
  readonly kind: string;
  /** The exception's name (`TypeError`), when one was thrown. */
  readonly errorName: string | undefined;
  /** The exception's stack inside the sandbox. */
  readonly jsStack: string | undefined;
  readonly consoleOutput: string;
  readonly result: EvalResult;

  constructor(result: EvalResult) {
    const error = result.error!;
    super(`${error.kind}: ${error.name ? `${error.name}: ` : ""}${error.message}`);
    this.name = "EvalError";
    this.kind = error.kind;
    this.errorName = error.name;
    this.jsStack = error.stack;
    this.consoleOutput = result.console_output;
    this.result = result;
  }
}

function positiveInteger(where: string, name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw badOption(where, `${name}: expected a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The `EvalSpec` of a call, checked. */
export function evalSpec(code: string, options: EvalOptions): { spec: EvalSpec; policy?: PolicySource } {
  const where = "evalJs()";
  if (typeof code !== "string") throw badOption(where, `code: expected a string, got ${typeof code}`);
  checkKeys(where, options, EVAL_OPTION_KEYS);
  const spec: EvalSpec = { engine: "bun", code };
  const limits: NonNullable<EvalSpec["limits"]> = {};
  const timeout = positiveInteger(where, "timeoutMs", options.timeoutMs);
  const memory = positiveInteger(where, "memoryLimitBytes", options.memoryLimitBytes);
  const consoleBytes = positiveInteger(where, "consoleLogMaxSize", options.consoleLogMaxSize);
  if (timeout !== undefined) limits.timeout_ms = timeout;
  if (memory !== undefined) limits.memory_bytes = memory;
  if (consoleBytes !== undefined) limits.console_bytes = consoleBytes;
  if (Object.keys(limits).length > 0) spec.limits = limits;
  if (options.http !== undefined) {
    checkKeys(`${where} http`, options.http, HTTP_KEYS);
    spec.http = options.http;
  }
  if (options.globals !== undefined) spec.globals = options.globals;
  if (options.function !== undefined) {
    if (typeof options.function !== "string") throw badOption(where, "function: expected a function name");
    spec.function = options.function;
    if (options.args !== undefined) spec.args = options.args;
  } else if (options.args !== undefined) {
    throw badOption(where, "args: only with function");
  }
  // An eval's policy extends the engine's profile: no implicit `default` under it.
  const policy = options.sandbox === undefined ? undefined : classifyPolicy(options.sandbox, where, { implicitDefault: false });
  return { spec, policy };
}

/** Evaluates JavaScript in a sandbox; resolves to its value, rejects with `EvalError` when the code failed. */
export async function evalJs(code: string, options: EvalOptions = {}): Promise<EvalOutput> {
  const { spec, policy } = evalSpec(code, options);
  const socket = daemonSocket(options.socket);
  let result: EvalResult;
  if (socket !== undefined) {
    const [connection, policyChoice] = await Promise.all([
      sharedConnection(socket),
      policy === undefined ? undefined : policyForDaemon(policy, options.bunkerBin),
    ]);
    if (policyChoice !== undefined) spec.policy = policyChoice;
    result = await connection.request<EvalResult>("eval", { spec });
  } else {
    result = await evalCli(spec, policy, options.bunkerBin);
  }
  return toOutput(result);
}

/**
 * The CLI fallback: the whole spec on `bunker eval --spec -`'s stdin, which composes its policy
 * (the eval profile, `spec.policy`, then `http` and `limits`) as the daemon does.
 */
async function evalCli(spec: EvalSpec, policy: PolicySource | undefined, bin: string | undefined): Promise<EvalResult> {
  const binary = bunkerBinary(bin);
  // A file or an object with relative paths is resolved here, against this process, as for a daemon.
  if (policy !== undefined) spec.policy = await policyForDaemon(policy, bin);
  const proc = Bun.spawn([binary, "eval", "--local", "--spec", "-"], {
    stdin: new TextEncoder().encode(JSON.stringify(spec)),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const line = out.trim().split("\n").pop() ?? "";
  if (line.startsWith("{")) return JSON.parse(line) as EvalResult;
  // No EvalResult: a request-level error, whose ApiError is the last line on stderr.
  const last = err.trim().split("\n").pop() ?? "";
  if (last.startsWith("{")) {
    const apiError = JSON.parse(last) as ApiError;
    if (typeof apiError.code === "string") throw BunkerError.fromApi(apiError);
  }
  throw new BunkerError("internal_error", `bunker eval exited ${code} without a result: ${err.trim()}`);
}

/** What an opened worker's evals take: the code's own inputs (limits and policy are the worker's). */
export interface WorkerEvalOptions {
  globals?: Record<string, unknown>;
  function?: string;
  args?: unknown[];
}

const WORKER_EVAL_KEYS = ["globals", "function", "args"] as const;
const OPEN_WORKER_KEYS = ["timeoutMs", "memoryLimitBytes", "consoleLogMaxSize", "http", "sandbox", "socket", "bunkerBin"] as const;

function toOutput(result: EvalResult): EvalOutput {
  if (result.error !== null && result.error !== undefined) throw new EvalError(result);
  return {
    value: result.value,
    consoleOutput: result.console_output,
    consoleTruncated: result.console_truncated,
    httpRequests: result.http_requests ?? [],
    warm: result.warm === true,
    wallMs: result.wall_ms,
    status: result.status,
    result,
  };
}

/**
 * A worker that serves several evals, one at a time, keeping its globals between them (the
 * daemon's opt-in multi-request mode, `open_worker`). A timeout, memory kill or crash ends it:
 * later evals get `not_found`. It ends with `close()` or with the connection.
 */
export class EvalWorker {
  private constructor(
    private readonly connection: Connection,
    /** The daemon's worker id. */
    readonly id: string,
  ) {}

  /** @internal */
  static async open(options: Omit<EvalOptions, "globals" | "function" | "args"> = {}): Promise<EvalWorker> {
    checkKeys("openEvalWorker()", options, OPEN_WORKER_KEYS);
    const { spec, policy } = evalSpec("", options);
    const socket = daemonSocket(options.socket);
    if (socket === undefined) {
      throw new BunkerError("unavailable", "openEvalWorker(): the multi-request mode needs a daemon (the socket option or BUNKER_SOCKET)");
    }
    const connection = await sharedConnection(socket);
    const { code: _code, ...workerSpec } = spec;
    if (policy !== undefined) workerSpec.policy = await policyForDaemon(policy, options.bunkerBin);
    const { worker } = await connection.request<{ worker: string }>("open_worker", { spec: workerSpec });
    return new EvalWorker(connection, worker);
  }

  /** Evaluates `code` in this worker; rejects with `EvalError` when the code failed. */
  async eval(code: string, options: WorkerEvalOptions = {}): Promise<EvalOutput> {
    checkKeys("EvalWorker.eval()", options, WORKER_EVAL_KEYS);
    const { spec } = evalSpec(code, options);
    spec.worker = this.id;
    return toOutput(await this.connection.request<EvalResult>("eval", { spec }));
  }

  /** Ends the worker and its sandbox. */
  async close(): Promise<void> {
    await this.connection.request("close_worker", { worker: this.id });
  }
}

/** Opens an `EvalWorker` on the daemon (options as `evalJs`'s, without the per-eval ones). */
export function openEvalWorker(options: Omit<EvalOptions, "globals" | "function" | "args"> = {}): Promise<EvalWorker> {
  return EvalWorker.open(options);
}
