// Bun.build in a sandbox: it reads only this directory and writes only the output directory.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { build } from "bunker";

const outdir = mkdtempSync(`${tmpdir()}/bunker-build-example-`);
const result = await build({
  entrypoints: [new URL("./echo-worker.ts", import.meta.url).pathname],
  outdir,
  project: new URL(".", import.meta.url).pathname,
  target: "bun",
});
console.log(result.success, result.outputs.map((o) => o.path));
