export { CloseReason } from "./close-reason.js";
export { DefaultWebSocketSession } from "./default-session.js";
export { SessionError, type SessionErrorCode } from "./errors.js";
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
export { IncomingQueue } from "./incoming-queue.js";
export { DEFAULT_SESSION_OPTIONS, resolveSessionOptions, type SessionOptions } from "./options.js";
export { RawWebSocketSession } from "./raw-session.js";
export {
  type ManagedSession,
  type Sendable,
  type SessionErrorKind,
  type SessionHooks,
  WebSocketSession,
} from "./session.js";
