// Per-call overhead of the client against the raw protocol, warm: run(["/bin/true"]) and
// evalJs("1+1") through a `bunker serve` this script starts (pools `default` and `eval:bun`),
// each call taken only once the pool (of one) has a ready sandbox, plus a settle (waiting
// untimed), so every timed call is warm and each side finds the same state. The raw side is a minimal hand-written framing client (no library code). Also the
// CLI fallback's run, cold, for scale.
//
//   bun bench.ts [--iterations N]      (BUNKER_BIN as for the tests)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { Connection, evalJs, run } from "bunker";

const repo = new URL("../..", import.meta.url).pathname;
const BIN = process.env.BUNKER_BIN || `${repo}target/x86_64-unknown-linux-gnu/debug/bunker`;
process.env.BUNKER_BIN = BIN;
const iterationsFlag = process.argv.indexOf("--iterations");
const SETTLE_MS = 40;
const N = iterationsFlag > 0 ? Number(process.argv[iterationsFlag + 1]) : 200;

/** The raw protocol: connect, hello, one request at a time, frames parsed by hand. */
class RawClient {
  private buffer = new Uint8Array(0);
  private waiter: ((frame: any) => void) | undefined;
  private socket!: Awaited<ReturnType<typeof Bun.connect>>;
  private nextId = 1;

  static async open(path: string): Promise<RawClient> {
    const client = new RawClient();
    client.socket = await Bun.connect({
      unix: path,
      socket: { data: (_s, chunk) => client.onData(chunk) },
    });
    await client.roundTrip({ op: "hello", version: 1 });
    return client;
  }

  private onData(chunk: Uint8Array): void {
    const merged = new Uint8Array(this.buffer.length + chunk.length);
    merged.set(this.buffer);
    merged.set(chunk, this.buffer.length);
    this.buffer = merged;
    while (this.buffer.length >= 4) {
      const length = new DataView(this.buffer.buffer, this.buffer.byteOffset).getUint32(0);
      if (this.buffer.length < 4 + length) return;
      const frame = JSON.parse(new TextDecoder().decode(this.buffer.subarray(4, 4 + length)));
      this.buffer = this.buffer.slice(4 + length);
      if (frame.event === undefined) this.waiter?.(frame);
    }
  }

  roundTrip(message: object): Promise<any> {
    const body = new TextEncoder().encode(JSON.stringify(message));
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length);
    frame.set(body, 4);
    const reply = new Promise<any>((resolve) => (this.waiter = resolve));
    this.socket.write(frame);
    return reply;
  }

  request(op: string, fields: object): Promise<any> {
    return this.roundTrip({ id: this.nextId++, op, ...fields });
  }

  close(): void {
    this.socket.end();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

type Row = { name: string; n: number; p50: number; p99: number; warm: number };

function summary(name: string, times: number[], warm: number): Row {
  const sorted = [...times].sort((a, b) => a - b);
  const row = { name, n: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), warm };
  console.log(`${name.padEnd(34)} n=${row.n} p50=${row.p50.toFixed(3)} ms p99=${row.p99.toFixed(3)} ms warm=${warm}/${row.n}`);
  return row;
}

/** The raw and the client call alternate (each after the pool is ready), so drift hits both alike. */
async function pair(
  names: [string, string],
  before: () => Promise<void>,
  calls: [() => Promise<boolean>, () => Promise<boolean>],
): Promise<[Row, Row, number]> {
  const times: [number[], number[]] = [[], []];
  const warm = [0, 0];
  const differences: number[] = [];
  for (let i = 0; i < N + 5; i++) {
    const taken: number[] = [];
    for (const side of [0, 1] as const) {
      await before();
      const start = Bun.nanoseconds();
      const wasWarm = await calls[side]();
      const ms = (Bun.nanoseconds() - start) / 1e6;
      taken.push(ms);
      if (i >= 5) {
        times[side].push(ms);
        if (wasWarm) warm[side]!++;
      }
    }
    if (i >= 5) differences.push(taken[1]! - taken[0]!);
  }
  differences.sort((a, b) => a - b);
  return [summary(names[0], times[0], warm[0]!), summary(names[1], times[1], warm[1]!), percentile(differences, 50)];
}

/**
 * The client's own cost, without the daemon's variance: a fake daemon in this process answers
 * every request at once with a canned result (the real one recorded above), to the raw client
 * and to run() / evalJs() alike.
 */
async function fakeDaemonBench(): Promise<void> {
  const canned: Record<string, unknown> = {
    run: { status: "ok", exit_code: 0, wall_ms: 1, cpu_ms: 1, warm: true,
      stdout: { bytes: 0, kept: 0, truncated: false, data: { utf8: "" } }, stderr: { bytes: 0, kept: 0, truncated: false, data: { utf8: "" } },
      enforced: { namespaces: "on", filesystem: "on", landlock: "on", landlock_abi: 7, seccomp: "on", no_new_privs: "on", capabilities_dropped: "on",
        memory_limit: "on", pids_limit: "on", cpu_limit: "off", cpu_time_limit: "off", rlimits: "on", network: "on", notes: [] },
      http: { requests: [], truncated: false, allowed: 0, denied: 0, denied_by: [], limits_hit: [], bytes_sent: 0, bytes_received: 0 } },
    eval: { value: 2, console_output: "", console_truncated: false, error: null, status: "ok", warm: true, wall_ms: 0.4, http_requests: [] },
  };
  const fakeSocket = `${dir}/fake.sock`;
  let pending = new Uint8Array(0);
  const encode = (m: unknown) => {
    const body = new TextEncoder().encode(JSON.stringify(m));
    const f = new Uint8Array(4 + body.length);
    new DataView(f.buffer).setUint32(0, body.length);
    f.set(body, 4);
    return f;
  };
  const listener = Bun.listen({
    unix: fakeSocket,
    socket: {
      data(socket, chunk) {
        const merged = new Uint8Array(pending.length + chunk.length);
        merged.set(pending);
        merged.set(chunk, pending.length);
        pending = merged;
        while (pending.length >= 4) {
          const length = new DataView(pending.buffer, pending.byteOffset).getUint32(0);
          if (pending.length < 4 + length) break;
          const frame = JSON.parse(new TextDecoder().decode(pending.subarray(4, 4 + length)));
          pending = pending.slice(4 + length);
          socket.write(encode(frame.op === "hello" ? { ok: { version: 1, server: "fake" } } : { id: frame.id, ok: canned[frame.op] }));
        }
      },
    },
  });
  const raw = await RawClient.open(fakeSocket);
  const none = async () => {};
  const [rawRun, clientRun, runDiff] = await pair(["fake daemon: raw run", "fake daemon: client run()"], none, [
    async () => (await raw.request("run", { spec: { policy: { name: "default" }, argv: ["/bin/true"] } })).ok.warm,
    async () => (await run(["/bin/true"], { sandbox: "default", socket: fakeSocket })).warm,
  ]);
  const [rawEval, clientEval, evalDiff] = await pair(["fake daemon: raw eval", "fake daemon: client evalJs()"], none, [
    async () => (await raw.request("eval", { spec: { engine: "bun", code: "1+1" } })).ok.warm,
    async () => (await evalJs("1+1", { socket: fakeSocket })).warm,
  ]);
  console.log(
    `client's own cost per call (fake daemon, paired median): run ${runDiff.toFixed(3)} ms (p50 ${(clientRun.p50 - rawRun.p50).toFixed(3)}, p99 ${(clientRun.p99 - rawRun.p99).toFixed(3)}), ` +
      `eval ${evalDiff.toFixed(3)} ms (p50 ${(clientEval.p50 - rawEval.p50).toFixed(3)}, p99 ${(clientEval.p99 - rawEval.p99).toFixed(3)})`,
  );
  raw.close();
  listener.stop(true);
}

const dir = mkdtempSync(`${tmpdir()}/bunker-ts-bench-`);
const socket = `${dir}/bunker.sock`;
const daemon = Bun.spawn([BIN, "serve", "--socket", socket, "--pool", "default=1", "--pool", "eval:bun=1"], {
  stdout: "ignore",
  stderr: "ignore",
});
try {
  let control: Connection | undefined;
  for (let i = 0; i < 200 && control === undefined; i++) {
    control = await Connection.open(socket).catch(async () => {
      await Bun.sleep(50);
      return undefined;
    });
  }
  if (control === undefined) throw new Error("bunker serve did not start");
  const ready = (pool: string) => async () => {
    for (let i = 0; i < 400; i++) {
      const stats = await control!.request("stats");
      if ((stats.pools?.[pool]?.ready ?? 0) > 0) break;
      await Bun.sleep(2);
    }
    // A pool of one, refilled after each call: settle so each call finds its sandbox (and an
    // eval worker its runtime) started alike, whichever side goes first.
    await Bun.sleep(SETTLE_MS);
  };
  const raw = await RawClient.open(socket);
  const runSpec = { spec: { policy: { name: "default" }, argv: ["/bin/true"] } };
  const evalSpec = { spec: { engine: "bun", code: "1+1" } };

  console.log(`bunker-ts bench: ${N} calls each, sequential, warm (pool ready before each call), ${await Bun.$`nproc`.text().then((t) => t.trim())} CPUs`);
  const [rawRun, clientRun, runDiff] = await pair(["raw protocol run /bin/true", 'client run(["/bin/true"])'], ready("default"), [
    async () => (await raw.request("run", runSpec)).ok?.warm === true,
    async () => (await run(["/bin/true"], { sandbox: "default", socket })).warm,
  ]);
  const [rawEval, clientEval, evalDiff] = await pair(["raw protocol eval 1+1", 'client evalJs("1+1")'], ready("eval:bun"), [
    async () => (await raw.request("eval", evalSpec)).ok?.warm === true,
    async () => (await evalJs("1+1", { socket })).warm,
  ]);
  const saved = N;
  const cli = await (async () => {
    const times: number[] = [];
    for (let i = 0; i < Math.min(saved, 30); i++) {
      const start = Bun.nanoseconds();
      await run(["/bin/true"], { sandbox: "default", socket: false });
      times.push((Bun.nanoseconds() - start) / 1e6);
    }
    times.sort((a, b) => a - b);
    console.log(`${"CLI fallback run /bin/true (cold)".padEnd(34)} n=${times.length} p50=${percentile(times, 50).toFixed(3)} ms p99=${percentile(times, 99).toFixed(3)} ms`);
  })();
  void cli;
  console.log(
    `client overhead (median of paired differences): run ${runDiff.toFixed(3)} ms (p50 ${(clientRun.p50 - rawRun.p50).toFixed(3)}), ` +
      `eval ${evalDiff.toFixed(3)} ms (p50 ${(clientEval.p50 - rawEval.p50).toFixed(3)})`,
  );
  raw.close();
  control.close();
  await fakeDaemonBench();
} finally {
  daemon.kill("SIGTERM");
  await daemon.exited;
  rmSync(dir, { recursive: true, force: true });
}
