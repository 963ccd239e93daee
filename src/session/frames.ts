import { Buffer } from "node:buffer";
import { Opcode } from "../protocol/index.js";

/**
 * Frames as the application sees them, after Ktor's `Frame.Text`/`Binary`/`Close`/`Ping`/`Pong`.
 * A default session's `incoming` yields only whole `TextFrame`s and `BinaryFrame`s (`fin` true);
 * a raw session yields every frame, fragments and control frames included.
 */
export abstract class BaseFrame {
  constructor(
    /** The payload, unmasked (and decompressed, where an extension applied). */
    readonly data: Buffer,
    /** False on every fragment of a message but the last. */
    readonly fin = true,
    /** RSV1 as received or to be sent (permessage-deflate marks compressed messages with it). */
    readonly rsv1 = false,
  ) {}
  abstract readonly type: "text" | "binary" | "continuation" | "close" | "ping" | "pong";
  abstract readonly opcode: number;
}

export class TextFrame extends BaseFrame {
  readonly type = "text";
  readonly opcode = Opcode.Text;
  private decoded: string | undefined;
  /** The payload decoded as UTF-8 (decoded once, on first use). Only meaningful on whole messages. */
  get text(): string {
    this.decoded ??= this.data.toString("utf8");
    return this.decoded;
  }
}

export class BinaryFrame extends BaseFrame {
  readonly type = "binary";
  readonly opcode = Opcode.Binary;
}

/** A later fragment of a text or binary message (raw sessions only). */
export class ContinuationFrame extends BaseFrame {
  readonly type = "continuation";
  readonly opcode = Opcode.Continuation;
}

export class CloseFrame extends BaseFrame {
  readonly type = "close";
  readonly opcode = Opcode.Close;
}

export class PingFrame extends BaseFrame {
  readonly type = "ping";
  readonly opcode = Opcode.Ping;
}

export class PongFrame extends BaseFrame {
  readonly type = "pong";
  readonly opcode = Opcode.Pong;
}

export type WebSocketFrame = TextFrame | BinaryFrame | ContinuationFrame | CloseFrame | PingFrame | PongFrame;
/** What a default session's `incoming` yields: whole messages only. */
export type MessageFrame = TextFrame | BinaryFrame;

const bytes = (data: string | Uint8Array): Buffer =>
  typeof data === "string"
    ? Buffer.from(data, "utf8")
    : Buffer.isBuffer(data)
      ? data
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/** Any frame (the type), and frame constructors (the value): `Frame.text("hi")`, `Frame.binary(bytes)`, `Frame.ping()`. */
export type Frame = WebSocketFrame;
export const Frame = {
  text: (data: string | Uint8Array, fin = true) => new TextFrame(bytes(data), fin),
  binary: (data: Uint8Array, fin = true) => new BinaryFrame(bytes(data), fin),
  continuation: (data: string | Uint8Array, fin = true) => new ContinuationFrame(bytes(data), fin),
  ping: (data: string | Uint8Array = Buffer.alloc(0)) => new PingFrame(bytes(data)),
  pong: (data: string | Uint8Array = Buffer.alloc(0)) => new PongFrame(bytes(data)),
} as const;
