// Type declarations of the "bunker" package (Bun only). The wire types between the markers are
// copied from src/types.ts by scripts/sync-dts.ts; test/dts.test.ts checks that they match and
// that every runtime export of src/index.ts is declared here.

// BEGIN TYPES

/** A size: bytes, or a string such as "64MB" or "1.5GiB". */
export type ByteSize = number | string;
/** A duration: seconds, or a string such as "250ms", "1.5s", "2m". */
export type Span = number | string;

/** One list per kind of access (policy `allow`). */
export interface RuleSet {
  /** Hosts (`example.com`, `*.example.com`, optional `:port`), IP literals and CIDRs. */
  net?: string[];
  /** Paths that may be read: absolute, `~/...`, or relative to the caller. */
  read?: string[];
  /** Paths that may be written (and read). */
  write?: string[];
  /** Paths whose files may be executed. */
  exec?: string[];
  /** Environment variable names passed through from the caller. */
  env?: string[];
}

/** The deny lists (policy `deny`): they win over `allow`. */
export interface DenyRules extends RuleSet {
  /** Entries of `read`/`write`/`exec` that may be enforced in part. */
  best_effort?: string[];
}

/** Resource limits (policy `limits`). */
export interface Limits {
  memory?: ByteSize | null;
  pids?: number | null;
  cpu?: number | null;
  timeout?: Span | null;
  cpu_time?: Span | null;
  output?: ByteSize | null;
  file_size?: ByteSize | null;
  open_files?: number | null;
  stack?: ByteSize | null;
  tmp_size?: ByteSize | null;
  best_effort?: Array<"memory" | "pids" | "cpu" | "cpu_time">;
  kill_on_output_overflow?: boolean | null;
}

/** Limits on HTTP traffic through the egress proxy (policy `http`). */
export interface HttpLimits {
  max_requests?: number | null;
  request_timeout?: Span | null;
  max_request_bytes?: ByteSize | null;
  max_response_bytes?: ByteSize | null;
  max_total_bytes?: ByteSize | null;
  block_private_ips?: boolean | null;
}

/** JavaScript runtime options (policy `js`). */
export interface JsOptions {
  eval?: boolean | null;
  max_stack_depth?: number | null;
  max_string_length?: number | null;
}

/** Kernel isolation options (policy `kernel`). */
export interface KernelOptions {
  namespaces?: Array<"user" | "pid" | "mount" | "net" | "ipc" | "uts" | "cgroup"> | null;
  seccomp?: "default" | "off" | null;
  landlock?: "required" | "best-effort" | "off" | null;
  audit?: "off" | "seccomp-unotify" | "ebpf" | null;
  hostname?: string | null;
  tty?: boolean | null;
}

/** A policy document (docs/policy.schema.json). Absent means denied; deny beats allow. */
export interface Policy {
  $schema?: string | null;
  /** Policy files or built-in profiles (`default`, `runtime:bun`, `runtime:python`) merged first. */
  extends?: string[];
  allow?: RuleSet;
  deny?: DenyRules;
  limits?: Limits;
  http?: HttpLimits;
  js?: JsOptions;
  kernel?: KernelOptions;
  set_env?: Record<string, string>;
}

/**
 * What a `sandbox` option takes: a policy object, a path to a policy file (a string starting
 * with `/`, `./`, `../` or `~/`, or ending in `.json`, or a file: URL), or the name of a policy
 * the daemon knows (`"default"`, `"runtime:bun"`, a config policy).
 */
export type SandboxOption = Policy | string | URL;

/** Bytes on the wire: text when valid UTF-8, else base64. */
export type Data = { utf8: string } | { base64: string };

/** The API's stable error codes (docs/api.md). */
export type ErrorCode =
  | "policy_invalid"
  | "policy_not_permitted"
  | "request_invalid"
  | "setup_failed"
  | "unenforceable"
  | "command_not_found"
  | "cannot_execute"
  | "limit_timeout"
  | "limit_cpu_time"
  | "limit_memory"
  | "limit_pids"
  | "limit_output"
  | "terminated"
  | "report_failed"
  | "busy"
  | "not_found"
  | "protocol_error"
  | "cancelled"
  | "internal_error"
  | "unavailable";

/** An error as the API sends it (docs/error.schema.json). */
export interface ApiError {
  code: ErrorCode;
  message: string;
  step?: string;
  policy?: { kind: string; file?: string; json_path?: string };
}

/** How a run ended (report `status`). */
export type Status =
  | "ok"
  | "exit"
  | "signal"
  | "timeout"
  | "cpu_time"
  | "memory_limit"
  | "pids_limit"
  | "output_limit"
  | "setup_error"
  | "policy_error";

export type LayerStatus = "on" | "partial" | "off";

export interface StreamResult {
  bytes: number;
  kept: number;
  truncated: boolean;
  data?: Data;
}

export interface Enforced {
  namespaces: LayerStatus;
  filesystem: LayerStatus;
  landlock: LayerStatus;
  landlock_abi: number;
  seccomp: LayerStatus;
  no_new_privs: LayerStatus;
  capabilities_dropped: LayerStatus;
  memory_limit: LayerStatus;
  pids_limit: LayerStatus;
  cpu_limit: LayerStatus;
  cpu_time_limit: LayerStatus;
  rlimits: LayerStatus;
  network: LayerStatus;
  notes: string[];
}

/** One decision of the egress proxy. */
export interface HttpRecord {
  kind: "connect" | "http" | "socks5";
  host: string;
  port: number;
  address?: string;
  allowed: boolean;
  rule: string;
  bytes_sent: number;
  bytes_received: number;
  duration_ms: number;
  limit?: string;
}

export interface HttpReport {
  requests: HttpRecord[];
  truncated: boolean;
  allowed: number;
  denied: number;
  denied_by: Array<{ rule: string; requests: number }>;
  limits_hit: Array<{ rule: string; requests: number }>;
  bytes_sent: number;
  bytes_received: number;
}

/** The run report (docs/report.schema.json, docs/report.md). */
export interface RunResult {
  status: Status;
  exit_code?: number;
  signal?: number;
  error?: string;
  error_code?: ErrorCode;
  error_step?: string;
  wall_ms: number;
  cpu_ms: number;
  peak_memory_bytes?: number;
  stdout: StreamResult;
  stderr: StreamResult;
  enforced: Enforced;
  http: HttpReport;
  warm?: boolean;
}

/** Something the policy denied (a `violation` event, or a denied proxy request). */
export interface Violation {
  layer: "net" | "filesystem" | "syscall";
  rule: string;
  attempt: string;
}

/** What a running sandbox reports (docs/event.schema.json). */
export type RunEvent =
  | { event: "started"; enforced: Enforced }
  | { event: "stdout"; data: Data }
  | { event: "stderr"; data: Data }
  | ({ event: "violation" } & Violation)
  | { event: "limit_hit"; code: ErrorCode; message: string }
  | { event: "exit"; result: RunResult }
  | { event: "error"; error: ApiError };

/** The policy choice of a request. */
export type PolicyChoice = { inline: Policy } | { name: string };

/** What to run (docs/request.schema.json). */
export interface RunSpec {
  policy: PolicyChoice;
  argv: string[];
  cwd?: string | null;
  env?: Record<string, string>;
  stdin?: "null" | "stream" | "fd" | { data: Data };
  options?: { output?: "capture" | "events" | "fds"; timeout_ms?: number | null };
}

/** The `http` option of an eval (the Ruby client's names; mapped onto allow.net/deny.net/http). */
export interface EvalHttpOptions {
  allowlist?: string[];
  denylist?: string[];
  block_private_ips?: boolean;
  allowed_ports?: number[];
  allowed_methods?: string[];
  max_requests?: number;
  max_request_size?: number;
  max_response_size?: number;
  request_timeout?: number;
}

/** An eval request (op `eval`). */
export interface EvalSpec {
  engine: "bun" | "python";
  code: string;
  function?: string;
  args?: unknown[];
  globals?: Record<string, unknown>;
  limits?: { timeout_ms?: number; memory_bytes?: number; console_bytes?: number };
  http?: EvalHttpOptions;
  policy?: PolicyChoice;
  worker?: string;
}

/** Why an eval gave no value. */
export interface EvalError {
  kind:
    | "syntax"
    | "thrown"
    | "timeout"
    | "memory_limit"
    | "output_limit"
    | "http_blocked"
    | "http_limit"
    | "protocol_error"
    | "crashed"
    | (string & {});
  name?: string;
  message: string;
  stack?: string;
}

/** The reply of an eval. */
export interface EvalResult {
  value: unknown;
  console_output: string;
  console_truncated: boolean;
  error: EvalError | null;
  status: Status;
  warm?: boolean;
  wall_ms: number;
  http_requests: HttpRecord[];
}
// END TYPES

type BytesLike = string | Uint8Array | ArrayBuffer | ArrayBufferView;

/** An error bunker refused or could not carry out; `code` is one of the API's codes. */
export declare class BunkerError extends Error {
  readonly code: ErrorCode;
  readonly step?: string;
  readonly policy?: ApiError["policy"];
  readonly result?: RunResult;
  constructor(code: ErrorCode, message: string, extra?: { step?: string; policy?: ApiError["policy"]; result?: RunResult; cause?: unknown });
  static fromApi(error: ApiError): BunkerError;
}

export type EventListener = (event: RunEvent, sandbox: string) => void;
export interface RequestOptions {
  onEvent?: EventListener;
}
export interface SentRequest<T> {
  id: number;
  reply: Promise<T>;
}

/** A connection to a `bunker serve` daemon (docs/protocol.md). */
export declare class Connection {
  readonly path: string;
  server: string;
  static open(path: string): Promise<Connection>;
  get closed(): boolean;
  send<T = any>(op: string, fields?: Record<string, unknown>, options?: RequestOptions): SentRequest<T>;
  request<T = any>(op: string, fields?: Record<string, unknown>, options?: RequestOptions): Promise<T>;
  close(): void;
}

export type StdinOption = "pipe" | "inherit" | "ignore" | null | undefined | BytesLike | Blob | Response | ReadableStream<Uint8Array>;
export type OutputOption = "pipe" | "inherit" | "ignore" | null | undefined;

export interface SpawnOptions {
  sandbox?: SandboxOption;
  cwd?: string;
  env?: Record<string, string>;
  stdin?: StdinOption;
  stdout?: OutputOption;
  stderr?: OutputOption;
  timeout?: number;
  socket?: string | false;
  bunkerBin?: string;
  onExit?: (proc: SandboxedSubprocess, exitCode: number | null, signalCode: string | null, error?: Error) => void;
  onEvent?: (event: RunEvent) => void;
  signal?: AbortSignal;
}

export interface StdinWriter {
  write(chunk: BytesLike): number;
  flush(): Promise<number>;
  end(error?: Error): Promise<number>;
}

/** A sandboxed program, shaped like `Bun.Subprocess`. */
export declare class SandboxedSubprocess {
  readonly mode: "daemon" | "cli";
  stdin: StdinWriter | undefined;
  stdout: ReadableStream<Uint8Array> | undefined;
  stderr: ReadableStream<Uint8Array> | undefined;
  readonly exited: Promise<number>;
  readonly report: Promise<RunResult>;
  exitCode: number | null;
  signalCode: string | null;
  killed: boolean;
  sandboxId: string | undefined;
  readonly violations: Violation[];
  kill(signal?: string | number): void;
}

export declare function spawn(cmd: string[], options?: SpawnOptions): SandboxedSubprocess;
export declare function spawn(options: SpawnOptions & { cmd: string[] }): SandboxedSubprocess;

export interface RunOptions extends Pick<SpawnOptions, "sandbox" | "cwd" | "env" | "timeout" | "socket" | "bunkerBin" | "onEvent" | "signal"> {
  stdin?: BytesLike | null;
  check?: boolean;
}

export interface RunOutput {
  exitCode: number | null;
  signalCode: string | null;
  status: Status;
  success: boolean;
  stdout: Uint8Array;
  stderr: Uint8Array;
  readonly stdoutText: string;
  readonly stderrText: string;
  truncated: boolean;
  violations: Violation[];
  httpRequests: HttpRecord[];
  warm: boolean;
  report: RunResult;
}

export declare class CommandError extends Error {
  readonly result: RunOutput;
  constructor(result: RunOutput);
}

export declare function run(cmd: string[], options?: RunOptions): Promise<RunOutput>;

export declare function effectivePolicy(source: { path: string } | { policy: Policy }, bin?: string): Promise<Policy>;

export interface EvalOptions {
  timeoutMs?: number;
  memoryLimitBytes?: number;
  consoleLogMaxSize?: number;
  http?: EvalHttpOptions;
  globals?: Record<string, unknown>;
  function?: string;
  args?: unknown[];
  sandbox?: SandboxOption;
  socket?: string | false;
  bunkerBin?: string;
}

export interface EvalOutput {
  value: unknown;
  consoleOutput: string;
  consoleTruncated: boolean;
  httpRequests: HttpRecord[];
  warm: boolean;
  wallMs: number;
  status: Status;
  result: EvalResult;
}

export declare class EvalError extends Error {
  readonly kind: string;
  readonly errorName: string | undefined;
  readonly jsStack: string | undefined;
  readonly consoleOutput: string;
  readonly result: EvalResult;
  constructor(result: EvalResult);
}

export declare function evalJs(code: string, options?: EvalOptions): Promise<EvalOutput>;

export interface WorkerEvalOptions {
  globals?: Record<string, unknown>;
  function?: string;
  args?: unknown[];
}

/** A worker serving several evals in turn, its globals kept (the daemon's `open_worker`). */
export declare class EvalWorker {
  readonly id: string;
  eval(code: string, options?: WorkerEvalOptions): Promise<EvalOutput>;
  close(): Promise<void>;
}

export declare function openEvalWorker(options?: Omit<EvalOptions, "globals" | "function" | "args">): Promise<EvalWorker>;

/** Where the daemon is, or the CLI fallback's binary. */
export interface Transport {
  /** The daemon's socket (else env BUNKER_SOCKET, else the CLI fallback); `false` forces the fallback. */
  socket?: string | false;
  /** The bunker binary for the CLI fallback (else env BUNKER_BIN, else `bunker` on PATH). */
  bunkerBin?: string;
}

export interface ServeOptions extends Transport {
  /** The handler module: `export default { fetch(req) }`, `export default function (req)` or `export function fetch(req)`. */
  handler: string | URL;
  /** The handlers' policy: an object, a policy file path, or a built-in profile (default `runtime:bun`). */
  sandbox?: SandboxOption;
  /** The directory the handler may read (default: the handler module's directory). */
  project?: string;
  /** `"spawn"` (default): sandboxes running bun with the handler, `pool` of them started ahead; `"eval"`: daemon evals of the bundled handler. */
  via?: "spawn" | "eval";
  /** Sandboxes started ahead of the requests (default 2). `via: "spawn"` only. */
  pool?: number;
  /** How long one request may take in its sandbox, in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Any other `Bun.serve` option (port, hostname, tls, ...). */
  [option: string]: unknown;
}

/** Why a request got no response from its handler: the body of the 5xx. */
export interface HandlerFailure {
  kind: string;
  message: string;
  name?: string;
}

/** A Bun server whose handler module answers each request in a sandbox of its own. */
export declare function serve(options: ServeOptions): import("bun").Server;

export interface BuildOptions extends Transport {
  entrypoints: string[];
  /** Where the output goes (created if missing): the one place the sandbox may write. */
  outdir: string;
  sandbox?: SandboxOption;
  /** The directory the sandbox may read (default: the current directory). */
  project?: string;
  /** Throw an AggregateError of the logs when the build fails (default true, like Bun.build). */
  throw?: boolean;
  /** Any other `Bun.build` option that is JSON (target, format, minify, ...). */
  [option: string]: unknown;
}

export interface BuildOutputFile {
  path: string;
  kind: string;
  hash: string | null;
  loader: string;
  size: number;
  text(): Promise<string>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export interface BuildOutput {
  success: boolean;
  outputs: BuildOutputFile[];
  logs: Record<string, unknown>[];
  /** The sandbox's run result. */
  report: RunResult;
}

/** `Bun.build` (and its macros) in a sandbox that reads only the project and writes only `outdir`. */
export declare function build(options: BuildOptions): Promise<BuildOutput>;

export interface SandboxedWorkerOptions extends Transport {
  sandbox?: SandboxOption;
  /** A name for the worker (as Worker's `name`). */
  name?: string;
}

/** A Worker whose module runs in its own sandbox; messages are JSON values. */
export declare class SandboxedWorker extends EventTarget {
  constructor(url: string | URL, options?: SandboxedWorkerOptions);
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: ErrorEvent) => void) | null;
  onmessageerror: ((event: MessageEvent) => void) | null;
  readonly path: string;
  /** The sandbox's run result, once it has ended. */
  readonly exited: Promise<RunResult>;
  postMessage(data: unknown): void;
  terminate(): void;
}
