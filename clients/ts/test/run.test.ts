// run(): real programs in real sandboxes, through the daemon or the CLI fallback (test/setup.ts).
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { BunkerError, CommandError, run } from "bunker";
import { MODE, expectBunkerError, loopbackServer, tempDir } from "./helpers";

describe(`run (${MODE})`, () => {
  test("captures stdout, stderr and a non-zero exit as a result", async () => {
    const r = await run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r.exitCode).toBe(3);
    expect(r.status).toBe("exit");
    expect(r.success).toBe(false);
    expect(r.stdoutText).toBe("out\n");
    expect(r.stderrText).toBe("err\n");
    expect(r.report.enforced.seccomp).toBe("on");
    expect(r.warm).toBe(false);
  });

  test("stdin bytes and binary output are exact", async () => {
    const r = await run(["sh", "-c", "cat; printf '\\377\\000'"], { stdin: "abc" });
    expect([...r.stdout]).toEqual([97, 98, 99, 255, 0]);
  });

  test("an allowed file is read, a file outside the grants and a denied file are not", async () => {
    const dir = tempDir();
    writeFileSync(`${dir}/data.txt`, "granted data\n");
    writeFileSync(`${dir}/secret.key`, "hunter2\n");
    const allowed = await run(["cat", `${dir}/data.txt`], {
      sandbox: { extends: ["default"], allow: { read: [dir] }, deny: { read: [`${dir}/secret.key`] } },
    });
    expect(allowed.stdoutText).toBe("granted data\n");

    const denied = await run(["cat", `${dir}/secret.key`], {
      sandbox: { extends: ["default"], allow: { read: [dir] }, deny: { read: [`${dir}/secret.key`] } },
    });
    // A denied file is masked: the program sees no content.
    expect(denied.stdoutText).toBe("");

    const ungranted = await run(["cat", `${dir}/data.txt`]);
    expect(ungranted.exitCode).not.toBe(0);
    expect(ungranted.stdoutText).toBe("");
  });

  test("a write lands on the host only where allow.write grants it", async () => {
    const dir = tempDir();
    const ok = await run(["sh", "-c", `echo kept > ${dir}/out.txt`], { sandbox: { allow: { write: [dir] } } });
    expect(ok.status).toBe("ok");
    expect(await Bun.file(`${dir}/out.txt`).text()).toBe("kept\n");

    const readOnly = await run(["sh", "-c", `echo nope > ${dir}/no.txt`], { sandbox: { allow: { read: [dir] } } });
    expect(readOnly.exitCode).not.toBe(0);
    expect(existsSync(`${dir}/no.txt`)).toBe(false);
  });

  test("a policy file's relative paths resolve against the file, not the daemon", async () => {
    const dir = tempDir();
    mkdirSync(`${dir}/data`);
    writeFileSync(`${dir}/data/x.txt`, "from the policy dir\n");
    writeFileSync(`${dir}/policy.json`, JSON.stringify({ extends: ["default"], allow: { read: ["./data"] } }));
    const r = await run(["cat", `${dir}/data/x.txt`], { sandbox: `${dir}/policy.json` });
    expect(r.stdoutText).toBe("from the policy dir\n");
  });

  test("a policy object's relative paths resolve against this process's directory", async () => {
    // The suite runs in clients/ts; the daemon runs in a directory of its own (test/setup.ts).
    const r = await run(["cat", `${process.cwd()}/test/fixture.txt`], { sandbox: { allow: { read: ["./test"] } } });
    expect(r.stdoutText).toBe("fixture for relative grants\n");
  });

  test("a policy name the daemon knows", async () => {
    const r = await run(["true"], { sandbox: "default" });
    expect(r.status).toBe("ok");
  });

  test("env names the policy allows reach the program", async () => {
    const r = await run(["sh", "-c", "echo $GREETING"], {
      sandbox: { allow: { env: ["GREETING"] } },
      env: { GREETING: "hello" },
    });
    expect(r.stdoutText).toBe("hello\n");
    await expectBunkerError(run(["true"], { env: { NOT_ALLOWED: "x" } }), "policy_not_permitted", /NOT_ALLOWED is not in the policy's allow\.env/);
  });

  test("network: a loopback server granted by allow.net answers; without the grant it is refused", async () => {
    const server = loopbackServer();
    try {
      const url = `http://127.0.0.1:${server.port}/granted`;
      const allowed = await run(["curl", "-sSf", url], { sandbox: { allow: { net: [`127.0.0.1:${server.port}`] } } });
      expect(allowed.stdoutText).toBe("pong from /granted");
      expect(allowed.httpRequests.some((r) => r.allowed && r.port === server.port)).toBe(true);

      const denied = await run(["curl", "-sSf", `http://127.0.0.1:${server.port}/denied`]);
      expect(denied.exitCode).not.toBe(0);
      expect(server.hits).toEqual(["/granted"]);

      // Granted another port only: the proxy refuses and the report says so.
      const other = await run(["curl", "-sSf", `http://127.0.0.1:${server.port}/other`], {
        sandbox: { allow: { net: [`127.0.0.1:${server.port + 1}`] } },
      });
      expect(other.exitCode).not.toBe(0);
      expect(other.violations.some((v) => v.layer === "net" && v.attempt.includes(String(server.port)))).toBe(true);
      expect(server.hits).toEqual(["/granted"]);
    } finally {
      server.stop();
    }
  });

  test("limit: timeout", async () => {
    const r = await run(["sleep", "30"], { timeout: 300 });
    expect(r.status).toBe("timeout");
    expect(r.signalCode).toBe("SIGKILL");
    expect(r.report.error_code).toBe("limit_timeout");
  });

  test("limit: memory", async () => {
    const r = await run(["python3", "-c", "x = bytearray(400 * 1024 * 1024); print(len(x))"], {
      sandbox: { limits: { memory: "64MB" } },
    });
    expect(r.status).toBe("memory_limit");
    expect(r.report.error_code).toBe("limit_memory");
  });

  test("limit: output, cut and counted; killed with kill_on_output_overflow", async () => {
    const cut = await run(["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a"], { sandbox: { limits: { output: "1KB" } } });
    expect(cut.status).toBe("ok");
    expect(cut.truncated).toBe(true);
    expect(cut.stdout.length).toBe(1000);
    expect(cut.report.stdout.bytes).toBe(5000);

    const killed = await run(["sh", "-c", "yes"], { sandbox: { limits: { output: "1KB", kill_on_output_overflow: true } } });
    expect(killed.status).toBe("output_limit");
    expect(killed.report.error_code).toBe("limit_output");
  });

  test("limit: pids", async () => {
    const r = await run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait"], {
      sandbox: { limits: { pids: 4 } },
    });
    expect(r.status).toBe("pids_limit");
    expect(r.report.error_code).toBe("limit_pids");
  });

  test("check: true throws CommandError carrying the result", async () => {
    let caught: unknown;
    try {
      await run(["sh", "-c", "exit 7"], { check: true });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(CommandError);
    expect((caught as CommandError).result.exitCode).toBe(7);
  });

  test("bad input: an invalid policy is policy_invalid naming the key", async () => {
    const error = await expectBunkerError(run(["true"], { sandbox: { allow: { reed: ["/"] } } as any }), "policy_invalid", /reed/);
    expect(error).toBeInstanceOf(BunkerError);
  });

  test("bad input: a policy file that does not exist is policy_invalid naming it", async () => {
    await expectBunkerError(run(["true"], { sandbox: "/nonexistent/policy.json" }), "policy_invalid", /nonexistent\/policy\.json/);
  });

  test("bad input: an unknown option is request_invalid naming it", async () => {
    await expectBunkerError(run(["true"], { sandbx: {} } as any), "request_invalid", /unknown option "sandbx"/);
    await expectBunkerError(run([] as string[]), "request_invalid", /non-empty array/);
    await expectBunkerError(run(["true"], { timeout: -1 }), "request_invalid", /timeout/);
  });

  test("bad input: a daemon that is not running is unavailable", async () => {
    await expectBunkerError(run(["true"], { socket: "/nonexistent/bunker.sock" }), "unavailable", /no bunker daemon answers on \/nonexistent\/bunker\.sock/);
    const saved = process.env.BUNKER_SOCKET;
    process.env.BUNKER_SOCKET = "/nonexistent/env.sock";
    try {
      await expectBunkerError(run(["true"]), "unavailable", /\/nonexistent\/env\.sock/);
    } finally {
      if (saved === undefined) delete process.env.BUNKER_SOCKET;
      else process.env.BUNKER_SOCKET = saved;
    }
  });

  test("a command that does not exist in the sandbox exits 127", async () => {
    const r = await run(["no-such-command-xyz"]);
    expect(r.exitCode).toBe(127);
    expect(r.report.error_code).toBe("command_not_found");
  });
});

describe(`run abort (${MODE})`, () => {
  test("an AbortSignal ends the run: killed (cancelled / terminated)", async () => {
    const controller = new AbortController();
    const pending = run(["sh", "-c", "sleep 30"], { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    let outcome: string;
    try {
      const r = await pending;
      outcome = `${r.status} ${r.report.error_code}`;
    } catch (error) {
      outcome = (error as BunkerError).code;
    }
    // Killed while running, or (on a slow host) cancelled before the sandbox was up.
    expect(MODE === "daemon" ? ["signal cancelled", "cancelled"] : ["signal terminated", "cancelled"]).toContain(outcome);
  });
});
