// `spawn`: a sandboxed program shaped like `Bun.Subprocess`, through the daemon (`start` with
// `stdin: "stream"` / `output: "events"`) or, without one, the CLI fallback.
import { constants } from "node:os";
import { type Connection, daemonSocket, sharedConnection } from "./connection";
import { BunkerError, badOption, checkKeys } from "./errors";
import { startCli } from "./fallback";
import { checkEnvAllowed, classifyPolicy, policyForDaemon, type PolicySource } from "./policy";
import { type BytesLike, fromData, toBytes, toData } from "./protocol";
import type { RunEvent, RunResult, RunSpec, SandboxOption, Violation } from "./types";

export type StdinOption =
  | "pipe"
  | "inherit"
  | "ignore"
  | null
  | undefined
  | BytesLike
  | Blob
  | Response
  | ReadableStream<Uint8Array>;
export type OutputOption = "pipe" | "inherit" | "ignore" | null | undefined;

export interface SpawnOptions {
  /** The policy: an object, a policy file path, or a name the daemon knows (default: "default"). */
  sandbox?: SandboxOption;
  /** Working directory inside the sandbox. */
  cwd?: string;
  /** Environment variables; the policy's `allow.env` must allow each name. */
  env?: Record<string, string>;
  /** "pipe" gives a writable `stdin`; bytes, a Blob, a Response or a ReadableStream are fed in. Default: nothing. */
  stdin?: StdinOption;
  /** Default "pipe" (a ReadableStream). */
  stdout?: OutputOption;
  /** Default "inherit", like Bun.spawn. */
  stderr?: OutputOption;
  /** A wall-clock bound in milliseconds (can only shorten the policy's `limits.timeout`). */
  timeout?: number;
  /** The daemon's socket (default: env BUNKER_SOCKET); `false` forces the CLI fallback. */
  socket?: string | false;
  /** The bunker binary for the CLI fallback and `bunker check` (default: env BUNKER_BIN, else PATH). */
  bunkerBin?: string;
  /** Called once the program has ended, like Bun.spawn's. */
  onExit?: (proc: SandboxedSubprocess, exitCode: number | null, signalCode: string | null, error?: Error) => void;
  /** Every event the daemon sends for this sandbox (none in CLI fallback mode but the exit). */
  onEvent?: (event: RunEvent) => void;
  /** Aborting it kills the sandbox, like `kill()` (Bun.spawn's `signal`). */
  signal?: AbortSignal;
}

export const SPAWN_OPTION_KEYS = [
  "sandbox",
  "cwd",
  "env",
  "stdin",
  "stdout",
  "stderr",
  "timeout",
  "socket",
  "bunkerBin",
  "onExit",
  "onEvent",
  "signal",
] as const;

/** A `FileSink`-like writer for a program's stdin. */
export interface StdinWriter {
  /** Queues bytes; returns how many were queued. */
  write(chunk: BytesLike): number;
  /** Resolves once everything queued so far has been taken. */
  flush(): Promise<number>;
  /** Closes the program's stdin after what was written. */
  end(error?: Error): Promise<number>;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, number]) => [number as number, name]),
);

/** The signal name for a number (9 → "SIGKILL"). */
export function signalName(signal: number): string {
  return SIGNAL_NAMES.get(signal) ?? `SIG${signal}`;
}

/** The error a result stands for when the program never ran (policy or setup error). */
export function resultError(result: RunResult): BunkerError | undefined {
  if (result.status !== "setup_error" && result.status !== "policy_error") return undefined;
  const code = result.error_code ?? (result.status === "policy_error" ? "policy_invalid" : "setup_failed");
  return new BunkerError(code, result.error ?? result.status, { step: result.error_step, result });
}

/** What the policy refused during a run: `violation` events, then the proxy's denied requests. */
export function violationsOf(result: RunResult, events: Violation[] = []): Violation[] {
  const denied = (result.http?.requests ?? [])
    .filter((r) => !r.allowed)
    .map((r): Violation => ({ layer: "net", rule: r.rule, attempt: `${r.kind} ${r.host}:${r.port}` }));
  return [...events, ...denied];
}

type Output = { stream?: ReadableStream<Uint8Array>; push(bytes: Uint8Array): void; close(): void; fail(e: Error): void };

function outputSink(mode: "pipe" | "inherit" | "ignore", inherit: NodeJS.WriteStream): Output {
  if (mode === "ignore") return { push() {}, close() {}, fail() {} };
  if (mode === "inherit") return { push: (b) => void inherit.write(b), close() {}, fail() {} };
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let done = false;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  return {
    stream,
    push: (b) => {
      if (!done) controller.enqueue(b);
    },
    close: () => {
      if (!done) controller.close();
      done = true;
    },
    fail: (e) => {
      if (!done) controller.error(e);
      done = true;
    },
  };
}

function outputMode(value: OutputOption, fallback: "pipe" | "inherit", name: string): "pipe" | "inherit" | "ignore" {
  if (value === undefined) return fallback;
  if (value === null) return "ignore";
  if (value === "pipe" || value === "inherit" || value === "ignore") return value;
  throw badOption("spawn()", `${name}: expected "pipe", "inherit", "ignore" or null, got ${JSON.stringify(value)}`);
}

/** A sandboxed program, shaped like `Bun.Subprocess`. */
export class SandboxedSubprocess {
  /** "daemon" or "cli": which way it runs. */
  readonly mode: "daemon" | "cli";
  stdin: StdinWriter | undefined;
  stdout: ReadableStream<Uint8Array> | undefined;
  stderr: ReadableStream<Uint8Array> | undefined;
  /** Resolves to the exit code (128 + N for signal N), like Bun's; rejects when the program never ran. */
  readonly exited: Promise<number>;
  /** The run's whole result (docs/report.md). */
  readonly report: Promise<RunResult>;
  exitCode: number | null = null;
  signalCode: string | null = null;
  killed = false;
  /** The daemon's sandbox id, once started (daemon mode). */
  sandboxId: string | undefined;
  /** The violation events heard (daemon mode). */
  readonly violations: Violation[] = [];
  private killer: ((signal?: string | number) => void) | undefined;
  private settle!: (result: RunResult | Error) => void;

  /** @internal */
  constructor(mode: "daemon" | "cli", onExit: SpawnOptions["onExit"]) {
    this.mode = mode;
    this.report = new Promise<RunResult>((resolve, reject) => {
      this.settle = (outcome) => {
        if (outcome instanceof Error) {
          reject(outcome);
          onExit?.(this, null, null, outcome);
          return;
        }
        const failure = resultError(outcome);
        if (failure !== undefined) {
          reject(failure);
          onExit?.(this, null, null, failure);
          return;
        }
        if (outcome.exit_code !== undefined) this.exitCode = outcome.exit_code;
        else if (outcome.signal !== undefined) this.signalCode = signalName(outcome.signal);
        resolve(outcome);
        onExit?.(this, this.exitCode, this.signalCode);
      };
    });
    this.exited = this.report.then((r) => r.exit_code ?? 128 + (r.signal ?? 0));
    // Callers often await only one of the two; the other must not be an unhandled rejection.
    this.report.catch(() => {});
    this.exited.catch(() => {});
  }

  /** Kills every process of the sandbox (daemon: SIGKILL; CLI: the signal to bunker, SIGTERM by default). */
  kill(signal?: string | number): void {
    this.killed = true;
    this.killer?.(signal);
  }

  /** @internal */ _setKiller(killer: (signal?: string | number) => void): void {
    this.killer = killer;
    if (this.killed) killer();
  }
  /** @internal */ _settle(outcome: RunResult | Error): void {
    this.settle(outcome);
  }
}

/** Normalizes `spawn(cmd, opts)` / `spawn({cmd, ...opts})`. */
function splitArgs(
  where: string,
  cmdOrOptions: string[] | (SpawnOptions & { cmd: string[] }),
  options?: SpawnOptions,
): { argv: string[]; options: SpawnOptions } {
  let argv: unknown;
  let opts: SpawnOptions;
  if (Array.isArray(cmdOrOptions)) {
    argv = cmdOrOptions;
    opts = options ?? {};
  } else if (cmdOrOptions !== null && typeof cmdOrOptions === "object") {
    const { cmd, ...rest } = cmdOrOptions;
    argv = cmd;
    opts = rest;
  } else {
    throw badOption(where, "expected a command array, e.g. [\"echo\", \"hi\"], or {cmd: [...]}");
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw badOption(where, "the command must be a non-empty array of strings");
  }
  return { argv, options: opts };
}

/** Validated options shared by `spawn` and `run`. */
export function checkCommonOptions(where: string, options: SpawnOptions): PolicySource {
  if (options.timeout !== undefined && (!Number.isFinite(options.timeout) || options.timeout <= 0)) {
    throw badOption(where, `timeout: expected a positive number of milliseconds, got ${options.timeout}`);
  }
  if (options.env !== undefined) {
    if (options.env === null || typeof options.env !== "object") throw badOption(where, "env: expected an object of strings");
    for (const [name, value] of Object.entries(options.env)) {
      if (typeof value !== "string") throw badOption(where, `env.${name}: expected a string, got ${typeof value}`);
    }
  }
  if (options.cwd !== undefined && typeof options.cwd !== "string") throw badOption(where, "cwd: expected a string");
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw badOption(where, "signal: expected an AbortSignal");
  if (options.socket !== undefined && options.socket !== false && typeof options.socket !== "string") {
    throw badOption(where, "socket: expected a socket path or false");
  }
  return classifyPolicy(options.sandbox, where);
}

/** Runs `cmd` in a sandbox and returns a `Bun.Subprocess`-shaped handle at once. */
export function spawn(cmd: string[], options?: SpawnOptions): SandboxedSubprocess;
export function spawn(options: SpawnOptions & { cmd: string[] }): SandboxedSubprocess;
export function spawn(cmdOrOptions: any, maybeOptions?: SpawnOptions): SandboxedSubprocess {
  const { argv, options } = splitArgs("spawn()", cmdOrOptions, maybeOptions);
  checkKeys("spawn()", options, SPAWN_OPTION_KEYS);
  const policy = checkCommonOptions("spawn()", options);
  const stdout = outputMode(options.stdout, "pipe", "stdout");
  const stderr = outputMode(options.stderr, "inherit", "stderr");
  const stdin = options.stdin;
  if (
    !(stdin === undefined || stdin === null || stdin === "pipe" || stdin === "inherit" || stdin === "ignore") &&
    !(typeof stdin === "string" || stdin instanceof Uint8Array || stdin instanceof ArrayBuffer || ArrayBuffer.isView(stdin)) &&
    !(stdin instanceof Blob || stdin instanceof Response || stdin instanceof ReadableStream)
  ) {
    throw badOption("spawn()", `stdin: expected "pipe", "inherit", "ignore", null, bytes, a Blob, a Response or a ReadableStream`);
  }
  const socket = daemonSocket(options.socket);
  const proc =
    socket === undefined
      ? spawnCli(argv, options, policy, stdout, stderr)
      : spawnDaemon(socket, argv, options, policy, stdout, stderr);
  const abort = options.signal;
  if (abort !== undefined) {
    if (abort.aborted) proc.kill();
    else {
      const onAbort = () => proc.kill();
      abort.addEventListener("abort", onAbort, { once: true });
      proc.report.finally(() => abort.removeEventListener("abort", onAbort)).catch(() => {});
    }
  }
  return proc;
}

function spawnCli(
  argv: string[],
  options: SpawnOptions,
  policy: PolicySource,
  stdout: "pipe" | "inherit" | "ignore",
  stderr: "pipe" | "inherit" | "ignore",
): SandboxedSubprocess {
  const proc = new SandboxedSubprocess("cli", options.onExit);
  let stdin: any = options.stdin ?? "ignore";
  if (stdin === null) stdin = "ignore";
  else if (typeof stdin === "string" && !["pipe", "inherit", "ignore"].includes(stdin)) stdin = toBytes(stdin);
  else if (stdin instanceof ArrayBuffer || (ArrayBuffer.isView(stdin) && !(stdin instanceof Uint8Array))) stdin = toBytes(stdin);
  const start = (out: typeof stdout, err: typeof stderr) =>
    startCli({ argv, policy, bin: options.bunkerBin, cwd: options.cwd, env: options.env, timeoutMs: options.timeout, stdin, stdout: out, stderr: err });
  const follow = (run: ReturnType<typeof startCli>) => {
    proc._setKiller((signal) => run.proc.kill(signal as any));
    run.report.then(
      (result) => {
        options.onEvent?.({ event: "exit", result });
        proc._settle(result);
      },
      (error) => {
        // Killed before bunker could set up its signal handling: nothing ran and there is no
        // report. The daemon answers a request killed before its sandbox was up the same way.
        if (proc.killed && error instanceof BunkerError && error.code === "internal_error") {
          proc._settle(new BunkerError("cancelled", "killed before the sandbox started (no report)", { cause: error }));
        } else proc._settle(error);
      },
    );
  };

  if (Object.keys(options.env ?? {}).length === 0) {
    // bunker starts now, and its own pipes are the handle's.
    let run;
    try {
      run = start(stdout, stderr);
    } catch (error) {
      proc._settle(error instanceof Error ? error : new Error(String(error)));
      return proc;
    }
    proc.stdin = stdin === "pipe" ? (run.proc.stdin as unknown as StdinWriter) : undefined;
    proc.stdout = stdout === "pipe" ? (run.proc.stdout as ReadableStream<Uint8Array>) : undefined;
    proc.stderr = stderr === "pipe" ? (run.proc.stderr as ReadableStream<Uint8Array>) : undefined;
    follow(run);
    return proc;
  }

  // With env, the names are checked against the policy's allow.env first (as the daemon does), so
  // bunker starts later: the handle's streams and stdin are relayed.
  const out = outputSink(stdout, process.stdout);
  const err = outputSink(stderr, process.stderr);
  proc.stdout = out.stream;
  proc.stderr = err.stream;
  const started = (async () => {
    await checkEnvAllowed(policy, options.env, options.bunkerBin);
    const run = start(stdout === "ignore" ? "ignore" : "pipe", stderr === "ignore" ? "ignore" : "pipe");
    follow(run);
    return run;
  })();
  started.then(
    async (run) => {
      const relay = async (stream: unknown, sink: Output) => {
        if (!(stream instanceof ReadableStream)) return sink.close();
        try {
          for await (const chunk of stream as ReadableStream<Uint8Array>) sink.push(chunk);
          sink.close();
        } catch (error) {
          sink.fail(error as Error);
        }
      };
      await Promise.all([relay(run.proc.stdout, out), relay(run.proc.stderr, err)]);
    },
    (error) => {
      out.fail(error);
      err.fail(error);
      proc._settle(error instanceof Error ? error : new Error(String(error)));
    },
  );
  if (stdin === "pipe") proc.stdin = new DeferredStdin(started.then((run) => run.proc.stdin as unknown as StdinWriter));
  return proc;
}

/** A stdin writer whose sink comes later (bunker not started yet): writes wait for it, in order. */
class DeferredStdin implements StdinWriter {
  private chain: Promise<unknown>;
  private queued = 0;
  constructor(private readonly sink: Promise<StdinWriter>) {
    this.chain = sink.catch(() => {});
  }
  write(chunk: BytesLike): number {
    const bytes = toBytes(chunk).slice();
    this.chain = this.chain.then(async () => {
      const sink = await this.sink.catch(() => undefined);
      sink?.write(bytes);
    });
    this.queued += bytes.length;
    return bytes.length;
  }
  async flush(): Promise<number> {
    await this.chain;
    const sink = await this.sink.catch(() => undefined);
    await sink?.flush();
    return this.queued;
  }
  async end(): Promise<number> {
    await this.chain;
    const sink = await this.sink.catch(() => undefined);
    await sink?.end();
    return this.queued;
  }
}

function spawnDaemon(
  socket: string,
  argv: string[],
  options: SpawnOptions,
  policy: PolicySource,
  stdoutMode: "pipe" | "inherit" | "ignore",
  stderrMode: "pipe" | "inherit" | "ignore",
): SandboxedSubprocess {
  const proc = new SandboxedSubprocess("daemon", options.onExit);
  const out = outputSink(stdoutMode, process.stdout);
  const err = outputSink(stderrMode, process.stderr);
  proc.stdout = out.stream;
  proc.stderr = err.stream;

  const stdinOption = options.stdin;
  const streamed = stdinOption === "pipe" || stdinOption === "inherit" || stdinOption instanceof Blob ||
    stdinOption instanceof Response || stdinOption instanceof ReadableStream;
  let stdinSpec: RunSpec["stdin"] = "null";
  if (streamed) stdinSpec = "stream";
  else if (stdinOption !== undefined && stdinOption !== null && stdinOption !== "ignore") {
    stdinSpec = { data: toData(toBytes(stdinOption as BytesLike)) };
  }

  let finished = false;
  const finish = (outcome: RunResult | Error) => {
    if (finished) return;
    finished = true;
    if (outcome instanceof Error) {
      out.fail(outcome);
      err.fail(outcome);
    } else {
      out.close();
      err.close();
    }
    proc._settle(outcome);
  };

  const onEvent = (event: RunEvent) => {
    options.onEvent?.(event);
    switch (event.event) {
      case "stdout":
        out.push(fromData(event.data));
        break;
      case "stderr":
        err.push(fromData(event.data));
        break;
      case "violation":
        proc.violations.push({ layer: event.layer, rule: event.rule, attempt: event.attempt });
        break;
      case "exit":
        finish(event.result);
        break;
      case "error":
        finish(BunkerError.fromApi(event.error));
        break;
    }
  };

  // The sandbox's id once `start` has replied; stdin writes and kill wait for it.
  const started = (async (): Promise<{ connection: Connection; sandbox: string }> => {
    const [connection, policyChoice] = await Promise.all([
      sharedConnection(socket),
      policyForDaemon(policy, options.bunkerBin),
    ]);
    const spec: RunSpec = { policy: policyChoice, argv, stdin: stdinSpec, options: { output: "events" } };
    if (options.cwd !== undefined) spec.cwd = options.cwd;
    if (options.env !== undefined) spec.env = options.env;
    if (options.timeout !== undefined) spec.options!.timeout_ms = Math.ceil(options.timeout);
    const request = connection.send<{ sandbox: string }>("start", { spec }, { onEvent });
    proc._setKiller(() => {
      // Before the reply the request is cancelled; after it, the sandbox is killed.
      if (proc.sandboxId === undefined) connection.request("cancel", { request: request.id }).catch(() => {});
    });
    const { sandbox } = await request.reply;
    proc.sandboxId = sandbox;
    proc._setKiller(() => {
      connection.request("kill", { sandbox }).catch(() => {});
    });
    return { connection, sandbox };
  })();
  started.catch((error) => finish(error instanceof Error ? error : new Error(String(error))));

  if (streamed) {
    const writer = new DaemonStdin(started);
    if (stdinOption === "pipe") proc.stdin = writer;
    else {
      const source: ReadableStream<Uint8Array> =
        stdinOption === "inherit"
          ? Bun.stdin.stream()
          : stdinOption instanceof Blob
            ? stdinOption.stream()
            : stdinOption instanceof Response
              ? (stdinOption.body ?? new Blob([]).stream())
              : (stdinOption as ReadableStream<Uint8Array>);
      void writer.pump(source);
    }
  }
  return proc;
}

/** Writes to a daemon sandbox's stdin, one `stdin` request at a time (the daemon's reply is the backpressure). */
class DaemonStdin implements StdinWriter {
  private chain: Promise<unknown>;
  private written = 0;
  private error: Error | undefined;
  private ended = false;

  constructor(private readonly started: Promise<{ connection: Connection; sandbox: string }>) {
    this.chain = started.catch(() => {});
  }

  write(chunk: BytesLike): number {
    if (this.ended) throw new BunkerError("request_invalid", "stdin.write() after stdin.end()");
    const bytes = toBytes(chunk).slice();
    if (bytes.length === 0) return 0;
    this.chain = this.chain.then(async () => {
      if (this.error !== undefined) return;
      try {
        const { connection, sandbox } = await this.started;
        await connection.request("stdin", { sandbox, data: toData(bytes) });
        this.written += bytes.length;
      } catch (error) {
        this.error = error as Error;
      }
    });
    return bytes.length;
  }

  async flush(): Promise<number> {
    await this.chain;
    return this.written;
  }

  async end(): Promise<number> {
    if (!this.ended) {
      this.ended = true;
      this.chain = this.chain.then(async () => {
        try {
          const { connection, sandbox } = await this.started;
          await connection.request("close_stdin", { sandbox });
        } catch (error) {
          this.error ??= error as Error;
        }
      });
    }
    await this.chain;
    return this.written;
  }

  async pump(source: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of source) {
        this.write(chunk);
        await this.chain;
        if (this.error !== undefined) break;
      }
    } finally {
      await this.end().catch(() => {});
    }
  }
}
