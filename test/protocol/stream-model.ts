import fc from "fast-check";
import { MAX_PENDING_PONGS, Opcode, type ProtocolEvent } from "../../src/protocol/index.js";
import { client, frameBytes, hexEvents, server } from "./helpers.js";

/*
 * A model of a valid client stream, for property tests: what a client sends for a list of ops, and what
 * a server must report for it.
 */

export type Op =
  | { kind: "message"; opcode: 1 | 2; payload: Buffer; cuts: number[]; controls: Buffer[] }
  | { kind: "ping" | "pong"; payload: Buffer };

export const controlPayload = fc.uint8Array({ maxLength: 125 }).map((b) => Buffer.from(b));
export const textPayload = fc.string({ unit: "binary", maxLength: 200 }).map((s) => Buffer.from(s, "utf8"));
export const binaryPayload = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b));

export interface OpSizes {
  text: fc.Arbitrary<Buffer>;
  binary: fc.Arbitrary<Buffer>;
  /** Fragment boundaries are drawn from 0..maxCut (then reduced modulo the payload's length + 1). */
  maxCut: number;
}

/** Lists of ops: messages (fragmented at up to 4 points, pings between fragments), pings and pongs. */
export function opsOf(sizes: OpSizes, maxOps = 8): fc.Arbitrary<Op[]> {
  const messageOp = fc
    .record({
      opcode: fc.constantFrom<1 | 2>(1, 2),
      text: sizes.text,
      binary: sizes.binary,
      cuts: fc.array(fc.nat(sizes.maxCut), { maxLength: 4 }),
      controls: fc.array(controlPayload, { maxLength: 3 }),
    })
    .map(({ opcode, text, binary, cuts, controls }): Op => {
      const payload = opcode === 1 ? text : binary;
      const points = [...new Set(cuts.map((c) => c % (payload.length + 1)))].sort((a, b) => a - b);
      return { kind: "message", opcode, payload, cuts: points, controls };
    });
  return fc.array(
    fc.oneof(
      { weight: 3, arbitrary: messageOp },
      fc.record({ kind: fc.constantFrom<"ping" | "pong">("ping", "pong"), payload: controlPayload }),
    ),
    { maxLength: maxOps },
  );
}

/** Short payloads: up to 200 characters of text, 300 bytes of binary. */
export const ops = opsOf({ text: textPayload, binary: binaryPayload, maxCut: 300 });

/**
 * The bytes a client sends for the ops (fragments cut at `cuts`, with the message's control frames — pings —
 * between its fragments), the events a server must report, and the pongs it must answer with.
 */
export function encodeOps(list: readonly Op[], close: boolean) {
  const c = client();
  const events: ProtocolEvent[] = [];
  const pongs: Buffer[] = [];
  // Taken after every frame: a ping would otherwise overtake data frames still queued.
  const wire: Buffer[] = [];
  const take = () => wire.push(...c.takeOutput());
  const ping = (payload: Buffer) => {
    c.sendPing(payload);
    take();
    events.push({ type: "ping", data: payload });
    // Output is taken once, at the end: only the latest pings are still owed a pong (§5.5.3).
    pongs.push(frameBytes(Opcode.Pong, payload));
    if (pongs.length > MAX_PENDING_PONGS) pongs.shift();
  };
  for (const op of list) {
    if (op.kind === "message") {
      const bounds = [0, ...op.cuts, op.payload.length];
      for (let i = 1; i < bounds.length; i++) {
        const fin = i === bounds.length - 1;
        c.sendFrame(i === 1 ? op.opcode : 0, op.payload.subarray(bounds[i - 1], bounds[i]), { fin });
        take();
        const control = op.controls[i - 1];
        if (!fin && control) ping(control);
      }
      events.push({ type: op.opcode === 1 ? "text" : "binary", data: op.payload, compressed: false });
    } else if (op.kind === "ping") {
      ping(op.payload);
    } else {
      c.sendPong(op.payload);
      take();
      events.push({ type: "pong", data: op.payload });
    }
  }
  if (close) {
    c.sendClose(1000, "end");
    take();
    events.push({ type: "close", code: 1000, reason: "end" });
  }
  const tail = close ? [frameBytes(Opcode.Close, Buffer.from([0x03, 0xe8]))] : [];
  return { wire: Buffer.concat(wire), events, output: Buffer.concat([...pongs, ...tail]) };
}

/** Feeds copies of the chunks to a fresh server; returns events (as hex) and output. */
export function runServer(chunks: readonly Buffer[], mode: "messages" | "frames" = "messages") {
  const s = server({ mode });
  const events: ProtocolEvent[] = [];
  for (const chunk of chunks) {
    s.receiveData(Buffer.from(chunk));
    events.push(...s.takeEvents());
  }
  return { conn: s, events: hexEvents(events), output: Buffer.concat(s.takeOutput()).toString("hex") };
}

/** `bytes` cut at the given points (in any order, each at most once). */
export function chunksAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end));
}
