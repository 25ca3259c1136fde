// index.d.ts is what TypeScript users see: it must carry src/types.ts verbatim and declare every
// runtime export of the package (fix with `bun scripts/sync-dts.ts`, then declare what is new).
import { expect, test } from "bun:test";
import * as bunker from "bunker";

const root = new URL("..", import.meta.url).pathname;

function typesBlock(text: string): string {
  const start = text.indexOf("// BEGIN TYPES");
  const end = text.indexOf("// END TYPES");
  expect(start).toBeGreaterThanOrEqual(0);
  expect(end).toBeGreaterThan(start);
  return text.slice(start, end);
}

test("index.d.ts carries src/types.ts", async () => {
  const dts = await Bun.file(`${root}index.d.ts`).text();
  const types = await Bun.file(`${root}src/types.ts`).text();
  expect(typesBlock(dts)).toBe(typesBlock(types));
});

test("index.d.ts parses as TypeScript", async () => {
  const dts = await Bun.file(`${root}index.d.ts`).text();
  // No tsc here (no npm): Bun's parser at least refuses a declaration file that does not parse.
  expect(() => new Bun.Transpiler({ loader: "ts" }).transformSync(dts)).not.toThrow();
});

test("every runtime export is declared in index.d.ts", async () => {
  const dts = await Bun.file(`${root}index.d.ts`).text();
  const declared = new Set([...dts.matchAll(/export declare (?:class|function|const) (\w+)/g)].map((m) => m[1]));
  const exported = Object.keys(bunker).sort();
  expect(exported.length).toBeGreaterThan(0);
  expect(exported.filter((name) => !declared.has(name))).toEqual([]);
  expect([...declared].filter((name) => !exported.includes(name!))).toEqual([]);
});

test("package.json is ready to publish", async () => {
  const pkg = await Bun.file(`${root}package.json`).json();
  expect(pkg.name).toBe("bunker");
  expect(pkg.exports["."].types).toBe("./index.d.ts");
  expect(pkg.types).toBe("./index.d.ts");
  for (const file of [pkg.exports["."].bun, pkg.bin["bunker-bun"], pkg.types]) {
    expect(await Bun.file(`${root}${file}`).exists()).toBe(true);
  }
  expect(pkg.files).toEqual(expect.arrayContaining(["src/", "bin/", "index.d.ts", "README.md"]));
  expect(pkg.engines.bun).toBeDefined();
  expect(pkg.dependencies ?? {}).toEqual({});
});
