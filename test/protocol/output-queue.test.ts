import { describe, expect, it } from "vitest";
import { Opcode } from "../../src/protocol/index.js";
import { feed, masked, parseFrames, server } from "./helpers.js";

/** Parses the buffers of one takeOutput call into [opcode, payload length] pairs. */
function framesOf(buffers: Buffer[]): Array<[number, number]> {
  const parsed = parseFrames([Buffer.concat(buffers)]);
  expect(parsed.pending).toBeUndefined();
  return parsed.frames.map((f) => [f.opcode, f.payload.length]);
}

describe("RFC 6455 §5.5 control frames in the middle of queued data", () => {
  it("takeOutput(limit) hands out whole data frames until the budget is reached, keeping the rest queued", () => {
    const s = server();
    for (let i = 0; i < 4; i++) s.sendBinary(Buffer.alloc(10_000, i));
    expect(s.bufferedBytes).toBe(4 * 10_004);
    // A budget of 15,000 takes two frames: the second starts below the budget and is never split.
    expect(framesOf(s.takeOutput(15_000))).toEqual([
      [Opcode.Binary, 10_000],
      [Opcode.Binary, 10_000],
    ]);
    expect(s.bufferedBytes).toBe(2 * 10_004);
    expect(s.hasOutput).toBe(true);
  });

  it("a pong answering a ping goes ahead of data frames still queued", () => {
    const s = server();
    for (let i = 0; i < 3; i++) s.sendBinary(Buffer.alloc(70_000, i)); // large: header and payload apart
    expect(framesOf(s.takeOutput(1))).toEqual([[Opcode.Binary, 70_000]]);
    feed(s, masked(Opcode.Ping, "are you there?"));
    expect(framesOf(s.takeOutput())).toEqual([
      [Opcode.Pong, 14],
      [Opcode.Binary, 70_000],
      [Opcode.Binary, 70_000],
    ]);
    expect(s.bufferedBytes).toBe(0);
    expect(s.hasOutput).toBe(false);
  });

  it("a zero budget takes pings and pongs only; the Close frame stays behind the data", () => {
    const s = server();
    s.sendText("first");
    s.sendPing(Buffer.from("p"));
    s.sendClose(1000, "bye");
    expect(framesOf(s.takeOutput(0))).toEqual([[Opcode.Ping, 1]]);
    expect(framesOf(s.takeOutput())).toEqual([
      [Opcode.Text, 5],
      [Opcode.Close, 5],
    ]);
  });
});
