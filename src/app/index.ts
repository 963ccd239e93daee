export {
  Application,
  createApp,
  type ErrorHook,
  type ErrorKind,
  type ListenOptions,
  type StopOptions,
} from "./application.js";
export { ApplicationCall, HttpCall, Rejection, UpgradeCall } from "./call.js";
export * from "./cluster.js";
export { AppError, type AppErrorCode } from "./errors.js";
export { PubSub, type PubSubOptions } from "./pubsub-plugin.js";
export {
  type HttpHandler,
  type RawWebSocketHandler,
  Route,
  type TypedWebSocketHandler,
  type TypedWebSocketRouteOptions,
  type WebSocketHandler,
  type WebSocketRouteOptions,
} from "./route-builder.js";
export {
  DEFAULT_HANDSHAKE_TIMEOUT,
  DEFAULT_MAX_HEADER_SIZE,
  type Plugin,
  WebSockets,
  type WebSocketsOptions,
} from "./websockets-plugin.js";
