// The frame codec and the Data conversions, without a daemon.
import { describe, expect, test } from "bun:test";
import { FrameReader, encodeFrame, fromData, toData } from "../src/protocol";

describe("protocol frames", () => {
  test("a frame is a big-endian length and the JSON", () => {
    const frame = encodeFrame({ op: "hello", version: 1 });
    const body = JSON.stringify({ op: "hello", version: 1 });
    expect([...frame.slice(0, 4)]).toEqual([0, 0, 0, body.length]);
    expect(new TextDecoder().decode(frame.slice(4))).toBe(body);
  });

  test("frames split anywhere and several in one chunk are reassembled", () => {
    const bytes = new Uint8Array([...encodeFrame({ a: 1 }), ...encodeFrame({ b: "é" }), ...encodeFrame({ c: [3] })]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const reader = new FrameReader();
      const frames = [...reader.push(bytes.slice(0, cut)), ...reader.push(bytes.slice(cut))];
      expect(frames).toEqual([{ a: 1 }, { b: "é" }, { c: [3] }]);
    }
  });

  test("zero-length, oversized, non-UTF-8 and non-JSON frames are refused with a reason", () => {
    expect(() => new FrameReader().push(new Uint8Array([0, 0, 0, 0]))).toThrow(/zero-length/);
    expect(() => new FrameReader().push(new Uint8Array([0xff, 0, 0, 0]))).toThrow(/announced a 4278190080-byte frame/);
    expect(() => new FrameReader().push(new Uint8Array([0, 0, 0, 1, 0xff]))).toThrow(/not UTF-8/);
    expect(() => new FrameReader().push(new Uint8Array([0, 0, 0, 1, 0x7b]))).toThrow(/not JSON/);
  });

  test("Data: text stays text, other bytes go base64, both exact", () => {
    expect(toData(new TextEncoder().encode("hé\n"))).toEqual({ utf8: "hé\n" });
    const binary = new Uint8Array([0xff, 0x00, 0xc3]);
    const data = toData(binary);
    expect(data).toEqual({ base64: "/wDD" });
    expect([...fromData(data)]).toEqual([0xff, 0x00, 0xc3]);
    expect(fromData(undefined).length).toBe(0);
  });
});
