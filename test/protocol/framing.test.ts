import { describe, expect, it } from "vitest";
import { DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE, Opcode } from "../../src/protocol/index.js";
import {
  client,
  closeOf,
  expectFailed,
  feed,
  frameBytes,
  hex,
  hexEvents,
  masked,
  outputFrames,
  parseFrames,
  server,
  summary,
} from "./helpers.js";

const text = (s: string) => ({ type: "text", data: Buffer.from(s), compressed: false });

describe("RFC 6455 §5.1 / §5.3 masking", () => {
  it("a server fails on an unmasked client frame with 1002 MASK_REQUIRED and says why", () => {
    const s = server();
    expect(feed(s, hex("81 05 48 65 6c 6c 6f"))).toEqual([]);
    expect(s.failure?.message).toBe("client frames must be masked");
    const [close] = outputFrames(s);
    expect(closeOf(close!)).toEqual({ code: 1002, reason: "client frames must be masked" });
  });

  it.each([
    ["text", hex("81 00")],
    ["ping", hex("89 00")],
    ["close", hex("88 02 03 e8")],
  ])("a server rejects an unmasked %s frame (MASK_REQUIRED)", (_name, bytes) => {
    const s = server();
    feed(s, bytes);
    expectFailed(s, "MASK_REQUIRED", 1002);
  });

  it.each([
    ["text", masked(Opcode.Text, "hi")],
    ["ping", masked(Opcode.Ping)],
    ["close", masked(Opcode.Close, hex("03e8"))],
  ])("a client rejects a masked %s frame from the server (MASK_FORBIDDEN)", (_name, bytes) => {
    const c = client();
    expect(feed(c, bytes)).toEqual([]);
    expectFailed(c, "MASK_FORBIDDEN", 1002);
  });

  it("everything after the failing frame is ignored", () => {
    const s = server();
    expect(feed(s, hex("81 00"), masked(Opcode.Text, "late"), masked(Opcode.Ping))).toEqual([]);
    expectFailed(s, "MASK_REQUIRED", 1002);
    expect(feed(s, masked(Opcode.Text, "later"))).toEqual([]);
    expect(s.takeOutput()).toEqual([]);
  });
});

describe("RFC 6455 §5.2 reserved bits", () => {
  it.each([
    ["RSV1", 0xc1],
    ["RSV2", 0xa1],
    ["RSV3", 0x91],
    ["RSV2+RSV3", 0xb1],
  ])("%s without a negotiated extension fails with RESERVED_BITS_SET", (_name, b0) => {
    const s = server();
    feed(s, Buffer.from([b0, 0x80, 1, 2, 3, 4]));
    expectFailed(s, "RESERVED_BITS_SET", 1002);
  });

  it("with rsv1: true, RSV1 on the first frame marks the message compressed and skips the UTF-8 check", () => {
    const s = server({ rsv1: true });
    const events = feed(
      s,
      masked(Opcode.Text, hex("ff fe"), { rsv1: true, fin: false }),
      masked(0, hex("80")),
    );
    expect(hexEvents(events)).toEqual([{ type: "text", data: "fffe80", compressed: true }]);
    expect(s.failure).toBeUndefined();
  });

  it("with rsv1: true, a frame without RSV1 is an uncompressed message", () => {
    expect(feed(server({ rsv1: true }), masked(Opcode.Binary, "x"))).toEqual([
      { type: "binary", data: Buffer.from("x"), compressed: false },
    ]);
  });

  it("with rsv1: true, RSV1 on a continuation frame still fails", () => {
    const s = server({ rsv1: true });
    feed(s, masked(Opcode.Text, "a", { rsv1: true, fin: false }), masked(0, "b", { rsv1: true }));
    expectFailed(s, "RESERVED_BITS_SET", 1002);
  });

  it.each([Opcode.Ping, Opcode.Pong, Opcode.Close])(
    "with rsv1: true, RSV1 on control opcode %i still fails",
    (opcode) => {
      const s = server({ rsv1: true });
      feed(s, masked(opcode, "", { rsv1: true }));
      expectFailed(s, "RESERVED_BITS_SET", 1002);
    },
  );

  it("with rsv1: true, RSV2 still fails", () => {
    const s = server({ rsv1: true });
    feed(s, masked(Opcode.Text, "a", { rsv2: true }));
    expectFailed(s, "RESERVED_BITS_SET", 1002);
  });
});

describe("RFC 6455 §5.2 opcodes", () => {
  it.each([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf])(
    "reserved opcode 0x%s fails with RESERVED_OPCODE",
    (op) => {
      const s = server();
      feed(s, masked(op, "x"));
      expectFailed(s, "RESERVED_OPCODE", 1002);
      expect(s.failure?.message).toBe(`reserved opcode 0x${op.toString(16)}`);
    },
  );
});

describe("RFC 6455 §5.2 payload length", () => {
  it("a 64-bit length with the most significant bit set fails with 1002 LENGTH_MSB_SET", () => {
    const s = server();
    feed(s, hex("82 ff 80 00 00 00 00 00 00 00 01 02 03 04"));
    expectFailed(s, "LENGTH_MSB_SET", 1002);
  });

  it.each([
    ["a 0-byte length in the 16-bit form", "82 fe 00 00 01 02 03 04"],
    ["a 125-byte length in the 16-bit form", "82 fe 00 7d 01 02 03 04"],
    ["a 125-byte length in the 64-bit form", "82 ff 00 00 00 00 00 00 00 7d 01 02 03 04"],
    ["a 65535-byte length in the 64-bit form", "82 ff 00 00 00 00 00 00 ff ff 01 02 03 04"],
  ])(
    "%s fails with 1002 NON_MINIMAL_LENGTH (§5.2: the minimal number of bytes MUST be used)",
    (_what, bytes) => {
      const s = server();
      feed(s, hex(bytes));
      expectFailed(s, "NON_MINIMAL_LENGTH", 1002);
    },
  );

  it("the smallest lengths of each form (126 in 16 bits, 65536 in 64 bits) are accepted", () => {
    const parsed = parseFrames([hex("82 7e 00 7e"), Buffer.alloc(126), hex("82 7f 00 00 00 00 00 01 00 00")]);
    expect(parsed.errors).toEqual([]);
  });

  it("a 2^63 - 1 length header fails with 1009 MESSAGE_TOO_BIG", () => {
    const s = server({ maxMessageSize: Number.MAX_SAFE_INTEGER });
    feed(s, hex("82 ff 7f ff ff ff ff ff ff ff 01 02 03 04"));
    expectFailed(s, "MESSAGE_TOO_BIG", 1009);
  });

  it("the parser rejects a 2^53 length before the sink sees it, but passes 2^53 - 1 through", () => {
    const over = parseFrames([hex("82 7f 00 20 00 00 00 00 00 00")]);
    expect(over.pending).toBeUndefined();
    expect(over.errors.map((e) => [e.code, e.closeCode])).toEqual([["MESSAGE_TOO_BIG", 1009]]);
    const max = parseFrames([hex("82 7f 00 1f ff ff ff ff ff ff")]);
    expect(max.errors).toEqual([]);
    expect(max.pending?.length).toBe(2 ** 53 - 1);
  });

  it("a 2^53 length fails on a connection even with no size limit", () => {
    const s = server({ maxMessageSize: Number.POSITIVE_INFINITY });
    feed(s, hex("82 ff 00 20 00 00 00 00 00 00 01 02 03 04"));
    expectFailed(s, "MESSAGE_TOO_BIG", 1009);
  });

  it("defaults: maxMessageSize is 1 MiB and maxFragments is 1024", () => {
    expect([DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_FRAGMENTS]).toEqual([1048576, 1024]);
    expect([server().maxMessageSize, server().maxFragments]).toEqual([1048576, 1024]);
  });
});

describe("RFC 6455 §10.4 limits", () => {
  it("a message of exactly maxMessageSize is delivered", () => {
    const s = server({ maxMessageSize: 300 });
    const events = feed(s, masked(Opcode.Binary, Buffer.alloc(300, 7)));
    expect(hexEvents(events)).toEqual([{ type: "binary", data: "07".repeat(300), compressed: false }]);
  });

  it("maxMessageSize + 1 fails with 1009 from the header alone, before any payload", () => {
    const s = server({ maxMessageSize: 300 });
    feed(s, hex("82 fe 01 2d 01 02 03 04")); // 301 bytes announced, none sent
    expectFailed(s, "MESSAGE_TOO_BIG", 1009);
  });

  it("the default limit rejects a 1 MiB + 1 header with no payload fed", () => {
    const s = server();
    feed(s, hex("82 ff 00 00 00 00 00 10 00 01 01 02 03 04"));
    expectFailed(s, "MESSAGE_TOO_BIG", 1009);
  });

  it("the limit counts the sum of the fragments: 150 + 150 passes, 150 + 151 fails", () => {
    const ok = server({ maxMessageSize: 300 });
    const events = feed(
      ok,
      masked(Opcode.Binary, Buffer.alloc(150), { fin: false }),
      masked(0, Buffer.alloc(150)),
    );
    expect(events.map((e) => e.type === "binary" && e.data.length)).toEqual([300]);

    const over = server({ maxMessageSize: 300 });
    feed(over, masked(Opcode.Binary, Buffer.alloc(150), { fin: false }), hex("80 fe 00 97 01 02 03 04"));
    expectFailed(over, "MESSAGE_TOO_BIG", 1009);
  });

  it("the limit starts over with each message", () => {
    const s = server({ maxMessageSize: 10 });
    const events = feed(s, masked(Opcode.Binary, Buffer.alloc(10)), masked(Opcode.Binary, Buffer.alloc(10)));
    expect(events).toHaveLength(2);
    expect(s.failure).toBeUndefined();
  });

  it("control frames do not count towards maxMessageSize", () => {
    const s = server({ maxMessageSize: 4 });
    const events = feed(
      s,
      masked(Opcode.Text, "ab", { fin: false }),
      masked(Opcode.Ping, "12345"),
      masked(0, "cd"),
    );
    expect(events.map((e) => e.type)).toEqual(["ping", "text"]);
  });

  it("exactly maxFragments frames pass; one more fails with 1009 TOO_MANY_FRAGMENTS", () => {
    const fragments = (n: number) => [
      masked(Opcode.Text, "a", { fin: false }),
      ...Array.from({ length: n - 2 }, () => masked(0, "", { fin: false })),
      masked(0, "b"),
    ];
    expect(feed(server({ maxFragments: 5 }), ...fragments(5))).toEqual([text("ab")]);
    const s = server({ maxFragments: 5 });
    expect(feed(s, ...fragments(6))).toEqual([]);
    expectFailed(s, "TOO_MANY_FRAGMENTS", 1009);
  });
});

describe("RFC 6455 §5.4 fragmentation", () => {
  it("a continuation frame with no message in progress fails with UNEXPECTED_CONTINUATION", () => {
    const s = server();
    feed(s, masked(0, "x"));
    expectFailed(s, "UNEXPECTED_CONTINUATION", 1002);
  });

  it("a continuation after a finished message fails with UNEXPECTED_CONTINUATION", () => {
    const s = server();
    expect(feed(s, masked(Opcode.Text, "done"), masked(0, "x"))).toEqual([text("done")]);
    expectFailed(s, "UNEXPECTED_CONTINUATION", 1002);
  });

  it.each([Opcode.Text, Opcode.Binary])(
    "a new data frame (opcode %i) inside a fragmented message fails with EXPECTED_CONTINUATION",
    (opcode) => {
      const s = server();
      feed(s, masked(Opcode.Text, "a", { fin: false }), masked(opcode, "b"));
      expectFailed(s, "EXPECTED_CONTINUATION", 1002);
    },
  );

  it("pings and pongs between fragments are delivered, and pings answered, at once", () => {
    const s = server();
    expect(hexEvents(feed(s, masked(Opcode.Text, "He", { fin: false }), masked(Opcode.Ping, "p1")))).toEqual([
      { type: "ping", data: "7031" },
    ]);
    expect(summary(outputFrames(s))).toEqual([[0xa, "7031"]]);
    const events = feed(s, masked(0, "l", { fin: false }), masked(Opcode.Pong, "p2"), masked(0, "lo"));
    expect(hexEvents(events)).toEqual([
      { type: "pong", data: "7032" },
      { type: "text", data: Buffer.from("Hello").toString("hex"), compressed: false },
    ]);
  });

  it("frames mode emits every data fragment as a frame event, with its flags", () => {
    const s = server({ mode: "frames", rsv1: true });
    const events = feed(
      s,
      masked(Opcode.Binary, "ab", { fin: false, rsv1: true }),
      masked(Opcode.Ping, "p"),
      masked(0, "", { fin: false }),
      masked(0, "c"),
      masked(Opcode.Text, "d"),
    );
    const frame = (fin: boolean, rsv1: boolean, opcode: number, payload: string) => ({
      type: "frame",
      frame: { fin, rsv1, rsv2: false, rsv3: false, opcode, payload: Buffer.from(payload).toString("hex") },
    });
    expect(hexEvents(events)).toEqual([
      frame(false, true, 2, "ab"),
      { type: "ping", data: "70" },
      frame(false, false, 0, ""),
      frame(true, false, 0, "c"),
      frame(true, false, 1, "d"),
    ]);
  });

  it("frames mode still enforces the message limit and UTF-8 across fragments", () => {
    const big = server({ mode: "frames", maxMessageSize: 3 });
    expect(feed(big, masked(Opcode.Binary, "ab", { fin: false })).map((e) => e.type)).toEqual(["frame"]);
    feed(big, masked(0, "cd"));
    expectFailed(big, "MESSAGE_TOO_BIG", 1009);
    const bad = server({ mode: "frames" });
    feed(bad, masked(Opcode.Text, hex("e2 82"), { fin: false }), masked(0, hex("41")));
    expectFailed(bad, "INVALID_UTF8", 1007);
  });
});

describe("RFC 6455 §5.5 control frames", () => {
  it("a ping with 125 bytes is accepted; a 126-byte ping (16-bit length) fails from its header", () => {
    const ok = server();
    expect(feed(ok, masked(Opcode.Ping, Buffer.alloc(125, 1))).map((e) => e.type)).toEqual(["ping"]);
    const s = server();
    feed(s, hex("89 fe 00 7e 01 02 03 04"));
    expectFailed(s, "CONTROL_FRAME_TOO_LONG", 1002);
  });

  it.each([Opcode.Pong, Opcode.Close])("control opcode %i over 125 bytes fails", (opcode) => {
    const s = server();
    feed(s, masked(opcode, Buffer.alloc(126, 0x41)));
    expectFailed(s, "CONTROL_FRAME_TOO_LONG", 1002);
  });

  it.each([Opcode.Ping, Opcode.Pong, Opcode.Close])(
    "a fragmented control frame (opcode %i, FIN clear) fails",
    (opcode) => {
      const s = server();
      feed(s, masked(opcode, "", { fin: false }));
      expectFailed(s, "CONTROL_FRAME_FRAGMENTED", 1002);
    },
  );

  it.each([
    ["empty", ""],
    ["125 bytes", `${"ab".repeat(62)}c`],
  ])("a ping with a %s payload is answered by a pong with the same payload", (_name, payload) => {
    const s = server();
    expect(hexEvents(feed(s, masked(Opcode.Ping, payload)))).toEqual([
      { type: "ping", data: Buffer.from(payload).toString("hex") },
    ]);
    const pong = frameBytes(Opcode.Pong, payload);
    expect(Buffer.concat(s.takeOutput()).equals(pong)).toBe(true);
  });

  it("pongs go ahead of data frames already queued", () => {
    const s = server();
    s.sendText("first");
    s.sendBinary(Buffer.from("second"));
    feed(s, masked(Opcode.Ping, "p"));
    expect(summary(outputFrames(s))).toEqual([
      [0xa, "70"],
      [0x1, Buffer.from("first").toString("hex")],
      [0x2, Buffer.from("second").toString("hex")],
    ]);
  });

  it("with autoPong: false a ping is reported but not answered", () => {
    const s = server({ autoPong: false });
    expect(feed(s, masked(Opcode.Ping, "x")).map((e) => e.type)).toEqual(["ping"]);
    expect(s.hasOutput).toBe(false);
    expect(s.takeOutput()).toEqual([]);
  });

  it("a pong is reported and never answered", () => {
    const s = server();
    expect(hexEvents(feed(s, masked(Opcode.Pong, "z")))).toEqual([{ type: "pong", data: "7a" }]);
    expect(s.hasOutput).toBe(false);
  });

  it("a client masks its pong with a fresh key from randomFill", () => {
    const c = client();
    feed(c, hex("89 02 68 69"));
    const [pong] = outputFrames(c);
    expect(pong).toMatchObject({ opcode: 0xa, masked: true, maskKey: hex("01020304") });
    expect(pong!.payload.toString()).toBe("hi");
  });
});
