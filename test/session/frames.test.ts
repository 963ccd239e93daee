import { describe, expect, it } from "vitest";
import { Opcode } from "../../src/protocol/index.js";
import {
  BinaryFrame,
  CloseFrame,
  ContinuationFrame,
  Frame,
  PingFrame,
  PongFrame,
  TextFrame,
} from "../../src/session/index.js";

describe("frame classes", () => {
  const data = Buffer.from("x");
  const cases = [
    [new TextFrame(data), "text", Opcode.Text],
    [new BinaryFrame(data), "binary", Opcode.Binary],
    [new ContinuationFrame(data), "continuation", Opcode.Continuation],
    [new CloseFrame(data), "close", Opcode.Close],
    [new PingFrame(data), "ping", Opcode.Ping],
    [new PongFrame(data), "pong", Opcode.Pong],
    [Frame.text("x"), "text", Opcode.Text],
    [Frame.binary(data), "binary", Opcode.Binary],
    [Frame.continuation("x", false), "continuation", Opcode.Continuation],
    [Frame.ping(), "ping", Opcode.Ping],
    [Frame.pong(), "pong", Opcode.Pong],
  ] as const;

  it.each(cases)("%#: each class answers its own type and opcode", (frame, type, opcode) => {
    expect(frame.type).toBe(type);
    expect(frame.opcode).toBe(opcode);
    // Shared by the class, not stored in each received message.
    expect(Object.hasOwn(frame, "type")).toBe(false);
    expect(Object.hasOwn(frame, "opcode")).toBe(false);
    expect(() => {
      (frame as { type: string }).type = "other";
    }).toThrow(TypeError);
  });

  it("keeps the payload and flags per instance", () => {
    const frame = new BinaryFrame(data, false, true);
    expect([frame.data, frame.fin, frame.rsv1]).toEqual([data, false, true]);
    expect(Frame.text("é").text).toBe("é");
  });
});
