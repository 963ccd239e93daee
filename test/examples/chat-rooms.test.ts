import { describe, expect, it } from "vitest";
import { ChatRooms } from "../../examples/chat/rooms.js";

/** A member whose buffered amount the test sets, recording what it was sent and how it was closed. */
function member(bufferedAmount = 0) {
  const m = {
    isOpen: true,
    bufferedAmount,
    sent: [] as string[],
    closed: undefined as undefined | { code: number | undefined; reason: string | undefined },
    send(text: unknown) {
      m.sent.push(String(text));
      return Promise.resolve();
    },
    close(code?: unknown, reason?: string) {
      m.closed = { code: code as number | undefined, reason };
      m.isOpen = false;
      return Promise.resolve();
    },
  };
  return m;
}

describe("chat rooms broadcast", () => {
  it("skips a member over the high-water mark and closes it with 1008 after maxSkips in a row", () => {
    const rooms = new ChatRooms({ highWaterMark: 1000, maxSkips: 3 });
    const reader = member();
    const stuck = member(5000);
    rooms.join("r", reader);
    rooms.join("r", stuck);
    rooms.broadcast("r", "1");
    rooms.broadcast("r", "2");
    expect(stuck.closed).toBeUndefined();
    rooms.broadcast("r", "3");
    expect(reader.sent).toEqual(["1", "2", "3"]);
    expect(stuck.sent).toEqual([]);
    expect(stuck.closed).toEqual({ code: 1008, reason: "Not reading" });
  });

  it("a member that catches up gets messages again and its skip count starts over", () => {
    const rooms = new ChatRooms({ highWaterMark: 1000, maxSkips: 3 });
    const slow = member(5000);
    rooms.join("r", slow);
    rooms.broadcast("r", "a");
    rooms.broadcast("r", "b");
    slow.bufferedAmount = 0;
    rooms.broadcast("r", "c");
    slow.bufferedAmount = 5000;
    rooms.broadcast("r", "d");
    rooms.broadcast("r", "e");
    expect(slow.sent).toEqual(["c"]);
    expect(slow.closed).toBeUndefined();
  });
});
