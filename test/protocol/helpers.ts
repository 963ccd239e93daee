import { expect } from "vitest";
import {
  Connection,
  type ConnectionOptions,
  type EncodeOptions,
  encodeFrame,
  type FrameHeader,
  FrameParser,
  ProtocolError,
  type ProtocolErrorCode,
  type ProtocolEvent,
} from "../../src/protocol/index.js";

/** Bytes from a hex string; spaces are ignored ("81 05 48"). */
export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ""), "hex");
}

/** A deterministic stand-in for crypto.randomFillSync: 1, 2, 3, ... (so masks are reproducible). */
export function counterFill(): (target: Uint8Array) => void {
  let n = 0;
  return (target) => {
    for (let i = 0; i < target.length; i++) target[i] = ++n & 0xff;
  };
}

export function server(options: Omit<ConnectionOptions, "side"> = {}): Connection {
  return new Connection({ side: "server", ...options });
}

export function client(options: Omit<ConnectionOptions, "side"> = {}): Connection {
  return new Connection({ side: "client", randomFill: counterFill(), ...options });
}

/** The frame's bytes as one buffer (encodeFrame may return header and payload separately). */
export function frameBytes(
  opcode: number,
  payload: Uint8Array | string,
  options: EncodeOptions = {},
): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  return Buffer.concat(encodeFrame(opcode, data, options));
}

/** The fixed key used for masked test frames (the RFC 6455 §5.7 example key). */
export const KEY = hex("37 fa 21 3d");

/** A frame as a client sends it: masked with KEY. */
export function masked(
  opcode: number,
  payload: Uint8Array | string = "",
  options: Omit<EncodeOptions, "mask"> = {},
): Buffer {
  return frameBytes(opcode, payload, { ...options, mask: KEY });
}

/** A close payload: 2-byte code plus UTF-8 reason. */
export function closePayload(code: number, reason: string | Uint8Array = ""): Buffer {
  const r = typeof reason === "string" ? Buffer.from(reason, "utf8") : Buffer.from(reason);
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

/** One parsed frame, with its header copied (the parser reuses its header object). */
export interface ParsedFrame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  length: number;
  maskKey: Buffer | undefined;
  payload: Buffer;
}

export interface ParseResult {
  frames: ParsedFrame[];
  /** Frames whose header arrived but whose payload is not complete yet. */
  pending: ParsedFrame | undefined;
  errors: ProtocolError[];
  /** Payload bytes buffered by the collecting sink for the pending frame. */
  pendingBytes: number;
}

/**
 * Parses bytes with a bare FrameParser (no connection rules), fed in the given chunks. Each chunk is
 * copied first, so the caller's buffers are left as they were (the parser unmasks in place).
 */
export function parseFrames(chunks: readonly Uint8Array[]): ParseResult {
  const result: ParseResult = { frames: [], pending: undefined, errors: [], pendingBytes: 0 };
  let pieces: Buffer[] = [];
  const sink = {
    onHeader(h: FrameHeader): boolean {
      result.pending = {
        fin: h.fin,
        rsv1: h.rsv1,
        rsv2: h.rsv2,
        rsv3: h.rsv3,
        opcode: h.opcode,
        masked: h.masked,
        length: h.length,
        maskKey: h.masked ? Buffer.from(h.maskKey) : undefined,
        payload: Buffer.alloc(0),
      };
      return true;
    },
    onPayload(piece: Buffer, offset: number): boolean {
      if (offset !== result.pendingBytes)
        throw new Error(`payload offset ${offset} != ${result.pendingBytes}`);
      pieces.push(Buffer.from(piece));
      result.pendingBytes += piece.length;
      return true;
    },
    onFrameEnd(): boolean {
      const frame = result.pending!;
      frame.payload = Buffer.concat(pieces);
      pieces = [];
      result.frames.push(frame);
      result.pending = undefined;
      result.pendingBytes = 0;
      return true;
    },
    onHeaderError(error: ProtocolError): void {
      result.errors.push(error);
    },
  };
  const parser = new FrameParser(sink);
  for (const chunk of chunks) parser.push(Buffer.from(chunk));
  return result;
}

/** Splits `bytes` into pieces of the given sizes (the remainder forms the last piece). */
export function split(bytes: Uint8Array, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  for (const size of sizes) {
    if (pos >= bytes.length) break;
    out.push(Buffer.from(bytes.subarray(pos, pos + size)));
    pos += size;
  }
  if (pos < bytes.length) out.push(Buffer.from(bytes.subarray(pos)));
  return out;
}

/** Feeds copies of the chunks (receiveData takes ownership and unmasks in place) and returns the events. */
export function feed(conn: Connection, ...chunks: Uint8Array[]): readonly ProtocolEvent[] {
  for (const chunk of chunks) conn.receiveData(Buffer.from(chunk));
  return conn.takeEvents();
}

/** Everything the connection queued for the transport, parsed into frames. */
export function outputFrames(conn: Connection): ParsedFrame[] {
  const parsed = parseFrames([Buffer.concat(conn.takeOutput())]);
  if (parsed.pending || parsed.errors.length > 0) throw new Error("output is not a whole number of frames");
  return parsed.frames;
}

/** The code and reason of a Close frame's payload (1005 for an empty one). */
export function closeOf(frame: ParsedFrame): { code: number; reason: string } {
  if (frame.payload.length < 2) return { code: 1005, reason: "" };
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString("utf8") };
}

/** A compact view of output frames: [opcode, payload hex], for exact comparisons. */
export function summary(frames: readonly ParsedFrame[]): Array<[number, string]> {
  return frames.map((f) => [f.opcode, f.payload.toString("hex")]);
}

/** The error `fn` throws (fails the test when it does not throw). */
export function thrown<T extends Error>(fn: () => unknown): T {
  try {
    fn();
  } catch (error) {
    return error as T;
  }
  throw new Error("expected a throw");
}

/**
 * Asserts that the connection failed with `code` / `closeCode`: it is closed, reported no events, and
 * queued exactly one frame, a Close frame carrying `closeCode`.
 */
export function expectFailed(conn: Connection, code: ProtocolErrorCode, closeCode: number): void {
  expect({ code: conn.failure?.code, closeCode: conn.failure?.closeCode }).toEqual({ code, closeCode });
  expect(conn.failure).toBeInstanceOf(ProtocolError);
  expect(conn.state).toBe("closed");
  const frames = outputFrames(conn);
  expect(frames.map((f) => f.opcode)).toEqual([0x8]);
  expect(closeOf(frames[0]!).code).toBe(closeCode);
}

/** Events with their buffers as hex strings: fast, exact comparisons with readable diffs. */
export function hexEvents(events: readonly ProtocolEvent[]): unknown[] {
  return events.map((e) => {
    if (e.type === "frame") return { ...e, frame: { ...e.frame, payload: e.frame.payload.toString("hex") } };
    if (e.type === "close") return e;
    return { ...e, data: e.data.toString("hex") };
  });
}
