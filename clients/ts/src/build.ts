// `build`: `Bun.build` run by bun inside a sandbox that may read only the project and write only
// `outdir`. Macros run in that bun too, so they get the same walls. The options go in as JSON
// (the shim's build mode, src/worker.ts), `Bun.build`'s output comes back as JSON.
import { mkdirSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { BunkerError, badOption } from "./errors";
import type { RunResult, SandboxOption } from "./types";
import { endReason, policyWithGrants, type SerializedBuild, ShimProcess, type Transport } from "./worker";

export interface BuildOptions extends Transport {
  entrypoints: string[];
  /** Where the output goes (created if missing): the one place the sandbox may write. */
  outdir: string;
  /** The policy: an object, a policy file path, or a built-in profile (default `runtime:bun`). */
  sandbox?: SandboxOption;
  /** The directory the sandbox may read (default: the current directory). */
  project?: string;
  /** Throw an AggregateError of the logs when the build fails (default true, like Bun.build). */
  throw?: boolean;
  /** Any other `Bun.build` option that is JSON (target, format, minify, splitting, naming, ...). */
  [option: string]: unknown;
}

/** One file the build wrote, like a `BuildArtifact` (read from `outdir` on the host). */
export interface BuildOutputFile {
  path: string;
  kind: string;
  hash: string | null;
  loader: string;
  size: number;
  text(): Promise<string>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** `Bun.build`'s result shape. */
export interface BuildOutput {
  success: boolean;
  outputs: BuildOutputFile[];
  logs: Record<string, unknown>[];
  /** The sandbox's run result. */
  report: RunResult;
}

/** Options this process handles itself rather than passing to `Bun.build`. */
const OWN_OPTIONS = new Set(["sandbox", "project", "throw", "socket", "bunkerBin"]);

/**
 * Runs `Bun.build` in a sandbox. Paths (entrypoints, outdir, root, tsconfig) are made absolute
 * against this process's directory first. Function-valued options (plugins) cannot cross into
 * the sandbox and are refused.
 */
export async function build(options: BuildOptions): Promise<BuildOutput> {
  if (options === null || typeof options !== "object") throw badOption("build()", "expected an options object");
  const { entrypoints, outdir } = options;
  if (!Array.isArray(entrypoints) || entrypoints.length === 0 || !entrypoints.every((e) => typeof e === "string")) {
    throw badOption("build()", "entrypoints: expected a non-empty array of paths");
  }
  if (typeof outdir !== "string" || outdir === "") {
    throw badOption("build()", "outdir: required (the only directory the sandbox may write)");
  }
  const project = resolve(typeof options.project === "string" ? options.project : process.cwd());
  const absolute = (p: string) => (isAbsolute(p) ? p : resolve(p));
  const bunOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (OWN_OPTIONS.has(key) || value === undefined) continue;
    if (typeof value === "function" || (key === "plugins" && Array.isArray(value) && value.length > 0)) {
      throw badOption("build()", `${key}: functions and plugins cannot run in the sandbox (they would run here, outside it)`);
    }
    bunOptions[key] = value;
  }
  bunOptions.entrypoints = entrypoints.map(absolute);
  bunOptions.outdir = absolute(outdir);
  for (const key of ["root", "tsconfig"]) {
    if (typeof bunOptions[key] === "string") bunOptions[key] = absolute(bunOptions[key] as string);
  }
  const out = bunOptions.outdir as string;
  // A write grant must exist when the sandbox is built.
  mkdirSync(out, { recursive: true });
  const policy = policyWithGrants(options.sandbox, { read: [project], write: [out] }, "build()");

  let built: SerializedBuild | undefined;
  let failure: { name: string; message: string } | undefined;
  const shim = new ShimProcess({
    mode: "build",
    modulePath: "",
    policy,
    cwd: project,
    socket: options.socket,
    bunkerBin: options.bunkerBin,
    onFrame: (frame) => {
      if (frame.t === "built") built = frame.result;
      else if (frame.t === "error") failure = frame.error;
    },
    onStdout: (text) => process.stdout.write(text),
  });
  shim.send({ options: bunOptions });
  shim.end();
  const report = await shim.exited;
  if (built === undefined) {
    const reason = failure !== undefined ? { kind: "thrown", message: `${failure.name}: ${failure.message}` } : endReason(report);
    throw new BunkerError(report.error_code ?? "internal_error", `build(): the sandboxed build did not finish (${reason.kind}): ${reason.message}`, {
      result: report,
    });
  }
  const result: BuildOutput = {
    success: built.success,
    logs: built.logs,
    outputs: built.outputs.map((o) => ({
      ...o,
      text: () => Bun.file(o.path).text(),
      arrayBuffer: () => Bun.file(o.path).arrayBuffer(),
    })),
    report,
  };
  if (!result.success && options.throw !== false) {
    const errors = result.logs.map((log) => Object.assign(new Error(String(log.message)), log));
    throw Object.assign(new AggregateError(errors, "Bundle failed"), { logs: result.logs });
  }
  return result;
}
