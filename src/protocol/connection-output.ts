import { Buffer } from "node:buffer";
import { CloseCode, isValidWireCloseCode } from "./close-codes.js";
import { UsageError } from "./errors.js";
import { encodeFrame, headerSize, toBuffer, writeFrameInto } from "./frame.js";
import { isKnownOpcode, Opcode } from "./opcodes.js";

export type Side = "server" | "client";

/**
 * CONNECTING: opening handshake not done (client side only, until `markOpen`).
 * OPEN: data flows both ways. CLOSING: one Close frame has been sent or received.
 * CLOSED: the closing handshake finished or was abandoned; the transport should be closed now.
 */
export type ConnectionState = "connecting" | "open" | "closing" | "closed";

/** Close reasons are limited by the 125-byte control payload, less the 2-byte code (§5.5). */
export const MAX_CLOSE_REASON_BYTES = 123;
/** Pongs owed at most; a longer backlog keeps the latest ones. */
export const MAX_PENDING_PONGS = 16;

export interface CloseInfo {
  code: number;
  reason: string;
}

export const EMPTY = Buffer.alloc(0);
/** Shared empty array that stands for every empty queue until something is pushed (never mutated). */
export const NONE: never[] = Object.freeze([]) as never[];
/** Masking keys are drawn in bulk: 16 keys first, doubling on each refill up to 1,024 keys. */
const FIRST_MASK_POOL = 64;
const MASK_POOL_SIZE = 4096;
/**
 * Data frames up to this size (header included) are written one after another into the connection's
 * tail buffer instead of a buffer each: a burst of small messages then costs one buffer, not an array
 * and a Buffer per message, and goes to the socket as one piece.
 */
export const TAIL_FRAME_MAX = 512;
/** The tail starts this big and doubles as needed, up to TAIL_MAX; a full one is queued as it is. */
const TAIL_FIRST = 512;
const TAIL_MAX = 16 * 1024;

/**
 * The sending half of a `Connection`: frames to send (pings and pongs ahead of data), the closing
 * handshake's own Close frame, masking for clients, and the byte budget the transport takes output by.
 * `Connection` adds the receiving half; the two are one object.
 */
export abstract class ConnectionOutput {
  readonly side: Side;
  state: ConnectionState;
  closeSent: CloseInfo | undefined;
  closeReceived: CloseInfo | undefined;

  private readonly randomFill: ((target: Uint8Array) => void) | undefined;
  /** Pings and pongs, each one buffer (control payloads are small enough to coalesce). */
  private urgentOutput: Buffer[] = NONE as never;
  private urgentBytes = 0;
  /**
   * Automatic answers to pings, not yet taken. Past MAX_PENDING_PONGS the oldest is dropped (§5.5.3
   * allows answering only the most recent pings), so a peer that floods pings without reading our
   * output holds a bounded number of pongs.
   */
  private pendingPongs: Buffer[] = NONE as never;
  /** Other frames, each as its buffers, so a partial take never splits a frame. */
  private output: Buffer[][] = NONE as never;
  private outputHead = 0;
  /** Bytes of data and close frames not yet taken, the tail's included. */
  private queuedBytes = 0;
  /**
   * Small data frames written after everything in `output`, in `tail[0, tailUsed)`. Dropped when
   * taken, so a connection with nothing to send holds none.
   */
  private tail: Buffer | undefined;
  private tailUsed = 0;
  private tailFrames = 0;
  /** Data and close frames not yet taken, the tail's included. */
  private frameCount = 0;
  /** How many frames each entry made of a tail holds (entries not in it hold one). */
  private sealedCounts: Map<Buffer[], number> | undefined;
  private maskPool: Uint8Array | undefined;
  private maskOffset = 0;
  // Outgoing fragmented message in progress (0 = none).
  private sendingOpcode = 0;

  constructor(side: Side, connecting: boolean, randomFill: ((target: Uint8Array) => void) | undefined) {
    this.side = side;
    this.state = connecting ? "connecting" : "open";
    this.randomFill = randomFill;
    if (side === "client" && !randomFill) {
      throw new TypeError("a client connection needs options.randomFill for masking keys (RFC 6455 §5.3)");
    }
  }

  /**
   * Bytes to write, in order: pings and pongs first (they may overtake queued data frames, §5.5), then
   * whole data/close frames until at least `limit` bytes of them are taken. What is left stays queued,
   * where a later pong can still go ahead of it.
   */
  takeOutput(limit = Number.POSITIVE_INFINITY): Buffer[] {
    const out = this.urgentOutput.length > 0 ? this.urgentOutput : [];
    if (out.length > 0) {
      this.urgentOutput = NONE as never;
      this.urgentBytes = 0;
    }
    if (this.pendingPongs.length > 0) {
      for (const pong of this.pendingPongs) out.push(pong);
      this.pendingPongs = NONE as never;
    }
    const frames = this.output;
    let i = this.outputHead;
    let taken = 0;
    while (i < frames.length && taken < limit) {
      const frame = frames[i]!;
      frames[i++] = NONE as never; // taken: nothing here keeps it alive
      const sealed = this.sealedCounts?.get(frame);
      if (sealed === undefined) this.frameCount--;
      else {
        this.frameCount -= sealed;
        this.sealedCounts!.delete(frame);
      }
      for (let j = 0; j < frame.length; j++) {
        out.push(frame[j]!);
        taken += frame[j]!.length;
      }
    }
    if (i === frames.length && taken < limit && this.tail !== undefined) {
      const tail = this.releaseTail();
      if (tail.length > 0) {
        out.push(tail);
        taken += tail.length;
      }
    }
    this.queuedBytes -= taken;
    if (this.sealedCounts?.size === 0) this.sealedCounts = undefined;
    if (i === frames.length) {
      if (frames.length > 0) this.output = NONE as never;
      this.outputHead = 0;
    } else if (i >= 1024 && i * 2 > frames.length) {
      // Never emptied (a slow reader, a steady producer): cut off the taken part.
      this.output = frames.slice(i);
      this.outputHead = 0;
    } else {
      this.outputHead = i;
    }
    return out;
  }

  /**
   * When the tail is all there is to send (small messages, nothing urgent, nothing queued before
   * it), takes it as one Buffer; otherwise undefined and nothing is taken. `takeOutput` with any
   * positive limit would take the same, in an array.
   */
  takeTailOnly(): Buffer | undefined {
    const used = this.tailUsed;
    if (used === 0 || this.hasOutputBeforeTail) return undefined;
    this.queuedBytes -= used;
    return this.releaseTail();
  }

  /** Drops the tail and uncounts its frames; returns what it holds (its bytes are the caller's to uncount). */
  private releaseTail(): Buffer {
    const held = this.tail!.subarray(0, this.tailUsed);
    this.tail = undefined;
    this.tailUsed = 0;
    this.frameCount -= this.tailFrames;
    this.tailFrames = 0;
    return held;
  }

  get hasOutput(): boolean {
    return this.tailUsed > 0 || this.hasOutputBeforeTail;
  }

  /** Anything that goes out ahead of the tail: pings and pongs, and frames queued before it. */
  private get hasOutputBeforeTail(): boolean {
    return (
      this.outputHead < this.output.length || this.urgentOutput.length > 0 || this.pendingPongs.length > 0
    );
  }

  /** Bytes of data and close frames queued and not yet taken (pings and pongs not counted). */
  get bufferedBytes(): number {
    return this.queuedBytes;
  }

  /**
   * Data and close frames queued and not yet taken. Each is charged objects beside its bytes, those
   * in the tail too: theirs share one buffer, but a message waiting to go usually has a `send` waiting
   * on it, and the charge keeps a flood of tiny messages bounded by what it costs in all.
   */
  get queuedFrames(): number {
    return this.frameCount;
  }

  /** Pings and pongs the application sent and not yet taken: their bytes and their count. */
  get controlBytes(): number {
    return this.urgentBytes;
  }

  get controlFrames(): number {
    return this.urgentOutput.length;
  }

  private queueFrame(frame: Buffer[]): void {
    if (this.tailUsed > 0) this.sealTail();
    if (this.output === NONE) this.output = [];
    this.output.push(frame);
    this.frameCount++;
    for (let j = 0; j < frame.length; j++) this.queuedBytes += frame[j]!.length;
  }

  /** Queues a data frame: small ones go into the tail, others get buffers of their own. */
  private queueData(opcode: number, payload: Uint8Array, fin: boolean, rsv1: boolean): void {
    const masked = this.side === "client";
    const size = headerSize(payload.length, masked) + payload.length;
    if (size > TAIL_FRAME_MAX) {
      this.queueFrame(this.encode(opcode, payload, fin, rsv1));
      return;
    }
    let tail = this.tail;
    if (tail === undefined || this.tailUsed + size > tail.length) tail = this.growTail(size);
    this.tailFrames++;
    this.frameCount++;
    this.tailUsed = writeFrameInto(
      tail,
      this.tailUsed,
      opcode,
      payload,
      fin,
      rsv1,
      masked ? this.nextMask() : undefined,
    );
    this.queuedBytes += size;
  }

  /** A tail with room for `size` more bytes: the current one grown (copied), or a new one once full. */
  private growTail(size: number): Buffer {
    const old = this.tail;
    if (old !== undefined && old.length >= TAIL_MAX && this.tailUsed > 0) this.sealTail();
    const current = this.tail;
    const capacity = current === undefined ? TAIL_FIRST : Math.min(current.length * 2, TAIL_MAX);
    const next = Buffer.allocUnsafe(Math.max(capacity, this.tailUsed + size));
    if (current !== undefined && this.tailUsed > 0) current.copy(next, 0, 0, this.tailUsed);
    this.tail = next;
    return next;
  }

  /**
   * Queues the tail's frames as one entry, so that what is queued next goes after them. A tail mostly
   * empty is copied out and kept for more (its spare room would otherwise be held, uncounted, by the
   * entry); a fuller one is queued as it is.
   */
  private sealTail(): void {
    const tail = this.tail!;
    const used = this.tailUsed;
    let entry: Buffer[];
    if (tail.length - used > used) {
      const copy = Buffer.allocUnsafe(used);
      tail.copy(copy, 0, 0, used);
      entry = [copy];
    } else {
      entry = [tail.subarray(0, used)];
      this.tail = undefined;
    }
    if (this.output === NONE) this.output = [];
    this.output.push(entry);
    if (this.tailFrames > 1) {
      this.sealedCounts ??= new Map();
      this.sealedCounts.set(entry, this.tailFrames);
    }
    this.tailUsed = 0;
    this.tailFrames = 0;
  }

  sendText(data: string | Uint8Array): void {
    this.sendData(Opcode.Text, typeof data === "string" ? Buffer.from(data, "utf8") : data, true, false);
  }

  sendBinary(data: Uint8Array): void {
    this.sendData(Opcode.Binary, data, true, false);
  }

  /**
   * Sends one frame as given, for fragmented or extension-encoded messages. Data frames must follow the
   * fragmentation rules (§5.4); control frames go through `sendPing`/`sendPong`/`sendClose` rules.
   */
  sendFrame(opcode: number, payload: Uint8Array, options: { fin?: boolean; rsv1?: boolean } = {}): void {
    switch (opcode) {
      case Opcode.Ping:
        this.sendPing(payload);
        return;
      case Opcode.Pong:
        this.sendPong(payload);
        return;
      case Opcode.Close: {
        if (payload.length === 1)
          throw new UsageError("INVALID_FRAME", "a close payload is empty or starts with a 2-byte code");
        const p = toBuffer(payload);
        if (p.length === 0) this.sendClose();
        else this.sendClose(p.readUInt16BE(0), p.subarray(2).toString("utf8"));
        return;
      }
    }
    if (!isKnownOpcode(opcode))
      throw new UsageError("INVALID_FRAME", `opcode 0x${opcode.toString(16)} is reserved`);
    this.sendData(opcode, payload, options.fin ?? true, options.rsv1 ?? false);
  }

  /**
   * Queues a whole, unfragmented data frame encoded once for many connections (a publication): the
   * buffers are shared, never written to. Server side only (client frames are masked one by one).
   * Returns false, queueing nothing, while a fragmented message is being sent or after our Close.
   */
  sendEncoded(frame: Buffer[]): boolean {
    if (this.side !== "server" || this.sendingOpcode !== 0 || this.closeSent || this.state === "closed")
      return false;
    this.queueFrame(frame);
    return true;
  }

  /** True while a fragmented message we send is unfinished: only its continuation frames may follow. */
  get sendingFragments(): boolean {
    return this.sendingOpcode !== 0;
  }

  sendPing(data: Uint8Array = EMPTY): void {
    this.sendControl(Opcode.Ping, data);
  }

  sendPong(data: Uint8Array = EMPTY): void {
    this.sendControl(Opcode.Pong, data);
  }

  /**
   * Starts (or answers) the closing handshake. Without a code the Close frame is empty. Returns false
   * when a Close frame was already sent (calling again is harmless).
   */
  sendClose(code?: number, reason = ""): boolean {
    if (code === undefined && reason !== "")
      throw new UsageError("INVALID_CLOSE_CODE", "a close reason needs a close code");
    if (code !== undefined && !isValidWireCloseCode(code)) {
      throw new UsageError("INVALID_CLOSE_CODE", `close code ${code} may not be sent (RFC 6455 §7.4)`);
    }
    if (Buffer.byteLength(reason, "utf8") > MAX_CLOSE_REASON_BYTES) {
      throw new UsageError("CLOSE_REASON_TOO_LONG", `close reason over ${MAX_CLOSE_REASON_BYTES} bytes`);
    }
    if (this.closeSent || this.state === "closed") return false;
    this.queueClose(code, reason);
    return true;
  }

  private sendData(opcode: number, payload: Uint8Array, fin: boolean, rsv1: boolean): void {
    if (this.closeSent || this.state === "closed")
      throw new UsageError("SEND_AFTER_CLOSE", "the connection is closing; no more data may be sent");
    if (opcode === Opcode.Continuation) {
      if (this.sendingOpcode === 0)
        throw new UsageError("INVALID_FRAME", "continuation frame without a fragmented message");
      if (rsv1) throw new UsageError("INVALID_FRAME", "RSV1 belongs on the first frame of a message only");
    } else if (this.sendingOpcode !== 0) {
      throw new UsageError("INVALID_FRAME", "a fragmented message is in progress; send continuation frames");
    } else if (!fin) {
      this.sendingOpcode = opcode;
    }
    if (fin) this.sendingOpcode = 0;
    this.queueData(opcode, payload, fin, rsv1);
  }

  private sendControl(opcode: number, data: Uint8Array): void {
    if (data.length > 125)
      throw new UsageError("CONTROL_PAYLOAD_TOO_LONG", "ping and pong payloads are limited to 125 bytes");
    if (this.state === "closed") throw new UsageError("SEND_AFTER_CLOSE", "the connection is closed");
    const frame = this.encode(opcode, data, true);
    if (this.urgentOutput === NONE) this.urgentOutput = [];
    for (const b of frame) {
      this.urgentOutput.push(b);
      this.urgentBytes += b.length;
    }
  }

  protected queueClose(code: number | undefined, reason: string): void {
    let payload: Buffer = EMPTY;
    if (code !== undefined) {
      payload = Buffer.allocUnsafe(2 + Buffer.byteLength(reason, "utf8"));
      payload.writeUInt16BE(code, 0);
      payload.write(reason, 2, "utf8");
    }
    this.closeSent = { code: code ?? CloseCode.NoStatusReceived, reason };
    this.queueFrame(this.encode(Opcode.Close, payload, true));
    this.state = this.closeReceived ? "closed" : "closing";
  }

  private encode(opcode: number, payload: Uint8Array, fin: boolean, rsv1 = false): Buffer[] {
    if (this.side === "server") return encodeFrame(opcode, payload, { fin, rsv1 });
    return encodeFrame(opcode, payload, { fin, rsv1, mask: this.nextMask() });
  }

  /** The next masking key (a view of the pool: use it before asking for another). */
  private nextMask(): Uint8Array {
    // Keys come from a pool filled in bulk, small at first so that a short connection does not pay
    // for 4 KiB of randomness: at most one call to the random source per 1,024 frames.
    const pool = this.maskPool;
    if (pool === undefined || this.maskOffset >= pool.length) {
      const size = pool === undefined ? FIRST_MASK_POOL : Math.min(MASK_POOL_SIZE, pool.length * 2);
      this.maskPool = pool !== undefined && pool.length === size ? pool : new Uint8Array(size);
      this.randomFill!(this.maskPool);
      this.maskOffset = 0;
    }
    const mask = this.maskPool!.subarray(this.maskOffset, this.maskOffset + 4);
    this.maskOffset += 4;
    return mask;
  }

  /** Owes the peer a pong for its ping (§5.5.2); past MAX_PENDING_PONGS the oldest owed one is dropped. */
  protected owePong(payload: Buffer): void {
    if (this.pendingPongs.length >= MAX_PENDING_PONGS) this.pendingPongs.shift();
    if (this.pendingPongs === NONE) this.pendingPongs = [];
    this.pendingPongs.push(this.encode(Opcode.Pong, payload, true)[0]!);
  }
}

/** Cuts a reason to fit a Close frame without splitting a UTF-8 character. */
export function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason, "utf8");
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  let end = MAX_CLOSE_REASON_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}
