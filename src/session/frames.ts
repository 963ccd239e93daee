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
  declare readonly type: "text";
  declare readonly opcode: typeof Opcode.Text;
  private decoded: string | undefined;
  /** The payload decoded as UTF-8 (decoded once, on first use). Only meaningful on whole messages. */
  get text(): string {
    this.decoded ??= this.data.toString("utf8");
    return this.decoded;
  }
}

export class BinaryFrame extends BaseFrame {
  declare readonly type: "binary";
  declare readonly opcode: typeof Opcode.Binary;
}

/** A later fragment of a text or binary message (raw sessions only). */
export class ContinuationFrame extends BaseFrame {
  declare readonly type: "continuation";
  declare readonly opcode: typeof Opcode.Continuation;
}

export class CloseFrame extends BaseFrame {
  declare readonly type: "close";
  declare readonly opcode: typeof Opcode.Close;
}

export class PingFrame extends BaseFrame {
  declare readonly type: "ping";
  declare readonly opcode: typeof Opcode.Ping;
}

export class PongFrame extends BaseFrame {
  declare readonly type: "pong";
  declare readonly opcode: typeof Opcode.Pong;
}

// `type` and `opcode` live on each class's prototype: two fewer stores and 16 B less per received
// message than instance fields.
for (const [Class, type, opcode] of [
  [TextFrame, "text", Opcode.Text],
  [BinaryFrame, "binary", Opcode.Binary],
  [ContinuationFrame, "continuation", Opcode.Continuation],
  [CloseFrame, "close", Opcode.Close],
  [PingFrame, "ping", Opcode.Ping],
  [PongFrame, "pong", Opcode.Pong],
] as const) {
  Object.defineProperty(Class.prototype, "type", { value: type, enumerable: true });
  Object.defineProperty(Class.prototype, "opcode", { value: opcode, enumerable: true });
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
