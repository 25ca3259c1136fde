// bin/bunker-bun: `bun run`, `bun test`, `bun x` in a sandbox (runtime:bun + the policy).
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { MODE, tempDir } from "./helpers";

const BUNKER_BUN = new URL("../bin/bunker-bun", import.meta.url).pathname;

function project(): { dir: string; outside: string } {
  const dir = tempDir("bunker-bun-proj-");
  const outside = tempDir("bunker-bun-outside-");
  writeFileSync(`${outside}/secret.txt`, "outside secret\n");
  mkdirSync(`${dir}/src`);
  writeFileSync(
    `${dir}/src/main.ts`,
    `import { existsSync } from "node:fs";
console.log("main ran", process.argv.slice(2).join(","));
console.log("outside visible:", existsSync(${JSON.stringify(`${outside}/secret.txt`)}));`,
  );
  writeFileSync(`${dir}/policy.json`, JSON.stringify({ limits: { timeout: "30s" } }));
  return { dir, outside };
}

function bunkerBun(args: string[], cwd: string) {
  const proc = Bun.spawnSync([process.execPath, BUNKER_BUN, ...args], { cwd, stdout: "pipe", stderr: "pipe", env: process.env });
  return { code: proc.exitCode, out: proc.stdout.toString(), err: proc.stderr.toString() };
}

describe(`bunker-bun (${MODE})`, () => {
  test("run: the project is readable, the rest of the host is not", () => {
    const { dir } = project();
    const r = bunkerBun(["run", "--sandbox=policy.json", "src/main.ts", "a", "b"], dir);
    expect(r.err).toBe("");
    expect(r.out).toBe("main ran a,b\noutside visible: false\n");
    expect(r.code).toBe(0);
  });

  test("run: the policy's limits apply (a timeout kills bun, exit 124)", () => {
    const { dir } = project();
    writeFileSync(`${dir}/src/hang.ts`, "await Bun.sleep(60_000);");
    writeFileSync(`${dir}/short.json`, JSON.stringify({ limits: { timeout: "1s" } }));
    const r = bunkerBun(["run", "--sandbox", "short.json", "src/hang.ts"], dir);
    expect(r.code).toBe(124);
  });

  test("test: bun test runs the project's tests in the sandbox", () => {
    const { dir, outside } = project();
    writeFileSync(
      `${dir}/a.test.ts`,
      `import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
test("sums", () => expect(1 + 1).toBe(2));
test("cannot see outside", () => expect(existsSync(${JSON.stringify(outside)})).toBe(false));`,
    );
    const r = bunkerBun(["test", "--sandbox=policy.json"], dir);
    expect(r.err).toContain("2 pass");
    expect(r.code).toBe(0);
  });

  test("x: an installed package's bin runs", () => {
    const { dir } = project();
    mkdirSync(`${dir}/node_modules/hello-cli`, { recursive: true });
    mkdirSync(`${dir}/node_modules/.bin`);
    writeFileSync(`${dir}/node_modules/hello-cli/package.json`, JSON.stringify({ name: "hello-cli", version: "1.0.0", bin: { "hello-cli": "cli.js" } }));
    writeFileSync(`${dir}/node_modules/hello-cli/cli.js`, '#!/usr/bin/env bun\nconsole.log("hello-cli", process.argv.slice(2).join(" "));\n');
    chmodSync(`${dir}/node_modules/hello-cli/cli.js`, 0o755);
    symlinkSync("../hello-cli/cli.js", `${dir}/node_modules/.bin/hello-cli`);
    const r = bunkerBun(["x", "--sandbox=policy.json", "hello-cli", "x", "y"], dir);
    expect(r.out).toBe("hello-cli x y\n");
    expect(r.code).toBe(0);
  });

  test("bad usage says what is wrong, exit 2", () => {
    const { dir } = project();
    const unknown = bunkerBun(["serve"], dir);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "serve"');
    const noFile = bunkerBun(["run", "--sandbox=policy.json"], dir);
    expect(noFile.code).toBe(2);
    expect(noFile.err).toContain("needs a file");
    const badPolicy = bunkerBun(["run", "--sandbox=missing.json", "src/main.ts"], dir);
    expect(badPolicy.code).toBe(120);
    expect(badPolicy.err).toContain("missing.json");
  });
});
