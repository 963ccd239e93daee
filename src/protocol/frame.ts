import { Buffer } from "node:buffer";
import { applyMask } from "./mask.js";

/** One WebSocket frame (RFC 6455 §5.2), payload unmasked. */
export interface Frame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  payload: Buffer;
}

/** Bytes in the largest header: 2 + 8 (64-bit length) + 4 (masking key). */
export const MAX_HEADER_SIZE = 14;

/** Payloads up to this size are copied behind the header so the frame goes out as one buffer. */
const COALESCE_LIMIT = 4096;

export interface EncodeOptions {
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** 4-byte masking key; client frames must carry one (§5.3). The payload is copied, never mutated. */
  mask?: Uint8Array | undefined;
}

/** Size of the header for a payload of `length` bytes. */
export function headerSize(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}

/** Writes a frame header into `target` at `offset`; returns the offset just past it. */
export function writeHeader(
  target: Buffer,
  offset: number,
  opcode: number,
  length: number,
  options: EncodeOptions,
): number {
  let b0 = opcode & 0x0f;
  if (options.fin !== false) b0 |= 0x80;
  if (options.rsv1) b0 |= 0x40;
  if (options.rsv2) b0 |= 0x20;
  if (options.rsv3) b0 |= 0x10;
  return putHeader(target, offset, b0, length, options.mask);
}

/** The header with its first byte (FIN, RSV and opcode bits) given whole. */
function putHeader(
  target: Buffer,
  offset: number,
  b0: number,
  length: number,
  mask: Uint8Array | undefined,
): number {
  target[offset] = b0;
  const maskBit = mask ? 0x80 : 0;
  if (length < 126) {
    target[offset + 1] = maskBit | length;
    offset += 2;
  } else if (length < 0x10000) {
    target[offset + 1] = maskBit | 126;
    target.writeUInt16BE(length, offset + 2);
    offset += 4;
  } else {
    target[offset + 1] = maskBit | 127;
    // The minimal encoding rule (§5.2) means the 64-bit form only for lengths >= 65536.
    target.writeUInt32BE(Math.floor(length / 0x100000000), offset + 2);
    target.writeUInt32BE(length >>> 0, offset + 6);
    offset += 10;
  }
  if (mask) {
    target[offset] = mask[0]!;
    target[offset + 1] = mask[1]!;
    target[offset + 2] = mask[2]!;
    target[offset + 3] = mask[3]!;
    offset += 4;
  }
  return offset;
}

/**
 * Writes one whole frame (header, then the payload, masked with `mask` if given) into `target` at
 * `offset`, which must have room for it; returns the offset just past it. Positional flags, so that
 * a frame per message costs no options object.
 */
export function writeFrameInto(
  target: Buffer,
  offset: number,
  opcode: number,
  payload: Uint8Array,
  fin: boolean,
  rsv1: boolean,
  mask: Uint8Array | undefined,
): number {
  const start = putHeader(
    target,
    offset,
    (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f),
    payload.length,
    mask,
  );
  target.set(payload, start);
  const end = start + payload.length;
  if (mask) applyMask(target, mask, 0, start, end);
  return end;
}

/**
 * Serializes one frame. Returns one buffer for small or masked frames, or `[header, payload]` for large
 * unmasked ones so that big payloads are never copied.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, options: EncodeOptions = {}): Buffer[] {
  const length = payload.length;
  const hsize = headerSize(length, options.mask !== undefined);
  if (options.mask) {
    const out = Buffer.allocUnsafe(hsize + length);
    const start = writeHeader(out, 0, opcode, length, options);
    out.set(payload, start);
    applyMask(out, options.mask, 0, start);
    return [out];
  }
  if (length <= COALESCE_LIMIT) {
    const out = Buffer.allocUnsafe(hsize + length);
    out.set(payload, writeHeader(out, 0, opcode, length, options));
    return [out];
  }
  const header = Buffer.allocUnsafe(hsize);
  writeHeader(header, 0, opcode, length, options);
  return [header, toBuffer(payload)];
}

/** A Buffer view of any Uint8Array, without copying. */
export function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
