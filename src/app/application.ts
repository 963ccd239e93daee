import { createServer as createHttpServer, IncomingMessage, type Server, ServerResponse } from "node:http";
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2Server,
  Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { hasToken } from "../protocol/index.js";
import {
  type ClusterCount,
  type Publishable,
  type PublishOptions,
  type PublishResult,
  PubSubHub,
} from "../pubsub/index.js";
import { type RouteMatch, RoutePathError, RouteTree } from "../routing/index.js";
import { FlushScheduler, type SessionHandle } from "../session/index.js";
import { type ApplicationCall, HttpCall } from "./call.js";
import { AppError } from "./errors.js";
import { Route, type RouteEntry, type RouteHost } from "./route-builder.js";
import { closingResponse } from "./status-text.js";
import {
  type AnySession,
  destroySocket,
  type HandshakeRequest,
  refuse,
  type UpgradeHost,
  upgrade,
} from "./upgrade.js";
import { UpgradeGate } from "./upgrade-gate.js";
import { type Plugin, WebSockets, type WebSocketsConfig } from "./websockets-plugin.js";

export type ErrorKind = "handler" | "protocol" | "http" | "pubsub";
/**
 * Receives errors: a handler that threw ("handler", "http"), a peer that broke the protocol
 * ("protocol"), or the pub/sub's backplane failing ("pubsub": Redis down; local delivery goes on).
 */
export type ErrorHook = (error: unknown, kind: ErrorKind) => void;

export interface ListenOptions {
  port?: number;
  host?: string;
  /** TLS options for node:https (key, cert, ...): serves https:// and wss://. */
  tls?: HttpsServerOptions;
  /**
   * Who reads WebSocket upgrade requests. "sockway" (default, plain HTTP only): each connection's first
   * request head is read by sockway, and a plain upgrade request is answered without node:http's
   * parser; every other connection goes to node:http with its bytes unchanged. "node": node:http reads
   * every request. See docs/options.md.
   */
  upgradeReader?: "sockway" | "node";
  /**
   * Serve HTTP/2 as well, on the same port (needs `tls`): a node:http2 secure server that also speaks
   * HTTP/1.1 (ALPN picks), so plain upgrades keep working. `true` for the defaults, or its options. On
   * HTTP/2 a WebSocket is an extended CONNECT stream (RFC 8441), routed like an upgrade; the server
   * advertises SETTINGS_ENABLE_CONNECT_PROTOCOL only when the app has WebSocket routes at `listen`.
   */
  http2?: boolean | Http2Options;
}

/** HTTP/2 options of `listen({ tls, http2 })`. */
export interface Http2Options {
  /**
   * Streams one HTTP/2 connection may have open at once, WebSockets and requests together
   * (SETTINGS_MAX_CONCURRENT_STREAMS). Default 256.
   */
  maxConcurrentStreams?: number;
  /**
   * Bytes a stream may receive before the server reads them (SETTINGS_INITIAL_WINDOW_SIZE; RFC 9113's
   * default is 65,535). Default 262,144: a larger message needs fewer window updates.
   */
  initialWindowSize?: number;
  /**
   * Milliseconds an HTTP/2 connection may stay open with no stream (after its last WebSocket or
   * request ended, or from its start) before the server closes it with GOAWAY. Default 30 000; 0 never.
   */
  idleTimeout?: number;
}

export const HTTP2_DEFAULTS: Readonly<Required<Http2Options>> = {
  maxConcurrentStreams: 256,
  initialWindowSize: 256 * 1024,
  idleTimeout: 30_000,
};

export interface StopOptions {
  /** Milliseconds to wait for sessions to finish their closing handshake before destroying them. */
  grace?: number;
}

/** By default handler errors are logged; protocol violations are the peer's business and are not. */
const defaultErrorHook: ErrorHook = (error, kind) => {
  if (kind !== "protocol") console.error(`sockway: ${kind} error:`, error);
};

/**
 * A sockway application: plugins, routes, and an engine on node:http. Create it with `createApp()`.
 */
export class Application {
  private readonly plugins = new Map<string, unknown>();
  private readonly liveSessions = new Set<AnySession>();
  /** Sockets whose upgrade waits for the responses to earlier requests on them (see upgradeInTurn). */
  private readonly waitingUpgrades = new Set<Duplex>();
  private errorHook: ErrorHook = defaultErrorHook;
  private server: Server | Http2SecureServer | Http2Server | undefined;
  /** With `listen({ http2 })`: its HTTP/2 connections (GOAWAY at stop) and all its TLS sockets. */
  private readonly h2Sessions = new Set<Http2Session>();
  private readonly tlsSockets = new Set<Socket>();
  private gate: UpgradeGate | undefined;
  private stopping = false;
  /**
   * @internal What the routes builder and the upgrade path need from the application, kept off its
   * public surface.
   */
  readonly host: RouteHost & UpgradeHost;
  /**
   * Topics: who subscribes to what on this node, publishing, counts and statistics. In-process by
   * default; the PubSub plugin's `adapter` carries publications to other processes.
   */
  readonly pubsub: PubSubHub;

  constructor() {
    const app = this;
    const tree = new RouteTree<RouteEntry>();
    const reportError = (error: unknown, kind: ErrorKind) => app.reportError(error, kind);
    this.pubsub = new PubSubHub((error) => app.reportError(error, "pubsub"));
    this.host = {
      tree,
      get webSocketsInstalled() {
        return app.plugins.has(WebSockets.key);
      },
      get config() {
        return app.webSocketsConfig();
      },
      get accepting() {
        return !app.stopping;
      },
      reportError,
      inHook: new Set<Duplex>(),
      scheduler: new FlushScheduler(),
      topics: this.pubsub,
      // One object for the whole application, not one per connection.
      sessionHooks: {
        onError: reportError,
        onEnd: (session) => app.liveSessions.delete(session as AnySession),
      },
      sessionStarted: (session) => app.liveSessions.add(session),
      sessionEnded: (session) => app.liveSessions.delete(session),
    };
  }

  /** Installs a plugin with its options. Each plugin once. */
  install<O, C>(plugin: Plugin<O, C>, options?: O): this {
    if (this.plugins.has(plugin.key)) {
      throw new AppError("PLUGIN_ALREADY_INSTALLED", `the ${plugin.name} plugin is already installed`);
    }
    this.plugins.set(plugin.key, plugin.install(options, this));
    return this;
  }

  /**
   * Sends `data` to every subscriber of `topic`, on this node and (with an adapter) on the others:
   * `app.pubsub.publish`. Returns what happened on this node.
   */
  publish(topic: string, data: Publishable, options?: PublishOptions): PublishResult {
    return this.pubsub.publish(topic, data, options);
  }

  /** Subscribers of `topic` on this node: `app.pubsub.subscriberCount`. */
  subscriberCount(topic: string): number {
    return this.pubsub.subscriberCount(topic);
  }

  /** Subscribers of `topic` on every node, with a timeout: `app.pubsub.clusterSubscriberCount`. */
  clusterSubscriberCount(topic: string, options?: { timeout?: number }): Promise<ClusterCount> {
    return this.pubsub.clusterSubscriberCount(topic, options);
  }

  /** Defines routes: `app.routing((r) => { r.webSocket("/echo", handler) })`. */
  routing(build: (route: Route<"">) => void): this {
    build(new Route(this.host, ""));
    return this;
  }

  /** Replaces the error hook (default: log handler and HTTP errors to the console). */
  onError(hook: ErrorHook): this {
    this.errorHook = hook;
    return this;
  }

  /** Sessions not yet ended (closing ones included: check `isOpen`), of every WebSocket route. */
  get sessions(): ReadonlySet<SessionHandle<ApplicationCall>> {
    return this.liveSessions;
  }

  /** Whether the app has a WebSocket route to serve (so HTTP/2 may advertise extended CONNECT). */
  private get servesWebSockets(): boolean {
    return this.host.webSocketsInstalled && this.host.tree.some((entry) => entry.kind === "ws");
  }

  private webSocketsConfig(): WebSocketsConfig {
    const config = this.plugins.get(WebSockets.key) as WebSocketsConfig | undefined;
    if (!config)
      throw new AppError("PLUGIN_MISSING", "the WebSockets plugin is not installed: app.install(WebSockets)");
    return config;
  }

  private reportError(error: unknown, kind: ErrorKind): void {
    try {
      this.errorHook(error, kind);
    } catch {
      // An error hook that throws must not take the connection or the process down.
    }
  }

  // ---- HTTP -------------------------------------------------------------------------------------

  /** Handles a plain HTTP request with the HTTP routes (404, 405 and 426 otherwise). */
  readonly handleRequest = (
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): void => {
    const { path, query } = splitUrl(req.url);
    const matches = this.matchPath(path);
    if (!matches) return void res.writeHead(400, { "Content-Type": "text/plain" }).end("Malformed path\n");
    const method = (req.method ?? "GET").toUpperCase();
    const found =
      matches.find((m) => m.value.kind === "http" && m.value.method === method) ??
      (method === "HEAD"
        ? matches.find((m) => m.value.kind === "http" && m.value.method === "GET")
        : undefined);
    if (found && found.value.kind === "http") {
      const call = new HttpCall(req, res, found.params, path, query);
      const onError = (error: unknown) => {
        this.reportError(error, "http");
        if (!res.headersSent)
          res.writeHead(500, { "Content-Type": "text/plain" }).end("Internal Server Error\n");
        else res.destroy();
      };
      try {
        Promise.resolve(found.value.handler(call)).catch(onError);
      } catch (error) {
        onError(error);
      }
      return;
    }
    if (matches.length === 0)
      return void res.writeHead(404, { "Content-Type": "text/plain" }).end("Not Found\n");
    if ((method === "GET" || method === "HEAD") && matches.some((m) => m.value.kind === "ws")) {
      const body = "This resource needs a WebSocket upgrade\n";
      // HTTP/2 has no Upgrade nor Connection header (RFC 9113 §8.2.2): its WebSockets are CONNECTs.
      if (req.httpVersionMajor >= 2)
        return void res
          .writeHead(426, { "Sec-WebSocket-Version": "13", "Content-Type": "text/plain" })
          .end(body);
      res.writeHead(426, {
        Upgrade: "websocket",
        // node:http keeps the connection alive whenever a Connection header is set, so a client's
        // "Connection: close" (or HTTP/1.0) must be carried over by hand.
        Connection: (res as ServerResponse).shouldKeepAlive ? "Upgrade" : "Upgrade, close",
        "Sec-WebSocket-Version": "13",
        "Content-Type": "text/plain",
      });
      return void res.end(body);
    }
    const allowed = new Set(matches.flatMap((m) => (m.value.kind === "http" ? [m.value.method] : ["GET"])));
    if (allowed.has("GET")) allowed.add("HEAD");
    res
      .writeHead(405, { Allow: [...allowed].join(", "), "Content-Type": "text/plain" })
      .end("Method Not Allowed\n");
  };

  // ---- WebSocket upgrades -----------------------------------------------------------------------

  /**
   * Handles node:http's `upgrade` event (`server.on("upgrade", app.handleUpgrade)`): runs the handshake
   * on the matching WebSocket route, or answers with the right HTTP error.
   */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    this.startUpgrade(req, socket, head);
  };

  /**
   * node:http2's 'connect' event. On an HTTP/2 connection, an extended CONNECT with `:protocol`
   * (RFC 8441) is a WebSocket handshake on its stream, routed as an upgrade; a CONNECT without it (a
   * tunnel) is refused 405. On HTTP/1.1 (the same server, `allowHTTP1`) node:http emits 'connect' for
   * the CONNECT method with the socket: refused 405 too.
   */
  private readonly handleConnect = (
    req: Http2ServerRequest | IncomingMessage,
    second: Http2ServerResponse | Duplex,
  ): void => {
    if (!(req instanceof Http2ServerRequest)) {
      const socket = second as Duplex;
      socket.on("error", destroySocket);
      return refuse(socket, 405, "Method Not Allowed\n", { Allow: "GET" });
    }
    const stream = req.stream;
    if (req.headers[":protocol"] === undefined) {
      stream.on("error", destroySocket);
      return refuse(stream, 405, "CONNECT tunnels are not served here\n");
    }
    this.startUpgrade(req, stream, EMPTY);
  };

  /** The upgrade path for node:http's requests, the ones the gate read (DirectRequest) and HTTP/2's. */
  private startUpgrade(req: HandshakeRequest, socket: Duplex, head: Buffer): void {
    socket.on("error", destroySocket);
    this.upgradeInTurn(req, socket, head);
  }

  /**
   * node:http emits 'upgrade' as soon as it has parsed the request, even one pipelined behind requests
   * whose responses are still to be written: the 101 waits for those (RFC 9112 §9.3.2). Not if the
   * socket closes or is ended first (a response with `Connection: close` ends the connection).
   */
  private upgradeInTurn(req: HandshakeRequest, socket: Duplex, head: Buffer): void {
    if (socket.destroyed || !socket.writable) return void this.waitingUpgrades.delete(socket);
    const pending = pendingResponse(socket);
    if (pending) {
      // Destroyed by stop(): node:http no longer counts an upgraded socket among its connections.
      this.waitingUpgrades.add(socket);
      pending.once("close", () => this.upgradeInTurn(req, socket, head));
      return;
    }
    this.waitingUpgrades.delete(socket);
    try {
      this.routeUpgrade(req, socket, head);
    } catch (error) {
      // A bug on this path must cost one connection, not the process.
      this.reportError(error, "http");
      refuse(socket, 500, "Internal Server Error\n");
    }
  }

  private routeUpgrade(req: HandshakeRequest, socket: Duplex, head: Buffer): void {
    if (this.stopping) return refuse(socket, 503, "Server shutting down\n");
    const { path, query } = splitUrl(req.url);
    const matches = this.matchPath(path);
    if (!matches) return refuse(socket, 400, "Malformed path\n");
    const wsMatches = matches.filter((m) => m.value.kind === "ws");
    // Another protocol (h2c, from `curl --http2`): the Upgrade header may be ignored and the request
    // answered as plain HTTP (RFC 9110 §7.8) by the server's own request handler. (The gate hands only
    // WebSocket upgrades over, so such a request is always node:http's.)
    if (
      req instanceof IncomingMessage &&
      !hasToken(req.headers.upgrade, "websocket") &&
      this.server &&
      wsMatches.length === 0
    )
      return answerAsHttp(this.server as Server, req, socket);
    if (wsMatches.length === 0 || !this.host.webSocketsInstalled)
      return refuse(socket, 404, "No WebSocket route here\n");
    upgrade(this.host, req, socket, head, wsMatches, path, query).catch((error: unknown) => {
      this.reportError(error, "handler");
      refuse(socket, 500, "Internal Server Error\n");
    });
  }

  /**
   * Serves this app's WebSocket routes on an existing server (Express, Fastify, plain node:http). On a
   * node:http2 server (`createSecureServer`, `createServer`) that uses the compatibility API (a
   * 'request' listener, as frameworks do): extended CONNECTs (RFC 8441) too, and when the app has
   * WebSocket routes its SETTINGS advertise them from then on (`updateSettings`); HTTP/1.1 upgrades
   * with `allowHTTP1`.
   */
  attach(server: Server | Http2SecureServer | Http2Server): this {
    server.on("upgrade", this.handleUpgrade);
    if (isHttp2Server(server)) {
      server.on("connect", this.handleConnect);
      if (this.servesWebSockets) server.updateSettings({ enableConnectProtocol: true });
    }
    this.server ??= server;
    this.pubsub.start();
    return this;
  }

  private matchPath(path: string): RouteMatch<RouteEntry>[] | undefined {
    try {
      return this.host.tree.match(path);
    } catch (error) {
      if (error instanceof RoutePathError) return undefined;
      throw error;
    }
  }

  // ---- engine -----------------------------------------------------------------------------------

  /** Starts a node:http (or node:https with `tls`) server. Resolves with its address once listening. */
  async listen(options: ListenOptions = {}): Promise<{ port: number; host: string; url: string }> {
    if (this.server?.listening)
      throw new AppError("ALREADY_LISTENING", "the application is already listening");
    const reader = options.upgradeReader ?? "sockway";
    if (reader !== "sockway" && reader !== "node")
      throw new AppError(
        "INVALID_OPTION",
        `upgradeReader: "sockway" or "node", not ${JSON.stringify(reader)}`,
      );
    const ws = this.host.webSocketsInstalled ? this.webSocketsConfig() : undefined;
    const serverOptions = {
      maxHeaderSize: ws?.maxHeaderSize ?? 8 * 1024,
      headersTimeout: ws?.handshakeTimeout ?? 10_000,
      requestTimeout: Math.max(ws?.handshakeTimeout ?? 10_000, 30_000),
      connectionsCheckingInterval: 1000,
    };
    let server: Server | Http2SecureServer;
    if (options.http2) {
      if (!options.tls)
        throw new AppError("INVALID_OPTION", "http2 needs tls: browsers speak HTTP/2 only over TLS");
      server = this.createHttp2Server(
        options.tls,
        options.http2 === true ? {} : options.http2,
        serverOptions,
      );
    } else {
      server = options.tls
        ? createHttpsServer({ ...options.tls, ...serverOptions }, this.handleRequest)
        : createHttpServer(serverOptions, this.handleRequest);
    }
    server.on("upgrade", this.handleUpgrade);
    this.gate =
      options.tls || reader === "node" || !ws
        ? undefined
        : UpgradeGate.install(
            server as Server,
            serverOptions.maxHeaderSize,
            serverOptions.headersTimeout,
            (req, socket, rest) => this.startUpgrade(req, socket, rest),
          );
    server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
      // As node:http would answer: 431 for a head over maxHeaderSize, 408 past handshakeTimeout.
      const status =
        error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
      if (socket.writable) socket.end(closingResponse(status));
      else socket.destroy();
    });
    this.server = server;
    this.stopping = false;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.pubsub.start();
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const scheme = options.tls ? "https" : "http";
    return { port: address.port, host: address.address, url: `${scheme}://${host}:${address.port}` };
  }

  /**
   * A node:http2 secure server that speaks HTTP/1.1 too (`allowHTTP1`), with this app's request,
   * upgrade and extended CONNECT handlers, and its connections tracked for `stop()`.
   */
  private createHttp2Server(
    tls: HttpsServerOptions,
    options: Http2Options,
    http1: { maxHeaderSize: number; headersTimeout: number; requestTimeout: number },
  ): Http2SecureServer {
    const maxConcurrentStreams = http2Option(options, "maxConcurrentStreams", 1);
    const initialWindowSize = http2Option(options, "initialWindowSize", 65_535);
    const idleTimeout = http2Option(options, "idleTimeout", 0);
    // Browsers do not fall back to HTTP/1.1 when an advertised extended CONNECT fails: advertise it
    // only when there is a WebSocket route to serve it.
    const hasWebSockets = this.servesWebSockets;
    // node:http2 refuses new streams (RST_STREAM ENHANCE_YOUR_CALM) while a connection's memory is over
    // maxSessionMemory (default 10 MB), and it counts the data queued on its streams. WebSockets whose
    // peer reads slowly each hold up to their outgoingHighWaterMark (more for one larger message) there,
    // within limits the sessions already enforce: with 10 MB, a few such streams made the connection
    // refuse every new WebSocket and every HTTP request of the page sharing it. Leave room for that.
    const highWaterMark = this.host.webSocketsInstalled ? this.host.config.session.outgoingHighWaterMark : 0;
    const maxSessionMemory = 10 + Math.ceil((maxConcurrentStreams * highWaterMark) / 1_000_000);
    const server = createSecureServer(
      {
        ...(tls as object),
        allowHTTP1: true,
        maxSessionMemory,
        settings: {
          enableConnectProtocol: hasWebSockets,
          maxConcurrentStreams,
          initialWindowSize,
          maxHeaderListSize: http1.maxHeaderSize,
        },
      },
      this.handleRequest,
    );
    // node:http2 hands HTTP/1.1 connections to node:http's parser, which reads these off the server.
    Object.assign(server, http1);
    // With a 'request' listener, node:http2 answers every CONNECT 405 unless 'connect' is listened to.
    server.on("connect", this.handleConnect);
    server.on("session", (session: Http2Session) => {
      this.h2Sessions.add(session);
      session.once("close", () => this.h2Sessions.delete(session));
      if (this.stopping) session.close();
      else if (idleTimeout > 0) closeWhenIdle(session, idleTimeout);
    });
    server.on("secureConnection", (socket: Socket) => {
      this.tlsSockets.add(socket);
      socket.once("close", () => this.tlsSockets.delete(socket));
    });
    return server;
  }

  /**
   * Graceful shutdown: stop accepting, close every session with 1001, wait up to `grace` ms for their
   * closing handshakes, then destroy whatever is left.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    const grace = options.grace ?? 5000;
    this.stopping = true;
    const server = this.server;
    const closed = server?.listening
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    (server as Server | undefined)?.closeIdleConnections?.();
    // GOAWAY to every HTTP/2 connection: no new streams; its WebSockets close below.
    for (const session of this.h2Sessions) session.close();
    this.gate?.close();
    // A handshake still in its beforeUpgrade hook would hold stop() up to handshakeTimeout.
    for (const socket of this.host.inHook) refuse(socket, 503, "Server shutting down\n");
    const sessions = [...this.liveSessions];
    for (const s of sessions) s.goAway();
    // HTTP/2 connections close by themselves once their streams are done (GOAWAY above). Waited for
    // like sessions: destroyed at once, they would drop what is still queued on them, such as the 503
    // just given to the handshakes in beforeUpgrade (the peer would see a dead connection instead).
    const h2Closed = [...this.h2Sessions].map(
      (session) =>
        new Promise<void>((resolve) => (session.destroyed ? resolve() : session.once("close", resolve))),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...sessions.map((s) => s.closeReason), ...h2Closed]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, grace);
      }),
    ]);
    clearTimeout(timer);
    // The server's 'close' can come before the destroyed sockets' own 'close' events: wait for the
    // sessions too, so that no session is still open when stop() resolves.
    const left = [...this.liveSessions];
    for (const s of left) s.terminate();
    (server as Server | undefined)?.closeAllConnections?.();
    for (const session of this.h2Sessions) session.destroy();
    for (const socket of this.tlsSockets) socket.destroy();
    for (const socket of this.waitingUpgrades) socket.destroy();
    await Promise.all([closed, ...left.map((s) => s.closeReason)]);
    await this.pubsub.stop();
  }
}

/** An HTTP/2 option, or its default: an integer from `min` to 2³¹−1, else `AppError` `INVALID_OPTION`. */
function http2Option(options: Http2Options, name: keyof Http2Options, min: number): number {
  const value = options[name] ?? HTTP2_DEFAULTS[name];
  if (!Number.isInteger(value) || value < min || value > 2 ** 31 - 1)
    throw new AppError("INVALID_OPTION", `http2.${name}: an integer from ${min} to 2^31-1, not ${value}`);
  return value;
}

/** node:http2's servers: they alone have `updateSettings` (node:http2 does not export their classes). */
function isHttp2Server(
  server: Server | Http2SecureServer | Http2Server,
): server is Http2SecureServer | Http2Server {
  return typeof (server as Partial<Http2Server>).updateSettings === "function";
}

/**
 * Closes an HTTP/2 connection (GOAWAY) once it has had no open stream for `ms`: a client that keeps
 * connections it does not use must not hold them forever. Counts streams itself (node:http2 keeps no
 * public count).
 */
function closeWhenIdle(session: Http2Session, ms: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined = setTimeout(() => session.close(), ms).unref();
  session.on("stream", (stream: Duplex) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed) timer = setTimeout(() => session.close(), ms).unref();
    });
  });
  session.once("close", () => clearTimeout(timer));
}

/**
 * The response of an earlier request that node:http is still writing on `socket`, if any.
 *
 * node:http keeps the response that has the socket as `socket._httpMessage`, and those of later
 * pipelined requests in a private queue, handing the next one the socket when one finishes. So waiting
 * until this is empty, asked again after each one's 'close' (a tick after node:http has moved on to the
 * next), waits for all of them without tracking every request (an attached app does not see the
 * server's requests). The field is undocumented but has been there since node:http's beginnings; were
 * it gone, upgrades would just not wait, as before.
 */
function pendingResponse(socket: Duplex): ServerResponse | undefined {
  const message = (socket as { _httpMessage?: unknown })._httpMessage;
  return message instanceof ServerResponse ? message : undefined;
}

/** Hands an upgrade request that will not be upgraded to the server's 'request' listeners; closes after. */
function answerAsHttp(server: Server, req: IncomingMessage, socket: Duplex): void {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once("finish", () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  server.emit("request", req, res);
}

const EMPTY = Buffer.alloc(0);

function splitUrl(url: string | undefined): { path: string; query: string } {
  let raw = url ?? "/";
  // Absolute form (RFC 9112 §3.2.2), as proxies send it: keep the path and query only.
  if (!raw.startsWith("/")) {
    const scheme = raw.indexOf("://");
    if (scheme > 0) {
      const slash = raw.indexOf("/", scheme + 3);
      raw = slash < 0 ? "/" : raw.slice(slash);
    }
  }
  const q = raw.indexOf("?");
  return q < 0 ? { path: raw, query: "" } : { path: raw.slice(0, q), query: raw.slice(q + 1) };
}

/** Creates an application. Install `WebSockets`, define routes with `routing`, then `listen`. */
export function createApp(): Application {
  return new Application();
}
