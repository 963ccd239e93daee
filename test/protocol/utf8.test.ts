import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isValidUtf8, Opcode, Utf8Validator } from "../../src/protocol/index.js";
import { expectFailed, feed, hex, masked, server, split } from "./helpers.js";

/** `at`: index of the first byte that makes the input invalid; "end" when only the end is missing. */
type Verdict = "valid" | "end" | { at: number };

const cases: ReadonlyArray<[name: string, bytes: string, verdict: Verdict]> = [
  ["empty", "", "valid"],
  ["ASCII", "48 65 6c 6c 6f 00 7f", "valid"],
  ["2-byte U+0080 and U+07FF", "c2 80 df bf", "valid"],
  ["3-byte U+0800, U+20AC", "e0 a0 80 e2 82 ac", "valid"],
  ["3-byte U+D7FF and U+E000 (either side of the surrogates)", "ed 9f bf ee 80 80", "valid"],
  ["U+FFFF", "ef bf bf", "valid"],
  ["4-byte U+10000 and U+1F600", "f0 90 80 80 f0 9f 98 80", "valid"],
  ["U+10FFFF", "f4 8f bf bf", "valid"],
  ["overlong NUL C0 80", "c0 80", { at: 0 }],
  ["overlong 2-byte C1 BF", "c1 bf", { at: 0 }],
  ["overlong 3-byte E0 80 80", "e0 80 80", { at: 1 }],
  ["overlong 3-byte E0 9F BF", "e0 9f bf", { at: 1 }],
  ["overlong 4-byte F0 80 80 80", "f0 80 80 80", { at: 1 }],
  ["overlong 4-byte F0 8F BF BF", "f0 8f bf bf", { at: 1 }],
  ["surrogate U+D800 (ED A0 80)", "ed a0 80", { at: 1 }],
  ["surrogate U+DFFF (ED BF BF)", "ed bf bf", { at: 1 }],
  ["above U+10FFFF (F4 90 80 80)", "f4 90 80 80", { at: 1 }],
  ["lead F5", "f5 80 80 80", { at: 0 }],
  ["lead F8", "f8 88 80 80 80", { at: 0 }],
  ["byte FE", "fe", { at: 0 }],
  ["byte FF", "41 ff", { at: 1 }],
  ["stray continuation", "80", { at: 0 }],
  ["stray continuation after ASCII", "41 42 bf", { at: 2 }],
  ["continuation after a whole 2-byte char", "c3 a9 a9", { at: 2 }],
  ["ASCII inside a 3-byte char", "e2 82 41", { at: 2 }],
  ["new lead inside a 2-byte char", "c2 c2 80", { at: 1 }],
  ["truncated 2-byte", "41 c2", "end"],
  ["truncated 3-byte", "e2 82", "end"],
  ["truncated 4-byte", "f0 9f 98", "end"],
  ["lone 4-byte lead", "f4", "end"],
];

/** Runs the pieces through one validator: true when every write and the final end() succeed. */
function stream(pieces: readonly Uint8Array[]): boolean {
  const v = new Utf8Validator();
  for (const piece of pieces) if (!v.write(piece)) return false;
  return v.end();
}

describe("RFC 6455 §8.1 UTF-8 validation (RFC 3629)", () => {
  describe.each(cases)("%s", (_name, bytesHex, verdict) => {
    const bytes = hex(bytesHex);
    const valid = verdict === "valid";

    it(`is ${valid ? "accepted" : "rejected"} by isValidUtf8 and by node:buffer isUtf8 alike`, () => {
      expect(isValidUtf8(bytes)).toBe(valid);
      expect(isUtf8(bytes)).toBe(valid);
    });

    it("gets the same verdict from the streaming validator, whole or byte by byte", () => {
      expect(stream([bytes])).toBe(valid);
      expect(stream(split(bytes, Array(bytes.length).fill(1)))).toBe(valid);
    });

    it("is rejected at the first byte that cannot start or continue a character", () => {
      const v = new Utf8Validator();
      const results = [...bytes].map((b) => v.write(Uint8Array.of(b)));
      const firstFalse = results.indexOf(false);
      expect(firstFalse).toBe(typeof verdict === "object" ? verdict.at : -1);
      if (verdict !== "valid" && typeof verdict !== "object") expect(v.end()).toBe(false);
    });

    it("is judged the same when padded past the native threshold", () => {
      const padded = Buffer.concat([Buffer.alloc(100, 0x61), bytes]);
      expect(isValidUtf8(padded)).toBe(valid);
      expect(stream([padded])).toBe(valid);
    });
  });

  it("end() resets the validator for the next message", () => {
    const v = new Utf8Validator();
    expect(v.write(hex("e2 82"))).toBe(true);
    expect(v.end()).toBe(false);
    expect(v.write(hex("41"))).toBe(true);
    expect(v.end()).toBe(true);
  });
});

describe("RFC 6455 §8.1 streaming validation over long inputs", () => {
  it.each([0, 1, 62, 63, 64, 65, 127, 128, 199])(
    "a 200-byte piece with 0xFF at %i is rejected in one write",
    (at) => {
      const bytes = Buffer.alloc(200, 0x61);
      bytes[at] = 0xff;
      expect(new Utf8Validator().write(bytes)).toBe(false);
      expect(isValidUtf8(bytes)).toBe(false);
    },
  );

  it.each([
    ["f4 90", "above U+10FFFF"],
    ["e0 80", "overlong"],
    ["ed a0", "surrogate"],
    ["c0", "overlong lead"],
    ["f5", "invalid lead"],
  ])("a 100-byte piece ending in %s (%s, incomplete) fails on that write", (tail) => {
    const bytes = Buffer.concat([Buffer.alloc(100, 0x61), hex(tail)]);
    expect(new Utf8Validator().write(bytes)).toBe(false);
  });

  it("a 4-byte character straddling two long pieces is accepted at every split inside it", () => {
    const bytes = Buffer.concat([Buffer.alloc(100, 0x61), hex("f0 9f 98 80"), Buffer.alloc(100, 0x62)]);
    for (let cut = 100; cut <= 104; cut++) {
      expect(stream([bytes.subarray(0, cut), bytes.subarray(cut)])).toBe(true);
    }
  });

  it("a straddling character with a bad continuation in the second long piece is rejected", () => {
    const bytes = Buffer.concat([Buffer.alloc(100, 0x61), hex("f0 9f 41"), Buffer.alloc(100, 0x62)]);
    const v = new Utf8Validator();
    expect(v.write(bytes.subarray(0, 102))).toBe(true);
    expect(v.write(bytes.subarray(102))).toBe(false);
  });
});

describe("RFC 6455 §8.1 streaming validation agrees with whole-buffer validation", () => {
  const validText = fc.string({ unit: "binary", maxLength: 120 }).map((s) => Buffer.from(s, "utf8"));
  const corrupted = fc
    .tuple(validText, fc.nat(), fc.integer({ min: 0, max: 255 }))
    .filter(([b]) => b.length > 0)
    .map(([b, i, byte]) => {
      const out = Buffer.from(b);
      out[i % out.length] = byte;
      return out;
    });
  const truncated = validText.chain((b) => fc.nat(b.length).map((n) => b.subarray(0, n)));
  const inputs = fc.oneof(validText, corrupted, truncated, fc.uint8Array({ maxLength: 200 }));
  const withSplits = inputs.chain((bytes) =>
    fc.tuple(fc.constant(Buffer.from(bytes)), fc.uniqueArray(fc.nat(bytes.length), { maxLength: 8 })),
  );

  it("for every input and every split, write/end equals isUtf8 and TextDecoder(fatal)", () => {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    fc.assert(
      fc.property(withSplits, ([bytes, cuts]) => {
        const expected = isUtf8(bytes);
        let decodes = true;
        try {
          decoder.decode(bytes);
        } catch {
          decodes = false;
        }
        expect(decodes).toBe(expected);
        const points = [0, ...cuts.sort((a, b) => a - b), bytes.length];
        const pieces = points.slice(1).map((end, i) => bytes.subarray(points[i], end));
        expect(stream(pieces)).toBe(expected);
        expect(isValidUtf8(bytes)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it("write returns false exactly when the bytes so far are not a prefix of valid UTF-8", () => {
    fc.assert(
      fc.property(inputs, (input) => {
        const bytes = Buffer.from(input);
        const v = new Utf8Validator();
        for (let i = 0; i < bytes.length; i++) {
          const ok = v.write(bytes.subarray(i, i + 1));
          // A prefix is viable when some completion (up to 3 continuation bytes) makes it valid.
          const prefix = bytes.subarray(0, i + 1);
          const viable = [
            "",
            "80",
            "8080",
            "808080",
            "90",
            "9080",
            "908080",
            "a0",
            "a080",
            "bf",
            "bfbf",
          ].some((c) => isUtf8(Buffer.concat([prefix, hex(c)])));
          expect(ok).toBe(viable);
          if (!ok) return;
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("RFC 6455 §5.6 / §8.1 text messages on a connection", () => {
  it("an invalid sequence in the first fragment fails with 1007 before the final fragment arrives", () => {
    const s = server();
    expect(feed(s, masked(Opcode.Text, hex("41 ff 42"), { fin: false }))).toEqual([]);
    expectFailed(s, "INVALID_UTF8", 1007);
  });

  it("a single frame fed in pieces fails as soon as the invalid byte arrives", () => {
    const s = server();
    const frame = masked(Opcode.Text, hex("41 42 43 c0 44 45 46 47 48 49"));
    // Header (6 bytes) and the first four payload bytes only: the frame is still incomplete.
    expect(feed(s, frame.subarray(0, 9))).toEqual([]);
    expect(s.failure).toBeUndefined();
    feed(s, frame.subarray(9, 10));
    expectFailed(s, "INVALID_UTF8", 1007);
  });

  it("an invalid byte deep inside a long second fragment fails with 1007", () => {
    const s = server();
    const bad = Buffer.alloc(300, 0x61);
    bad[250] = 0xed;
    bad[251] = 0xa0;
    feed(s, masked(Opcode.Text, Buffer.alloc(100, 0x61), { fin: false }), masked(0, bad, { fin: false }));
    expectFailed(s, "INVALID_UTF8", 1007);
  });

  it("a multi-byte character split across fragments is accepted", () => {
    const s = server();
    const events = feed(
      s,
      masked(Opcode.Text, hex("f0 9f"), { fin: false }),
      masked(Opcode.Ping),
      masked(0, hex("98"), { fin: false }),
      masked(0, hex("80 e2 82"), { fin: false }),
      masked(0, hex("ac")),
    );
    expect(events.at(-1)).toEqual({ type: "text", data: Buffer.from("😀€"), compressed: false });
    expect(s.failure).toBeUndefined();
  });

  it.each([
    ["a single frame", [masked(Opcode.Text, hex("41 e2 82"))]],
    ["the last fragment", [masked(Opcode.Text, hex("41"), { fin: false }), masked(0, hex("f0 9f 98"))]],
  ])("a message ending mid-character in %s fails with 1007", (_name, frames) => {
    const s = server();
    expect(feed(s, ...frames)).toEqual([]);
    expectFailed(s, "INVALID_UTF8", 1007);
    expect(s.failure?.message).toBe("text message ends inside a UTF-8 sequence");
  });

  it("the validator starts fresh for the next message after a valid one", () => {
    const s = server();
    const events = feed(s, masked(Opcode.Text, "é"), masked(Opcode.Text, hex("80")));
    expect(events).toEqual([{ type: "text", data: Buffer.from("é"), compressed: false }]);
    expectFailed(s, "INVALID_UTF8", 1007);
  });

  it("binary messages are not checked", () => {
    expect(feed(server(), masked(Opcode.Binary, hex("ff c0 80")))).toEqual([
      { type: "binary", data: hex("ff c0 80"), compressed: false },
    ]);
  });
});
