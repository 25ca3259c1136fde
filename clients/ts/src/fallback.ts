// The CLI fallback: `bunker run --report-fd 3 -q ... -- argv`, the program's output on pipes and
// the report (the same RunResult the daemon replies with) on fd 3.
import { closeSync } from "node:fs";
import { BunkerError } from "./errors";
import { bunkerBinary, policyFlags, type PolicySource } from "./policy";
import type { RunResult } from "./types";

export interface CliRunOptions {
  argv: string[];
  policy: PolicySource;
  bin?: string;
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  stdin: "pipe" | "inherit" | "ignore" | Uint8Array | Blob | ReadableStream<Uint8Array>;
  stdout: "pipe" | "inherit" | "ignore";
  stderr: "pipe" | "inherit" | "ignore";
}

/** `bunker run`'s arguments for one run. */
export function cliRunArgs(options: CliRunOptions): string[] {
  const args = [bunkerBinary(options.bin), "run", "--local", "-q", "--report-fd", "3", ...policyFlags(options.policy)];
  if (options.cwd !== undefined) args.push("--cwd", options.cwd);
  if (options.timeoutMs !== undefined) args.push("--timeout", `${options.timeoutMs}ms`);
  args.push("--", ...options.argv);
  return args;
}

export interface CliRun {
  proc: Bun.Subprocess<any, any, any>;
  /** The report, read from fd 3 once bunker has written it. */
  report: Promise<RunResult>;
}

export function startCli(options: CliRunOptions): CliRun {
  const args = cliRunArgs(options);
  // The environment names the policy's allow.env passes through are taken from bunker's own.
  const env = options.env === undefined ? process.env : { ...process.env, ...options.env };
  const proc = Bun.spawn(args, {
    stdio: [options.stdin as any, options.stdout, options.stderr, "pipe"],
    env,
  });
  const reportFd = proc.stdio[3] as unknown as number;
  const text = Bun.file(reportFd).text();
  const report = Promise.all([text, proc.exited]).then(([line, code]) => {
    closeQuietly(reportFd);
    const trimmed = line.trim();
    if (trimmed === "") {
      throw new BunkerError("internal_error", `bunker run exited ${code} without writing its report (${args[0]})`);
    }
    return JSON.parse(trimmed) as RunResult;
  });
  return { proc, report };
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed by the reader.
  }
}
