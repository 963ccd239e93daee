import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Connection, GATHER_COPY_LIMIT, GatherBuffer, Opcode } from "../../src/protocol/index.js";
import { expectFailed, frameBytes, hex, KEY, masked, server } from "./helpers.js";
import { binaryPayload, chunksAt, encodeOps, opsOf, runServer, textPayload } from "./stream-model.js";

/**
 * A full collection, for measuring what stays reachable. vitest runs without --expose-gc; V8 still
 * makes `gc` for contexts created after the flag is set.
 */
function fullGc(): () => void {
  const own = (globalThis as { gc?: () => void }).gc;
  if (own) return own;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

/**
 * JS heap plus ArrayBuffer backing stores: where payload pieces and their Buffer objects live. V8 frees
 * dead backing stores on a background thread after a collection, hence the pauses.
 */
async function heldBytes(gc: () => void): Promise<number> {
  gc();
  await settle();
  gc();
  await settle();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function patterned(size: number, seed = 7): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

const MiB = 1024 * 1024;

describe("payload trickled in small reads", () => {
  // Each case is one stream sent `read` bytes at a time, each read in a Buffer of its own (as socket
  // reads are).
  interface Case {
    name: string;
    mode: "messages" | "frames";
    wire: () => Buffer;
    payload: Buffer;
    read?: number;
  }
  const cases: Case[] = [];
  const payload = patterned(MiB);
  cases.push({
    name: "a 1 MiB frame, message mode",
    mode: "messages",
    payload,
    wire: () => masked(Opcode.Binary, payload),
  });
  cases.push({
    name: "a 1 MiB frame, frame mode",
    mode: "frames",
    payload,
    wire: () => masked(Opcode.Binary, payload),
  });
  cases.push({
    name: "a 1 MiB message in 16 fragments with pings between them",
    mode: "messages",
    payload,
    wire: () => {
      const step = MiB / 16;
      const frames: Buffer[] = [];
      for (let i = 0; i < 16; i++) {
        const options = { fin: i === 15, mask: KEY };
        frames.push(
          frameBytes(i === 0 ? Opcode.Binary : 0, payload.subarray(i * step, (i + 1) * step), options),
        );
        if (i < 15) frames.push(masked(Opcode.Ping, "tick"));
      }
      return Buffer.concat(frames);
    },
  });
  const small = payload.subarray(0, 128 * 1024);
  cases.push({
    name: "a 128 KiB message in 1-byte frames, in 64 KiB reads",
    mode: "messages",
    payload: small,
    read: 64 * 1024,
    wire: () =>
      Buffer.concat(
        Array.from({ length: small.length }, (_, i) =>
          frameBytes(i === 0 ? Opcode.Binary : 0, small.subarray(i, i + 1), {
            fin: i === small.length - 1,
            mask: KEY,
          }),
        ),
      ),
  });

  for (const c of cases) {
    it(`holds O(bytes received) before the end: ${c.name}`, async () => {
      const gc = fullGc();
      const wire = c.wire();
      const conn = server({ mode: c.mode, maxMessageSize: 2 * MiB, maxFragments: 1 << 20 });
      const before = await heldBytes(gc);
      const step = c.read ?? 1;
      for (let i = 0; i < wire.length - 1; i += step) {
        const read = Buffer.alloc(Math.min(step, wire.length - 1 - i));
        wire.copy(read, 0, i, i + read.length);
        conn.receiveData(read);
      }
      const events = conn.takeEvents();
      const held = (await heldBytes(gc)) - before;
      const received = wire.length - 1;
      // The bound: 4 bytes per byte received plus 64 KiB. Holding each piece as a view took ~195 (one
      // byte per read) and ~16 (1-byte frames).
      expect(held, `${(held / received).toFixed(2)} B held per byte received`).toBeLessThan(
        4 * received + 64 * 1024,
      );

      const last = Buffer.alloc(1);
      last[0] = wire[wire.length - 1]!;
      conn.receiveData(last);
      const all = [...events, ...conn.takeEvents()];
      expect(conn.failure).toBeUndefined();
      const data = all.flatMap((e) =>
        e.type === "binary" ? [e.data] : e.type === "frame" ? [e.frame.payload] : [],
      );
      expect(Buffer.concat(data).equals(c.payload)).toBe(true);
    });
  }
});

// ---- correctness in any chunking ----------------------------------------------------------------------

// Payloads well past GATHER_COPY_LIMIT as well as short ones, so that pieces kept as views, pieces
// copied and segments filled in turn all occur within one message.
const longBinary = fc
  .tuple(fc.integer({ min: GATHER_COPY_LIMIT - 100, max: 40_000 }), fc.integer({ min: 0, max: 255 }))
  .map(([n, seed]) => patterned(n, seed));
const longText = fc
  .tuple(fc.string({ unit: "binary", minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 30_000 }))
  .map(([s, n]) => Buffer.from(s.repeat(Math.ceil(n / Buffer.byteLength(s))), "utf8"));
const longOps = opsOf(
  { text: fc.oneof(textPayload, longText), binary: fc.oneof(binaryPayload, longBinary), maxCut: 40_000 },
  6,
);

/** Cut points anywhere, runs of 1- to 3-byte pieces (a trickling peer), and sometimes a fixed read size. */
function cutsIn(length: number): fc.Arbitrary<number[]> {
  const run = fc.record({
    at: fc.nat(length),
    count: fc.integer({ min: 1, max: 600 }),
    step: fc.integer({ min: 1, max: 3 }),
  });
  return fc
    .tuple(
      fc.uniqueArray(fc.nat(length), { maxLength: 30 }),
      fc.array(run, { maxLength: 5 }),
      fc.option(fc.integer({ min: 5, max: 6000 }), { nil: undefined }),
    )
    .map(([cuts, runs, every]) => {
      const points = new Set(cuts);
      for (const r of runs) for (let i = 0; i < r.count; i++) points.add(Math.min(length, r.at + i * r.step));
      if (every) for (let p = every; p < length; p += every) points.add(p);
      return [...points];
    });
}

describe("payload in any chunking (gathered pieces)", () => {
  it("gives exactly the events of the same stream in one chunk, in messages and frames mode", () => {
    const streams = fc.tuple(longOps, fc.boolean()).map(([list, close]) => encodeOps(list, close));
    fc.assert(
      fc.property(
        streams.chain((s) => fc.tuple(fc.constant(s), cutsIn(s.wire.length))),
        ([stream, cuts]) => {
          const chunks = chunksAt(stream.wire, cuts);
          for (const mode of ["messages", "frames"] as const) {
            const whole = runServer([stream.wire], mode);
            expect(whole.conn.failure).toBeUndefined();
            const chunked = runServer(chunks, mode);
            expect(chunked.conn.failure).toBeUndefined();
            expect(chunked.events).toEqual(whole.events);
            expect(chunked.output).toBe(whole.output);
            if (mode === "messages") expect(whole.output).toBe(stream.output.toString("hex"));
          }
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });
});

// ---- the one-chunk path: no copy ------------------------------------------------------------------------

/** `bytes` in a chunk with an ArrayBuffer of its own, as a socket read has. */
function ownChunk(bytes: Buffer): Buffer {
  const chunk = Buffer.from(new ArrayBuffer(bytes.length));
  bytes.copy(chunk);
  return chunk;
}

describe("a payload that sits in one chunk is a view of it", () => {
  it("messages, frames and pings, several to a chunk, share the chunk's memory", () => {
    const wire = Buffer.concat([
      masked(Opcode.Binary, patterned(20_000)),
      masked(Opcode.Ping, "are you there"),
      masked(Opcode.Text, "héllo"),
    ]);
    for (const mode of ["messages", "frames"] as const) {
      const chunk = ownChunk(wire);
      const conn = server({ mode });
      conn.receiveData(chunk);
      const events = conn.takeEvents();
      expect(events.map((e) => e.type)).toEqual(
        mode === "messages" ? ["binary", "ping", "text"] : ["frame", "ping", "frame"],
      );
      for (const e of events) {
        const data = e.type === "frame" ? e.frame.payload : e.type === "close" ? undefined : e.data;
        expect(data?.buffer).toBe(chunk.buffer);
      }
      const first = events[0]!;
      const firstData =
        first.type === "frame" ? first.frame.payload : first.type === "binary" ? first.data : undefined;
      expect(firstData?.equals(patterned(20_000))).toBe(true);
    }
  });
});

// ---- limits and UTF-8 checks still apply piece by piece --------------------------------------------------

/** Feeds `bytes` one byte per read; returns how many were taken before the connection failed. */
function trickle(conn: Connection, bytes: Buffer): number {
  for (let i = 0; i < bytes.length; i++) {
    conn.receiveData(Buffer.from([bytes[i]!]));
    if (conn.failure) return i + 1;
  }
  return bytes.length;
}

describe("limits and validation with trickled input", () => {
  it("maxMessageSize: 1009 when the header's last byte arrives, before any payload is held", () => {
    const conn = server({ maxMessageSize: 1000 });
    const wire = masked(Opcode.Binary, patterned(1001));
    expect(trickle(conn, wire)).toBe(8); // 2 + 2 length + 4 key
    expectFailed(conn, "MESSAGE_TOO_BIG", 1009);
  });

  it("maxMessageSize: 1009 at the header of the fragment that overflows, after a trickled first one", () => {
    const conn = server({ maxMessageSize: 1000 });
    const first = frameBytes(Opcode.Binary, patterned(600), { fin: false, mask: KEY });
    const second = masked(0, patterned(401));
    expect(trickle(conn, Buffer.concat([first, second]))).toBe(first.length + 8);
    expectFailed(conn, "MESSAGE_TOO_BIG", 1009);
  });

  it("invalid UTF-8 fails at the offending byte, long before the message's end", () => {
    const conn = server();
    const text = Buffer.concat([Buffer.from("κόσμε ".repeat(200), "utf8"), hex("ed a0 80"), patterned(5000)]);
    const wire = masked(Opcode.Text, text);
    const header = wire.length - text.length;
    // ED A0 starts a surrogate: the second byte already rules it out.
    expect(trickle(conn, wire)).toBe(header + Buffer.byteLength("κόσμε ".repeat(200)) + 2);
    expectFailed(conn, "INVALID_UTF8", 1007);
  });
});

// ---- the gather buffer's own bounds ---------------------------------------------------------------------

describe("GatherBuffer", () => {
  const byte = (i: number) => Buffer.from([i & 0xff]);
  const expectBytes = (out: Buffer, n: number) =>
    expect(out.equals(Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff)))).toBe(true);

  it("a huge announced length is not allocated up front: segments grow with what arrives", () => {
    const g = new GatherBuffer();
    for (let i = 0; i < 100_000; i++) {
      g.add(byte(i), 2 ** 50, false);
      expect(g.gatherCapacity).toBeLessThanOrEqual(2 * g.size + 4096);
    }
    expectBytes(g.take(), 100_000);
    expect(g.size).toBe(0);
    expect(g.gatherCapacity).toBe(0);
  });

  it("never allocates beyond what the headers announced", () => {
    const g = new GatherBuffer();
    for (let i = 0; i < 10; i++) {
      g.add(byte(i), 10, true);
      expect(g.gatherCapacity).toBeLessThanOrEqual(10);
    }
    expectBytes(g.take(), 10);
  });

  it("a message of many 1-byte frames (each header announcing one more byte) stays within the bound", () => {
    const g = new GatherBuffer();
    for (let i = 0; i < 10_000; i++) {
      g.add(byte(i), i + 1, i === 9_999);
      expect(g.gatherCapacity).toBeLessThanOrEqual(Math.min(i + 1, 2 * g.size + 4096));
    }
    expectBytes(g.take(), 10_000);
  });

  it("one piece is returned as it is; two are joined", () => {
    const g = new GatherBuffer();
    const piece = Buffer.from("one piece");
    g.add(piece, piece.length, true);
    expect(g.take()).toBe(piece);
    g.add(Buffer.from("two "), 10, true);
    g.add(Buffer.from("pieces"), 10, true);
    expect(g.take().toString()).toBe("two pieces");
    expect(g.take().length).toBe(0);
  });
});
