import { Opcode, type ProtocolEvent } from "../protocol/index.js";
import {
  BinaryFrame,
  CloseFrame,
  ContinuationFrame,
  PingFrame,
  PongFrame,
  TextFrame,
  type WebSocketFrame,
} from "./frames.js";
import { WebSocketSession } from "./session.js";

/**
 * A raw session (Ktor's `webSocketRaw`): `incoming` yields every frame as received, fragments and
 * control frames included. Pings are not answered for you (unless `autoPong` is set on the route) and
 * no keepalive pings are sent; the protocol rules, limits and the Close-frame echo still apply.
 */
export class RawWebSocketSession<C = unknown, D = unknown> extends WebSocketSession<WebSocketFrame, C, D> {
  protected onProtocolEvent(event: ProtocolEvent): void {
    switch (event.type) {
      case "frame": {
        const { opcode, payload, fin, rsv1 } = event.frame;
        const Kind =
          opcode === Opcode.Text ? TextFrame : opcode === Opcode.Binary ? BinaryFrame : ContinuationFrame;
        this.incoming.push(new Kind(payload, fin, rsv1));
        return;
      }
      case "ping":
        this.incoming.push(new PingFrame(event.data));
        return;
      case "pong":
        this.incoming.push(new PongFrame(event.data));
        return;
      case "close": {
        const payload = Buffer.allocUnsafe(event.code === 1005 ? 0 : 2 + Buffer.byteLength(event.reason));
        if (payload.length > 0) {
          payload.writeUInt16BE(event.code, 0);
          payload.write(event.reason, 2);
        }
        this.incoming.push(new CloseFrame(payload));
        this.endIncoming();
        return;
      }
      default:
        // Whole-message events do not occur in frame mode.
        return;
    }
  }

  protected sendFrame(frame: WebSocketFrame): void {
    this.connection.sendFrame(frame.opcode, frame.data, { fin: frame.fin, rsv1: frame.rsv1 });
  }
}
