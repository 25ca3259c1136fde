// spawn(): the Bun.Subprocess-shaped handle, streaming both ways, kill.
import { describe, expect, test } from "bun:test";
import { type BunkerError, spawn } from "bunker";
import { MODE, expectBunkerError } from "./helpers";

async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, text: string): Promise<string> {
  const decoder = new TextDecoder();
  let seen = "";
  while (!seen.includes(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += decoder.decode(value, { stream: true });
  }
  return seen;
}

describe(`spawn (${MODE})`, () => {
  test("runs through the mode the suite selected", async () => {
    const proc = spawn(["true"]);
    expect(proc.mode).toBe(MODE);
    expect(await proc.exited).toBe(0);
    expect(proc.exitCode).toBe(0);
    expect(proc.signalCode).toBeNull();
    expect((await proc.report).status).toBe("ok");
  });

  test("{cmd, ...options} form, stdout and stderr as streams", async () => {
    const proc = spawn({ cmd: ["sh", "-c", "echo to-out; echo to-err >&2; exit 4"], stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(out).toBe("to-out\n");
    expect(err).toBe("to-err\n");
    expect(await proc.exited).toBe(4);
    expect(proc.exitCode).toBe(4);
  });

  test("streaming: output arrives while the program runs, stdin is written while it runs", async () => {
    // The program prints, then waits for a line we only send after reading its first output.
    const proc = spawn(["sh", "-c", "echo ready; read line; echo got:$line"], { stdin: "pipe" });
    const reader = proc.stdout!.getReader();
    expect(await readUntil(reader, "ready\n")).toBe("ready\n");
    expect(proc.exitCode).toBeNull();
    proc.stdin!.write("ping\n");
    await proc.stdin!.flush();
    expect(await readUntil(reader, "got:ping\n")).toBe("got:ping\n");
    await proc.stdin!.end();
    expect(await proc.exited).toBe(0);
  });

  test("stdin from bytes, a Blob and a ReadableStream", async () => {
    const fromBytes = spawn(["cat"], { stdin: new TextEncoder().encode("bytes") });
    expect(await new Response(fromBytes.stdout).text()).toBe("bytes");
    const fromBlob = spawn(["cat"], { stdin: new Blob(["blob"]) });
    expect(await new Response(fromBlob.stdout).text()).toBe("blob");
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("str"));
        c.enqueue(new TextEncoder().encode("eam"));
        c.close();
      },
    });
    const fromStream = spawn(["cat"], { stdin: stream });
    expect(await new Response(fromStream.stdout).text()).toBe("stream");
  });

  test("kill ends every process of the sandbox and the report says why", async () => {
    const proc = spawn(["sh", "-c", "echo up; sleep 30 & sleep 30; echo never"]);
    const reader = proc.stdout!.getReader();
    await readUntil(reader, "up\n");
    proc.kill();
    const code = await proc.exited;
    expect(proc.killed).toBe(true);
    expect(proc.exitCode).toBeNull();
    const report = await proc.report;
    // Through the daemon `kill` is SIGKILL (cancelled); the CLI fallback sends bunker SIGTERM,
    // which kills the sandbox and reports it terminated.
    if (MODE === "daemon") {
      expect(proc.signalCode).toBe("SIGKILL");
      expect(code).toBe(137);
      expect(report.error_code).toBe("cancelled");
    } else {
      expect(proc.signalCode).toBe("SIGTERM");
      expect(code).toBe(143);
      expect(report.error_code).toBe("terminated");
    }
  });

  test("a kill right after spawn: killed with SIGKILL, or cancelled before the sandbox was up", async () => {
    const proc = spawn(["sleep", "30"]);
    proc.kill();
    let outcome: string;
    try {
      await proc.exited;
      outcome = `${proc.signalCode} ${(await proc.report).error_code}`;
    } catch (error) {
      outcome = (error as BunkerError).code;
    }
    expect(["SIGKILL cancelled", "SIGTERM terminated", "cancelled"]).toContain(outcome);
  });

  test("the timeout option kills the sandbox", async () => {
    const proc = spawn(["sleep", "30"], { timeout: 300 });
    expect(await proc.exited).toBe(137);
    expect(proc.signalCode).toBe("SIGKILL");
    expect((await proc.report).status).toBe("timeout");
  });

  test("onExit hears the end", async () => {
    const heard = await new Promise<[number | null, string | null]>((resolve) => {
      spawn(["sh", "-c", "exit 5"], { onExit: (_p, code, signal) => resolve([code, signal]) });
    });
    expect(heard).toEqual([5, null]);
  });

  test("a policy error rejects exited and report with policy_invalid", async () => {
    const proc = spawn(["true"], { sandbox: { limits: { memory: "lots" } } as any });
    await expectBunkerError(proc.exited, "policy_invalid", /limits\.memory/);
    await expectBunkerError(proc.report, "policy_invalid", /lots/);
  });

  test("unknown options and bad values throw at once", () => {
    expect(() => spawn(["true"], { stdot: "pipe" } as any)).toThrow(/unknown option "stdot"/);
    expect(() => spawn(["true"], { stdout: "file" } as any)).toThrow(/stdout: expected/);
    expect(() => spawn([] as string[])).toThrow(/non-empty array/);
    expect(() => spawn(["true"], { sandbox: 42 } as any)).toThrow(/sandbox: expected a policy object/);
  });

  test("a daemon that is not running rejects with unavailable", async () => {
    const proc = spawn(["true"], { socket: "/nonexistent/bunker.sock" });
    await expectBunkerError(proc.exited, "unavailable", /\/nonexistent\/bunker\.sock/);
  });
});

describe(`spawn env (${MODE})`, () => {
  test("env names the policy allows reach the program; others are refused with policy_not_permitted", async () => {
    const proc = spawn(["sh", "-c", "read x; echo $GREETING $x"], {
      sandbox: { allow: { env: ["GREETING"] } },
      env: { GREETING: "hello" },
      stdin: "pipe",
      stderr: "pipe",
    });
    proc.stdin!.write("world\n");
    await proc.stdin!.end();
    expect(await new Response(proc.stdout).text()).toBe("hello world\n");
    expect(await proc.exited).toBe(0);

    const refused = spawn(["true"], { env: { NOT_ALLOWED: "x" } });
    await expectBunkerError(refused.exited, "policy_not_permitted", /NOT_ALLOWED is not in the policy's allow\.env/);
  });
});
