import { Buffer } from "node:buffer";
import { CloseCode, Opcode, ProtocolError, type ProtocolEvent, Utf8Validator } from "../protocol/index.js";
import {
  BinaryFrame,
  CloseFrame,
  ContinuationFrame,
  PingFrame,
  PongFrame,
  TextFrame,
  type WebSocketFrame,
} from "./frames.js";
import { compact } from "./incoming-queue.js";
import { WebSocketSession } from "./session.js";

/**
 * A raw session (Ktor's `webSocketRaw`): `incoming` yields every frame as received, fragments and
 * control frames included. Pings are not answered for you (unless `autoPong` is set on the route) and
 * no keepalive pings are sent; the protocol rules, limits and the Close-frame echo still apply.
 * With permessage-deflate, each fragment of a compressed message arrives inflated, RSV1 set on its first
 * frame; whole text and binary messages sent through `send` are compressed like in the default session.
 */
export class RawWebSocketSession<C = unknown, D = unknown> extends WebSocketSession<WebSocketFrame, C, D> {
  // The compressed message being received, when permessage-deflate is on.
  private compressed = false;
  private compressedText = false;
  private decodedSize = 0;
  private readonly utf8 = new Utf8Validator();

  /** @internal */
  protected onProtocolEvent(event: ProtocolEvent): void {
    switch (event.type) {
      case "frame": {
        const { opcode, payload, fin, rsv1 } = event.frame;
        const Kind =
          opcode === Opcode.Text ? TextFrame : opcode === Opcode.Binary ? BinaryFrame : ContinuationFrame;
        const first = opcode !== Opcode.Continuation;
        if (first) {
          this.compressedText = rsv1 && opcode === Opcode.Text;
          this.compressed = rsv1;
        }
        if (!this.compressed) {
          this.deliver(new Kind(this.keep(payload), fin, rsv1));
          return;
        }
        // permessage-deflate: each fragment is inflated as it comes; RSV1 stays on the first frame.
        if (fin) this.compressed = false;
        const checkText = this.compressedText;
        this.decode(payload, fin, (decoded) => {
          // Counted as each decode completes, in order, so an earlier message's fragments never count here.
          this.decodedSize = (first ? 0 : this.decodedSize) + decoded.length;
          if (this.decodedSize > this.maxFrameSize) {
            throw new ProtocolError(
              "MESSAGE_TOO_BIG",
              CloseCode.MessageTooBig,
              `message exceeds ${this.maxFrameSize} bytes`,
            );
          }
          if (checkText && (!this.utf8.write(decoded) || (fin && !this.utf8.end()))) {
            throw new ProtocolError(
              "INVALID_UTF8",
              CloseCode.InvalidPayload,
              "text message is not valid UTF-8",
            );
          }
          return new Kind(compact(decoded), fin, rsv1);
        });
        return;
      }
      case "ping":
        this.deliver(new PingFrame(this.keep(event.data)));
        return;
      case "pong":
        this.deliver(new PongFrame(this.keep(event.data)));
        return;
      case "close": {
        const payload = Buffer.allocUnsafe(event.code === 1005 ? 0 : 2 + Buffer.byteLength(event.reason));
        if (payload.length > 0) {
          payload.writeUInt16BE(event.code, 0);
          payload.write(event.reason, 2);
        }
        this.deliver(new CloseFrame(payload));
        return;
      }
      default:
        // Whole-message events do not occur in frame mode.
        return;
    }
  }

  /** @internal Any frame may be sent; the connection checks the fragmentation rules (§5.4) as it is queued. */
  protected checkFrame(_frame: WebSocketFrame): void {}
}
