import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyMask,
  type Connection,
  headerSize,
  Opcode,
  type ProtocolEvent,
} from "../../src/protocol/index.js";
import { client, closeOf, frameBytes, hexEvents, parseFrames, server, split } from "./helpers.js";
import { chunksAt, encodeOps, ops, runServer, textPayload } from "./stream-model.js";

const cutsFor = (length: number) => fc.uniqueArray(fc.nat(length), { maxLength: 12 });

describe("RFC 6455 §5 properties: any chunking of a valid stream", () => {
  const streams = fc.tuple(ops, fc.boolean()).map(([list, close]) => encodeOps(list, close));

  it("yields exactly the modelled events and pongs, whole or in random chunks", () => {
    fc.assert(
      fc.property(
        streams.chain((s) => fc.tuple(fc.constant(s), cutsFor(s.wire.length))),
        ([stream, cuts]) => {
          const whole = runServer([stream.wire]);
          expect(whole.conn.failure).toBeUndefined();
          expect(whole.events).toEqual(hexEvents(stream.events));
          expect(whole.output).toBe(stream.output.toString("hex"));
          const chunked = runServer(chunksAt(stream.wire, cuts));
          expect(chunked.events).toEqual(whole.events);
          expect(chunked.output).toBe(whole.output);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("gives the same events in 1-byte chunks, in messages and frames mode", () => {
    fc.assert(
      fc.property(streams, fc.constantFrom<"messages" | "frames">("messages", "frames"), (stream, mode) => {
        const whole = runServer([stream.wire], mode);
        const bytewise = runServer(split(stream.wire, Array(stream.wire.length).fill(1)), mode);
        expect(bytewise.events).toEqual(whole.events);
        expect(bytewise.output).toBe(whole.output);
        expect(bytewise.conn.state).toBe(whole.conn.state);
      }),
      { numRuns: 100 },
    );
  });
});

// ---- hostile input ----------------------------------------------------------------------------------

/** Frame-shaped noise: random first byte, mask bit usually set, short random payloads. */
const noisyFrame = fc
  .record({
    b0: fc.integer({ min: 0, max: 255 }),
    mask: fc.integer({ min: 0, max: 4 }).map((n) => n > 0),
    key: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    payload: fc.oneof(fc.uint8Array({ maxLength: 130 }), textPayload),
  })
  .map(({ b0, mask, key, payload }) =>
    frameBytes(b0 & 0x0f, payload, {
      fin: (b0 & 0x80) !== 0,
      rsv1: (b0 & 0x40) !== 0,
      rsv2: (b0 & 0x20) !== 0,
      rsv3: (b0 & 0x10) !== 0,
      mask: mask ? key : undefined,
    }),
  );

const hostile = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
  fc.array(noisyFrame, { maxLength: 6 }).map((frames) => Buffer.concat(frames)),
  fc
    .tuple(ops, fc.uint8Array({ maxLength: 200 }))
    .map(([list, noise]) => Buffer.concat([encodeOps(list, false).wire, noise])),
);

function checkOutcome(conn: Connection, events: readonly ProtocolEvent[]): void {
  const out = parseFrames([Buffer.concat(conn.takeOutput())]);
  expect(out.errors).toEqual([]);
  expect(out.pending).toBeUndefined();
  const closes = out.frames.filter((f) => f.opcode === Opcode.Close);
  for (const e of events) {
    if (e.type === "text") expect(isUtf8(e.data)).toBe(true);
  }
  if (conn.failure) {
    expect([1002, 1007, 1009]).toContain(conn.failure.closeCode);
    expect(conn.state).toBe("closed");
    expect(closes).toHaveLength(1);
    expect(closeOf(closes[0]!).code).toBe(conn.failure.closeCode);
    expect(out.frames.at(-1)).toBe(closes[0]);
    expect(events.some((e) => e.type === "close")).toBe(false);
  } else {
    // Only a valid Close from the peer makes us send one.
    expect(closes).toHaveLength(conn.closeReceived ? 1 : 0);
    expect(events.filter((e) => e.type === "close")).toHaveLength(conn.closeReceived ? 1 : 0);
  }
}

describe("RFC 6455 §7.1.7 properties: hostile input", () => {
  it("never throws, and either fails once with 1002/1007/1009 and one Close, or reports only events", () => {
    fc.assert(
      fc.property(hostile, fc.integer({ min: 1, max: 64 }), (bytes, chunk) => {
        for (const conn of [server({ maxMessageSize: 4096 }), server({ mode: "frames" })]) {
          const events: ProtocolEvent[] = [];
          for (const piece of split(bytes, Array(Math.ceil(bytes.length / chunk)).fill(chunk))) {
            conn.receiveData(piece);
            events.push(...conn.takeEvents());
          }
          checkOutcome(conn, events);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it("a client given random bytes obeys the same rules", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const c = client();
        c.receiveData(Buffer.from(bytes));
        const events = c.takeEvents();
        const out = Buffer.concat(c.takeOutput());
        if (c.failure) {
          expect([1002, 1007, 1009]).toContain(c.failure.closeCode);
          const closes = parseFrames([out]).frames.filter((f) => f.opcode === Opcode.Close);
          expect(closes.map((f) => [f.masked, closeOf(f).code])).toEqual([[true, c.failure.closeCode]]);
        }
        for (const e of events) if (e.type === "text") expect(isUtf8(e.data)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

// ---- serializer and masking ----------------------------------------------------------------------------

describe("RFC 6455 §5.2 properties: encode then parse", () => {
  const length = fc.oneof(fc.nat(300), fc.integer({ min: 65530, max: 65540 }), fc.constant(70_000));
  const frames = fc.record({
    opcode: fc.integer({ min: 0, max: 15 }),
    fin: fc.boolean(),
    rsv1: fc.boolean(),
    rsv2: fc.boolean(),
    rsv3: fc.boolean(),
    mask: fc.option(fc.uint8Array({ minLength: 4, maxLength: 4 }), { nil: undefined }),
    payload: fc
      .tuple(length, fc.integer())
      .map(([n, seed]) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff))),
  });

  it("returns every field and the payload, in any chunking, with the minimal length encoding", () => {
    fc.assert(
      fc.property(frames, fc.integer({ min: 1, max: 5000 }), (f, chunk) => {
        const { payload, ...options } = f;
        const wire = frameBytes(f.opcode, payload, options);
        expect(wire.length).toBe(headerSize(payload.length, f.mask !== undefined) + payload.length);
        const len7 = wire[1]! & 0x7f;
        expect(len7).toBe(payload.length < 126 ? payload.length : payload.length < 65536 ? 126 : 127);
        const parsed = parseFrames(split(wire, Array(Math.ceil(wire.length / chunk)).fill(chunk)));
        expect(parsed.frames).toHaveLength(1);
        const got = parsed.frames[0]!;
        expect({ ...got, payload: undefined }).toEqual({
          opcode: f.opcode,
          fin: f.fin,
          rsv1: f.rsv1,
          rsv2: f.rsv2,
          rsv3: f.rsv3,
          masked: f.mask !== undefined,
          maskKey: f.mask ? Buffer.from(f.mask) : undefined,
          length: payload.length,
          payload: undefined,
        });
        expect(got.payload.equals(payload)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("RFC 6455 §5.3 properties: masking", () => {
  /** Data placed at a chosen byte alignment inside a larger ArrayBuffer. */
  const aligned = fc
    .tuple(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 7 }))
    .map(([bytes, align]) => {
      const view = new Uint8Array(new ArrayBuffer(bytes.length + 8), align, bytes.length);
      view.set(bytes);
      return view;
    });
  const key = fc.uint8Array({ minLength: 4, maxLength: 4 });

  it("XORs exactly data[start..end) with key[(offset + i - start) & 3], at any alignment", () => {
    fc.assert(
      fc.property(aligned, key, fc.nat(1000), fc.nat(), fc.nat(), (data, k, offset, a, b) => {
        const start = data.length === 0 ? 0 : a % (data.length + 1);
        const end = start + (b % (data.length - start + 1));
        const expected = Uint8Array.from(data, (x, i) =>
          i >= start && i < end ? x ^ k[(offset + i - start) & 3]! : x,
        );
        applyMask(data, k, offset, start, end);
        expect(Buffer.from(data).equals(Buffer.from(expected))).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("masking twice is the identity", () => {
    fc.assert(
      fc.property(aligned, key, fc.nat(1000), (data, k, offset) => {
        const before = Buffer.from(data);
        applyMask(data, k, offset);
        if (data.length >= 4 && k.some((x) => x !== 0)) expect(Buffer.from(data).equals(before)).toBe(false);
        applyMask(data, k, offset);
        expect(Buffer.from(data).equals(before)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("masking piece by piece with payload offsets equals masking the whole", () => {
    fc.assert(
      fc.property(aligned, key, fc.uniqueArray(fc.nat(300), { maxLength: 8 }), (data, k, cuts) => {
        const whole = Buffer.from(data);
        applyMask(whole, k);
        const points = [0, ...cuts.filter((c) => c < data.length).sort((x, y) => x - y), data.length];
        for (let i = 1; i < points.length; i++) {
          const piece = data.subarray(points[i - 1], points[i]);
          applyMask(piece, k, points[i - 1]);
        }
        expect(Buffer.from(data).equals(whole)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
