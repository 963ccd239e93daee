import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TAIL_FRAME_MAX } from "../../src/protocol/connection-output.js";
import { type Connection, encodeFrame, Opcode } from "../../src/protocol/index.js";
import { client, parseFrames, server } from "./helpers.js";

// Small data frames share the connection's tail buffer; larger ones, publications and the Close frame
// get entries of their own. Whatever the mix and however the transport takes it, the bytes must be
// every frame in order, nothing taken may change afterwards, and a connection with nothing queued
// must hold no tail.

type Op =
  | { kind: "data"; opcode: number; size: number; fin: boolean }
  | { kind: "encoded"; size: number }
  | { kind: "ping"; size: number }
  | { kind: "take"; limit: number }
  | { kind: "tailOnly" };

const sizes = fc.oneof(
  fc.integer({ min: 0, max: 40 }),
  fc.integer({ min: TAIL_FRAME_MAX - 20, max: TAIL_FRAME_MAX + 20 }),
  fc.integer({ min: 4000, max: 5000 }),
  fc.constant(70_000),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("data" as const),
      opcode: fc.constantFrom(Opcode.Text, Opcode.Binary),
      size: sizes,
      fin: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("encoded" as const), size: sizes }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("ping" as const), size: fc.integer({ min: 0, max: 125 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "tailOnly" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("take" as const),
      limit: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 1, max: 40_000 }),
        fc.constant(Number.POSITIVE_INFINITY),
      ),
    }),
  },
);

let counter = 0;
const payload = (size: number): Buffer => {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (counter + i * 7) & 0xff;
  counter++;
  return b;
};

function run(conn: Connection, ops: readonly Op[], side: "server" | "client"): void {
  // Worked out here, not with the code under test: header (2, 4 or 10 bytes, plus a client's key) and payload.
  const clientSide = side === "client";
  const wire = (length: number, masked = clientSide) =>
    length + (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
  const expected: Array<{ opcode: number; payload: Buffer; fin: boolean }> = [];
  const pings: Buffer[] = [];
  const taken: Array<{ piece: Buffer; copy: Buffer }> = [];
  let fragmenting = 0;
  let queued = 0;
  let frames = 0; // data frames queued
  const take = (limit?: number) => {
    for (const piece of conn.takeOutput(limit)) taken.push({ piece, copy: Buffer.from(piece) });
    // Each queued frame is charged until taken, small ones in the tail included.
    const out = parseFrames(taken.map((t) => t.copy));
    expect(out.pending).toBeUndefined(); // never a partial frame
    expect(conn.queuedFrames).toBe(frames - out.frames.filter((f) => f.opcode !== Opcode.Ping).length);
  };
  for (const o of ops) {
    if (o.kind === "take") {
      take(o.limit);
      continue;
    }
    if (o.kind === "tailOnly") {
      // The writer's fast path: the tail alone, or nothing when anything else waits.
      const before = conn.bufferedBytes;
      const piece = conn.takeTailOnly();
      if (piece === undefined) {
        expect(conn.bufferedBytes).toBe(before);
        continue;
      }
      expect(piece.length).toBe(before);
      taken.push({ piece, copy: Buffer.from(piece) });
      // Taken only when nothing else waited: no ping is left behind it.
      expect(conn.controlBytes).toBe(0);
      expect(conn.hasOutput).toBe(false);
      expect(conn.queuedFrames).toBe(0);
      continue;
    }
    if (o.kind === "ping") {
      const p = payload(o.size);
      conn.sendPing(p);
      pings.push(p);
      continue;
    }
    if (o.kind === "encoded") {
      if (side !== "server" || fragmenting !== 0) continue;
      const p = payload(o.size);
      expect(conn.sendEncoded(encodeFrame(Opcode.Binary, p))).toBe(true);
      expected.push({ opcode: Opcode.Binary, payload: p, fin: true });
      frames++;
      queued += wire(p.length, false); // a publication: never masked
      continue;
    }
    const p = payload(o.size);
    const opcode = fragmenting !== 0 ? Opcode.Continuation : o.opcode;
    conn.sendFrame(opcode, p, { fin: o.fin });
    fragmenting = o.fin ? 0 : fragmenting || o.opcode;
    expected.push({ opcode, payload: p, fin: o.fin });
    frames++;
    queued += wire(p.length);
  }
  if (fragmenting !== 0) {
    conn.sendFrame(Opcode.Continuation, Buffer.alloc(0), { fin: true });
    expected.push({ opcode: Opcode.Continuation, payload: Buffer.alloc(0), fin: true });
    frames++;
    queued += wire(0);
  }
  conn.sendClose(1000, "done");
  frames++;
  const takenBytes = () => taken.reduce((n, t) => n + t.piece.length, 0);
  const pingBytes = pings.reduce((n, p) => n + wire(p.length), 0);
  const closeBytes = wire(2 + "done".length);
  expect(conn.bufferedBytes + conn.controlBytes + takenBytes()).toBe(queued + pingBytes + closeBytes);
  take();
  expect(conn.hasOutput).toBe(false);
  expect(conn.bufferedBytes).toBe(0);
  expect(conn.queuedFrames).toBe(0);
  expect((conn as unknown as { tail: unknown }).tail).toBeUndefined();
  // Nothing handed out was written to afterwards.
  for (const t of taken) expect(t.piece.equals(t.copy)).toBe(true);
  const parsed = parseFrames(taken.map((t) => t.copy));
  expect(parsed.pending).toBeUndefined();
  expect(parsed.errors).toEqual([]);
  for (const f of parsed.frames) expect(f.masked).toBe(side === "client");
  const data = parsed.frames.filter((f) => f.opcode !== Opcode.Ping);
  const close = data.pop()!;
  expect(close.opcode).toBe(Opcode.Close);
  expect(data.map((f) => [f.opcode, f.fin, f.payload.toString("hex")])).toEqual(
    expected.map((f) => [f.opcode, f.fin, f.payload.toString("hex")]),
  );
  expect(parsed.frames.filter((f) => f.opcode === Opcode.Ping).map((f) => f.payload.toString("hex"))).toEqual(
    pings.map((p) => p.toString("hex")),
  );
}

describe("the output tail (small frames written into one buffer)", () => {
  it("keeps every frame in order, whole and unchanged once taken, on a server", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => run(server(), ops, "server")),
      { seed: 0x7a11, numRuns: 300 },
    );
  });

  it("does the same with masked client frames", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => run(client(), ops, "client")),
      { seed: 0x7a12, numRuns: 300 },
    );
  });

  it("sends a burst of small messages as one piece and keeps no tail once taken", () => {
    const s = server();
    for (let i = 0; i < 8; i++) s.sendBinary(Buffer.alloc(32, i));
    expect(s.queuedFrames).toBe(8); // one buffer holds them, each still charged
    expect(s.bufferedBytes).toBe(8 * 34);
    const out = s.takeOutput();
    expect(out.length).toBe(1);
    expect(parseFrames(out).frames.map((f) => f.payload[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect((s as unknown as { tail: unknown }).tail).toBeUndefined();
  });

  it("queues a full tail and starts another, so no buffer grows past 16 KiB", () => {
    const s = server();
    for (let i = 0; i < 200; i++) s.sendBinary(Buffer.alloc(200, i)); // 40,400 bytes
    expect(s.queuedFrames).toBe(200); // full tails queued as entries still count each frame
    const out = s.takeOutput();
    for (const piece of out) expect(piece.length).toBeLessThanOrEqual(16 * 1024);
    expect(out.length).toBeGreaterThanOrEqual(3);
    expect(parseFrames(out).frames.length).toBe(200);
  });
});
