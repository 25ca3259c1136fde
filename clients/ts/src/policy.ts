// What a `sandbox` option names, and how it is sent: to the daemon as `{inline}` / `{name}`, to the
// CLI fallback as flags. Paths (a policy file, relative grants in an object) are resolved here,
// against this process, by `bunker check`: never by the daemon against its own directory.
import { fileURLToPath } from "node:url";
import { BunkerError, badOption } from "./errors";
import type { Policy, PolicyChoice, SandboxOption } from "./types";

const BUILTIN_PROFILES = new Set(["default", "runtime:bun", "runtime:python", "eval:bun", "eval:python"]);

/** The `bunker` binary: `bin`, else env `BUNKER_BIN`, else `bunker` on PATH. */
export function bunkerBinary(bin?: string): string {
  const chosen = bin ?? process.env.BUNKER_BIN;
  if (chosen !== undefined && chosen !== "") return chosen;
  const found = Bun.which("bunker");
  if (found === null) {
    throw new BunkerError("unavailable", "no bunker binary: set BUNKER_BIN (or the bunkerBin option) or put bunker on PATH");
  }
  return found;
}

/** A sandbox option, classified. */
export type PolicySource =
  | { kind: "object"; policy: Policy }
  | { kind: "file"; path: string }
  | { kind: "name"; name: string };

/** Whether a string names a policy file rather than a policy the daemon knows. */
function looksLikePath(value: string): boolean {
  return /^(\/|\.\.?\/|~\/)/.test(value) || value.endsWith(".json");
}

export function classifyPolicy(
  sandbox: SandboxOption | undefined,
  where: string,
  { implicitDefault = true }: { implicitDefault?: boolean } = {},
): PolicySource {
  if (sandbox === undefined || sandbox === null) return { kind: "name", name: "default" };
  if (sandbox instanceof URL) {
    if (sandbox.protocol !== "file:") throw badOption(where, `sandbox: only file: URLs name a policy file, got ${sandbox.href}`);
    return { kind: "file", path: fileURLToPath(sandbox) };
  }
  if (typeof sandbox === "string") {
    if (sandbox === "") throw badOption(where, "sandbox: an empty string names no policy");
    if (looksLikePath(sandbox)) {
      const path = sandbox.startsWith("~/") ? `${process.env.HOME ?? ""}${sandbox.slice(1)}` : sandbox;
      return { kind: "file", path };
    }
    return { kind: "name", name: sandbox };
  }
  if (typeof sandbox === "object" && !Array.isArray(sandbox)) {
    // A policy object without `extends` builds on the `default` profile (the system's binaries and
    // libraries), as `bunker run` without --policy does; `extends: []` starts from nothing.
    return { kind: "object", policy: "extends" in sandbox || !implicitDefault ? sandbox : { extends: ["default"], ...sandbox } };
  }
  throw badOption(where, `sandbox: expected a policy object, a policy file path or a policy name, got ${Array.isArray(sandbox) ? "an array" : typeof sandbox}`);
}

/** Whether a policy object has a path the daemon would resolve against its own directory. */
function hasRelativePaths(policy: Policy): boolean {
  const lists = [policy.allow?.read, policy.allow?.write, policy.allow?.exec];
  for (const list of lists) {
    if (Array.isArray(list) && list.some((p) => typeof p === "string" && !p.startsWith("/"))) return true;
  }
  return Array.isArray(policy.extends) && policy.extends.some((e) => typeof e === "string" && !BUILTIN_PROFILES.has(e));
}

/**
 * The effective policy `bunker check` prints for a file (or for `policy` on stdin), ready to
 * send inline: extends merged, relative paths resolved against this process.
 */
export async function effectivePolicy(
  source: { path: string } | { policy: Policy } | { profile: string },
  bin?: string,
): Promise<Policy> {
  const binary = bunkerBinary(bin);
  const fromStdin = "policy" in source;
  const what = "profile" in source ? ["--profile", source.profile] : fromStdin ? ["-"] : [source.path];
  const proc = Bun.spawn([binary, "check", "--document", ...what], {
    stdin: fromStdin ? new TextEncoder().encode(JSON.stringify(source.policy)) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    const lines = err.split("\n").filter((l) => l.startsWith("bunker: policy error: "));
    const message = lines.length > 0 ? lines.map((l) => l.slice("bunker: policy error: ".length)).join("; ") : err.trim();
    throw new BunkerError(code === 120 ? "policy_invalid" : "internal_error", message || `bunker check exited ${code}`);
  }
  // `--document`: a policy document ready to send inline (no `sources`, no nulls).
  return JSON.parse(out) as Policy;
}

/** The request's `policy` for the daemon. */
export async function policyForDaemon(source: PolicySource, bin?: string): Promise<PolicyChoice> {
  switch (source.kind) {
    case "name":
      return { name: source.name };
    case "file":
      return { inline: await effectivePolicy({ path: source.path }, bin) };
    case "object":
      return { inline: hasRelativePaths(source.policy) ? await effectivePolicy({ policy: source.policy }, bin) : source.policy };
  }
}

/** The `bunker run` flags that select the policy (relative paths resolve against this process). */
export function policyFlags(source: PolicySource): string[] {
  switch (source.kind) {
    case "name":
      return ["--policy-json", JSON.stringify({ extends: [source.name] })];
    case "file":
      return ["--policy", source.path];
    case "object":
      return ["--policy-json", JSON.stringify(source.policy)];
  }
}

/**
 * Refuses `env` names the policy's `allow.env` does not list, with the daemon's error
 * (`policy_not_permitted`), so the CLI fallback does not silently drop them.
 */
export async function checkEnvAllowed(source: PolicySource, env: Record<string, string> | undefined, bin?: string): Promise<void> {
  const names = Object.keys(env ?? {});
  if (names.length === 0) return;
  const effective = await effectivePolicy(
    source.kind === "name" ? { profile: source.name } : source.kind === "file" ? { path: source.path } : { policy: source.policy },
    bin,
  );
  const allowed = effective.allow?.env ?? [];
  const missing = names.find((name) => !allowed.includes(name));
  if (missing !== undefined) {
    throw new BunkerError("policy_not_permitted", `env: ${missing} is not in the policy's allow.env`);
  }
}
