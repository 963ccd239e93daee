import { Buffer } from "node:buffer";
import { CloseCode } from "./close-codes.js";
import { EMPTY } from "./connection-output.js";
import { ProtocolError, protocolError } from "./errors.js";
import { MAX_HEADER_SIZE } from "./frame.js";
import { unmaskRange } from "./mask.js";

/** A decoded frame header. One object is reused for every frame: copy what you keep. */
export interface FrameHeader {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  /** Payload length; always a safe integer (larger values fail before reaching the sink). */
  length: number;
  maskKey: Uint8Array;
}

/**
 * Receives what the parser finds. Each method returns false to stop parsing (the connection failed
 * or stopped reading); the parser then ignores all further input.
 */
export interface FrameSink {
  /** A complete header; validate it here, before any of the payload is buffered. */
  onHeader(header: FrameHeader): boolean;
  /** Part of the payload, already unmasked; `offset` is its position within the payload. */
  onPayload(piece: Buffer, offset: number): boolean;
  /** The frame's payload is complete. */
  onFrameEnd(): boolean;
  /**
   * Optional: the whole payload of a frame that arrived within one chunk, unmasked, in place of
   * `onPayload` and `onFrameEnd` (one call per frame instead of two). Looked up once, when the parser
   * is made: a method added to the sink later is not called.
   */
  onWholeFrame?(payload: Buffer): boolean;
  /** The header itself is invalid (64-bit length with the top bit set, or beyond 2^53). */
  onHeaderError(error: ProtocolError): void;
}

/** One header object for every parser: parsing is synchronous, and the sink copies what it keeps. */
const HEADER: FrameHeader = {
  fin: false,
  rsv1: false,
  rsv2: false,
  rsv3: false,
  opcode: 0,
  masked: false,
  length: 0,
  maskKey: new Uint8Array(4),
};

/**
 * Incremental frame parser (RFC 6455 §5.2). Accepts input in any chunking and streams each payload
 * to the sink as it arrives: payload bytes are never buffered here, so size limits are enforced from the
 * header alone, and a payload that sits inside one chunk is passed on as a view of it (no copy).
 *
 * `push` takes ownership of the chunk: masked payload bytes are unmasked in place.
 */
export class FrameParser {
  // The current frame's payload length and masking key (as one 32-bit number, byte 0 first).
  private length = 0;
  private masked = false;
  private mask = 0;
  /** Header bytes that arrived split across chunks; made the first time that happens (most never need it). */
  private partial: Buffer | undefined;
  private partialLength = 0;
  private inPayload = false;
  private payloadOffset = 0;
  private stopped = false;
  private readonly whole: boolean;

  constructor(private readonly sink: FrameSink) {
    this.whole = typeof sink.onWholeFrame === "function";
  }

  /** True once the sink has stopped the parser; later input is ignored. */
  get isStopped(): boolean {
    return this.stopped;
  }

  stop(): void {
    this.stopped = true;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    const end = chunk.length;
    while (!this.stopped) {
      if (!this.inPayload) {
        if (pos >= end) return;
        pos = this.readHeader(chunk, pos);
        if (pos < 0 || this.stopped) return;
        const length = this.length;
        if (this.inPayload && this.whole && end - pos >= length) {
          // The whole payload is here (most frames): one view, one call.
          if (this.masked && length > 0) unmaskRange(chunk, this.mask, 0, pos, pos + length);
          this.inPayload = false;
          const payload = length === 0 ? EMPTY : chunk.subarray(pos, pos + length);
          pos += length;
          if (!this.sink.onWholeFrame!(payload)) this.stop();
        }
        continue;
      }
      const wanted = this.length - this.payloadOffset;
      if (wanted > 0) {
        if (pos >= end) return;
        const take = Math.min(wanted, end - pos);
        if (this.masked) unmaskRange(chunk, this.mask, this.payloadOffset, pos, pos + take);
        const piece = chunk.subarray(pos, pos + take);
        const offset = this.payloadOffset;
        this.payloadOffset += take;
        pos += take;
        if (!this.sink.onPayload(piece, offset)) {
          this.stop();
          return;
        }
        if (this.payloadOffset < this.length) return;
      }
      this.inPayload = false;
      if (!this.sink.onFrameEnd()) this.stop();
    }
  }

  /** Returns the position after the header, or -1 when more bytes are needed (they are kept). */
  private readHeader(chunk: Buffer, pos: number): number {
    if (this.partialLength === 0) {
      const used = this.decode(chunk, pos, chunk.length);
      if (used > 0) return pos + used;
      if (used < 0) return -1;
      // Not enough bytes yet: keep them (at most MAX_HEADER_SIZE - 1 of them).
      this.partial ??= Buffer.allocUnsafe(MAX_HEADER_SIZE);
      chunk.copy(this.partial, 0, pos);
      this.partialLength = chunk.length - pos;
      return -1;
    }
    // Top up the partial header and retry; consume from the chunk only what the header used.
    const partial = this.partial!;
    const before = this.partialLength;
    const add = Math.min(MAX_HEADER_SIZE - before, chunk.length - pos);
    chunk.copy(partial, before, pos, pos + add);
    this.partialLength = before + add;
    const used = this.decode(partial, 0, this.partialLength);
    if (used < 0) return -1;
    if (used === 0) return chunk.length; // all of it was header bytes, still not complete
    this.partialLength = 0;
    return pos + (used - before);
  }

  /** Decodes a header from buf[pos..end). Returns bytes used, 0 if incomplete, -1 after a failure. */
  private decode(buf: Buffer, pos: number, end: number): number {
    const available = end - pos;
    if (available < 2) return 0;
    const b0 = buf[pos]!;
    const b1 = buf[pos + 1]!;
    const masked = (b1 & 0x80) !== 0;
    const len7 = b1 & 0x7f;
    const size = (len7 < 126 ? 2 : len7 === 126 ? 4 : 10) + (masked ? 4 : 0);
    if (available < size) return 0;
    let length = len7;
    let p = pos + 2;
    if (len7 === 126) {
      length = buf.readUInt16BE(p);
      p += 2;
      if (length < 126) return this.fail(nonMinimal(length, 16));
    } else if (len7 === 127) {
      const high = buf.readUInt32BE(p);
      if (high & 0x80000000) {
        return this.fail(
          protocolError("LENGTH_MSB_SET", "64-bit payload length has its most significant bit set"),
        );
      }
      if (high > 0x1fffff) {
        return this.fail(
          new ProtocolError("MESSAGE_TOO_BIG", CloseCode.MessageTooBig, "payload length exceeds 2^53 - 1"),
        );
      }
      length = high * 0x100000000 + buf.readUInt32BE(p + 4);
      p += 8;
      if (length < 0x10000) return this.fail(nonMinimal(length, 64));
    }
    const h = HEADER;
    h.fin = (b0 & 0x80) !== 0;
    h.rsv1 = (b0 & 0x40) !== 0;
    h.rsv2 = (b0 & 0x20) !== 0;
    h.rsv3 = (b0 & 0x10) !== 0;
    h.opcode = b0 & 0x0f;
    h.masked = masked;
    h.length = length;
    if (masked) {
      const k = h.maskKey;
      k[0] = buf[p]!;
      k[1] = buf[p + 1]!;
      k[2] = buf[p + 2]!;
      k[3] = buf[p + 3]!;
      this.mask = ((k[0]! << 24) | (k[1]! << 16) | (k[2]! << 8) | k[3]!) >>> 0;
    }
    this.length = length;
    this.masked = masked;
    this.inPayload = true;
    this.payloadOffset = 0;
    if (!this.sink.onHeader(h)) {
      this.stop();
      return -1;
    }
    return size;
  }

  private fail(error: ProtocolError): number {
    this.stop();
    this.sink.onHeaderError(error);
    return -1;
  }
}

/** §5.2: "the minimal number of bytes MUST be used to encode the length". */
function nonMinimal(length: number, bits: number): ProtocolError {
  return protocolError("NON_MINIMAL_LENGTH", `a ${length}-byte payload length sent in the ${bits}-bit form`);
}
