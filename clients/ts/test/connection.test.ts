// Connection: concurrency on one connection against the real daemon, and the failure paths
// against fake servers (a Unix socket this test listens on).
import { describe, expect, test } from "bun:test";
import { BIN, MODE, expectBunkerError, tempDir } from "./helpers";
import { Connection, spawn } from "bunker";
import { encodeFrame } from "../src/protocol";

/** A fake daemon: answers the hello with `hello`, then each frame with `reply(frame)`. */
function fakeServer(hello: unknown, reply: (frame: any) => Uint8Array | undefined) {
  const path = `${tempDir("bunker-ts-fake-")}/fake.sock`;
  const listener = Bun.listen({
    unix: path,
    socket: {
      data(socket, chunk) {
        // Frames from this client arrive whole in these tests: one per request.
        let offset = 0;
        while (offset + 4 <= chunk.length) {
          const length = new DataView(chunk.buffer, chunk.byteOffset + offset).getUint32(0);
          const frame = JSON.parse(new TextDecoder().decode(chunk.subarray(offset + 4, offset + 4 + length)));
          offset += 4 + length;
          const out = frame.op === "hello" ? encodeFrame(hello) : reply(frame);
          if (out !== undefined) socket.write(out);
        }
      },
    },
  });
  return { path, stop: () => listener.stop(true) };
}

describe(`Connection (${MODE})`, () => {
  // Only in daemon mode (the suite's daemon); registered only there, so CI never sees a skip.
  (MODE === "daemon" ? test : () => {})("requests on one connection run concurrently and replies find their request", async () => {
    const connection = await Connection.open(process.env.BUNKER_SOCKET!);
    const dir = tempDir("bunker-ts-concurrent-");
    const policy = { inline: { extends: ["default"], allow: { write: [dir] }, limits: { timeout: "20s" } } };
    try {
      expect(connection.server).toMatch(/^bunker /);
      const order: string[] = [];
      // The first waits for a file only the second creates: served one after the other on this
      // connection, the first would never end (its timeout would).
      const waiter = connection
        .request("run", { spec: { policy, argv: ["sh", "-c", `while [ ! -e ${dir}/flag ]; do sleep 0.02; done; echo waited`] } })
        .then((r) => (order.push("waiter"), r));
      const setter = connection
        .request("run", { spec: { policy, argv: ["sh", "-c", `echo set > ${dir}/flag; echo setter`] } })
        .then((r) => (order.push("setter"), r));
      const [w, s] = await Promise.all([waiter, setter]);
      expect(w.status).toBe("ok");
      expect(w.stdout.data.utf8).toBe("waited\n");
      expect(s.stdout.data.utf8).toBe("setter\n");
      expect(order).toEqual(["setter", "waiter"]);
    } finally {
      connection.close();
    }
  });

  test("a hello the server refuses is its error", async () => {
    const server = fakeServer({ error: { code: "protocol_error", message: "protocol version 1 is not supported (this server speaks 2)" } }, () => undefined);
    try {
      await expectBunkerError(Connection.open(server.path), "protocol_error", /version 1 is not supported/);
    } finally {
      server.stop();
    }
  });

  test("an error frame without an id ends every request in flight with it", async () => {
    const server = fakeServer({ ok: { version: 1, server: "fake" } }, () =>
      encodeFrame({ error: { code: "protocol_error", message: "frame too slow" } }),
    );
    try {
      const connection = await Connection.open(server.path);
      expect(connection.server).toBe("fake");
      await expectBunkerError(connection.request("health"), "protocol_error", /frame too slow/);
      expect(connection.closed).toBe(true);
      await expectBunkerError(connection.request("health"), "protocol_error", /frame too slow/);
    } finally {
      server.stop();
    }
  });

  test("a frame that is not JSON is a protocol_error; replies with an error are BunkerErrors", async () => {
    const server = fakeServer({ ok: { version: 1, server: "fake" } }, (frame) =>
      frame.op === "stats"
        ? new Uint8Array([0, 0, 0, 3, 0x61, 0x62, 0x63])
        : encodeFrame({ id: frame.id, error: { code: "not_found", message: "no sandbox s-9" } }),
    );
    try {
      const connection = await Connection.open(server.path);
      await expectBunkerError(connection.request("kill", { sandbox: "s-9" }), "not_found", /no sandbox s-9/);
      await expectBunkerError(connection.request("stats"), "protocol_error", /not JSON/);
    } finally {
      server.stop();
    }
  });

  test("a daemon killed mid-run: the run ends with unavailable", async () => {
    const dir = tempDir("bunker-ts-dying-");
    const socket = `${dir}/d.sock`;
    const daemon = Bun.spawn([BIN, "serve", "--socket", socket], { stdout: "ignore", stderr: "ignore" });
    try {
      let connection: Connection | undefined;
      for (let i = 0; i < 200 && connection === undefined; i++) {
        connection = await Connection.open(socket).catch(async () => {
          await Bun.sleep(25);
          return undefined;
        });
      }
      connection!.close();
      const proc = spawn(["sh", "-c", "echo up; sleep 30"], { socket });
      const reader = proc.stdout!.getReader();
      await reader.read();
      daemon.kill(9);
      await expectBunkerError(proc.exited, "unavailable", /was lost/);
    } finally {
      daemon.kill(9);
      await daemon.exited;
    }
  });
});
