import { describe, expect, it } from "vitest";
import { Connection } from "../../src/protocol/index.js";
import { DEFAULT_SESSION_OPTIONS, DefaultWebSocketSession, FlushScheduler } from "../../src/session/index.js";
import { recordingSocket } from "../helpers/recording-socket.js";

function openSession(scheduler: FlushScheduler) {
  const { socket, written } = recordingSocket();
  const connection = new Connection({ side: "server" });
  const session = new DefaultWebSocketSession(
    socket,
    connection,
    { ...DEFAULT_SESSION_OPTIONS, pingPeriod: 0 },
    { call: undefined, data: undefined, scheduler },
  );
  return { session, written };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("writes of a turn are flushed together for every session", () => {
  it("sessions that send in the same turn each write all their frames at the end of the turn", async () => {
    const scheduler = new FlushScheduler();
    const a = openSession(scheduler);
    const b = openSession(scheduler);
    void a.session.send("a1");
    void b.session.send("b1");
    void a.session.send("a2");
    expect(a.written).toHaveLength(0); // nothing before the end of the turn
    await nextTurn();
    await nextTurn();
    expect(Buffer.concat(a.written).toString("latin1")).toBe("\x81\x02a1\x81\x02a2");
    expect(Buffer.concat(b.written).toString("latin1")).toBe("\x81\x02b1");
  });

  it("a session whose flush throws does not keep the others queued behind it from writing", async () => {
    const scheduler = new FlushScheduler();
    const a = openSession(scheduler);
    const b = openSession(scheduler);
    const failing = a.session as unknown as { flushNow(): void };
    failing.flushNow = () => {
      throw new Error("flush bug");
    };
    void a.session.send("a1");
    void b.session.send("b1");
    // Run the shared flush by hand so the error can be caught here instead of reaching the process.
    expect(() => scheduler.flushAll()).toThrow("flush bug");
    await nextTurn();
    await nextTurn();
    expect(Buffer.concat(b.written).toString("latin1")).toBe("\x81\x02b1");
  });
});
