import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeEnvelope,
  ENVELOPE_VERSION,
  type Envelope,
  encodeEnvelope,
  FLAG_BINARY,
  FLAG_COUNT_REPLY,
  MAX_TOPIC_BYTES,
} from "../../src/pubsub/envelope.js";

const origin = Buffer.from("0123456789abcdef");

function decoded(message: Uint8Array, max = 1 << 20): Envelope {
  const result = decodeEnvelope(message, max);
  if (typeof result === "string") throw new Error(`refused: ${result}`);
  return result;
}

describe("the Redis envelope", () => {
  it("round-trips origin, topic, flags and payload, in one buffer laid out as documented", () => {
    const payload = Buffer.from([0, 1, 2, 255]);
    const message = encodeEnvelope(FLAG_BINARY, origin, "rööm", payload);
    const topicBytes = Buffer.byteLength("rööm");
    expect(message.length).toBe(5 + origin.length + topicBytes + payload.length);
    expect(message[0]).toBe(ENVELOPE_VERSION);
    expect(message[1]).toBe(FLAG_BINARY);
    expect(message[2]).toBe(origin.length);
    expect(message.readUInt16BE(3 + origin.length)).toBe(topicBytes);
    const e = decoded(message);
    expect(e).toEqual({ flags: FLAG_BINARY, origin: origin.toString(), topic: "rööm", payload });
    // The payload is a view of the message, not a copy.
    expect(e.payload.buffer).toBe(message.buffer);
  });

  it("keeps an empty payload and the longest topic", () => {
    const topic = "t".repeat(MAX_TOPIC_BYTES);
    const e = decoded(encodeEnvelope(0, origin, topic, Buffer.alloc(0)));
    expect(e.topic).toBe(topic);
    expect(e.payload.length).toBe(0);
    expect(() => encodeEnvelope(0, origin, `${topic}t`, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeEnvelope(0, origin, "", Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeEnvelope(0, Buffer.alloc(256), "t", Buffer.alloc(0))).toThrow(RangeError);
  });

  it("refuses a payload over the limit, and accepts one at it", () => {
    const message = encodeEnvelope(FLAG_BINARY, origin, "t", Buffer.alloc(100));
    expect(decoded(message, 100).payload.length).toBe(100);
    expect(decodeEnvelope(message, 99)).toMatch(/over 99/);
  });

  it("refuses malformed messages with a reason", () => {
    const good = encodeEnvelope(0, origin, "topic", Buffer.from("hi"));
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ["empty", Buffer.alloc(0), /shorter/],
      ["short", good.subarray(0, 6), /shorter/],
      ["version", Buffer.concat([Buffer.from([2]), good.subarray(1)]), /version/],
      ["flags", Buffer.concat([Buffer.from([1, 0x80]), good.subarray(2)]), /flags/],
      ["no origin", Buffer.from([1, 0, 0, 0, 1, 0x74, 0x78]), /empty origin/],
      ["origin past end", Buffer.from([1, 0, 200, 1, 2, 3, 4, 5]), /origin runs past/],
      ["no topic", Buffer.from([1, 0, 1, 0x61, 0, 0, 0x78]), /empty topic/],
      ["topic past end", good.subarray(0, 3 + origin.length + 2 + 3), /topic runs past/],
      ["bad utf-8 topic", Buffer.from([1, 0, 1, 0x61, 0, 1, 0xff]), /UTF-8/],
      ["bad utf-8 text", Buffer.from([1, 0, 1, 0x61, 0, 1, 0x74, 0xc3]), /text payload/],
    ];
    for (const [name, message, why] of cases) expect(decodeEnvelope(message, 1 << 20), name).toMatch(why);
    // Invalid UTF-8 is fine in a binary payload (and in a control message's).
    expect(decoded(Buffer.from([1, FLAG_BINARY, 1, 0x61, 0, 1, 0x74, 0xc3])).payload).toEqual(
      Buffer.from([0xc3]),
    );
    expect(decoded(Buffer.from([1, FLAG_COUNT_REPLY, 1, 0x61, 0, 1, 0x74, 0xc3])).flags).toBe(
      FLAG_COUNT_REPLY,
    );
  });

  it("decodes a view at an offset of a larger buffer (as clients hand them over)", () => {
    const message = encodeEnvelope(FLAG_BINARY, origin, "t", Buffer.from([9, 8, 7]));
    const big = Buffer.alloc(message.length + 20, 0xee);
    message.copy(big, 7);
    const e = decoded(big.subarray(7, 7 + message.length));
    expect([...e.payload]).toEqual([9, 8, 7]);
    expect(e.topic).toBe("t");
  });

  it("fuzz: any encoded message round-trips; any byte string decodes or is refused, never throws", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40, unit: "grapheme" }),
        fc.uint8Array({ maxLength: 200 }),
        fc.boolean(),
        (topic, bytes, binary) => {
          const payload = binary
            ? Buffer.from(bytes)
            : Buffer.from(Buffer.from(bytes).toString("latin1"), "utf8");
          const e = decoded(encodeEnvelope(binary ? FLAG_BINARY : 0, origin, topic, payload));
          expect(e.topic).toBe(topic);
          expect(e.payload.equals(payload)).toBe(true);
          expect(e.flags).toBe(binary ? FLAG_BINARY : 0);
        },
      ),
      { seed: 6455, numRuns: 500 },
    );
    const valid = encodeEnvelope(FLAG_BINARY, origin, "room", Buffer.from("payload"));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          // Mutations of a valid message: a byte changed, or cut short, reach the deep checks.
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })).map(([i, v]) => {
            const m = Buffer.from(valid);
            m[i] = v;
            return m;
          }),
          fc.nat(valid.length).map((n) => valid.subarray(0, n)),
        ),
        fc.integer({ min: 0, max: 100 }),
        (message, max) => {
          const result = decodeEnvelope(message, max);
          if (typeof result === "string") return;
          // Whatever is accepted stays within the message and the limit.
          expect(result.payload.length).toBeLessThanOrEqual(max);
          expect(result.payload.length).toBeLessThan(message.length);
          expect(result.topic.length).toBeGreaterThan(0);
        },
      ),
      { seed: 7692, numRuns: 3000 },
    );
  });
});
