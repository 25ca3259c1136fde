// build() against a real bunker (daemon or CLI fallback, test/setup.ts): the bundle lands in
// outdir, macros run inside the sandbox (reading the project works; reading outside it or
// writing outside outdir fails, checked from the host).
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { build } from "../src/build";
import { tempDir } from "./helpers";

/** A project directory with `files` (path → content), and a directory beside it. */
function project(files: Record<string, string>): { root: string; outside: string } {
  const root = tempDir("bunker-ts-build-");
  const outside = tempDir("bunker-ts-outside-");
  writeFileSync(`${outside}/secret.txt`, "outside secret");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(`${root}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
    writeFileSync(`${root}/${path}`, content.replaceAll("OUTSIDE", outside));
  }
  return { root, outside };
}

const MACROS = `
import { readFileSync, writeFileSync } from "node:fs";
export function readFile(path: string): string { return readFileSync(path, "utf8"); }
export function writeFile(path: string): string { writeFileSync(path, "written by a macro"); return "wrote"; }
`;

describe("build", () => {
  test("a normal build succeeds and its output lands in outdir", async () => {
    const { root } = project({
      "src/index.ts": 'import { greet } from "./greet";\nconsole.log(greet("world"));\n',
      "src/greet.ts": "export const greet = (name: string): string => `hello ${name}`;\n",
    });
    const result = await build({ entrypoints: [`${root}/src/index.ts`], outdir: `${root}/dist`, project: root, target: "bun" });
    expect(result.success).toBe(true);
    expect(result.logs).toEqual([]);
    expect(result.outputs.map((o) => [o.path, o.kind])).toEqual([[`${root}/dist/index.js`, "entry-point"]]);
    const onHost = readFileSync(`${root}/dist/index.js`, "utf8");
    expect(onHost).toContain("hello ${name}");
    expect(await result.outputs[0]!.text()).toBe(onHost);
    expect(result.outputs[0]!.size).toBe(onHost.length);
    // The bundle runs.
    const proc = Bun.spawnSync(["bun", `${root}/dist/index.js`]);
    expect(proc.stdout.toString()).toBe("hello world\n");
  });

  test("a macro runs inside the sandbox: it reads the project (control) but not a file outside it", async () => {
    const { root, outside } = project({
      "src/macros.ts": MACROS,
      "data.txt": "project data",
      "src/inside.ts": `import { readFile } from "./macros" with { type: "macro" };\nconsole.log(readFile("${"ROOT"}/data.txt"));\n`,
      "src/outside.ts": `import { readFile } from "./macros" with { type: "macro" };\nconsole.log(readFile("OUTSIDE/secret.txt"));\n`,
    });
    writeFileSync(`${root}/src/inside.ts`, readFileSync(`${root}/src/inside.ts`, "utf8").replace("ROOT", root));
    const inside = await build({ entrypoints: [`${root}/src/inside.ts`], outdir: `${root}/dist`, project: root });
    expect(inside.success).toBe(true);
    expect(readFileSync(`${root}/dist/inside.js`, "utf8")).toContain("project data");

    const denied = await build({ entrypoints: [`${root}/src/outside.ts`], outdir: `${root}/dist`, project: root, throw: false });
    expect(denied.success).toBe(false);
    expect(denied.logs.length).toBeGreaterThan(0);
    expect(denied.logs[0]!.level).toBe("error");
    expect(existsSync(`${root}/dist/outside.js`)).toBe(false);
    expect(readFileSync(`${outside}/secret.txt`, "utf8")).toBe("outside secret");
  });

  test("a macro cannot write outside outdir (checked on the host), and a failed build throws by default", async () => {
    const { root, outside } = project({
      "src/macros.ts": MACROS,
      "src/write.ts": `import { writeFile } from "./macros" with { type: "macro" };\nconsole.log(writeFile("OUTSIDE/pwned.txt"));\n`,
      "src/write-src.ts": `import { writeFile } from "./macros" with { type: "macro" };\nconsole.log(writeFile("ROOT/src/pwned.txt"));\n`,
      "src/write-out.ts": `import { writeFile } from "./macros" with { type: "macro" };\nconsole.log(writeFile("ROOT/dist/note.txt"));\n`,
    });
    for (const name of ["write-src", "write-out"]) {
      const path = `${root}/src/${name}.ts`;
      writeFileSync(path, readFileSync(path, "utf8").replace("ROOT", root));
    }
    let thrown: unknown;
    try {
      await build({ entrypoints: [`${root}/src/write.ts`], outdir: `${root}/dist`, project: root });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(AggregateError);
    expect((thrown as AggregateError).errors.length).toBeGreaterThan(0);
    expect(existsSync(`${outside}/pwned.txt`)).toBe(false);

    // The project itself is read-only too.
    const src = await build({ entrypoints: [`${root}/src/write-src.ts`], outdir: `${root}/dist`, project: root, throw: false });
    expect(src.success).toBe(false);
    expect(existsSync(`${root}/src/pwned.txt`)).toBe(false);

    // Control: the same macro writing into outdir works.
    const out = await build({ entrypoints: [`${root}/src/write-out.ts`], outdir: `${root}/dist`, project: root });
    expect(out.success).toBe(true);
    expect(readFileSync(`${root}/dist/note.txt`, "utf8")).toBe("written by a macro");
  });

  test("an import from outside the project does not resolve", async () => {
    const { root, outside } = project({ "src/index.ts": 'import x from "OUTSIDE/lib.ts";\nconsole.log(x);\n' });
    writeFileSync(`${outside}/lib.ts`, "export default 1;\n");
    const result = await build({ entrypoints: [`${root}/src/index.ts`], outdir: `${root}/dist`, project: root, throw: false });
    expect(result.success).toBe(false);
    expect(String(result.logs[0]!.message)).toMatch(/Could not resolve/);
  });

  test("bad input: no outdir, no entrypoints, a plugin, a daemon that is not running", async () => {
    const expectInvalid = async (options: any, message: RegExp) => {
      let caught: any;
      try {
        await build(options);
      } catch (error) {
        caught = error;
      }
      expect(caught?.code).toBe("request_invalid");
      expect(caught?.message).toMatch(message);
    };
    await expectInvalid({ entrypoints: ["./x.ts"] }, /outdir: required/);
    await expectInvalid({ entrypoints: [], outdir: "/tmp/x" }, /entrypoints/);
    await expectInvalid({ entrypoints: ["./x.ts"], outdir: "/tmp/x", plugins: [{ name: "p", setup() {} }] }, /plugins/);
    // A daemon that is not running is an error, not a fallback.
    const dir = tempDir("bunker-ts-build-nodaemon-");
    writeFileSync(`${dir}/index.ts`, "export {};\n");
    let caught: any;
    await build({ entrypoints: [`${dir}/index.ts`], outdir: `${dir}/dist`, project: dir, socket: `${dir}/no-daemon.sock` }).catch((error) => {
      caught = error;
    });
    expect(caught?.code).toBe("unavailable");
    expect(caught?.message).toContain("no-daemon.sock");
  });
});
