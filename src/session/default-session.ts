import { type ProtocolEvent, UsageError } from "../protocol/index.js";
import { BinaryFrame, type MessageFrame, TextFrame, type WebSocketFrame } from "./frames.js";
import { WebSocketSession } from "./session.js";

/**
 * The default session (Ktor's `DefaultWebSocketServerSession`): `incoming` yields whole Text and Binary
 * messages only. Pings are answered, keepalive pings sent, fragments reassembled and the closing
 * handshake completed by the library.
 */
export class DefaultWebSocketSession<C = unknown, D = unknown> extends WebSocketSession<MessageFrame, C, D> {
  /** @internal */
  protected onProtocolEvent(event: ProtocolEvent): void {
    if (event.type === "text") this.receiveMessage(event, textFrame);
    else if (event.type === "binary") this.receiveMessage(event, binaryFrame);
  }

  /** @internal */
  protected checkFrame(frame: WebSocketFrame): void {
    const type = frame.type;
    if (type === "ping" || type === "pong" || ((type === "text" || type === "binary") && frame.fin)) return;
    throw new UsageError(
      "INVALID_FRAME",
      `the default session sends whole messages, pings and pongs, not ${frame.fin ? "" : "unfinished "}${type} frames; use webSocketRaw for fragments`,
    );
  }
}

const textFrame = (payload: Buffer): MessageFrame => new TextFrame(payload);
const binaryFrame = (payload: Buffer): MessageFrame => new BinaryFrame(payload);
