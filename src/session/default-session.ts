import { type ProtocolEvent, UsageError } from "../protocol/index.js";
import { SessionError } from "./errors.js";
import { BinaryFrame, type MessageFrame, TextFrame, type WebSocketFrame } from "./frames.js";
import { WebSocketSession } from "./session.js";

/**
 * The default session (Ktor's `DefaultWebSocketServerSession`): `incoming` yields whole Text and Binary
 * messages only. Pings are answered, keepalive pings sent, fragments reassembled and the closing
 * handshake completed by the library.
 */
export class DefaultWebSocketSession<C = unknown, D = unknown> extends WebSocketSession<MessageFrame, C, D> {
  protected onProtocolEvent(event: ProtocolEvent): void {
    if (event.type === "text" || event.type === "binary") {
      this.receiveMessage(event, event.type === "text" ? textFrame : binaryFrame);
    } else if (event.type === "close") {
      this.endIncoming();
    }
  }

  protected sendFrame(frame: WebSocketFrame): void {
    switch (frame.type) {
      case "text":
      case "binary":
        if (!frame.fin)
          throw new UsageError(
            "INVALID_FRAME",
            "the default session sends whole messages; use webSocketRaw for fragments",
          );
        this.connection.sendFrame(frame.opcode, frame.data);
        return;
      case "ping":
      case "pong":
        this.connection.sendFrame(frame.opcode, frame.data);
        return;
      default:
        throw new SessionError(
          "SESSION_CLOSED",
          `send a ${frame.type} frame through close() or a raw session`,
        );
    }
  }
}

const textFrame = (payload: Buffer): MessageFrame => new TextFrame(payload);
const binaryFrame = (payload: Buffer): MessageFrame => new BinaryFrame(payload);
