import { describe, expect, it } from "vitest";
import { MAX_PENDING_PONGS, Opcode } from "../../src/protocol/index.js";
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

describe("RFC 6455 §5.5.3 pongs for pings not yet answered", () => {
  it(`answers every ping while at most ${MAX_PENDING_PONGS} are owed, in order`, () => {
    const s = server();
    const pings = Array.from({ length: MAX_PENDING_PONGS }, (_, i) => masked(Opcode.Ping, `ping ${i}`));
    feed(s, ...pings);
    const payloads = parseFrames([Buffer.concat(s.takeOutput())]).frames.map((f) => f.payload.toString());
    expect(payloads).toEqual(Array.from({ length: MAX_PENDING_PONGS }, (_, i) => `ping ${i}`));
  });

  it("a flood of pings leaves only the latest pongs queued, however many arrive", () => {
    const s = server();
    for (let i = 0; i < 10_000; i++) feed(s, masked(Opcode.Ping, Buffer.alloc(125, i & 0xff)));
    const out = s.takeOutput();
    expect(out).toHaveLength(MAX_PENDING_PONGS);
    expect(out.map((b) => b[2])).toEqual(
      Array.from({ length: MAX_PENDING_PONGS }, (_, i) => (10_000 - MAX_PENDING_PONGS + i) & 0xff),
    );
  });
});

describe("RFC 6455 §5.5.1 deferring the reply to a Close frame", () => {
  it("with deferCloseReply, the state stays closing and data may be sent until replyToClose()", () => {
    const s = server({ deferCloseReply: true });
    feed(s, masked(Opcode.Text, "last words"), masked(Opcode.Close, Buffer.from([0x03, 0xe9])));
    expect(s.state).toBe("closing");
    expect(s.closeReceived).toEqual({ code: 1001, reason: "" });
    expect(s.hasOutput).toBe(false);
    s.sendText("an answer");
    expect(s.replyToClose()).toBe(true);
    expect(s.state).toBe("closed");
    expect(s.replyToClose()).toBe(false);
    const out = parseFrames([Buffer.concat(s.takeOutput())]).frames;
    expect(out.map((f) => [f.opcode, f.payload.toString("hex")])).toEqual([
      [Opcode.Text, Buffer.from("an answer").toString("hex")],
      [Opcode.Close, "03e9"],
    ]);
  });

  it("without it (the default), the Close is answered at once and sending data is refused", () => {
    const s = server();
    feed(s, masked(Opcode.Close, Buffer.alloc(0)));
    expect(s.state).toBe("closed");
    expect(framesOf(s.takeOutput())).toEqual([[Opcode.Close, 0]]);
    expect(() => s.sendText("late")).toThrow(/closing/);
  });
});
