import { CloseCode, isValidWireCloseCode } from "./close-codes.js";
import { ProtocolError, type ProtocolErrorCode, protocolError, UsageError } from "./errors.js";
import type { ProtocolEvent } from "./events.js";
import { encodeFrame, toBuffer } from "./frame.js";
import { type FrameHeader, FrameParser, type FrameSink } from "./frame-parser.js";
import { isControlOpcode, isKnownOpcode, Opcode } from "./opcodes.js";
import { isValidUtf8, Utf8Validator } from "./utf8.js";

export type Side = "server" | "client";

/**
 * CONNECTING: opening handshake not done (client side only, until `markOpen`).
 * OPEN: data flows both ways. CLOSING: one Close frame has been sent or received.
 * CLOSED: the closing handshake finished or was abandoned; the transport should be closed now.
 */
export type ConnectionState = "connecting" | "open" | "closing" | "closed";

/** Default limit on one message after reassembly: 1 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024;
/** Default limit on frames per fragmented message. */
export const DEFAULT_MAX_FRAGMENTS = 1024;
/** Close reasons are limited by the 125-byte control payload, less the 2-byte code (§5.5). */
export const MAX_CLOSE_REASON_BYTES = 123;

export interface ConnectionOptions {
  side: Side;
  /** Largest message (sum of its fragments' payloads), checked from each header (1009). */
  maxMessageSize?: number;
  /** Most frames in one message (1009 when exceeded); guards against floods of empty fragments. */
  maxFragments?: number;
  /** "messages": whole messages out (default). "frames": every data frame out, for raw sessions. */
  mode?: "messages" | "frames";
  /** An extension (permessage-deflate) claimed RSV1 on the first frame of data messages. */
  rsv1?: boolean;
  /** Answer pings with pongs automatically (default true). */
  autoPong?: boolean;
  /**
   * Do not answer the peer's Close frame at once: the caller calls `replyToClose()` once the
   * application has handled what arrived before it (§5.5.1 allows finishing the current message first).
   * Until then the state is "closing" and data may still be sent. Default false.
   */
  deferCloseReply?: boolean;
  /** Fills 4 bytes with strong randomness; required on the client side for masking keys (§5.3). */
  randomFill?: (target: Uint8Array) => void;
  /** Start in CONNECTING (a client before the handshake); default OPEN. */
  connecting?: boolean;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

const EMPTY = Buffer.alloc(0);
/** Shared empty array that stands for every empty queue until something is pushed (never mutated). */
const NONE: never[] = Object.freeze([]) as never[];
const MASK_POOL_SIZE = 4096;
/** Pongs owed at most; a longer backlog keeps the latest ones. */
export const MAX_PENDING_PONGS = 16;
/** Returned when there are no events, so callers never hold the connection's own array. */
const NO_EVENTS: readonly ProtocolEvent[] = Object.freeze([]);

/**
 * A WebSocket connection after (or, for clients, during) the opening handshake, without I/O.
 *
 * Feed it bytes with `receiveData` and `receiveEof`; then take `takeEvents()` for the application and
 * `takeOutput()` for the transport. When `state` becomes "closed", close the transport. Bad peer input
 * never throws: it sets `failure` and queues the matching Close frame. Misuse of the sending methods
 * throws a `UsageError`.
 */
export class Connection implements FrameSink {
  readonly side: Side;
  state: ConnectionState;
  maxMessageSize: number;
  maxFragments: number;
  autoPong: boolean;
  /** The first protocol failure, by the peer or reported through `fail`. */
  failure: ProtocolError | undefined;
  closeSent: CloseInfo | undefined;
  closeReceived: CloseInfo | undefined;

  private readonly mode: "messages" | "frames";
  private readonly rsv1Allowed: boolean;
  private readonly deferCloseReply: boolean;
  private readonly randomFill: ((target: Uint8Array) => void) | undefined;
  private readonly parser = new FrameParser(this);
  private events: ProtocolEvent[] = NONE as never;
  /** Pings and pongs, each one buffer (control payloads are small enough to coalesce). */
  private urgentOutput: Buffer[] = NONE as never;
  /**
   * Automatic answers to pings, not yet taken. Past MAX_PENDING_PONGS the oldest is dropped (§5.5.3
   * allows answering only the most recent pings), so a peer that floods pings without reading our
   * output holds a bounded number of pongs.
   */
  private pendingPongs: Buffer[] = NONE as never;
  /** Other frames, each as its buffers, so a partial take never splits a frame. */
  private output: Buffer[][] = NONE as never;
  private outputHead = 0;
  private queuedBytes = 0;

  // The frame being received.
  private frameOpcode = 0;
  private frameFin = false;
  private frameRsv1 = false;
  private framePieces: Buffer[] = NONE as never;
  private frameSize = 0;
  private controlPieces: Buffer[] = NONE as never;
  // The data message being received (0 = none in progress).
  private messageOpcode = 0;
  private messageCompressed = false;
  private messageSize = 0;
  private messageFragments = 0;
  private messagePieces: Buffer[] = NONE as never;
  private checkUtf8 = false;
  private utf8: Utf8Validator | undefined; // made for the first text message
  private maskPool: Uint8Array | undefined;
  private maskOffset = MASK_POOL_SIZE;
  // Outgoing fragmented message in progress (0 = none).
  private sendingOpcode = 0;

  constructor(options: ConnectionOptions) {
    this.side = options.side;
    this.state = options.connecting ? "connecting" : "open";
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxFragments = options.maxFragments ?? DEFAULT_MAX_FRAGMENTS;
    this.mode = options.mode ?? "messages";
    this.rsv1Allowed = options.rsv1 ?? false;
    this.autoPong = options.autoPong ?? true;
    this.deferCloseReply = options.deferCloseReply ?? false;
    this.randomFill = options.randomFill;
    if (this.side === "client" && !this.randomFill) {
      throw new TypeError("a client connection needs options.randomFill for masking keys (RFC 6455 §5.3)");
    }
  }

  /** The client's opening handshake completed. */
  markOpen(): void {
    if (this.state === "connecting") this.state = "open";
  }

  // ---- input ----------------------------------------------------------------------------------------

  /** Bytes from the peer. Takes ownership of `chunk` (masked payloads are unmasked in place). */
  receiveData(chunk: Buffer): void {
    if (this.state === "closed" || this.closeReceived) return; // §5.5.1: nothing follows a Close frame
    this.parser.push(chunk);
  }

  /** The peer closed the transport. Without a Close frame first, the closure is abnormal (1006). */
  receiveEof(): void {
    this.parser.stop();
    if (!this.closeReceived) this.closeReceived = { code: CloseCode.Abnormal, reason: "" };
    this.state = "closed";
  }

  /** Events since the last call, in order. */
  takeEvents(): readonly ProtocolEvent[] {
    const events = this.events;
    if (events.length === 0) return NO_EVENTS;
    this.events = NONE as never;
    return events;
  }

  /**
   * Bytes to write, in order: pings and pongs first (they may overtake queued data frames, §5.5), then
   * whole data/close frames until at least `limit` bytes of them are taken. What is left stays queued,
   * where a later pong can still go ahead of it.
   */
  takeOutput(limit = Number.POSITIVE_INFINITY): Buffer[] {
    const out = this.urgentOutput.length > 0 ? this.urgentOutput : [];
    if (out.length > 0) this.urgentOutput = NONE as never;
    if (this.pendingPongs.length > 0) {
      for (const pong of this.pendingPongs) out.push(pong);
      this.pendingPongs = NONE as never;
    }
    const frames = this.output;
    let i = this.outputHead;
    let taken = 0;
    while (i < frames.length && taken < limit) {
      const frame = frames[i++]!;
      for (let j = 0; j < frame.length; j++) {
        out.push(frame[j]!);
        taken += frame[j]!.length;
      }
    }
    this.queuedBytes -= taken;
    if (i === frames.length) {
      if (frames.length > 0) this.output = NONE as never;
      this.outputHead = 0;
    } else {
      this.outputHead = i;
    }
    return out;
  }

  get hasOutput(): boolean {
    return (
      this.outputHead < this.output.length || this.urgentOutput.length > 0 || this.pendingPongs.length > 0
    );
  }

  /** Bytes of data and close frames queued and not yet taken (pings and pongs not counted). */
  get bufferedBytes(): number {
    return this.queuedBytes;
  }

  private queueFrame(frame: Buffer[]): void {
    if (this.output === NONE) this.output = [];
    this.output.push(frame);
    for (let j = 0; j < frame.length; j++) this.queuedBytes += frame[j]!.length;
  }

  /**
   * Fails the connection (§7.1.7): records `failure`, queues a Close frame with its code and stops
   * reading. Upper layers call this too (e.g. an extension that cannot inflate a message).
   */
  fail(error: ProtocolError): void {
    if (this.failure || this.state === "closed") return;
    this.failure = error;
    this.parser.stop();
    if (!this.closeSent) this.queueClose(error.closeCode, truncateReason(error.message));
    this.state = "closed";
  }

  // ---- FrameSink --------------------------------------------------------------------------------

  onHeader(h: FrameHeader): boolean {
    const opcode = h.opcode;
    if (h.rsv2 || h.rsv3)
      return this.failWith(protocolError("RESERVED_BITS_SET", "RSV2/RSV3 set without an extension"));
    if (!isKnownOpcode(opcode))
      return this.failWith(protocolError("RESERVED_OPCODE", `reserved opcode 0x${opcode.toString(16)}`));
    if (h.masked !== (this.side === "server")) {
      return this.failWith(
        this.side === "server"
          ? protocolError("MASK_REQUIRED", "client frames must be masked")
          : protocolError("MASK_FORBIDDEN", "server frames must not be masked"),
      );
    }
    if (isControlOpcode(opcode)) {
      if (h.rsv1) return this.failWith(protocolError("RESERVED_BITS_SET", "RSV1 set on a control frame"));
      if (!h.fin)
        return this.failWith(
          protocolError("CONTROL_FRAME_FRAGMENTED", "control frames must not be fragmented"),
        );
      if (h.length > 125)
        return this.failWith(protocolError("CONTROL_FRAME_TOO_LONG", "control frame payload over 125 bytes"));
    } else if (opcode === Opcode.Continuation) {
      if (this.messageOpcode === 0)
        return this.failWith(
          protocolError("UNEXPECTED_CONTINUATION", "continuation frame without a message to continue"),
        );
      if (h.rsv1)
        return this.failWith(protocolError("RESERVED_BITS_SET", "RSV1 set on a continuation frame"));
    } else {
      if (this.messageOpcode !== 0)
        return this.failWith(
          protocolError("EXPECTED_CONTINUATION", "new data frame inside a fragmented message"),
        );
      if (h.rsv1 && !this.rsv1Allowed)
        return this.failWith(protocolError("RESERVED_BITS_SET", "RSV1 set without an extension"));
      this.messageOpcode = opcode;
      this.messageCompressed = h.rsv1;
      this.messageSize = 0;
      this.messageFragments = 0;
      this.checkUtf8 = opcode === Opcode.Text && !h.rsv1;
    }
    if (!isControlOpcode(opcode)) {
      if (h.length > this.maxMessageSize - this.messageSize) {
        return this.failWith(tooBig(`message exceeds the ${this.maxMessageSize}-byte limit`));
      }
      if (++this.messageFragments > this.maxFragments) {
        return this.failWith(
          new ProtocolError(
            "TOO_MANY_FRAGMENTS",
            CloseCode.MessageTooBig,
            `message exceeds ${this.maxFragments} fragments`,
          ),
        );
      }
      this.messageSize += h.length;
    }
    this.frameOpcode = opcode;
    this.frameFin = h.fin;
    this.frameRsv1 = h.rsv1;
    this.frameSize = 0;
    return true;
  }

  onPayload(piece: Buffer, _offset: number): boolean {
    if (isControlOpcode(this.frameOpcode)) {
      if (this.controlPieces === NONE) this.controlPieces = [];
      this.controlPieces.push(piece);
      return true;
    }
    if (this.checkUtf8 && !this.textValidator().write(piece)) {
      return this.failWith(
        new ProtocolError("INVALID_UTF8", CloseCode.InvalidPayload, "text message is not valid UTF-8"),
      );
    }
    // Message mode collects payload per message, so a fragmented message is copied once, at its end.
    if (this.mode === "frames") {
      if (this.framePieces === NONE) this.framePieces = [];
      this.framePieces.push(piece);
      this.frameSize += piece.length;
    } else {
      if (this.messagePieces === NONE) this.messagePieces = [];
      this.messagePieces.push(piece);
    }
    return true;
  }

  onFrameEnd(): boolean {
    const opcode = this.frameOpcode;
    if (isControlOpcode(opcode)) {
      const payload = join(this.controlPieces, -1);
      if (this.controlPieces.length > 0) this.controlPieces = NONE as never;
      return this.handleControl(opcode, payload);
    }
    const fin = this.frameFin;
    if (fin && this.checkUtf8 && !this.textValidator().end()) {
      return this.failWith(
        new ProtocolError(
          "INVALID_UTF8",
          CloseCode.InvalidPayload,
          "text message ends inside a UTF-8 sequence",
        ),
      );
    }
    if (this.mode === "frames") {
      const payload = join(this.framePieces, this.frameSize);
      if (this.framePieces.length > 0) this.framePieces = NONE as never;
      this.emit({
        type: "frame",
        frame: { fin, rsv1: this.frameRsv1, rsv2: false, rsv3: false, opcode, payload },
      });
    } else if (fin) {
      this.emit({
        type: this.messageOpcode === Opcode.Text ? "text" : "binary",
        data: join(this.messagePieces, this.messageSize),
        compressed: this.messageCompressed,
      });
      if (this.messagePieces.length > 0) this.messagePieces = NONE as never;
    }
    if (fin) this.messageOpcode = 0;
    return true;
  }

  private emit(event: ProtocolEvent): void {
    if (this.events === NONE) this.events = [];
    this.events.push(event);
  }

  private textValidator(): Utf8Validator {
    this.utf8 ??= new Utf8Validator();
    return this.utf8;
  }

  onHeaderError(error: ProtocolError): void {
    this.fail(error);
  }

  private handleControl(opcode: number, payload: Buffer): boolean {
    if (opcode === Opcode.Ping) {
      this.emit({ type: "ping", data: payload });
      if (this.autoPong && !this.closeSent) {
        if (this.pendingPongs.length >= MAX_PENDING_PONGS) this.pendingPongs.shift();
        if (this.pendingPongs === NONE) this.pendingPongs = [];
        this.pendingPongs.push(this.encode(Opcode.Pong, payload, true)[0]!);
      }
      return true;
    }
    if (opcode === Opcode.Pong) {
      this.emit({ type: "pong", data: payload });
      return true;
    }
    // Close (§5.5.1, §7.1.5): empty, or a valid 2-byte code followed by a UTF-8 reason.
    if (payload.length === 1)
      return this.failWith(protocolError("INVALID_CLOSE_PAYLOAD", "close frame payload of 1 byte"));
    let code: number = CloseCode.NoStatusReceived;
    let reason = "";
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidWireCloseCode(code))
        return this.failWith(protocolError("INVALID_CLOSE_CODE", `invalid close code ${code}`));
      const reasonBytes = payload.subarray(2);
      if (!isValidUtf8(reasonBytes)) {
        return this.failWith(
          new ProtocolError(
            "INVALID_CLOSE_REASON",
            CloseCode.InvalidPayload,
            "close reason is not valid UTF-8",
          ),
        );
      }
      reason = reasonBytes.toString("utf8");
    }
    this.closeReceived = { code, reason };
    this.emit({ type: "close", code, reason });
    if (this.closeSent) this.state = "closed";
    else if (this.deferCloseReply) this.state = "closing";
    else this.replyToClose();
    return false; // stop parsing: nothing after a Close frame is data (§5.5.1)
  }

  /**
   * Answers the peer's Close frame, echoing its status code (§5.5.1; an empty Close gets an empty one).
   * Automatic unless `deferCloseReply`; returns false when there is nothing to answer.
   */
  replyToClose(): boolean {
    const received = this.closeReceived;
    if (!received || this.closeSent || this.state === "closed") return false;
    this.queueClose(received.code === CloseCode.NoStatusReceived ? undefined : received.code, "");
    return true;
  }

  private failWith(error: ProtocolError): false {
    this.fail(error);
    return false;
  }

  // ---- output -----------------------------------------------------------------------------------

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
    this.queueFrame(this.encode(opcode, payload, fin, rsv1));
  }

  private sendControl(opcode: number, data: Uint8Array): void {
    if (data.length > 125)
      throw new UsageError("CONTROL_PAYLOAD_TOO_LONG", "ping and pong payloads are limited to 125 bytes");
    if (this.state === "closed") throw new UsageError("SEND_AFTER_CLOSE", "the connection is closed");
    const frame = this.encode(opcode, data, true);
    if (this.urgentOutput === NONE) this.urgentOutput = [];
    for (const b of frame) this.urgentOutput.push(b);
  }

  private queueClose(code: number | undefined, reason: string): void {
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
    // Masking keys come from a pool filled in bulk: one call to the random source per 1,024 frames.
    if (this.maskOffset >= MASK_POOL_SIZE) {
      this.maskPool ??= new Uint8Array(MASK_POOL_SIZE);
      this.randomFill!(this.maskPool);
      this.maskOffset = 0;
    }
    const mask = this.maskPool!.subarray(this.maskOffset, this.maskOffset + 4);
    this.maskOffset += 4;
    return encodeFrame(opcode, payload, { fin, rsv1, mask });
  }
}

function tooBig(message: string): ProtocolError {
  return new ProtocolError("MESSAGE_TOO_BIG", CloseCode.MessageTooBig, message);
}

/** One buffer from payload pieces, copying only when there are several (`size` < 0: sum them). */
function join(pieces: Buffer[], size: number): Buffer {
  if (pieces.length === 1) return pieces[0]!;
  if (pieces.length === 0) return EMPTY;
  return size < 0 ? Buffer.concat(pieces) : Buffer.concat(pieces, size);
}

/** Cuts a reason to fit a Close frame without splitting a UTF-8 character. */
export function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason, "utf8");
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  let end = MAX_CLOSE_REASON_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

export type { ProtocolErrorCode };
