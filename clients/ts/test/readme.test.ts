// The README's ```ts blocks are run as they are (each its own program, importing "bunker"), in
// the suite's mode: the docs cannot drift from the code.
import { describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { MODE } from "./helpers";

const root = new URL("..", import.meta.url).pathname;
const readme = await Bun.file(`${root}README.md`).text();
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
// Inside clients/ts, so tsconfig's paths resolve "bunker" to this package.
const scratch = `${root}test/.readme`;

describe(`README examples (${MODE})`, () => {
  test("the README has examples", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(8);
  });

  blocks.forEach((code, index) => {
    test(`block ${index + 1}: ${code.split("\n").find((l) => l.trim() && !l.startsWith("import"))?.trim().slice(0, 60)}`, () => {
      mkdirSync(scratch, { recursive: true });
      const file = `${scratch}/block-${MODE}-${index + 1}.ts`;
      writeFileSync(file, code);
      try {
        const proc = Bun.spawnSync([process.execPath, file], { cwd: root, env: process.env, stdout: "pipe", stderr: "pipe" });
        const output = `${proc.stdout.toString()}${proc.stderr.toString()}`;
        if (proc.exitCode !== 0) console.error(`README block ${index + 1} failed:\n${output}`);
        expect(proc.exitCode).toBe(0);
      } finally {
        rmSync(file, { force: true });
      }
    });
  });
});
