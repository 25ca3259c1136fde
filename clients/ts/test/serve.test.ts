// serve() against a real bunker (daemon or CLI fallback, test/setup.ts): requests answered by the
// handler module inside sandboxes; a denied read, a crash, a timeout and the memory limit each
// give a 5xx naming why, and the next request still works.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { Server } from "bun";
import { serve } from "../src/serve";
import { tempDir } from "./helpers";

/** Host processes whose command line names `needle`. */
function hostProcessesNaming(needle: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .filter((entry) => {
      try {
        return readFileSync(`/proc/${entry}/cmdline`, "latin1").includes(needle);
      } catch {
        return false;
      }
    })
    .map(Number);
}

const HANDLER = `
import { readFileSync } from "node:fs";
let served = 0;
export default {
  async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    served++;
    switch (url.pathname) {
      case "/echo":
        return new Response(await req.text(), { status: 201, headers: { "x-method": req.method, "x-seen": req.headers.get("x-test") ?? "" } });
      case "/read": return new Response(readFileSync(url.searchParams.get("path")!, "utf8"));
      case "/served": return Response.json({ served });
      case "/crash": process.exit(3);
      case "/hang": await new Promise(() => setInterval(() => {}, 1000));
      case "/hog": { const kept = []; for (;;) kept.push(new Uint8Array(1 << 20).fill(1)); }
      case "/not-a-response": return "plain string" as any;
      case "/huge": return new Response("x".repeat(3 << 20));
      case "/forged": {
        // The marker is in argv: a forged frame with a malformed response is refused.
        const mark = "\\x1e" + process.argv[1];
        process.stdout.write(mark + JSON.stringify({ t: "response", response: { status: 99, headers: 5 } }) + "\\n");
        return new Promise(() => {});
      }
      default: return new Response("hello from " + url.pathname);
    }
  },
};
`;

for (const via of ["spawn", "eval"] as const) {
  describe(`serve (via ${via})`, () => {
    let server: Server;
    let dir: string;
    let secretDir: string;

    beforeAll(() => {
      dir = tempDir("bunker-ts-serve-");
      secretDir = tempDir("bunker-ts-secret-");
      writeFileSync(`${dir}/handler.ts`, HANDLER);
      writeFileSync(`${dir}/own.txt`, "handler's own file");
      writeFileSync(`${secretDir}/secret.txt`, "top secret");
      server = serve({
        port: 0,
        hostname: "127.0.0.1",
        handler: `${dir}/handler.ts`,
        via,
        timeoutMs: 1500,
        // Through eval the handler is bundled: what it reads at run time needs a grant.
        sandbox: via === "eval" ? { allow: { read: [dir] }, limits: { memory: "128MB" } } : { limits: { memory: "128MB" } },
      });
    });

    afterAll(() => {
      server.stop(true);
    });

    async function get(path: string, init?: RequestInit): Promise<{ status: number; body: string; headers: Headers }> {
      const response = await fetch(new URL(path, server.url), init);
      return { status: response.status, body: await response.text(), headers: response.headers };
    }

    /** A 5xx's body: `{error: {kind, message}}`. */
    function failure(body: string): { kind: string; message: string } {
      return JSON.parse(body).error;
    }

    test("the handler answers: status, headers and body round-trip", async () => {
      expect(await get("/")).toMatchObject({ status: 200, body: "hello from /" });
      const echoed = await get("/echo?q=1", { method: "POST", body: "request body", headers: { "x-test": "yes" } });
      expect(echoed.status).toBe(201);
      expect(echoed.body).toBe("request body");
      expect(echoed.headers.get("x-method")).toBe("POST");
      expect(echoed.headers.get("x-seen")).toBe("yes");
    });

    test("each request gets a fresh sandbox: nothing persists between requests", async () => {
      expect(JSON.parse((await get("/served")).body)).toEqual({ served: 1 });
      expect(JSON.parse((await get("/served")).body)).toEqual({ served: 1 });
    });

    test("a denied read is a 500 naming the error; the handler's own directory is readable (control)", async () => {
      expect(await get(`/read?path=${dir}/own.txt`)).toMatchObject({ status: 200, body: "handler's own file" });
      const denied = await get(`/read?path=${secretDir}/secret.txt`);
      expect(denied.status).toBe(500);
      expect(denied.headers.get("x-bunker-error")).toBe("thrown");
      expect(failure(denied.body)).toMatchObject({ kind: "thrown" });
      expect(failure(denied.body).message).toContain("ENOENT");
      expect(denied.body).not.toContain("top secret");
      expect((await get("/after-denied")).status).toBe(200);
    });

    test("a crashing handler is a 502 'crashed'; the server goes on", async () => {
      const crashed = await get("/crash");
      expect(crashed.status).toBe(502);
      expect(failure(crashed.body)).toMatchObject({ kind: "crashed" });
      expect(failure(crashed.body).message).toMatch(/exit code 3|exit status 3|code 3/);
      expect(await get("/after-crash")).toMatchObject({ status: 200, body: "hello from /after-crash" });
    });

    test("a handler past its time is a 504 'timeout'; the server goes on", async () => {
      const slow = await get("/hang");
      expect(slow.status).toBe(504);
      expect(failure(slow.body)).toMatchObject({ kind: "timeout" });
      expect(await get("/after-timeout")).toMatchObject({ status: 200 });
    });

    test("a handler over the memory limit is a 502 'memory_limit'; the server goes on", async () => {
      const hog = await get("/hog");
      expect(hog.status).toBe(502);
      expect(failure(hog.body)).toMatchObject({ kind: "memory_limit" });
      expect(await get("/after-hog")).toMatchObject({ status: 200 });
    });

    test("an answer too large for its channel is a 5xx naming why (spawn: limits.output; eval: the ring)", async () => {
      const huge = await get("/huge");
      if (via === "spawn") {
        expect(huge.status).toBe(502);
        expect(failure(huge.body).kind).toBe("output_limit");
      } else {
        expect(huge.status).toBe(500);
        expect(failure(huge.body).message).toMatch(/does not fit/);
      }
      expect((await get("/after-huge")).status).toBe(200);
    });

    // The shim's frames are the spawn path's (eval's channel is the daemon's, tested there).
    if (via === "spawn") {
      test("a forged, malformed answer is a 502 'protocol_error'", async () => {
        const forged = await get("/forged");
        expect(forged.status).toBe(502);
        expect(failure(forged.body).kind).toBe("protocol_error");
      });
    }

    test("a handler returning something other than a Response is a 500", async () => {
      const wrong = await get("/not-a-response");
      expect(wrong.status).toBe(500);
      expect(failure(wrong.body).message).toMatch(/not a Response/);
    });

    test("a handler module that does not load gives a 500 per request, and the server stays up", async () => {
      const broken = tempDir("bunker-ts-serve-broken-");
      writeFileSync(`${broken}/handler.ts`, "export default { fetch( }\n");
      const other = serve({ port: 0, hostname: "127.0.0.1", handler: `${broken}/handler.ts`, pool: 1, via });
      try {
        for (let i = 0; i < 2; i++) {
          const response = await fetch(other.url);
          expect(response.status).toBe(500);
          const error = (await response.json()).error;
          expect(error.kind).toBe("syntax");
          expect(error.message).toContain(via === "eval" ? "bundling the handler" : "loading the handler");
        }
      } finally {
        other.stop(true);
      }
    });
  });
}

describe("serve (via eval, no sandbox option)", () => {
  test("the eval profile alone: the request is answered (warm from the daemon's eval:bun pool)", async () => {
    const dir = tempDir("bunker-ts-serve-warm-");
    writeFileSync(`${dir}/handler.ts`, HANDLER);
    const server = serve({ port: 0, hostname: "127.0.0.1", handler: `${dir}/handler.ts`, via: "eval" });
    try {
      for (let i = 0; i < 2; i++) {
        const response = await fetch(new URL(`/warm-${i}`, server.url));
        expect(response.status).toBe(200);
        expect(await response.text()).toBe(`hello from /warm-${i}`);
      }
    } finally {
      server.stop(true);
    }
  });
});

describe("serve", () => {
  test("stop() ends the pre-started sandboxes: no process of them is left on the host", async () => {
    const dir = tempDir("bunker-ts-serve-stop-");
    writeFileSync(`${dir}/handler.ts`, HANDLER);
    const server = serve({ port: 0, hostname: "127.0.0.1", handler: `${dir}/handler.ts`, pool: 2 });
    expect((await fetch(server.url)).status).toBe(200);
    // Control: the pool's sandboxes are seen from the host.
    expect(hostProcessesNaming(`${dir}/handler.ts`).length).toBeGreaterThan(0);
    await server.stop(true);
    expect(hostProcessesNaming(`${dir}/handler.ts`)).toEqual([]);
  });

  test("a daemon that is not running: each request is a 503 'unavailable', the server stays up", async () => {
    const dir = tempDir("bunker-ts-serve-nodaemon-");
    writeFileSync(`${dir}/handler.ts`, HANDLER);
    const server = serve({ port: 0, hostname: "127.0.0.1", handler: `${dir}/handler.ts`, socket: `${dir}/no-daemon.sock` });
    try {
      for (let i = 0; i < 2; i++) {
        const response = await fetch(server.url);
        expect(response.status).toBe(503);
        const error = (await response.json()).error;
        expect(error.kind).toBe("unavailable");
        expect(error.message).toContain("no-daemon.sock");
      }
    } finally {
      await server.stop(true);
    }
  });

  test("bad input: no handler, a fetch function, a bad pool size", () => {
    const codeOf = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (error) {
        return (error as { code?: string }).code;
      }
      return undefined;
    };
    expect(codeOf(() => serve({} as any))).toBe("request_invalid");
    expect(codeOf(() => serve({ handler: "./h.ts", fetch: () => new Response("x") }))).toBe("request_invalid");
    expect(codeOf(() => serve({ handler: "./h.ts", pool: -1 }))).toBe("request_invalid");
    expect(codeOf(() => serve({ handler: "./h.ts", via: "thread" as any }))).toBe("request_invalid");
  });
});
