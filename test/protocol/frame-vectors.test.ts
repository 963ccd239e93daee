import { describe, expect, it } from "vitest";
import { encodeFrame, headerSize, MAX_HEADER_SIZE, Opcode, writeHeader } from "../../src/protocol/index.js";
import { client, feed, frameBytes, hex, hexEvents, KEY, parseFrames, server, split } from "./helpers.js";

/** Deterministic payload bytes 0, 1, 2, ... 255, 0, 1, ... */
function pattern(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = i & 0xff;
  return out;
}

/** The payload XORed with the key, as it appears on the wire. */
function maskBytes(payload: Buffer, key: Uint8Array): Buffer {
  return Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
}

interface Vector {
  name: string;
  /** The frame exactly as it appears on the wire. */
  wire: Buffer;
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  opcode: number;
  mask?: Uint8Array;
  payload: Buffer;
}

const hello = Buffer.from("Hello");
const p256 = pattern(256);
const p65535 = pattern(65535);
const p65536 = pattern(65536);
const p70000 = pattern(70_000);

const vectors: Vector[] = [
  // RFC 6455 §5.7 examples, byte for byte.
  { name: "§5.7 single-frame unmasked text", wire: hex("81 05 48 65 6c 6c 6f"), opcode: 1, payload: hello },
  {
    name: "§5.7 single-frame masked text",
    wire: hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
    opcode: 1,
    mask: KEY,
    payload: hello,
  },
  {
    name: "§5.7 fragmented first frame",
    wire: hex("01 03 48 65 6c"),
    fin: false,
    opcode: 1,
    payload: hex("48656c"),
  },
  { name: "§5.7 fragmented last frame", wire: hex("80 02 6c 6f"), opcode: 0, payload: hex("6c6f") },
  { name: "§5.7 unmasked ping", wire: hex("89 05 48 65 6c 6c 6f"), opcode: 9, payload: hello },
  {
    name: "§5.7 masked pong",
    wire: hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
    opcode: 10,
    mask: KEY,
    payload: hello,
  },
  { name: "unmasked pong", wire: hex("8a 05 48 65 6c 6c 6f"), opcode: 10, payload: hello },
  {
    name: "§5.7 256 bytes binary in one unmasked frame",
    wire: Buffer.concat([hex("82 7e 01 00"), p256]),
    opcode: 2,
    payload: p256,
  },
  {
    name: "§5.7 64 KiB binary in one unmasked frame",
    wire: Buffer.concat([hex("82 7f 00 00 00 00 00 01 00 00"), p65536]),
    opcode: 2,
    payload: p65536,
  },
  // Length encodings at every boundary (§5.2: 7-bit up to 125, 16-bit up to 65535, then 64-bit).
  { name: "empty text", wire: hex("81 00"), opcode: 1, payload: Buffer.alloc(0) },
  {
    name: "empty masked binary",
    wire: hex("82 80 37 fa 21 3d"),
    opcode: 2,
    mask: KEY,
    payload: Buffer.alloc(0),
  },
  {
    name: "125 bytes: largest 7-bit length",
    wire: Buffer.concat([hex("82 7d"), pattern(125)]),
    opcode: 2,
    payload: pattern(125),
  },
  {
    name: "126 bytes: smallest 16-bit length",
    wire: Buffer.concat([hex("82 7e 00 7e"), pattern(126)]),
    opcode: 2,
    payload: pattern(126),
  },
  {
    name: "126 bytes masked",
    wire: Buffer.concat([hex("82 fe 00 7e 37 fa 21 3d"), maskBytes(pattern(126), KEY)]),
    opcode: 2,
    mask: KEY,
    payload: pattern(126),
  },
  {
    name: "65535 bytes: largest 16-bit length",
    wire: Buffer.concat([hex("82 7e ff ff"), p65535]),
    opcode: 2,
    payload: p65535,
  },
  {
    name: "65536 bytes masked: smallest 64-bit length",
    wire: Buffer.concat([hex("82 ff 00 00 00 00 00 01 00 00 37 fa 21 3d"), maskBytes(p65536, KEY)]),
    opcode: 2,
    mask: KEY,
    payload: p65536,
  },
  {
    name: "70000 bytes unmasked continuation",
    wire: Buffer.concat([hex("80 7f 00 00 00 00 00 01 11 70"), p70000]),
    opcode: 0,
    payload: p70000,
  },
  {
    name: "70000 bytes masked, not final",
    wire: Buffer.concat([
      hex("02 ff 00 00 00 00 00 01 11 70 01 02 03 04"),
      maskBytes(p70000, hex("01020304")),
    ]),
    fin: false,
    opcode: 2,
    mask: hex("01020304"),
    payload: p70000,
  },
  // Flag combinations.
  { name: "rsv1 on a final text frame", wire: hex("c1 01 61"), rsv1: true, opcode: 1, payload: hex("61") },
  {
    name: "rsv1 on a first fragment",
    wire: hex("42 00"),
    fin: false,
    rsv1: true,
    opcode: 2,
    payload: hex(""),
  },
  { name: "rsv2", wire: hex("a2 00"), rsv2: true, opcode: 2, payload: hex("") },
  { name: "rsv3", wire: hex("92 00"), rsv3: true, opcode: 2, payload: hex("") },
  {
    name: "every flag and a reserved opcode",
    wire: hex("ff 01 00"),
    rsv1: true,
    rsv2: true,
    rsv3: true,
    opcode: 0xf,
    payload: hex("00"),
  },
  { name: "no flags at all", wire: hex("00 00"), fin: false, opcode: 0, payload: hex("") },
  // Every opcode, final and unmasked, with a one-byte payload.
  ...Array.from({ length: 16 }, (_, opcode) => ({
    name: `opcode 0x${opcode.toString(16)}`,
    wire: Buffer.from([0x80 | opcode, 0x01, 0x2a]),
    opcode,
    payload: Buffer.from([0x2a]),
  })),
];

describe("RFC 6455 §5.2 base framing: frame vectors", () => {
  describe.each(vectors)("$name", (v) => {
    const expected = {
      fin: v.fin ?? true,
      rsv1: v.rsv1 ?? false,
      rsv2: v.rsv2 ?? false,
      rsv3: v.rsv3 ?? false,
      opcode: v.opcode,
      masked: v.mask !== undefined,
      length: v.payload.length,
      maskKey: v.mask ? Buffer.from(v.mask) : undefined,
    };

    it("decodes from one chunk", () => {
      const { frames, errors, pending } = parseFrames([v.wire]);
      expect(errors).toEqual([]);
      expect(pending).toBeUndefined();
      expect(frames).toHaveLength(1);
      const { payload, ...header } = frames[0]!;
      expect(header).toEqual(expected);
      expect(payload.equals(v.payload)).toBe(true);
    });

    it("decodes the same from uneven chunks (1, 2, 3 ... bytes)", () => {
      const sizes = Array.from({ length: 20 }, (_, i) => i + 1);
      const { frames } = parseFrames(split(v.wire, sizes));
      expect(frames).toHaveLength(1);
      expect(frames[0]!.payload.equals(v.payload)).toBe(true);
      expect(frames[0]!.opcode).toBe(v.opcode);
    });

    it("encodes to exactly the wire bytes", () => {
      const options = {
        fin: expected.fin,
        rsv1: expected.rsv1,
        rsv2: expected.rsv2,
        rsv3: expected.rsv3,
        mask: v.mask,
      };
      const wire = frameBytes(v.opcode, v.payload, options);
      expect(wire.length).toBe(v.wire.length);
      expect(wire.equals(v.wire)).toBe(true);
      expect(headerSize(v.payload.length, v.mask !== undefined)).toBe(v.wire.length - v.payload.length);
    });
  });
});

describe("RFC 6455 §5.7 examples through a Connection", () => {
  it("a client receives the unmasked 'Hello' as one text message", () => {
    expect(feed(client(), hex("81 05 48 65 6c 6c 6f"))).toEqual([
      { type: "text", data: hello, compressed: false },
    ]);
  });

  it("a server receives the masked 'Hello' as one text message", () => {
    expect(feed(server(), hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"))).toEqual([
      { type: "text", data: hello, compressed: false },
    ]);
  });

  it("a client reassembles 'Hel' + 'lo' into one message, only after the final fragment", () => {
    const c = client();
    expect(feed(c, hex("01 03 48 65 6c"))).toEqual([]);
    expect(feed(c, hex("80 02 6c 6f"))).toEqual([{ type: "text", data: hello, compressed: false }]);
  });

  it("a client answers the unmasked ping 'Hello' with a masked pong carrying 'Hello'", () => {
    const c = client();
    expect(feed(c, hex("89 05 48 65 6c 6c 6f"))).toEqual([{ type: "ping", data: hello }]);
    // counterFill gives the key 01 02 03 04.
    const out = Buffer.concat(c.takeOutput());
    expect(out.equals(Buffer.concat([hex("8a 85 01 02 03 04"), maskBytes(hello, hex("01020304"))]))).toBe(
      true,
    );
  });

  it("a server receives the 256-byte and 64 KiB binary messages when masked", () => {
    const s = server({ maxMessageSize: 65536 });
    const events = feed(
      s,
      frameBytes(Opcode.Binary, p256, { mask: KEY }),
      frameBytes(Opcode.Binary, p65536, { mask: KEY }),
    );
    expect(hexEvents(events)).toEqual([
      { type: "binary", data: p256.toString("hex"), compressed: false },
      { type: "binary", data: p65536.toString("hex"), compressed: false },
    ]);
  });

  it("a server sends text 'Hello' as 81 05 48 65 6c 6c 6f", () => {
    const s = server();
    s.sendText("Hello");
    expect(Buffer.concat(s.takeOutput()).equals(hex("81 05 48 65 6c 6c 6f"))).toBe(true);
  });

  it("a server sends a fragmented message as 01 03 'Hel', 80 02 'lo'", () => {
    const s = server();
    s.sendFrame(Opcode.Text, Buffer.from("Hel"), { fin: false });
    s.sendFrame(Opcode.Continuation, Buffer.from("lo"));
    expect(Buffer.concat(s.takeOutput()).equals(hex("01 03 48 65 6c 80 02 6c 6f"))).toBe(true);
  });
});

describe("RFC 6455 §5.2 serializer details", () => {
  it.each([
    [0, false, 2],
    [125, false, 2],
    [126, false, 4],
    [65535, false, 4],
    [65536, false, 10],
    [2 ** 53 - 1, false, 10],
    [0, true, 6],
    [125, true, 6],
    [126, true, 8],
    [65536, true, 14],
  ])("headerSize(%i, masked=%s) is %i", (length, isMasked, size) => {
    expect(headerSize(length, isMasked)).toBe(size);
  });

  it("MAX_HEADER_SIZE is 14 (2 + 8-byte length + 4-byte key)", () => {
    expect(MAX_HEADER_SIZE).toBe(14);
  });

  it("writeHeader writes a 2^53 - 1 length as 00 1f ff ff ff ff ff ff and returns the end offset", () => {
    const target = Buffer.alloc(12, 0xee);
    expect(writeHeader(target, 1, Opcode.Binary, 2 ** 53 - 1, {})).toBe(11);
    expect(target.equals(hex("ee 82 7f 00 1f ff ff ff ff ff ff ee"))).toBe(true);
  });

  it("leaves a large unmasked payload uncopied: [header, the payload itself]", () => {
    const payload = pattern(4097);
    const parts = encodeFrame(Opcode.Binary, payload);
    expect(parts).toHaveLength(2);
    expect(parts[0]!.equals(hex("82 7e 10 01"))).toBe(true);
    expect(parts[1]).toBe(payload);
  });

  it("coalesces a 4096-byte unmasked payload into one buffer", () => {
    const parts = encodeFrame(Opcode.Binary, pattern(4096));
    expect(parts).toHaveLength(1);
    expect(parts[0]!.subarray(0, 4).equals(hex("82 7e 10 00"))).toBe(true);
  });

  it("never mutates the payload it masks", () => {
    const payload = pattern(300);
    const before = Buffer.from(payload);
    const [wire] = encodeFrame(Opcode.Binary, payload, { mask: KEY });
    expect(payload.equals(before)).toBe(true);
    expect(wire!.subarray(8).equals(maskBytes(before, KEY))).toBe(true);
  });

  it("accepts a plain Uint8Array payload at a non-zero byteOffset", () => {
    const backing = new Uint8Array([9, 9, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 9]);
    const view = backing.subarray(2, 7);
    expect(frameBytes(Opcode.Text, view).equals(hex("81 05 48 65 6c 6c 6f"))).toBe(true);
  });
});
