import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyMask, applyMaskPortable, nativeMasking } from "../../src/protocol/index.js";
import { unmaskRange } from "../../src/protocol/mask.js";

describe("RFC 6455 §5.3 masking: native and portable paths agree", () => {
  it("uses the native helper here (bufferutil is a dev dependency), so both paths are exercised", () => {
    expect(nativeMasking).toBe(true);
  });

  it("gives the same bytes for any payload, key, payload offset and slice, Buffer or Uint8Array", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 3000 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.nat(7),
        fc.nat(300),
        fc.nat(300),
        fc.boolean(),
        (bytes, key, offset, cutStart, cutEnd, asBuffer) => {
          const start = Math.min(cutStart, bytes.length);
          const end = Math.max(start, bytes.length - cutEnd);
          const a = asBuffer ? Buffer.from(bytes) : Uint8Array.from(bytes);
          const b = Uint8Array.from(bytes);
          applyMask(a, key, offset, start, end);
          applyMaskPortable(b, key, offset, start, end);
          expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
          // Outside the slice nothing changes.
          expect(Buffer.from(a.subarray(0, start)).equals(Buffer.from(bytes.subarray(0, start)))).toBe(true);
          expect(Buffer.from(a.subarray(end)).equals(Buffer.from(bytes.subarray(end)))).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("matches the definition of §5.3 (octet i XOR key[(offset + i) mod 4]) for every short length and phase", () => {
    const key = Uint8Array.from([0x37, 0xfa, 0x21, 0x3d]);
    const key32 = ((key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!) >>> 0;
    const source = Uint8Array.from({ length: 300 }, (_, i) => (i * 13 + 5) & 0xff);
    for (let length = 0; length <= 260; length++) {
      for (let start = 0; start < 4; start++) {
        for (let offset = 0; offset < 4; offset++) {
          const expected = Uint8Array.from(source);
          for (let i = 0; i < length; i++) expected[start + i] = source[start + i]! ^ key[(offset + i) & 3]!;
          const portable = Uint8Array.from(source);
          applyMaskPortable(portable, key, offset, start, start + length);
          const chosen = Uint8Array.from(source);
          applyMask(chosen, key, offset, start, start + length);
          expect(Buffer.from(portable).equals(Buffer.from(expected)), `portable length ${length}`).toBe(true);
          expect(Buffer.from(chosen).equals(Buffer.from(expected)), `applyMask length ${length}`).toBe(true);
          // The parser's form: the key as one 32-bit number.
          const parser = Uint8Array.from(source);
          unmaskRange(parser, key32, offset, start, start + length);
          expect(Buffer.from(parser).equals(Buffer.from(expected)), `unmaskRange length ${length}`).toBe(
            true,
          );
        }
      }
    }
  });

  it("masks a long payload piece by piece exactly as in one go (the parser's streaming case)", () => {
    const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff));
    const key = Uint8Array.from([0x37, 0xfa, 0x21, 0x3d]);
    const whole = Buffer.from(payload);
    applyMask(whole, key);
    const pieces = Buffer.from(payload);
    let offset = 0;
    for (const size of [1, 3, 130, 4097, 9, 65_000, 760]) {
      applyMask(pieces.subarray(offset, offset + size), key, offset);
      offset += size;
    }
    expect(offset).toBe(payload.length);
    expect(pieces.equals(whole)).toBe(true);
  });
});
