// SandboxedWorker against a real bunker (daemon or CLI fallback, test/setup.ts): messages both
// ways, errors to onerror, terminate() leaving no process on the host, a denied read.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { SandboxedWorker } from "../src/worker";
import { tempDir } from "./helpers";

/** The next `message` event's data. */
function nextMessage(worker: SandboxedWorker): Promise<unknown> {
  return new Promise((resolve) => worker.addEventListener("message", (e) => resolve((e as MessageEvent).data), { once: true }));
}

/** The next `error` event. */
function nextError(worker: SandboxedWorker): Promise<ErrorEvent> {
  return new Promise((resolve) => worker.addEventListener("error", (e) => resolve(e as ErrorEvent), { once: true }));
}

/** Host processes whose command line names `needle`. */
function hostProcessesNaming(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "latin1").includes(needle)) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

const WORKER = `
import { readFileSync } from "node:fs";
self.onmessage = (event) => {
  const { op, arg } = event.data;
  if (op === "ping") postMessage({ pong: arg });
  else if (op === "throw") throw new Error("worker says no: " + arg);
  else if (op === "read") {
    try { postMessage({ read: readFileSync(arg, "utf8") }); }
    catch (e) { postMessage({ failed: e.code ?? String(e) }); }
  }
};
`;

function workerModule(source = WORKER): { dir: string; path: string } {
  const dir = tempDir("bunker-ts-worker-");
  writeFileSync(`${dir}/worker.ts`, source);
  return { dir, path: `${dir}/worker.ts` };
}

describe("SandboxedWorker", () => {
  test("ping/pong: JSON messages both ways, onmessage and addEventListener", async () => {
    const { path } = workerModule();
    const worker = new SandboxedWorker(path);
    const viaProperty = new Promise((resolve) => {
      worker.onmessage = (e) => resolve(e.data);
    });
    const viaListener = nextMessage(worker);
    worker.postMessage({ op: "ping", arg: { n: 1, list: [1, "two", null] } });
    expect(await viaProperty).toEqual({ pong: { n: 1, list: [1, "two", null] } });
    expect(await viaListener).toEqual({ pong: { n: 1, list: [1, "two", null] } });
    worker.terminate();
    await worker.exited;
  });

  test("an error thrown in the worker reaches onerror, and the worker goes on", async () => {
    const { path } = workerModule();
    const worker = new SandboxedWorker(path);
    const error = new Promise<ErrorEvent>((resolve) => {
      worker.onerror = resolve;
    });
    worker.postMessage({ op: "throw", arg: "42" });
    const event = await error;
    expect(event.message).toContain("worker says no: 42");
    expect(event.error).toBeInstanceOf(Error);
    const reply = nextMessage(worker);
    worker.postMessage({ op: "ping", arg: "still there" });
    expect(await reply).toEqual({ pong: "still there" });
    worker.terminate();
    await worker.exited;
  });

  test("terminate() kills the sandbox: no process of it is left on the host", async () => {
    const { path } = workerModule();
    const worker = new SandboxedWorker(path);
    const reply = nextMessage(worker);
    worker.postMessage({ op: "ping", arg: 1 });
    await reply;
    // Control: while it runs, the worker's bun is seen from the host.
    expect(hostProcessesNaming(path).length).toBeGreaterThan(0);
    let closed = false;
    worker.addEventListener("close", () => {
      closed = true;
    });
    worker.terminate();
    const result = await worker.exited;
    expect(result.status).toBe("signal");
    expect(closed).toBe(true);
    expect(hostProcessesNaming(path)).toEqual([]);
  });

  test("the worker cannot read a file the policy does not grant; its own directory it can", async () => {
    const { dir, path } = workerModule();
    writeFileSync(`${dir}/own.txt`, "mine");
    const secretDir = tempDir("bunker-ts-secret-");
    writeFileSync(`${secretDir}/secret.txt`, "top secret");
    const worker = new SandboxedWorker(path);
    let reply = nextMessage(worker);
    worker.postMessage({ op: "read", arg: `${dir}/own.txt` });
    expect(await reply).toEqual({ read: "mine" });
    reply = nextMessage(worker);
    worker.postMessage({ op: "read", arg: `${secretDir}/secret.txt` });
    expect(await reply).toEqual({ failed: "ENOENT" });
    worker.terminate();
    await worker.exited;
  });

  test("a policy grant opens a path to the worker", async () => {
    const { path } = workerModule();
    const shared = tempDir("bunker-ts-shared-");
    writeFileSync(`${shared}/data.txt`, "granted");
    const worker = new SandboxedWorker(path, { sandbox: { allow: { read: [shared] } } });
    const reply = nextMessage(worker);
    worker.postMessage({ op: "read", arg: `${shared}/data.txt` });
    expect(await reply).toEqual({ read: "granted" });
    worker.terminate();
    await worker.exited;
  });

  test("a worker killed by its memory limit fires error naming it, then close", async () => {
    const { path } = workerModule(`
      self.onmessage = () => { const kept = []; for (;;) kept.push(new Uint8Array(1 << 20).fill(1)); };
    `);
    const worker = new SandboxedWorker(path, { sandbox: { limits: { memory: "128MB" } } });
    const error = nextError(worker);
    const closed = new Promise((resolve) => worker.addEventListener("close", resolve));
    worker.postMessage("grow");
    const event = await error;
    expect(event.error.name).toBe("BunkerError");
    expect((event.error as { code?: string }).code).toBe("limit_memory");
    expect(event.message).toMatch(/memory limit/);
    await closed;
    expect((await worker.exited).status).toBe("memory_limit");
  });

  test("a module that fails to load fires error, then close", async () => {
    const { path } = workerModule("throw new TypeError('broken at load');\n");
    const worker = new SandboxedWorker(path);
    const error = nextError(worker);
    const closed = new Promise((resolve) => worker.addEventListener("close", resolve));
    expect((await error).message).toContain("broken at load");
    await closed;
  });

  test("a daemon that is not running: error with code unavailable, exited rejects", async () => {
    const { dir, path } = workerModule();
    const worker = new SandboxedWorker(path, { socket: `${dir}/no-daemon.sock` });
    const event = await nextError(worker);
    expect((event.error as { code?: string }).code).toBe("unavailable");
    expect(event.message).toContain("no-daemon.sock");
    let rejected: unknown;
    await worker.exited.catch((error) => {
      rejected = error;
    });
    expect((rejected as { code?: string }).code).toBe("unavailable");
  });

  test("postMessage refuses what is not JSON; bad options are request_invalid", async () => {
    const { path } = workerModule();
    const worker = new SandboxedWorker(path);
    expect(() => worker.postMessage(() => 1)).toThrow(/not JSON-serialisable/);
    expect(() => worker.postMessage(10n)).toThrow();
    const reply = nextMessage(worker);
    worker.postMessage({ op: "ping", arg: 0 });
    await reply;
    worker.terminate();
    await worker.exited;
    expect(() => new SandboxedWorker(path, { sandbx: {} } as any)).toThrow(/unknown option "sandbx"/);
    try {
      new SandboxedWorker(path, { sandbox: "some-daemon-policy" });
      throw new Error("not refused");
    } catch (error) {
      expect((error as { code?: string }).code).toBe("request_invalid");
      expect((error as Error).message).toMatch(/not a built-in profile/);
    }
  });
});
