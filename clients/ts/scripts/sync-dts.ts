// Copies the wire types of src/types.ts into index.d.ts (between "// BEGIN TYPES" and
// "// END TYPES"). test/dts.test.ts fails when they differ: run `bun scripts/sync-dts.ts`.
const root = new URL("..", import.meta.url).pathname;
const types = await Bun.file(`${root}src/types.ts`).text();
const dts = await Bun.file(`${root}index.d.ts`).text();
const block = (text: string) => {
  const start = text.indexOf("// BEGIN TYPES");
  const end = text.indexOf("// END TYPES");
  if (start < 0 || end < 0) throw new Error("missing // BEGIN TYPES / // END TYPES markers");
  return [start, end + "// END TYPES".length] as const;
};
const [ts, te] = block(types);
const [ds, de] = block(dts);
await Bun.write(`${root}index.d.ts`, dts.slice(0, ds) + types.slice(ts, te) + dts.slice(de));
