export { CloseReason } from "./close-reason.js";
export { DefaultWebSocketSession } from "./default-session.js";
export { SessionError, type SessionErrorCode } from "./errors.js";
export { FlushScheduler } from "./flush-scheduler.js";
export {
  BinaryFrame,
  CloseFrame,
  ContinuationFrame,
  Frame,
  type MessageFrame,
  PingFrame,
  PongFrame,
  TextFrame,
  type WebSocketFrame,
} from "./frames.js";
export { IncomingQueue, ITEM_OVERHEAD } from "./incoming-queue.js";
export { DEFAULT_SESSION_OPTIONS, resolveSessionOptions, type SessionOptions } from "./options.js";
export { OutboundQueue } from "./outbound-queue.js";
export { type Delivery, Publication, QUEUED, SKIPPED, SLOW } from "./publication.js";
export { RawWebSocketSession } from "./raw-session.js";
export { WebSocketSession } from "./session.js";
export type {
  Sendable,
  SendOptions,
  SessionErrorKind,
  SessionHandle,
  SessionHooks,
  SessionSetup,
  SessionState,
  SlowSubscriberPolicy,
  TopicRegistry,
} from "./session-types.js";
export { FRAME_OVERHEAD } from "./session-writer.js";
