import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { Connection, encodeFrame, Opcode } from "../../src/protocol/index.js";
import { DEFAULT_SESSION_OPTIONS, DefaultWebSocketSession, FlushScheduler } from "../../src/session/index.js";
import { FRAMES_PER_TURN } from "../../src/session/session.js";
import { recordingSocket } from "../helpers/recording-socket.js";

const ping = Buffer.concat(encodeFrame(Opcode.Ping, Buffer.alloc(0), { mask: Buffer.from([1, 2, 3, 4]) }));
const pings = (n: number) => Buffer.concat(Array.from({ length: n }, () => ping));
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

function open() {
  const { socket, written } = recordingSocket();
  socket.resume(); // flowing, as a server socket is
  const session = new DefaultWebSocketSession(
    socket,
    new Connection({ side: "server", deferCloseReply: true }),
    { ...DEFAULT_SESSION_OPTIONS, pingPeriod: 0 },
    { call: undefined, data: undefined, scheduler: new FlushScheduler() },
  );
  return { socket, written, session };
}

describe("one peer's flood cannot hold the event loop", () => {
  it(`after a read of ${FRAMES_PER_TURN} frames or more, reading pauses until the next turn`, async () => {
    const { socket } = open();
    socket.emit("data", pings(FRAMES_PER_TURN + 10));
    expect(socket.isPaused()).toBe(true);
    await nextTurn();
    expect(socket.isPaused()).toBe(false);
  });

  it("an ordinary read does not pause", async () => {
    const { socket } = open();
    socket.emit("data", pings(100));
    expect(socket.isPaused()).toBe(false);
    await nextTurn();
    expect(socket.isPaused()).toBe(false);
  });

  it("a ping flood is answered with at most the latest 16 pongs per turn", async () => {
    const { socket, written } = open();
    socket.emit("data", pings(FRAMES_PER_TURN * 2));
    await nextTurn();
    const bytes = Buffer.concat(written).length;
    expect(bytes).toBeLessThanOrEqual(16 * 2);
    expect(bytes).toBeGreaterThan(0);
  });
});
