import { expect } from "bun:test";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

/** Which way the suite runs: through a daemon or the CLI fallback. */
export const MODE: "daemon" | "cli" = process.env.BUNKER_TS_MODE === "cli" ? "cli" : "daemon";

const repo = new URL("../../..", import.meta.url).pathname;
/** The bunker binary under test. */
export const BIN: string = process.env.BUNKER_BIN || `${repo}target/x86_64-unknown-linux-gnu/debug/bunker`;


const created: string[] = [];

/** A fresh host directory for one test (its real path, so grants name what the sandbox sees). */
export function tempDir(prefix = "bunker-ts-"): string {
  const dir = realpathSync(mkdtempSync(`${tmpdir()}/${prefix}`));
  created.push(dir);
  return dir;
}

/** Removes the directories tempDir made (test/setup.ts, after all tests). */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Awaits `promise`, expecting a BunkerError with `code` whose message matches `message`. */
export async function expectBunkerError(promise: Promise<unknown>, code: string, message: RegExp): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeDefined();
  const error = caught as Error & { code?: string };
  expect(error.name).toBe("BunkerError");
  expect(error.code).toBe(code);
  expect(error.message).toMatch(message);
  return error;
}

/** A loopback HTTP server answering "pong from <path>". */
export function loopbackServer(): { port: number; hits: string[]; stop(): void } {
  const hits: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      hits.push(path);
      return new Response(`pong from ${path}`);
    },
  });
  return { port: server.port!, hits, stop: () => server.stop(true) };
}
