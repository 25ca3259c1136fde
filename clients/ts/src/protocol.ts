// Framing of the daemon protocol (docs/protocol.md): a 4-byte big-endian length, then that many
// bytes of UTF-8 JSON. Pure functions, so the parser is tested without a socket.
import type { Data } from "./types";

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Largest frame this client accepts from a server (a RunResult with 1 MiB of base64 output fits). */
export const MAX_INCOMING_FRAME = 64 * 1024 * 1024;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** One frame: the length prefix and the JSON text of `message`. */
export function encodeFrame(message: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(message));
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length, false);
  frame.set(body, 4);
  return frame;
}

/**
 * Accumulates bytes and yields the complete frames in them. Throws (a message saying what) on a
 * zero-length or oversized frame and on a payload that is not UTF-8 JSON.
 */
export class FrameReader {
  private buffer = new Uint8Array(0);

  push(chunk: Uint8Array): unknown[] {
    this.buffer = this.buffer.length === 0 ? chunk.slice() : concat(this.buffer, chunk);
    const frames: unknown[] = [];
    let offset = 0;
    while (this.buffer.length - offset >= 4) {
      const view = new DataView(this.buffer.buffer, this.buffer.byteOffset + offset, 4);
      const length = view.getUint32(0, false);
      if (length === 0) throw new Error("the server sent a zero-length frame");
      if (length > MAX_INCOMING_FRAME) {
        throw new Error(`the server announced a ${length}-byte frame (this client accepts ${MAX_INCOMING_FRAME})`);
      }
      if (this.buffer.length - offset - 4 < length) break;
      const body = this.buffer.subarray(offset + 4, offset + 4 + length);
      let text: string;
      try {
        text = strictDecoder.decode(body);
      } catch {
        throw new Error("the server sent a frame that is not UTF-8");
      }
      try {
        frames.push(JSON.parse(text));
      } catch {
        throw new Error(`the server sent a frame that is not JSON: ${text.slice(0, 80)}`);
      }
      offset += 4 + length;
    }
    this.buffer = offset === this.buffer.length ? new Uint8Array(0) : this.buffer.slice(offset);
    return frames;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Bytes as the API carries them: `{utf8}` when they are valid UTF-8, else `{base64}`. */
export function toData(bytes: Uint8Array): Data {
  try {
    return { utf8: strictDecoder.decode(bytes) };
  } catch {
    return { base64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64") };
  }
}

/** The exact bytes of a `Data`. */
export function fromData(data: Data | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  if ("utf8" in data) return encoder.encode(data.utf8);
  return new Uint8Array(Buffer.from(data.base64, "base64"));
}

/** Anything a caller may hand over as input bytes. */
export type BytesLike = string | Uint8Array | ArrayBuffer | ArrayBufferView;

export function toBytes(input: BytesLike): Uint8Array {
  if (typeof input === "string") return encoder.encode(input);
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
}
