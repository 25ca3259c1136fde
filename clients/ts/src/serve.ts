// `serve`: a Bun server in this process whose request handler module runs in sandboxes. Each
// request is serialised (method, url, headers, body) and handed to a sandbox of its own that
// already runs bun with the handler imported (the shim's serve mode, src/worker.ts): a small pool
// of them is started ahead so a request does not wait for bun to start. A sandbox serves one
// request and is then killed, so nothing one request leaves behind reaches the next. A handler
// that throws, is denied, crashes or overruns its time gives a 5xx whose JSON body names why;
// the server goes on.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname } from "node:path";
import type { Server } from "bun";
import { build } from "./build";
import { badOption } from "./errors";
import { EvalError, evalJs } from "./eval";
import type { Policy, SandboxOption } from "./types";
import {
  answerRequest,
  type ErrorInfo,
  endReason,
  modulePathOf,
  policyWithGrants,
  type SerializedRequest,
  type SerializedResponse,
  ShimProcess,
  type Transport,
} from "./worker";

export interface ServeOptions extends Transport {
  /** The handler module: `export default { fetch(req) }`, `export default function (req)` or `export function fetch(req)`. */
  handler: string | URL;
  /** The handlers' policy: an object, a policy file path, or a built-in profile (default `runtime:bun`). */
  sandbox?: SandboxOption;
  /** The directory the handler may read (default: the handler module's directory). */
  project?: string;
  /**
   * How requests reach the handler: `"spawn"` (default), sandboxes of this client running bun
   * with the handler module, `pool` of them started ahead; `"eval"`, the handler bundled once
   * (by `build`, in a sandbox) and each request a daemon `eval` of it, warm from the daemon's
   * `eval:bun` pool when `sandbox` is not given (`bunker eval` without a daemon).
   */
  via?: "spawn" | "eval";
  /** Sandboxes started ahead of the requests (default 2; 0: each request starts its own). `via: "spawn"` only. */
  pool?: number;
  /** How long one request may take in its sandbox, in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Any other `Bun.serve` option (port, hostname, tls, maxRequestBodySize, development, ...). */
  [option: string]: unknown;
}

/** Why a request got no response from its handler: the body of the 5xx. */
export interface HandlerFailure {
  kind: string;
  message: string;
  name?: string;
}

const OWN_OPTIONS = ["handler", "sandbox", "project", "via", "pool", "timeoutMs", "socket", "bunkerBin"];
const REFUSED_OPTIONS = ["fetch", "websocket", "routes"];

/** A 5xx status for each way a handler can fail. */
function statusFor(kind: string): number {
  if (kind === "timeout") return 504;
  if (kind === "thrown" || kind === "syntax") return 500;
  if (kind === "unavailable" || kind === "busy") return 503;
  return 502;
}

function failureOf(error: ErrorInfo, loading: boolean): HandlerFailure {
  const kind = error.syntax === true ? "syntax" : "thrown";
  const message = loading ? `loading the handler: ${error.message}` : error.message;
  return { kind, name: error.name, message };
}

type Outcome = { response: SerializedResponse } | { failure: HandlerFailure };

/**
 * The sandbox's answer, checked before this process builds a Response from it: the handler's
 * code wrote it (and can forge the shim's frames), so a malformed one is a `protocol_error`.
 */
function checkedResponse(value: unknown): Outcome {
  const r = value as Partial<SerializedResponse> | null;
  const ok =
    typeof r === "object" &&
    r !== null &&
    Number.isInteger(r.status) &&
    r.status! >= 200 &&
    r.status! <= 599 &&
    typeof r.statusText === "string" &&
    typeof r.body === "string" &&
    Array.isArray(r.headers) &&
    r.headers.every((h) => Array.isArray(h) && h.length === 2 && typeof h[0] === "string" && typeof h[1] === "string");
  if (ok) {
    try {
      new Headers(r.headers);
      return { response: r as SerializedResponse };
    } catch {
      // An invalid header name or value: refused below.
    }
  }
  return { failure: { kind: "protocol_error", message: "the sandbox's answer is not a well-formed response" } };
}

/** One sandbox running the handler, waiting for its one request. */
class HandlerSandbox {
  readonly shim: ShimProcess;
  /** Set once the sandbox is gone: why it can no longer answer. */
  private gone: HandlerFailure | undefined;
  private loadError: HandlerFailure | undefined;
  private answer: ((outcome: Outcome) => void) | undefined;

  constructor(modulePath: string, options: { policy: Policy; cwd: string } & Transport) {
    this.shim = new ShimProcess({
      mode: "serve",
      modulePath,
      policy: options.policy,
      cwd: options.cwd,
      socket: options.socket,
      bunkerBin: options.bunkerBin,
      onFrame: (frame) => {
        if (frame.t === "response") this.settle(checkedResponse(frame.response));
        else if (frame.t === "error") {
          const failure = failureOf(frame.error, frame.phase === "load");
          if (frame.phase === "load") this.loadError = failure;
          this.settle({ failure });
        }
      },
    });
    this.shim.exited.then(
      (result) => {
        this.gone = this.loadError ?? endReason(result);
        this.settle({ failure: this.gone });
      },
      // It never ran (no daemon, a policy it refused, ...): the API's code says why.
      (error: Error & { code?: string }) => {
        this.gone = { kind: error.code ?? "internal_error", message: error.message };
        this.settle({ failure: this.gone });
      },
    );
  }

  /** Whether it can still take a request: alive, or dead with a load error every sandbox would give. */
  get usable(): boolean {
    return this.gone === undefined || this.loadError !== undefined;
  }

  /** Hands the request over; resolves with the handler's answer or why there is none. */
  handle(request: unknown, timeoutMs: number): Promise<Outcome> {
    const outcome = new Promise<Outcome>((resolve) => {
      this.answer = resolve;
    });
    const failure = this.loadError ?? this.gone;
    if (failure !== undefined) this.settle({ failure });
    else this.shim.send({ request });
    const timer = setTimeout(
      () => this.settle({ failure: { kind: "timeout", message: `the handler did not answer within ${timeoutMs} ms` } }),
      timeoutMs,
    );
    return outcome.finally(() => {
      clearTimeout(timer);
      this.shim.kill();
    });
  }

  private settle(outcome: Outcome): void {
    const answer = this.answer;
    if (answer === undefined) return;
    this.answer = undefined;
    answer(outcome);
  }
}

/** How the server's requests reach the handler. */
interface RequestPath {
  handle(request: SerializedRequest): Promise<Outcome>;
  /** Ends what is waiting for requests; resolves once it is gone. */
  stop(): Promise<void>;
}

/** `via: "spawn"`: a sandbox of ours per request, `poolSize` of them started ahead. */
function spawnedHandler(modulePath: string, project: string, poolSize: number, timeoutMs: number, options: ServeOptions): RequestPath {
  const policy = policyWithGrants(options.sandbox, { read: [project, modulePath] }, "serve()");
  // The answer travels in the sandbox's output: past limits.output it cannot arrive, so the
  // sandbox is ended then (an `output_limit`) rather than left waiting for the timeout.
  policy.limits = { kill_on_output_overflow: true, ...policy.limits };
  const sandboxOptions = { policy, cwd: project, socket: options.socket, bunkerBin: options.bunkerBin };
  let stopped = false;
  const ready: HandlerSandbox[] = [];
  // Every sandbox not yet gone (ready, serving, or killed and ending), for stop() to wait on.
  const live = new Set<HandlerSandbox>();
  const start = (): HandlerSandbox => {
    const sandbox = new HandlerSandbox(modulePath, sandboxOptions);
    live.add(sandbox);
    const forget = () => live.delete(sandbox);
    sandbox.shim.exited.then(forget, forget);
    return sandbox;
  };
  // Refilled after a request is answered (a bun starting meanwhile would compete with the
  // handler for the CPU), never when one dies idle: a handler that cannot load costs one
  // sandbox per request, not a loop.
  const refill = () => {
    while (!stopped && ready.length < poolSize) ready.push(start());
  };
  refill();
  return {
    handle(request) {
      let sandbox: HandlerSandbox | undefined;
      while ((sandbox = ready.shift()) !== undefined && !sandbox.usable);
      return (sandbox ?? start()).handle(request, timeoutMs).finally(refill);
    },
    async stop() {
      stopped = true;
      ready.length = 0;
      const ending = [...live];
      for (const sandbox of ending) sandbox.shim.kill();
      await Promise.all(ending.map((sandbox) => sandbox.shim.exited.catch(() => undefined)));
    },
  };
}

/** The name the eval bundle gives its entry point. */
const EVAL_FUNCTION = "__bunkerServe";

/**
 * `via: "eval"`: the handler bundled once into a script defining `__bunkerServe(request)`, by
 * `build` in a sandbox reading only the project; each request is an `eval` calling it.
 */
function evaluatedHandler(modulePath: string, project: string, timeoutMs: number, options: ServeOptions): RequestPath {
  const bundled = (async (): Promise<string> => {
    const dir = mkdtempSync(`${tmpdir()}/bunker-serve-bundle-`);
    try {
      writeFileSync(
        `${dir}/entry.js`,
        `import * as handlerModule from ${JSON.stringify(modulePath)};\n` +
          `const __answerRequest = ${answerRequest.toString()};\n` +
          `globalThis.${EVAL_FUNCTION} = (request) => __answerRequest(handlerModule.default ?? handlerModule, request);\n`,
      );
      const output = await build({
        entrypoints: [`${dir}/entry.js`],
        outdir: `${dir}/out`,
        project,
        sandbox: policyWithGrants(options.sandbox, { read: [dir] }, "serve()"),
        // A plain script: CommonJS for node has no module wrapper and no import.meta, and its
        // `require` calls meet the eval worker's global require.
        target: "node",
        format: "cjs",
        throw: false,
        socket: options.socket,
        bunkerBin: options.bunkerBin,
      });
      if (!output.success) {
        throw Object.assign(new Error(output.logs.map((log) => String(log.message)).join("; ")), { kind: "syntax" });
      }
      return await output.outputs[0]!.text();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  bundled.catch(() => undefined);
  return {
    async handle(request) {
      let code: string;
      try {
        code = await bundled;
      } catch (error) {
        const e = error as Error & { kind?: string; code?: string };
        return { failure: { kind: e.kind ?? e.code ?? "thrown", message: `bundling the handler: ${e.message}` } };
      }
      try {
        const output = await evalJs(code, {
          function: EVAL_FUNCTION,
          args: [request],
          timeoutMs,
          sandbox: options.sandbox,
          socket: options.socket,
          bunkerBin: options.bunkerBin,
        });
        return checkedResponse(output.value);
      } catch (error) {
        if (error instanceof EvalError) {
          const failure: HandlerFailure = { kind: error.kind, message: error.result.error?.message ?? error.message };
          if (error.errorName !== undefined) failure.name = error.errorName;
          return { failure };
        }
        const e = error as Error & { code?: string };
        return { failure: { kind: e.code ?? "internal_error", message: e.message } };
      }
    },
    async stop() {},
  };
}

/**
 * Starts a `Bun.serve` server whose requests the `handler` module answers inside sandboxes
 * (bun under `runtime:bun` plus `sandbox`, reading the handler's directory). Returns the Bun
 * server; its `stop()` also ends its sandboxes (its promise resolves once they are gone).
 */
export function serve(options: ServeOptions): Server {
  if (options === null || typeof options !== "object") throw badOption("serve()", "expected an options object");
  if (options.handler === undefined) throw badOption("serve()", "handler: required (the path of the handler module)");
  for (const key of REFUSED_OPTIONS) {
    if (options[key] !== undefined) {
      throw badOption("serve()", `${key}: not supported; the handler module answers every request (handler: "./handler.ts")`);
    }
  }
  const poolSize = options.pool ?? 2;
  if (!Number.isInteger(poolSize) || poolSize < 0) throw badOption("serve()", `pool: expected an integer >= 0, got ${poolSize}`);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw badOption("serve()", `timeoutMs: expected a positive number of milliseconds, got ${timeoutMs}`);
  }
  const modulePath = modulePathOf(options.handler, "serve()");
  const project = typeof options.project === "string" ? modulePathOf(options.project, "serve()") : dirname(modulePath);
  const via = options.via ?? "spawn";
  if (via !== "spawn" && via !== "eval") throw badOption("serve()", `via: expected "spawn" or "eval", got ${JSON.stringify(via)}`);
  const answer =
    via === "spawn"
      ? spawnedHandler(modulePath, project, poolSize, timeoutMs, options)
      : evaluatedHandler(modulePath, project, timeoutMs, options);

  const bunOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) if (!OWN_OPTIONS.includes(key)) bunOptions[key] = value;
  const server = Bun.serve({
    ...(bunOptions as object),
    async fetch(req: Request): Promise<Response> {
      const body = req.method === "GET" || req.method === "HEAD" ? null : Buffer.from(await req.arrayBuffer()).toString("base64");
      const serialised = { method: req.method, url: req.url, headers: [...req.headers], body };
      const outcome = await answer.handle(serialised);
      if ("response" in outcome) {
        const r = outcome.response;
        return new Response(r.body === "" ? null : Buffer.from(r.body, "base64"), {
          status: r.status,
          statusText: r.statusText,
          headers: r.headers,
        });
      }
      return Response.json(
        { error: outcome.failure },
        { status: statusFor(outcome.failure.kind), headers: { "x-bunker-error": outcome.failure.kind } },
      );
    },
  } as any);
  const stopServer = server.stop.bind(server);
  Object.defineProperty(server, "stop", {
    value: (closeActiveConnections?: boolean) => {
      return Promise.all([answer.stop(), stopServer(closeActiveConnections)]).then(() => undefined);
    },
  });
  return server;
}
