import type { Frame } from "./frame.js";

/** A whole data message (message mode). Text payloads are valid UTF-8 unless `compressed`. */
export interface MessageEvent {
  type: "text" | "binary";
  data: Buffer;
  /** RSV1 was set on the first frame: an extension (permessage-deflate) must decode `data`. */
  compressed: boolean;
}

/** One data frame, fragments included (frame mode, for raw sessions). */
export interface FrameEvent {
  type: "frame";
  frame: Frame;
}

export interface PingEvent {
  type: "ping";
  data: Buffer;
}

export interface PongEvent {
  type: "pong";
  data: Buffer;
}

/** The peer's Close frame. `code` is 1005 (NoStatusReceived) when the frame had no payload (§7.1.5). */
export interface CloseEvent {
  type: "close";
  code: number;
  reason: string;
}

export type ProtocolEvent = MessageEvent | FrameEvent | PingEvent | PongEvent | CloseEvent;
