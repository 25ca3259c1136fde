// The suite's harness: in daemon mode (BUNKER_TS_MODE=daemon, the default) it starts
// `bunker serve --socket <tmp>` (with a warm `eval:bun` pool when this bunker has eval) and sets
// BUNKER_SOCKET; in CLI mode (BUNKER_TS_MODE=cli) it unsets BUNKER_SOCKET so every call takes
// the `bunker run` / `bunker eval` fallback. The daemon is killed by its PID at the end.
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { Connection } from "bunker";
import { BIN, MODE, removeTempDirs } from "./helpers";

process.env.BUNKER_BIN = BIN;
delete process.env.BUNKER_SOCKET;
afterAll(removeTempDirs);

if (MODE === "daemon") {
  const dir = mkdtempSync(`${tmpdir()}/bunker-ts-daemon-`);
  const socket = `${dir}/bunker.sock`;
  const args = [BIN, "serve", "--socket", socket];
  args.push("--pool", "eval:bun=1");
  // Its own working directory, so a relative path the client failed to resolve would point elsewhere.
  const daemon = Bun.spawn(args, { cwd: dir, stdout: "ignore", stderr: Bun.file(`${dir}/daemon.log`) });
  let ready = false;
  for (let attempt = 0; attempt < 200 && !ready; attempt++) {
    try {
      const connection = await Connection.open(socket);
      await connection.request("health");
      connection.close();
      ready = true;
    } catch {
      if (daemon.exitCode !== null) break;
      await Bun.sleep(50);
    }
  }
  if (!ready) {
    daemon.kill(9);
    throw new Error(`bunker serve did not come up on ${socket}: ${await Bun.file(`${dir}/daemon.log`).text()}`);
  }
  process.env.BUNKER_SOCKET = socket;
  afterAll(async () => {
    daemon.kill("SIGTERM");
    const timer = setTimeout(() => daemon.kill(9), 5000);
    await daemon.exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  });
}
