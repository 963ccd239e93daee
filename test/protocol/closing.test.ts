import { describe, expect, it } from "vitest";
import {
  CloseCode,
  isValidWireCloseCode,
  MAX_CLOSE_REASON_BYTES,
  Opcode,
  ProtocolError,
  truncateReason,
  UsageError,
} from "../../src/protocol/index.js";
import {
  client,
  closeOf,
  closePayload,
  expectFailed,
  feed,
  hex,
  masked,
  outputFrames,
  server,
  summary,
  thrown,
} from "./helpers.js";

const VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999];
const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];

describe("RFC 6455 §7.4 close codes", () => {
  it.each(VALID_CODES)("%i may be sent on the wire", (code) => {
    expect(isValidWireCloseCode(code)).toBe(true);
  });

  it.each([...INVALID_CODES, 1000.5, Number.NaN])("%d may not be sent on the wire", (code) => {
    expect(isValidWireCloseCode(code)).toBe(false);
  });

  it("reporting-only codes have their registered values", () => {
    expect([CloseCode.NoStatusReceived, CloseCode.Abnormal, CloseCode.TlsHandshake]).toEqual([
      1005, 1006, 1015,
    ]);
  });
});

describe("RFC 6455 §5.5.1 receiving a Close frame", () => {
  it("an empty Close is reported as 1005 and answered with an empty Close", () => {
    const s = server();
    expect(feed(s, masked(Opcode.Close))).toEqual([{ type: "close", code: 1005, reason: "" }]);
    expect(s.closeReceived).toEqual({ code: 1005, reason: "" });
    expect(Buffer.concat(s.takeOutput()).equals(hex("88 00"))).toBe(true);
    expect(s.state).toBe("closed");
  });

  it("a 1-byte Close payload fails with 1002 INVALID_CLOSE_PAYLOAD", () => {
    const s = server();
    expect(feed(s, masked(Opcode.Close, hex("03")))).toEqual([]);
    expectFailed(s, "INVALID_CLOSE_PAYLOAD", 1002);
  });

  it.each(VALID_CODES)("a Close with code %i is reported and echoed with the same code", (code) => {
    const s = server();
    expect(feed(s, masked(Opcode.Close, closePayload(code, "bye")))).toEqual([
      { type: "close", code, reason: "bye" },
    ]);
    const out = Buffer.concat(s.takeOutput());
    expect(out.equals(Buffer.from([0x88, 0x02, code >> 8, code & 0xff]))).toBe(true);
  });

  it.each(INVALID_CODES)("a Close with code %i fails with 1002 INVALID_CLOSE_CODE", (code) => {
    const s = server();
    expect(feed(s, masked(Opcode.Close, closePayload(code)))).toEqual([]);
    expectFailed(s, "INVALID_CLOSE_CODE", 1002);
    expect(s.closeReceived).toBeUndefined();
  });

  it("a Close reason that is not UTF-8 fails with 1007", () => {
    const s = server();
    expect(feed(s, masked(Opcode.Close, closePayload(1000, hex("41 ff"))))).toEqual([]);
    expectFailed(s, "INVALID_CLOSE_REASON", 1007);
  });

  it("a 123-byte UTF-8 reason (a 125-byte payload) is accepted", () => {
    const reason = `${"é".repeat(61)}x`;
    expect(Buffer.byteLength(reason)).toBe(123);
    expect(feed(client(), hexClose(1000, reason))).toEqual([{ type: "close", code: 1000, reason }]);
  });

  it("bytes after the Close frame are ignored, in the same chunk and later", () => {
    const s = server();
    const chunk = Buffer.concat([
      masked(Opcode.Close, closePayload(1000)),
      masked(Opcode.Text, "x"),
      hex("ff"),
    ]);
    expect(feed(s, chunk)).toEqual([{ type: "close", code: 1000, reason: "" }]);
    expect(feed(s, masked(Opcode.Ping, "p"))).toEqual([]);
    expect(summary(outputFrames(s))).toEqual([[8, "03e8"]]);
    expect(s.failure).toBeUndefined();
  });
});

/** A server Close frame as a client receives it. */
function hexClose(code: number, reason: string): Buffer {
  const payload = closePayload(code, reason);
  return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
}

describe("RFC 6455 §7.1 closing handshake and state", () => {
  it("we close first: open -> closing (sendClose) -> closed (peer's Close)", () => {
    const s = server();
    expect(s.state).toBe("open");
    expect(s.sendClose(1000, "done")).toBe(true);
    expect(s.state).toBe("closing");
    expect(s.closeSent).toEqual({ code: 1000, reason: "done" });
    expect(summary(outputFrames(s))).toEqual([[8, `03e8${Buffer.from("done").toString("hex")}`]]);
    // Data still arrives while closing; pings are no longer answered.
    expect(feed(s, masked(Opcode.Text, "late"), masked(Opcode.Ping)).map((e) => e.type)).toEqual([
      "text",
      "ping",
    ]);
    expect(feed(s, masked(Opcode.Close, closePayload(1001)))).toEqual([
      { type: "close", code: 1001, reason: "" },
    ]);
    expect(s.state).toBe("closed");
    expect(s.takeOutput()).toEqual([]); // no second Close
  });

  it("the peer closes first: the echo is queued and the handshake is complete (closed)", () => {
    const c = client();
    expect(c.state).toBe("open");
    expect(feed(c, hexClose(1001, "away"))).toEqual([{ type: "close", code: 1001, reason: "away" }]);
    expect(c.state).toBe("closed");
    expect(c.closeSent).toEqual({ code: 1001, reason: "" });
    const [echo] = outputFrames(c);
    expect(echo).toMatchObject({ opcode: 8, masked: true });
    expect(closeOf(echo!)).toEqual({ code: 1001, reason: "" });
    expect(c.sendClose(1000)).toBe(false);
  });

  it("a second sendClose is harmless and sends nothing", () => {
    const s = server();
    expect(s.sendClose()).toBe(true);
    expect(s.sendClose(1000)).toBe(false);
    expect(Buffer.concat(s.takeOutput()).equals(hex("88 00"))).toBe(true);
    expect(s.closeSent).toEqual({ code: 1005, reason: "" });
  });

  it("a connecting client becomes open on markOpen", () => {
    const c = client({ connecting: true });
    expect(c.state).toBe("connecting");
    c.markOpen();
    expect(c.state).toBe("open");
  });

  it("EOF without a Close frame reports 1006 and closes", () => {
    const s = server();
    feed(s, masked(Opcode.Text, "part", { fin: false }));
    s.receiveEof();
    expect(s.closeReceived).toEqual({ code: 1006, reason: "" });
    expect(s.state).toBe("closed");
    expect(s.failure).toBeUndefined();
    expect(feed(s, masked(0, "rest"))).toEqual([]);
  });

  it("EOF after a Close frame keeps the received code", () => {
    const s = server();
    feed(s, masked(Opcode.Close, closePayload(1000)));
    s.receiveEof();
    expect(s.closeReceived).toEqual({ code: 1000, reason: "" });
  });
});

describe("RFC 6455 §7.1.7 failing the connection", () => {
  it("queues exactly one Close frame with the failure's code, even when more bad input follows", () => {
    const s = server();
    s.sendText("queued");
    feed(s, masked(Opcode.Text, hex("ff")), hex("81 00"), masked(3));
    expect(summary(outputFrames(s)).map(([op]) => op)).toEqual([1, 8]);
    expect(s.failure?.code).toBe("INVALID_UTF8");
  });

  it("fail() by an upper layer records the error and closes with its code", () => {
    const s = server();
    s.fail(new ProtocolError("EXTENSION_FAILED", 1007, "inflate failed"));
    expectFailed(s, "EXTENSION_FAILED", 1007);
    s.fail(new ProtocolError("EXTENSION_FAILED", 1011, "again"));
    expect(s.failure?.code).toBe("EXTENSION_FAILED");
    expect(s.takeOutput()).toEqual([]);
  });

  it("a failure after our own Close does not queue a second Close", () => {
    const s = server();
    s.sendClose(1000);
    feed(s, hex("81 00"));
    expect(s.failure?.code).toBe("MASK_REQUIRED");
    expect(s.state).toBe("closed");
    expect(summary(outputFrames(s))).toEqual([[8, "03e8"]]);
  });

  it("a long failure message is cut to fit the Close frame", () => {
    const s = server();
    s.fail(new ProtocolError("EXTENSION_FAILED", 1011, "ü".repeat(100)));
    const [close] = outputFrames(s);
    expect(close!.payload.length).toBe(2 + 122);
    expect(closeOf(close!)).toEqual({ code: 1011, reason: "ü".repeat(61) });
  });
});

describe("RFC 6455 §5.5.1 / §7.4 sending a Close frame", () => {
  it.each([1005, 1006, 1015, 999, 1004, 5000])(
    "sendClose(%i) throws UsageError INVALID_CLOSE_CODE",
    (code) => {
      const error = thrown<UsageError>(() => server().sendClose(code));
      expect(error).toBeInstanceOf(UsageError);
      expect(error.code).toBe("INVALID_CLOSE_CODE");
    },
  );

  it("a reason without a code throws INVALID_CLOSE_CODE", () => {
    const s = server();
    expect(thrown<UsageError>(() => s.sendClose(undefined, "why")).code).toBe("INVALID_CLOSE_CODE");
    expect(s.hasOutput).toBe(false);
  });

  it("a 123-byte reason is sent; 124 bytes throw CLOSE_REASON_TOO_LONG", () => {
    expect(MAX_CLOSE_REASON_BYTES).toBe(123);
    const s = server();
    expect(thrown<UsageError>(() => s.sendClose(1000, `${"é".repeat(61)}xy`)).code).toBe(
      "CLOSE_REASON_TOO_LONG",
    );
    expect(s.state).toBe("open");
    s.sendClose(1000, `${"é".repeat(61)}x`);
    const [close] = outputFrames(s);
    expect(close!.payload.length).toBe(125);
  });

  it.each([
    ["sendText", (c: ReturnType<typeof server>) => c.sendText("x")],
    ["sendBinary", (c: ReturnType<typeof server>) => c.sendBinary(hex("00"))],
    ["sendFrame", (c: ReturnType<typeof server>) => c.sendFrame(Opcode.Binary, hex("00"))],
  ])("%s after sendClose throws SEND_AFTER_CLOSE", (_name, send) => {
    const s = server();
    s.sendClose(1000);
    expect(thrown<UsageError>(() => send(s)).code).toBe("SEND_AFTER_CLOSE");
  });

  it("pings are allowed while closing but not once closed", () => {
    const s = server();
    s.sendClose(1000);
    s.sendPing(hex("01"));
    feed(s, masked(Opcode.Close, closePayload(1000)));
    expect(thrown<UsageError>(() => s.sendPing()).code).toBe("SEND_AFTER_CLOSE");
    expect(summary(outputFrames(s))).toEqual([
      [9, "01"],
      [8, "03e8"],
    ]);
  });

  it("sendFrame with a Close opcode validates like sendClose", () => {
    const s = server();
    expect(thrown<UsageError>(() => s.sendFrame(Opcode.Close, hex("03"))).code).toBe("INVALID_FRAME");
    expect(thrown<UsageError>(() => s.sendFrame(Opcode.Close, closePayload(1006))).code).toBe(
      "INVALID_CLOSE_CODE",
    );
    s.sendFrame(Opcode.Close, closePayload(4000, "app"));
    expect(s.closeSent).toEqual({ code: 4000, reason: "app" });
  });
});

describe("truncateReason", () => {
  it.each([
    ["short", "ok", "ok"],
    ["exactly 123 ASCII bytes", "a".repeat(123), "a".repeat(123)],
    ["124 ASCII bytes", "a".repeat(124), "a".repeat(123)],
    ["2-byte char across the limit", `${"a".repeat(122)}é`, "a".repeat(122)],
    ["3-byte char across the limit", `${"a".repeat(121)}€`, "a".repeat(121)],
    ["4-byte char across the limit", `${"a".repeat(120)}😀b`, "a".repeat(120)],
    ["4-byte char ending at the limit", `${"a".repeat(119)}😀b`, `${"a".repeat(119)}😀`],
    ["all 4-byte chars", "😀".repeat(40), "😀".repeat(30)],
  ])("%s", (_name, input, expected) => {
    const out = truncateReason(input);
    expect(out).toBe(expected);
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(123);
  });
});
