import type { Buffer } from "node:buffer";
import { CloseCode, isValidWireCloseCode } from "./close-codes.js";
import { ConnectionOutput, EMPTY, NONE, type Side, truncateReason } from "./connection-output.js";
import { ProtocolError, type ProtocolErrorCode, protocolError } from "./errors.js";
import type { ProtocolEvent } from "./events.js";
import { type FrameHeader, FrameParser, type FrameSink } from "./frame-parser.js";
import { GatherBuffer } from "./gather-buffer.js";
import { isControlOpcode, isKnownOpcode, Opcode } from "./opcodes.js";
import { isValidUtf8, Utf8Validator } from "./utf8.js";

export {
  type CloseInfo,
  type ConnectionState,
  MAX_CLOSE_REASON_BYTES,
  MAX_PENDING_PONGS,
  type Side,
  truncateReason,
} from "./connection-output.js";

/** Default limit on one message after reassembly: 1 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024;
/** Default limit on frames per fragmented message. */
export const DEFAULT_MAX_FRAGMENTS = 1024;

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
   * Do not answer the peer's Close frame, nor send the Close of a failure, at once: the caller calls
   * `replyToClose()` once the application has handled what arrived before it (§5.5.1 allows finishing
   * the current message first). Until then the state is "closing" and data may still be sent.
   * Default false.
   */
  deferCloseReply?: boolean;
  /** Fills 4 bytes with strong randomness; required on the client side for masking keys (§5.3). */
  randomFill?: (target: Uint8Array) => void;
  /** Start in CONNECTING (a client before the handshake); default OPEN. */
  connecting?: boolean;
}

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
export class Connection extends ConnectionOutput implements FrameSink {
  maxMessageSize: number;
  maxFragments: number;
  autoPong: boolean;
  /** The first protocol failure, by the peer or reported through `fail`. */
  failure: ProtocolError | undefined;

  private readonly mode: "messages" | "frames";
  private readonly rsv1Allowed: boolean;
  private readonly deferCloseReply: boolean;
  private readonly parser = new FrameParser(this);
  private events: ProtocolEvent[] = NONE as never;

  // The frame being received.
  private frameOpcode = 0;
  private frameFin = false;
  private frameRsv1 = false;
  private frameLength = 0;
  /** The control frame's payload; made for the first one that has any. */
  private control: GatherBuffer | undefined;
  // The data message being received (0 = none in progress).
  private messageOpcode = 0;
  private messageCompressed = false;
  /** Sum of the message's frame lengths so far, from their headers. */
  private messageSize = 0;
  private messageFragments = 0;
  /** The message's payload (message mode) or the frame's (frame mode); made for the first payload. */
  private data: GatherBuffer | undefined;
  private checkUtf8 = false;
  private utf8: Utf8Validator | undefined; // made for the first text message

  constructor(options: ConnectionOptions) {
    super(options.side, options.connecting ?? false, options.randomFill);
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxFragments = options.maxFragments ?? DEFAULT_MAX_FRAGMENTS;
    this.mode = options.mode ?? "messages";
    this.rsv1Allowed = options.rsv1 ?? false;
    this.autoPong = options.autoPong ?? true;
    this.deferCloseReply = options.deferCloseReply ?? false;
  }

  /** The client's opening handshake completed. */
  markOpen(): void {
    if (this.state === "connecting") this.state = "open";
  }

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
   * Fails the connection (§7.1.7): records `failure`, queues a Close frame with its code and stops
   * reading. Upper layers call this too (e.g. an extension that cannot inflate a message).
   */
  fail(error: ProtocolError): void {
    if (this.failure || this.state === "closed") return;
    this.failure = error;
    this.parser.stop();
    if (this.deferCloseReply && !this.closeSent) {
      this.state = "closing"; // the Close goes out on replyToClose(), after what was sent before it
      return;
    }
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
    this.frameLength = h.length;
    return true;
  }

  onPayload(piece: Buffer, _offset: number): boolean {
    if (isControlOpcode(this.frameOpcode)) {
      this.control ??= new GatherBuffer();
      this.control.add(piece, this.frameLength, true);
      return true;
    }
    if (this.checkUtf8 && !this.textValidator().write(piece)) return this.failWith(invalidUtf8());
    // Message mode gathers per message: the headers so far announce `messageSize` bytes.
    this.data ??= new GatherBuffer();
    if (this.mode === "frames") this.data.add(piece, this.frameLength, true);
    else this.data.add(piece, this.messageSize, this.frameFin);
    return true;
  }

  onFrameEnd(): boolean {
    const opcode = this.frameOpcode;
    if (isControlOpcode(opcode)) {
      return this.handleControl(opcode, this.control?.take() ?? EMPTY);
    }
    const fin = this.frameFin;
    if (fin && this.checkUtf8 && !this.textValidator().end()) return this.failWith(truncatedUtf8());
    if (this.mode === "frames") {
      const payload = this.data?.take() ?? EMPTY;
      this.emit({
        type: "frame",
        frame: { fin, rsv1: this.frameRsv1, rsv2: false, rsv3: false, opcode, payload },
      });
    } else if (fin) {
      this.emitMessage(this.data?.take() ?? EMPTY);
    }
    if (fin) this.messageOpcode = 0;
    return true;
  }

  onWholeFrame(payload: Buffer): boolean {
    const opcode = this.frameOpcode;
    if (isControlOpcode(opcode)) return this.handleControl(opcode, payload);
    if (this.frameFin && this.messageFragments === 1 && this.mode === "messages") {
      // A message in one frame: nothing to gather.
      if (this.checkUtf8) {
        const validator = this.textValidator();
        if (!validator.write(payload)) return this.failWith(invalidUtf8());
        if (!validator.end()) return this.failWith(truncatedUtf8());
      }
      this.emitMessage(payload);
      this.messageOpcode = 0;
      return true;
    }
    if (payload.length > 0 && !this.onPayload(payload, 0)) return false;
    return this.onFrameEnd();
  }

  /** The data message being received is complete (message mode). */
  private emitMessage(data: Buffer): void {
    this.emit({
      type: this.messageOpcode === Opcode.Text ? "text" : "binary",
      data,
      compressed: this.messageCompressed,
    });
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
        this.owePong(payload);
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
   * Answers the peer's Close frame, echoing its status code (§5.5.1; an empty Close gets an empty one),
   * or, after a failure, sends the failure's Close and ends the connection (§7.1.7). Automatic unless
   * `deferCloseReply`; returns false when there is nothing to answer.
   */
  replyToClose(): boolean {
    if (this.closeSent || this.state === "closed") return false;
    const failure = this.failure;
    if (failure) {
      this.queueClose(failure.closeCode, truncateReason(failure.message));
      this.state = "closed";
      return true;
    }
    const received = this.closeReceived;
    if (!received) return false;
    this.queueClose(received.code === CloseCode.NoStatusReceived ? undefined : received.code, "");
    return true;
  }

  private failWith(error: ProtocolError): false {
    this.fail(error);
    return false;
  }
}

function invalidUtf8(): ProtocolError {
  return new ProtocolError("INVALID_UTF8", CloseCode.InvalidPayload, "text message is not valid UTF-8");
}

function truncatedUtf8(): ProtocolError {
  return new ProtocolError(
    "INVALID_UTF8",
    CloseCode.InvalidPayload,
    "text message ends inside a UTF-8 sequence",
  );
}

function tooBig(message: string): ProtocolError {
  return new ProtocolError("MESSAGE_TOO_BIG", CloseCode.MessageTooBig, message);
}

export type { ProtocolErrorCode };
