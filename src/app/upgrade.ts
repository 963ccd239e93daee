import { Buffer } from "node:buffer";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest, ServerHttp2Stream } from "node:http2";
import type { Duplex } from "node:stream";
import { negotiateExtensions } from "../extensions/index.js";
import {
  acceptResponseHead,
  Connection,
  type ExtendedConnectRequest,
  errorResponse,
  type HandshakeResult,
  type UpgradeRequest,
  validateExtendedConnect,
  validateUpgradeRequest,
} from "../protocol/index.js";
import type { RouteMatch } from "../routing/index.js";
import {
  DefaultWebSocketSession,
  type FlushScheduler,
  RawWebSocketSession,
  type SessionHooks,
  type TopicRegistry,
  type WebSocketSession,
} from "../session/index.js";
import { abortTransport } from "../session/socket-output.js";
import { type ApplicationCall, Rejection, UpgradeCall } from "./call.js";
import type { RouteEntry } from "./route-builder.js";
import { STATUS_TEXT } from "./status-text.js";
import type { DirectRequest } from "./upgrade-gate.js";
import type { WebSocketsConfig } from "./websockets-plugin.js";

const HOOK_TIMED_OUT = Symbol("beforeUpgrade timed out");

type WsEntry = Extract<RouteEntry, { kind: "ws" }>;
/** A session of any route of the application, whatever its frame type. */
// biome-ignore lint/suspicious/noExplicitAny: default and raw sessions yield different frame types
export type AnySession = WebSocketSession<any, ApplicationCall, unknown>;

/** What the upgrade path needs from the application. */
export interface UpgradeHost {
  readonly config: WebSocketsConfig;
  readonly accepting: boolean;
  /** Sockets waiting for a `beforeUpgrade` hook: `stop()` answers them 503 at once. */
  readonly inHook: Set<Duplex>;
  reportError(error: unknown, kind: "handler" | "protocol" | "http"): void;
  /** Hooks given to every session of this host (one object, shared). */
  readonly sessionHooks: SessionHooks;
  /** Writes every session's output once per event-loop turn. */
  readonly scheduler: FlushScheduler;
  /** The application's pub/sub, where sessions' subscriptions are kept. */
  readonly topics: TopicRegistry;
  sessionStarted(session: AnySession): void;
  sessionEnded(session: AnySession): void;
}

/** An 'error' listener shared by every socket on the upgrade path (no closure per connection). */
export function destroySocket(this: Duplex): void {
  this.destroy();
}

/** The request of an opening handshake: over HTTP/1.1 (node:http's or sockway's reader) or HTTP/2. */
export type HandshakeRequest = IncomingMessage | DirectRequest | Http2ServerRequest;

/**
 * Whether an upgrade's stream is an HTTP/2 stream (RFC 8441): answered with HEADERS on the stream, not
 * with HTTP/1.1 bytes. node:http2 does not export the stream's class; `respond` is only on its streams.
 */
export function isHttp2Stream(socket: Duplex): socket is ServerHttp2Stream {
  return typeof (socket as Partial<ServerHttp2Stream>).respond === "function";
}

/** Headers that belong to an HTTP/1.1 connection and that HTTP/2 forbids (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "upgrade",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
]);

/** Answers an upgrade request with an HTTP error and closes the socket (or the HTTP/2 stream). */
export function refuse(
  socket: Duplex,
  status: number,
  body: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (socket.destroyed || socket.writableEnded) return;
  if (isHttp2Stream(socket)) {
    // Answered 200 already (a failure after the handshake): reset with CANCEL. A bare destroy() resets
    // with NO_ERROR, which the peer takes for a clean end of its WebSocket.
    if (socket.headersSent) return abortTransport(socket);
    const h2: Record<string, string | number> = {
      ":status": status,
      "content-type": "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(body),
    };
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (!CONNECTION_SPECIFIC.has(lower)) h2[lower] = value;
    }
    socket.respond(h2);
    socket.end(body);
  } else {
    socket.end(errorResponse(status, STATUS_TEXT[status] ?? "Error", body, headers));
  }
  // A client that never reads its answer must not hold the socket (or the stream).
  setTimeout(() => dropRefused(socket), 1000).unref();
}

/**
 * Ends a refused upgrade's connection (or stream) after its grace second. An HTTP/2 stream whose answer
 * did not all go out is reset with CANCEL: the NO_ERROR of a bare destroy() would tell the peer that the
 * truncated body was complete.
 */
function dropRefused(socket: Duplex): void {
  if (isHttp2Stream(socket) && !socket.writableFinished) abortTransport(socket);
  else socket.destroy();
}

/**
 * Runs a WebSocket opening handshake against the routes that matched the path (RFC 6455 §4.2):
 * validate, check the origin, pick the route by subprotocol, run `beforeUpgrade`, then answer 101 and
 * start the session with its handler.
 */
export async function upgrade(
  host: UpgradeHost,
  req: HandshakeRequest,
  socket: Duplex,
  head: Buffer,
  matches: ReadonlyArray<RouteMatch<RouteEntry>>,
  path: string,
  rawQuery: string,
): Promise<void> {
  const h2 = isHttp2Stream(socket) ? socket : undefined;
  const checked: HandshakeResult<UpgradeRequest | ExtendedConnectRequest> = h2
    ? validateExtendedConnect(req.headers)
    : validateUpgradeRequest(req as IncomingMessage | DirectRequest);
  if (!checked.ok)
    return refuse(socket, checked.error.status, `${checked.error.message}\n`, checked.error.headers);
  const config = host.config;
  const origin = typeof req.headers.origin === "string" ? req.headers.origin : undefined;
  if (!config.originAllowed(origin)) return refuse(socket, 403, "Origin not allowed\n");

  const offered = checked.value.protocols;
  let chosen: { entry: WsEntry; params: Readonly<Record<string, string>> } | undefined;
  for (const m of matches) {
    const e = m.value;
    if (e.kind === "ws" && (e.protocol === undefined || offered.includes(e.protocol))) {
      chosen = { entry: e, params: m.params };
      break;
    }
  }
  if (!chosen) {
    const supported = matches.flatMap((m) =>
      m.value.kind === "ws" && m.value.protocol ? [m.value.protocol] : [],
    );
    return refuse(
      socket,
      400,
      `Unsupported subprotocol: offered [${offered.join(", ")}], this route speaks [${supported.join(", ")}]\n`,
    );
  }
  const { entry } = chosen;
  const call = new UpgradeCall(req, chosen.params, path, rawQuery);
  call.protocol = entry.protocol;

  let data: unknown;
  if (entry.beforeUpgrade) {
    // A hook that never settles must not hold the socket, nor this handshake, forever.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<typeof HOOK_TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(HOOK_TIMED_OUT), config.handshakeTimeout);
      timer.unref(); // a stopped app must not keep the process alive for it
    });
    host.inHook.add(socket);
    try {
      data = await Promise.race([entry.beforeUpgrade(call), timedOut]);
    } catch (error) {
      host.reportError(error, "handler");
      return refuse(socket, 500, "Internal Server Error\n");
    } finally {
      clearTimeout(timer);
      host.inHook.delete(socket);
    }
    if (data === HOOK_TIMED_OUT) return refuse(socket, 503, "Upgrade check timed out\n");
    if (data instanceof Rejection) return refuse(socket, data.status, data.body, data.headers);
  }
  if (socket.destroyed || !host.accepting) return refuse(socket, 503, "Server shutting down\n");
  // The client left while the hook ran: nobody to start a session for.
  if (socket.readableEnded) return void socket.destroy();

  const options = config.session;
  const negotiated = negotiateExtensions(config.extensions, checked.value.extensions);
  const connection = new Connection({
    rsv1: negotiated.createCodec !== undefined,
    side: "server",
    maxMessageSize: options.maxFrameSize,
    maxFragments: options.maxFragments,
    mode: entry.raw ? "frames" : "messages",
    autoPong: entry.autoPong,
    deferCloseReply: true,
  });
  if (h2) {
    // RFC 8441 §5: a 2xx answers the extended CONNECT; the stream then carries the frames.
    const answer: Record<string, string | number> = { ":status": 200 };
    if (entry.protocol !== undefined) answer["sec-websocket-protocol"] = entry.protocol;
    if (negotiated.header) answer["sec-websocket-extensions"] = negotiated.header;
    h2.respond(answer);
  } else {
    const key = (checked.value as UpgradeRequest).key;
    socket.write(acceptResponseHead(key, { protocol: entry.protocol, extensions: negotiated.header }));
  }
  const sessionOptions = entry.raw ? { ...options, pingPeriod: 0 } : options;
  const Session = entry.raw ? RawWebSocketSession : DefaultWebSocketSession;
  let session: AnySession | undefined;
  try {
    session = new Session<UpgradeCall, unknown>(socket, connection, sessionOptions, {
      call,
      data,
      hooks: host.sessionHooks,
      extensions: negotiated.accepted,
      protocol: entry.protocol,
      codec: negotiated.createCodec?.(),
      scheduler: host.scheduler,
      topics: host.topics,
    }) as unknown as AnySession;
    if (!config.keepRequest) call.releaseRequest();
    host.sessionStarted(session);
    session.receiveHead(head);
  } catch (error) {
    // The peer has its 101 (or 200) and reads WebSocket frames from here: an HTTP 500 would be garbage
    // in its byte stream. Drop the connection (1006 on its side) and report the bug.
    host.reportError(error, "handler");
    if (session) session.terminate();
    else abortTransport(socket);
    return;
  }
  runHandler(session, entry.handler as unknown as (s: AnySession) => unknown);
}

function runHandler(session: AnySession, handler: (s: AnySession) => unknown): void {
  let result: unknown;
  try {
    result = handler(session);
  } catch (error) {
    session.handlerFinished(error);
    return;
  }
  // Two functions bound to the session (about 48 B each), not two closures over one context (56 B each
  // plus the context): they live as long as the handler runs, which is the session's life.
  Promise.resolve(result).then(handlerReturned.bind(session), handlerThrew.bind(session));
}

function handlerReturned(this: AnySession): void {
  this.handlerFinished();
}

function handlerThrew(this: AnySession, error: unknown): void {
  this.handlerFinished(error);
}
