// `evalJs`: code evaluated by a Bun worker in a sandbox (op `eval`, docs/protocol.md; without a
// daemon `bunker eval`, which prints the same EvalResult).
import { daemonSocket, sharedConnection } from "./connection";
import { BunkerError, badOption, checkKeys } from "./errors";
import { bunkerBinary, classifyPolicy, policyForDaemon, type PolicySource } from "./policy";
import type { EvalHttpOptions, EvalResult, EvalSpec, HttpRecord, SandboxOption, Status } from "./types";

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
  const policy = options.sandbox === undefined ? undefined : classifyPolicy(options.sandbox, where);
  return { spec, policy };
}

/** `bunker eval`'s arguments for a spec (the CLI fallback). */
export function cliEvalArgs(bin: string, spec: EvalSpec, policyFile: string | undefined): string[] {
  const args = [bin, "eval", "--engine", spec.engine];
  if (spec.limits?.timeout_ms !== undefined) args.push("--timeout", `${spec.limits.timeout_ms}ms`);
  if (spec.limits?.memory_bytes !== undefined) args.push("--memory", String(spec.limits.memory_bytes));
  if (spec.limits?.console_bytes !== undefined) args.push("--console-max", String(spec.limits.console_bytes));
  if (spec.http !== undefined) args.push("--http-json", JSON.stringify(spec.http));
  if (spec.globals !== undefined) args.push("--globals-json", JSON.stringify(spec.globals));
  if (spec.function !== undefined) args.push("--function", spec.function, "--args-json", JSON.stringify(spec.args ?? []));
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

async function evalCli(spec: EvalSpec, policy: PolicySource | undefined, bin: string | undefined): Promise<EvalResult> {
  const binary = bunkerBinary(bin);
  let policyFile: string | undefined;
  let cleanup: string | undefined;
  if (policy?.kind === "file") policyFile = policy.path;
  else if (policy?.kind === "object") {
    cleanup = `${process.env.TMPDIR ?? "/tmp"}/bunker-eval-policy-${process.pid}-${crypto.randomUUID()}.json`;
    await Bun.write(cleanup, JSON.stringify(policy.policy));
    policyFile = cleanup;
  } else if (policy?.kind === "name") {
    throw badOption("evalJs()", `sandbox: a policy name ("${policy.name}") needs the daemon; give a policy object or file`);
  }
  try {
    const proc = Bun.spawn(cliEvalArgs(binary, spec, policyFile), { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const line = out.trim().split("\n").pop() ?? "";
    if (line.startsWith("{")) {
      const parsed = JSON.parse(line) as EvalResult & { code?: string };
      if ("value" in parsed) return parsed;
    }
    // No EvalResult: a request-level error (bad flag, bad policy), said on stderr.
    const message = err.trim().replace(/^bunker: (policy error: )?/gm, "") || `bunker eval exited ${code}`;
    const errorCode = code === 120 ? "policy_invalid" : code === 2 ? "request_invalid" : code === 125 ? "unavailable" : "internal_error";
    throw new BunkerError(errorCode, message);
  } finally {
    if (cleanup !== undefined) await Bun.file(cleanup).delete().catch(() => {});
  }
}
