// The daemon protocol client: one Unix-socket connection, the hello handshake, request ids,
// replies in any order and event frames routed to the request that made the sandbox.
import type { Socket } from "bun";
import { BunkerError } from "./errors";
import { FrameReader, PROTOCOL_VERSION, encodeFrame } from "./protocol";
import type { ApiError, RunEvent } from "./types";

/** Hears the event frames of one request (`run` / `start` / `eval`). */
export type EventListener = (event: RunEvent, sandbox: string) => void;

export interface RequestOptions {
  /** Called for each event frame carrying this request's id. */
  onEvent?: EventListener;
}

/** A request sent: its id (for `cancel`) and the promise of its `ok` value. */
export interface SentRequest<T> {
  id: number;
  reply: Promise<T>;
}

interface Pending {
  op: string;
  resolve: (value: any) => void;
  reject: (error: BunkerError) => void;
}

/** How long `Connection.open` waits for the daemon's hello. */
const HELLO_TIMEOUT_MS = 10_000;

/**
 * A connection to a `bunker serve` daemon. Requests on it run concurrently; each gets exactly one
 * reply. The connection keeps the process alive only while something is in flight.
 */
export class Connection {
  /** The socket path. */
  readonly path: string;
  /** The server's name from its hello (e.g. "bunker 0.1.0"). */
  server = "";
  private socket: Socket<undefined> | undefined;
  private readonly reader = new FrameReader();
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<number, EventListener>();
  private outgoing: Uint8Array[] = [];
  private nextId = 1;
  private closedError: BunkerError | undefined;
  private hello: Pending | undefined;

  private constructor(path: string) {
    this.path = path;
  }

  /** Connects and shakes hands. A daemon that is not there is a BunkerError `unavailable`. */
  static async open(path: string): Promise<Connection> {
    const connection = new Connection(path);
    const greeted = new Promise<{ version: number; server: string }>((resolve, reject) => {
      connection.hello = { op: "hello", resolve, reject };
    });
    try {
      connection.socket = await Bun.connect({
        unix: path,
        socket: {
          data: (_socket, chunk) => connection.onData(chunk),
          drain: () => connection.flush(),
          close: () => connection.onClose(undefined),
          error: (_socket, error) => connection.onClose(error),
        },
      });
    } catch (error) {
      const why = (error as { code?: string }).code ?? String(error);
      throw new BunkerError("unavailable", `no bunker daemon answers on ${path} (${why})`, { cause: error });
    }
    connection.write(encodeFrame({ op: "hello", version: PROTOCOL_VERSION }));
    const timer = setTimeout(
      () => connection.fail(new BunkerError("unavailable", `the bunker daemon on ${path} did not answer the hello`)),
      HELLO_TIMEOUT_MS,
    );
    try {
      const hello = await greeted;
      connection.server = hello.server;
    } finally {
      clearTimeout(timer);
    }
    connection.updateRef();
    return connection;
  }

  /** Whether the connection is gone (closed by either side). */
  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Sends `{id, op, ...fields}`; the reply's `ok` value resolves, an `error` rejects. */
  send<T = any>(op: string, fields: Record<string, unknown> = {}, options: RequestOptions = {}): SentRequest<T> {
    const id = this.nextId++;
    if (this.closedError !== undefined) {
      return { id, reply: Promise.reject(this.closedError) };
    }
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { op, resolve, reject });
    });
    if (options.onEvent !== undefined) this.listeners.set(id, options.onEvent);
    this.write(encodeFrame({ ...fields, id, op }));
    this.updateRef();
    return { id, reply };
  }

  /** `send`, for the reply only. */
  request<T = any>(op: string, fields: Record<string, unknown> = {}, options: RequestOptions = {}): Promise<T> {
    return this.send<T>(op, fields, options).reply;
  }

  /** Closes the connection; the daemon kills the sandboxes it made. */
  close(): void {
    this.fail(new BunkerError("unavailable", "the connection was closed by this client"));
  }

  private write(frame: Uint8Array): void {
    this.outgoing.push(frame);
    this.flush();
  }

  private flush(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    while (this.outgoing.length > 0) {
      const head = this.outgoing[0]!;
      const written = socket.write(head);
      if (written >= head.length) {
        this.outgoing.shift();
      } else {
        // The kernel buffer is full: keep the rest for the `drain` callback.
        this.outgoing[0] = head.subarray(Math.max(written, 0));
        return;
      }
    }
  }

  private onData(chunk: Uint8Array): void {
    let frames: unknown[];
    try {
      frames = this.reader.push(chunk);
    } catch (error) {
      this.fail(new BunkerError("protocol_error", `${(error as Error).message} (daemon ${this.path})`));
      return;
    }
    for (const frame of frames) this.onFrame(frame as Record<string, any>);
  }

  private onFrame(frame: Record<string, any>): void {
    if (this.hello !== undefined) {
      const hello = this.hello;
      this.hello = undefined;
      if (frame.error !== undefined) {
        hello.reject(BunkerError.fromApi(frame.error as ApiError));
        this.fail(BunkerError.fromApi(frame.error as ApiError));
      } else {
        hello.resolve(frame.ok);
      }
      return;
    }
    if (frame.event !== undefined) {
      const listener = this.listeners.get(frame.id);
      const event = frame.event as RunEvent;
      if (event.event === "exit" || event.event === "error") this.listeners.delete(frame.id);
      listener?.(event, frame.sandbox);
      this.updateRef();
      return;
    }
    if (frame.id === undefined || frame.id === null) {
      // An error frame without an id (protocol_error, busy on accept): the server closes.
      const error = frame.error
        ? BunkerError.fromApi(frame.error as ApiError)
        : new BunkerError("protocol_error", `the daemon sent a frame without an id: ${JSON.stringify(frame).slice(0, 200)}`);
      this.fail(error);
      return;
    }
    const pending = this.pending.get(frame.id);
    if (pending === undefined) return;
    this.pending.delete(frame.id);
    if (frame.error !== undefined) {
      this.listeners.delete(frame.id);
      pending.reject(BunkerError.fromApi(frame.error as ApiError));
    } else {
      // A started sandbox's events go on after the reply, up to its `exit` / `error`.
      if (pending.op !== "start") this.listeners.delete(frame.id);
      pending.resolve(frame.ok);
    }
    this.updateRef();
  }

  private onClose(cause: unknown): void {
    const detail = cause === undefined ? "" : ` (${String(cause)})`;
    this.fail(new BunkerError("unavailable", `the connection to the bunker daemon on ${this.path} was lost${detail}`));
  }

  /** Ends everything in flight with `error` and closes the socket (once). */
  private fail(error: BunkerError): void {
    if (this.closedError !== undefined) return;
    this.closedError = error;
    this.hello?.reject(error);
    this.hello = undefined;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    for (const listener of listeners) {
      listener({ event: "error", error: { code: error.code, message: error.message } }, "");
    }
    this.outgoing = [];
    this.socket?.end();
  }

  /** Holds the event loop open only while a reply or an event stream is awaited. */
  private updateRef(): void {
    const socket = this.socket;
    if (socket === undefined || this.closedError !== undefined) return;
    if (this.pending.size > 0 || this.listeners.size > 0 || this.hello !== undefined) socket.ref();
    else socket.unref();
  }
}

const shared = new Map<string, Promise<Connection>>();

/** One lazily opened connection per socket path, reopened once it has closed. */
export async function sharedConnection(path: string): Promise<Connection> {
  const existing = shared.get(path);
  if (existing !== undefined) {
    const connection = await existing.catch(() => undefined);
    if (connection !== undefined && !connection.closed) return connection;
  }
  const opening = Connection.open(path);
  shared.set(path, opening);
  opening.catch(() => shared.delete(path));
  return opening;
}

/**
 * Which daemon a call uses: `socket` when given (a string), none when `socket` is `false` (the
 * CLI fallback), else `BUNKER_SOCKET` when set and not empty, else none.
 */
export function daemonSocket(socket: string | false | undefined): string | undefined {
  if (socket === false) return undefined;
  if (typeof socket === "string" && socket !== "") return socket;
  const fromEnv = process.env.BUNKER_SOCKET;
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : undefined;
}
