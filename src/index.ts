/**
 * sockway: a WebSocket server framework for Node.js in the style of Ktor's server WebSockets.
 *
 *   const app = createApp().install(WebSockets, { pingPeriod: 30_000 });
 *   app.routing((r) => r.webSocket("/echo", async (session) => {
 *     for await (const frame of session.incoming) await session.send(frame);
 *   }));
 *   await app.listen({ port: 8080 });
 */
export * from "./app/index.js";
export * from "./client/index.js";
export {
  type AcceptedExtension,
  type MessageCodec,
  type PermessageDeflateOptions,
  permessageDeflate,
  type ServerExtension,
} from "./extensions/index.js";
export {
  CloseCode,
  type ExtensionOffer,
  HandshakeError,
  type HandshakeErrorCode,
  ProtocolError,
  type ProtocolErrorCode,
  UsageError,
  type UsageErrorCode,
} from "./protocol/index.js";
export type {
  AdapterHost,
  ClusterCount,
  DropReason,
  GapEvent,
  GapReason,
  Publishable,
  PublishOptions,
  PublishResult,
  PubSubAdapter,
  PubSubHub,
  PubSubStats,
} from "./pubsub/index.js";
export {
  type RedisAdapter,
  RedisAdapterError,
  type RedisAdapterOptions,
  type RedisAdapterStats,
  redisAdapter,
} from "./pubsub/index.js";
export { type PathParams, RoutePatternError } from "./routing/index.js";
export {
  BinaryFrame,
  CloseFrame,
  CloseReason,
  ContinuationFrame,
  DEFAULT_SESSION_OPTIONS,
  DefaultWebSocketSession,
  Frame,
  type MessageFrame,
  PingFrame,
  PongFrame,
  RawWebSocketSession,
  type Sendable,
  type SendOptions,
  SessionError,
  type SessionErrorCode,
  type SessionHandle,
  type SessionOptions,
  type SessionState,
  type SlowSubscriberPolicy,
  TextFrame,
  type WebSocketFrame,
  WebSocketSession,
} from "./session/index.js";
export * from "./session/typed.js";
export * from "./testing/index.js";
