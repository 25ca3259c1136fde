// evalJs(): code in a Bun worker's sandbox, through the daemon's `eval` (a warm eval:bun pool) or
// `bunker eval`.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { Connection, EvalError, evalJs, openEvalWorker } from "bunker";
import { MODE, expectBunkerError, loopbackServer, tempDir } from "./helpers";

async function evalError(promise: Promise<unknown>): Promise<EvalError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(EvalError);
  return caught as EvalError;
}

describe(`evalJs (${MODE})`, () => {
  test("1+1 is 2", async () => {
    const r = await evalJs("1+1");
    expect(r.value).toBe(2);
    expect(r.status).toBe("ok");
    expect(r.consoleOutput).toBe("");
  });

  // Only a daemon has pools: the test exists in daemon mode (never a skip in CI).
  (MODE === "daemon" ? test : () => {})("a ready eval:bun pool serves it warm", async () => {
    const connection = await Connection.open(process.env.BUNKER_SOCKET!);
    try {
      // Wait (bounded) for the pool to hold a ready worker; the refill runs in the background.
      for (let i = 0; i < 200; i++) {
        const stats = await connection.request("stats");
        if ((stats.pools?.["eval:bun"]?.ready ?? 0) > 0) break;
        await Bun.sleep(50);
      }
      const r = await evalJs("[1, 2, 3].map((x) => x * 2)");
      expect(r.value).toEqual([2, 4, 6]);
      expect(r.warm).toBe(true);
    } finally {
      connection.close();
    }
  });

  test("console output is kept and capped at consoleLogMaxSize", async () => {
    const r = await evalJs('console.log("hello"); 42');
    expect(r.value).toBe(42);
    expect(r.consoleOutput).toBe("hello\n");
    const capped = await evalJs('console.log("x".repeat(5000)); 1', { consoleLogMaxSize: 100 });
    expect(capped.consoleTruncated).toBe(true);
    expect(capped.consoleOutput.length).toBeLessThanOrEqual(100);
  });

  test("globals, and a function called with args", async () => {
    const r = await evalJs("function add(a, b) { return a + b + offset }", { globals: { offset: 100 }, function: "add", args: [1, 2] });
    expect(r.value).toBe(103);
  });

  test("a thrown error is an EvalError of kind thrown, with name, stack and console output", async () => {
    const e = await evalError(evalJs('console.log("before"); throw new TypeError("bad thing")'));
    expect(e.kind).toBe("thrown");
    expect(e.errorName).toBe("TypeError");
    expect(e.message).toContain("bad thing");
    expect(e.jsStack).toContain("TypeError");
    expect(e.consoleOutput).toBe("before\n");
  });

  test("a syntax error is kind syntax", async () => {
    const e = await evalError(evalJs("1 +"));
    expect(e.kind).toBe("syntax");
  });

  test("limit: timeoutMs", async () => {
    const e = await evalError(evalJs("while (true) {}", { timeoutMs: 300 }));
    expect(e.kind).toBe("timeout");
    expect(e.result.status).toBe("timeout");
  });

  test("limit: memoryLimitBytes", async () => {
    const e = await evalError(
      evalJs("const a = []; while (true) a.push(new Uint8Array(1 << 20).fill(1)); 1", { memoryLimitBytes: 96 * 1024 * 1024 }),
    );
    expect(e.kind).toBe("memory_limit");
  });

  test("network: no http option, no network; an allowlisted loopback server answers; max_requests is enforced", async () => {
    const server = loopbackServer();
    const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
    try {
      const denied = await evalError(evalJs(`(async () => (await fetch(${JSON.stringify(url("/denied"))})).text())()`));
      expect(denied.kind).toMatch(/thrown|http_blocked/);
      expect(server.hits).toEqual([]);

      const http = { allowlist: ["127.0.0.1"], allowed_ports: [server.port] };
      const allowed = await evalJs(`(async () => (await fetch(${JSON.stringify(url("/ok"))})).text())()`, { http });
      expect(allowed.value).toBe("pong from /ok");
      expect(allowed.httpRequests.some((r) => r.allowed && r.port === server.port)).toBe(true);
      expect(server.hits).toEqual(["/ok"]);

      const limited = await evalJs(
        `(async () => { await fetch(${JSON.stringify(url("/one"))}); return (await fetch(${JSON.stringify(url("/two"))})).status })()`,
        { http: { ...http, max_requests: 1 } },
      );
      expect(limited.value).not.toBe(200);
      expect(limited.httpRequests.some((r) => !r.allowed && r.rule === "http.max_requests")).toBe(true);
      expect(server.hits).toEqual(["/ok", "/one"]);
    } finally {
      server.stop();
    }
  });

  test("a policy object or file extends the eval profile (a read grant)", async () => {
    const dir = tempDir();
    writeFileSync(`${dir}/data.json`, JSON.stringify({ answer: 42 }));
    writeFileSync(`${dir}/policy.json`, JSON.stringify({ allow: { read: ["."] } }));
    const code = `(async () => (await Bun.file(${JSON.stringify(`${dir}/data.json`)}).json()).answer)()`;
    expect((await evalJs(code, { sandbox: { allow: { read: [dir] } } })).value).toBe(42);
    expect((await evalJs(code, { sandbox: `${dir}/policy.json` })).value).toBe(42);
    const e = await evalError(evalJs(code));
    expect(e.kind).toBe("thrown");
  });

  test("bad input: unknown option, unknown http key, invalid policy, a daemon that is not running", async () => {
    await expectBunkerError(evalJs("1", { timeout: 5 } as any), "request_invalid", /unknown option "timeout"/);
    await expectBunkerError(evalJs("1", { http: { allow: ["x"] } } as any), "request_invalid", /unknown option "allow"/);
    await expectBunkerError(evalJs("1", { timeoutMs: -5 }), "request_invalid", /timeoutMs/);
    await expectBunkerError(evalJs("1", { sandbox: { limits: { memory: "lots" } } as any }), "policy_invalid", /limits\.memory/);
    await expectBunkerError(evalJs("1", { socket: "/nonexistent/bunker.sock" }), "unavailable", /\/nonexistent\/bunker\.sock/);
  });
});

describe(`openEvalWorker (${MODE})`, () => {
  if (MODE === "daemon") {
    test("an opened worker keeps its globals between evals; a timeout ends it", async () => {
      const worker = await openEvalWorker({ timeoutMs: 2000 });
      expect(worker.id).toMatch(/^w-/);
      await worker.eval("globalThis.counter = 41");
      expect((await worker.eval("++counter")).value).toBe(42);
      expect((await worker.eval("function twice(x) { return 2 * x * counter }", { function: "twice", args: [1] })).value).toBe(84);
      await worker.close();
      await expectBunkerError(worker.eval("1"), "not_found", /w-/);

      const doomed = await openEvalWorker({ timeoutMs: 300 });
      const e = await evalError(doomed.eval("while (true) {}"));
      expect(e.kind).toBe("timeout");
      await expectBunkerError(doomed.eval("1"), "not_found", /w-/);
    });
  } else {
    test("needs a daemon: unavailable without one", async () => {
      await expectBunkerError(openEvalWorker(), "unavailable", /needs a daemon/);
    });
  }
});
