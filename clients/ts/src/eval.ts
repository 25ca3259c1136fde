// `evalJs`: code evaluated by a Bun worker in a sandbox (op `eval`, docs/protocol.md; without a
// daemon `bunker eval`, which prints the same EvalResult).
import { type Connection, daemonSocket, sharedConnection } from "./connection";
import { BunkerError, badOption, checkKeys } from "./errors";
import { bunkerBinary, classifyPolicy, policyForDaemon, type PolicySource } from "./policy";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import type { ApiError, EvalHttpOptions, EvalResult, EvalSpec, HttpRecord, Policy, SandboxOption, Status } from "./types";

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

/** `allowlist` × `allowed_ports` as `allow.net` rules (as bunker_policy::eval maps them). */
function allowRules(http: EvalHttpOptions): string[] {
  const hosts = http.allowlist ?? [];
  const ports = http.allowed_ports ?? [];
  if (ports.length === 0) return hosts;
  const withPort = (host: string, port: number) =>
    host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
  return hosts.flatMap((host) => ports.map((port) => withPort(host, port)));
}

/**
 * The policy layer `bunker eval` (which takes only `--allow-net` of the http options) gets for
 * the rest of them: `denylist` → `deny.net`, the limits → `http.*`, on top of `base` (a policy
 * file, or none: then the eval profile alone).
 */
export function httpPolicyLayer(http: EvalHttpOptions | undefined, base: string | undefined): Policy | undefined {
  const layer: Policy = base === undefined ? {} : { extends: [base] };
  const limits: NonNullable<Policy["http"]> = {};
  if (http?.block_private_ips !== undefined) limits.block_private_ips = http.block_private_ips;
  if (http?.max_requests !== undefined) limits.max_requests = http.max_requests;
  if (http?.max_request_size !== undefined) limits.max_request_bytes = http.max_request_size;
  if (http?.max_response_size !== undefined) limits.max_response_bytes = http.max_response_size;
  if (http?.request_timeout !== undefined) limits.request_timeout = `${http.request_timeout}ms`;
  if (Object.keys(limits).length > 0) layer.http = limits;
  if ((http?.denylist ?? []).length > 0) layer.deny = { net: http!.denylist };
  if (layer.http === undefined && layer.deny === undefined) return undefined;
  return layer;
}

/** `bunker eval`'s arguments for a spec (the CLI fallback); `policyFile` extends the eval profile. */
export function cliEvalArgs(bin: string, spec: EvalSpec, policyFile: string | undefined): string[] {
  const args = [bin, "eval", "--local", "--engine", spec.engine];
  if (spec.limits?.timeout_ms !== undefined) args.push("--timeout", `${spec.limits.timeout_ms}ms`);
  if (spec.limits?.memory_bytes !== undefined) args.push("--memory", String(spec.limits.memory_bytes));
  if (spec.limits?.console_bytes !== undefined) args.push("--console-max", String(spec.limits.console_bytes));
  if (spec.http !== undefined) {
    if ((spec.http.allowed_methods ?? []).length > 0) {
      // bunker refuses them (the proxy cannot see methods inside TLS): say so as the daemon does.
      throw new BunkerError("policy_invalid", `http.allowed_methods: methods ${JSON.stringify(spec.http.allowed_methods)} cannot be enforced: the egress proxy does not see the method of a TLS connection; leave allowed_methods empty`);
    }
    for (const rule of allowRules(spec.http)) args.push("--allow-net", rule);
  }
  if (spec.globals !== undefined) args.push("--globals", JSON.stringify(spec.globals));
  if (spec.function !== undefined) args.push("--function", spec.function, "--args", JSON.stringify(spec.args ?? []));
  if (policyFile !== undefined) args.push("--policy", policyFile);
  args.push("--", spec.code);
  return args;
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

async function evalCli(spec: EvalSpec, policy: PolicySource | undefined, bin: string | undefined): Promise<EvalResult> {
  const binary = bunkerBinary(bin);
  const temporary: string[] = [];
  const writeTemporary = async (doc: Policy) => {
    const path = `${tmpdir()}/bunker-eval-policy-${process.pid}-${crypto.randomUUID()}.json`;
    await Bun.write(path, JSON.stringify(doc));
    temporary.push(path);
    return path;
  };
  try {
    let base: string | undefined;
    if (policy?.kind === "file") base = resolve(policy.path);
    else if (policy?.kind === "object") {
      // Resolved here (relative paths against this process), then written where bunker reads it.
      const choice = await policyForDaemon(policy, bin);
      base = await writeTemporary((choice as { inline: Policy }).inline);
    } else if (policy?.kind === "name") {
      throw badOption("evalJs()", `sandbox: a policy name ("${policy.name}") needs a daemon; give a policy object or file`);
    }
    const layer = httpPolicyLayer(spec.http, base);
    const policyFile = layer === undefined ? base : await writeTemporary(layer);
    const proc = Bun.spawn(cliEvalArgs(binary, spec, policyFile), { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
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
  } finally {
    for (const path of temporary) await Bun.file(path).delete().catch(() => {});
  }
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
