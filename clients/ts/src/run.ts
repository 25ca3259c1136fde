// `run`: one program to its end, resolving to the whole result. Through the daemon it is a single
// `run` request with captured output; without one, the CLI fallback with piped output.
import { daemonSocket, sharedConnection } from "./connection";
import { BunkerError, badOption, checkKeys } from "./errors";
import { startCli } from "./fallback";
import { checkEnvAllowed, policyForDaemon } from "./policy";
import { type BytesLike, fromData, toBytes, toData } from "./protocol";
import { type SpawnOptions, checkCommonOptions, resultError, signalName, violationsOf } from "./spawn";
import type { HttpRecord, RunEvent, RunResult, RunSpec, Status, Violation } from "./types";

export interface RunOptions extends Pick<SpawnOptions, "sandbox" | "cwd" | "env" | "timeout" | "socket" | "bunkerBin" | "onEvent" | "signal"> {
  /** Bytes the program reads on stdin (then end of file). Default: nothing. */
  stdin?: BytesLike | null;
  /** Throw a `CommandError` when the program does not exit 0. */
  check?: boolean;
}

export const RUN_OPTION_KEYS = ["sandbox", "cwd", "env", "timeout", "socket", "bunkerBin", "onEvent", "signal", "stdin", "check"] as const;

/** A finished run. */
export interface RunOutput {
  /** The exit code when the program exited by itself, else null. */
  exitCode: number | null;
  /** The signal that ended it ("SIGKILL" for a limit or the timeout), else null. */
  signalCode: string | null;
  /** How the run ended (docs/report.md): ok, exit, signal, timeout, memory_limit, ... */
  status: Status;
  /** `status === "ok"`. */
  success: boolean;
  stdout: Uint8Array;
  stderr: Uint8Array;
  /** stdout as UTF-8 text. */
  readonly stdoutText: string;
  /** stderr as UTF-8 text. */
  readonly stderrText: string;
  /** Whether output was cut at `limits.output`. */
  truncated: boolean;
  /** What the policy refused (violation events, denied network requests). */
  violations: Violation[];
  /** Every decision of the egress proxy. */
  httpRequests: HttpRecord[];
  /** Whether a warm pool of the daemon supplied the sandbox. */
  warm: boolean;
  /** The whole report. */
  report: RunResult;
}

/** A run whose program did not exit 0, thrown by `run(..., { check: true })`. */
export class CommandError extends Error {
  readonly result: RunOutput;
  constructor(result: RunOutput) {
    super(
      `${result.report.error ?? `the program ended with status ${result.status}`}` +
        (result.exitCode !== null ? ` (exit code ${result.exitCode})` : result.signalCode ? ` (${result.signalCode})` : ""),
    );
    this.name = "CommandError";
    this.result = result;
  }
}

const decoder = new TextDecoder();

export function toRunOutput(report: RunResult, stdout: Uint8Array, stderr: Uint8Array, violations: Violation[] = []): RunOutput {
  return {
    exitCode: report.exit_code ?? null,
    signalCode: report.signal === undefined || report.exit_code !== undefined ? null : signalName(report.signal),
    status: report.status,
    success: report.status === "ok",
    stdout,
    stderr,
    get stdoutText() {
      return decoder.decode(stdout);
    },
    get stderrText() {
      return decoder.decode(stderr);
    },
    truncated: report.stdout.truncated || report.stderr.truncated,
    violations: violationsOf(report, violations),
    httpRequests: report.http?.requests ?? [],
    warm: report.warm === true,
    report,
  };
}

/** Calls `onAbort` when `signal` aborts while `work` is pending. */
async function withAbort<T>(signal: AbortSignal | undefined, work: Promise<T>, onAbort: () => void): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await work;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Runs `cmd` in a sandbox to its end. A non-zero exit is a result; a run that never started throws. */
export async function run(cmd: string[], options: RunOptions = {}): Promise<RunOutput> {
  if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((a) => typeof a === "string")) {
    throw badOption("run()", "the command must be a non-empty array of strings");
  }
  checkKeys("run()", options, RUN_OPTION_KEYS);
  const policy = checkCommonOptions("run()", options);
  const stdinBytes = options.stdin === undefined || options.stdin === null ? undefined : toBytes(options.stdin);
  const socket = daemonSocket(options.socket);
  let output: RunOutput;
  if (socket !== undefined) {
    const violations: Violation[] = [];
    const [connection, policyChoice] = await Promise.all([sharedConnection(socket), policyForDaemon(policy, options.bunkerBin)]);
    const spec: RunSpec = { policy: policyChoice, argv: cmd };
    if (options.cwd !== undefined) spec.cwd = options.cwd;
    if (options.env !== undefined) spec.env = options.env;
    if (stdinBytes !== undefined) spec.stdin = { data: toData(stdinBytes) };
    if (options.timeout !== undefined) spec.options = { timeout_ms: Math.ceil(options.timeout) };
    const onEvent = (event: RunEvent) => {
      if (event.event === "violation") violations.push({ layer: event.layer, rule: event.rule, attempt: event.attempt });
      options.onEvent?.(event);
    };
    const request = connection.send<RunResult>("run", { spec }, { onEvent });
    // An abort cancels the request: a queued one never runs, a running one is killed.
    const report = await withAbort(options.signal, request.reply, () => {
      connection.request("cancel", { request: request.id }).catch(() => {});
    });
    output = toRunOutput(report, fromData(report.stdout.data), fromData(report.stderr.data), violations);
  } else {
    await checkEnvAllowed(policy, options.env, options.bunkerBin);
    const cli = startCli({
      argv: cmd,
      policy,
      bin: options.bunkerBin,
      cwd: options.cwd,
      env: options.env,
      timeoutMs: options.timeout,
      stdin: stdinBytes ?? "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, report] = await withAbort(
      options.signal,
      Promise.all([
        new Response(cli.proc.stdout as ReadableStream).bytes(),
        new Response(cli.proc.stderr as ReadableStream).bytes(),
        cli.report,
      ]),
      () => cli.proc.kill(),
    ).catch((error) => {
      if (options.signal?.aborted && error instanceof BunkerError && error.code === "internal_error") {
        throw new BunkerError("cancelled", "aborted before the sandbox started (no report)", { cause: error });
      }
      throw error;
    });
    options.onEvent?.({ event: "exit", result: report });
    output = toRunOutput(report, stdout, stderr);
  }
  const failure = resultError(output.report);
  if (failure !== undefined) throw failure;
  if (options.check === true && !output.success) throw new CommandError(output);
  return output;
}

