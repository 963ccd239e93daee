import {
  type JoinedPath,
  joinPaths,
  type PathParams,
  parsePattern,
  type RouteTree,
} from "../routing/index.js";
import type { DefaultWebSocketSession, RawWebSocketSession } from "../session/index.js";
import {
  attachTypedMessages,
  isStandardSchema,
  type StandardSchemaV1,
  type TypedMessageOptions,
  type TypedMessages,
} from "../session/typed.js";
import type { ApplicationCall, HttpCall, Rejection, UpgradeCall } from "./call.js";
import { AppError } from "./errors.js";
import { serveStaticFile } from "./static-files.js";

type Params = Record<string, string | undefined>;

export type HttpHandler<P = Params> = (call: HttpCall<P>) => unknown;

export interface WebSocketRouteOptions<P = Params, D = undefined> {
  /** Match only clients that offer this subprotocol in Sec-WebSocket-Protocol; it is echoed back. */
  protocol?: string;
  /**
   * Runs before the handshake completes: inspect the call, return `call.reject(401, "...")` to refuse,
   * or return the per-session data (`session.data`).
   */
  beforeUpgrade?: (call: UpgradeCall<P>) => D | Rejection | Promise<D | Rejection>;
  /** Answer pings automatically. Default: true for `webSocket`, false for `webSocketRaw`. */
  autoPong?: boolean;
}

export type WebSocketHandler<P = Params, D = undefined> = (
  session: DefaultWebSocketSession<ApplicationCall<P>, D>,
) => unknown;
/** A typed route's options: the route's own, plus its message schemas, converter and invalid-message policy. */
export type TypedWebSocketRouteOptions<
  P,
  D,
  In extends StandardSchemaV1,
  Out extends StandardSchemaV1 | undefined,
> = WebSocketRouteOptions<P, D> & TypedMessageOptions<In, Out>;

/** A typed route's handler: the default session, plus `messages` and `sendTyped`. */
export type TypedWebSocketHandler<
  P,
  D,
  In extends StandardSchemaV1,
  Out extends StandardSchemaV1 | undefined,
> = (session: DefaultWebSocketSession<ApplicationCall<P>, D> & TypedMessages<In, Out>) => unknown;

export type RawWebSocketHandler<P = Params, D = undefined> = (
  session: RawWebSocketSession<ApplicationCall<P>, D>,
) => unknown;

/** What the route tree holds for one pattern. */
export type RouteEntry =
  | { kind: "http"; method: string; handler: HttpHandler }
  | {
      kind: "ws";
      raw: boolean;
      protocol: string | undefined;
      autoPong: boolean;
      beforeUpgrade: ((call: UpgradeCall) => unknown) | undefined;
      handler: (session: never) => unknown;
    };

/** What a route builder needs from its application. */
export interface RouteHost {
  readonly tree: RouteTree<RouteEntry>;
  /** Whether the WebSockets plugin is installed. */
  readonly webSocketsInstalled: boolean;
}

/**
 * Builds routes under a path prefix `P` (Ktor's `Route`). Parameters are typed from the whole pattern,
 * prefixes of enclosing `route` calls included.
 */
export class Route<P extends string = ""> {
  /** @internal Routes are made by `app.routing`. */
  constructor(
    private readonly host: RouteHost,
    readonly path: P,
  ) {}

  /** Routes nested under `path`. */
  route<S extends string>(path: S, build: (route: Route<JoinedPath<P, S>>) => void): void {
    build(new Route(this.host, joinPaths(this.path, path)));
  }

  get<S extends string>(path: S, handler: HttpHandler<PathParams<JoinedPath<P, S>>>): void {
    this.handle("GET", path, handler);
  }
  post<S extends string>(path: S, handler: HttpHandler<PathParams<JoinedPath<P, S>>>): void {
    this.handle("POST", path, handler);
  }
  put<S extends string>(path: S, handler: HttpHandler<PathParams<JoinedPath<P, S>>>): void {
    this.handle("PUT", path, handler);
  }
  patch<S extends string>(path: S, handler: HttpHandler<PathParams<JoinedPath<P, S>>>): void {
    this.handle("PATCH", path, handler);
  }
  delete<S extends string>(path: S, handler: HttpHandler<PathParams<JoinedPath<P, S>>>): void {
    this.handle("DELETE", path, handler);
  }

  /** An HTTP handler for any method name. HEAD falls back to GET handlers. */
  handle<S extends string>(
    method: string,
    path: S,
    handler: HttpHandler<PathParams<JoinedPath<P, S>>>,
  ): void {
    const pattern = joinPaths(this.path, path);
    parsePattern(pattern); // fail at definition time on a bad pattern
    this.host.tree.add(pattern, {
      kind: "http",
      method: method.toUpperCase(),
      handler: handler as HttpHandler,
    });
  }

  /** Serves the files under `directory` at `path/...`; never outside it. */
  staticFiles<S extends string>(path: S, directory: string): void {
    const pattern = joinPaths(joinPaths(this.path, path), "{staticPath...}");
    this.host.tree.add(pattern, {
      kind: "http",
      method: "GET",
      handler: (call) => serveStaticFile(call, directory, call.parameters.staticPath ?? ""),
    });
  }

  /**
   * A WebSocket route with the default session: whole messages in `incoming`, the rest handled for you.
   * With `incoming` (and `outgoing`) schemas in the options, the session also has `messages` (validated
   * values, typed from the schema) and `sendTyped`.
   */
  webSocket<In extends StandardSchemaV1, Out extends StandardSchemaV1 | undefined = undefined, D = undefined>(
    options: TypedWebSocketRouteOptions<PathParams<P>, D, In, Out>,
    handler: TypedWebSocketHandler<PathParams<P>, D, In, Out>,
  ): void;
  webSocket<
    S extends string,
    In extends StandardSchemaV1,
    Out extends StandardSchemaV1 | undefined = undefined,
    D = undefined,
  >(
    path: S,
    options: TypedWebSocketRouteOptions<PathParams<JoinedPath<P, S>>, D, In, Out>,
    handler: TypedWebSocketHandler<PathParams<JoinedPath<P, S>>, D, In, Out>,
  ): void;
  webSocket<D = undefined>(handler: WebSocketHandler<PathParams<P>, D>): void;
  webSocket<S extends string, D = undefined>(
    path: S,
    handler: WebSocketHandler<PathParams<JoinedPath<P, S>>, D>,
  ): void;
  webSocket<D = undefined>(
    options: WebSocketRouteOptions<PathParams<P>, D>,
    handler: WebSocketHandler<PathParams<P>, D>,
  ): void;
  webSocket<S extends string, D = undefined>(
    path: S,
    options: WebSocketRouteOptions<PathParams<JoinedPath<P, S>>, D>,
    handler: WebSocketHandler<PathParams<JoinedPath<P, S>>, D>,
  ): void;
  webSocket(...args: unknown[]): void {
    this.addWebSocket(false, args);
  }

  /** A WebSocket route with the raw session: every frame, control frames and fragments included. */
  webSocketRaw<D = undefined>(handler: RawWebSocketHandler<PathParams<P>, D>): void;
  webSocketRaw<S extends string, D = undefined>(
    path: S,
    handler: RawWebSocketHandler<PathParams<JoinedPath<P, S>>, D>,
  ): void;
  webSocketRaw<D = undefined>(
    options: WebSocketRouteOptions<PathParams<P>, D>,
    handler: RawWebSocketHandler<PathParams<P>, D>,
  ): void;
  webSocketRaw<S extends string, D = undefined>(
    path: S,
    options: WebSocketRouteOptions<PathParams<JoinedPath<P, S>>, D>,
    handler: RawWebSocketHandler<PathParams<JoinedPath<P, S>>, D>,
  ): void;
  webSocketRaw(...args: unknown[]): void {
    this.addWebSocket(true, args);
  }

  private addWebSocket(raw: boolean, args: unknown[]): void {
    const kind = raw ? "webSocketRaw" : "webSocket";
    if (!this.host.webSocketsInstalled) {
      throw new AppError(
        "PLUGIN_MISSING",
        `${kind}() needs the WebSockets plugin: call app.install(WebSockets, { ... }) before app.routing(...)`,
      );
    }
    let handler = args.at(-1);
    if (typeof handler !== "function")
      throw new TypeError(`${kind}(): the last argument must be the handler`);
    let path = "";
    let options: WebSocketRouteOptions<Params, unknown> = {};
    for (const arg of args.slice(0, -1)) {
      if (typeof arg === "string") path = arg;
      else if (arg !== null && typeof arg === "object")
        options = arg as WebSocketRouteOptions<Params, unknown>;
      else throw new TypeError(`${kind}(): expected (path?, options?, handler)`);
    }
    const protocol = options.protocol;
    if (
      protocol !== undefined &&
      (typeof protocol !== "string" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(protocol))
    ) {
      throw new AppError(
        "INVALID_OPTION",
        `${kind}(): protocol must be a token (RFC 6455 §4.1), got ${JSON.stringify(protocol)}`,
      );
    }
    const typed = typedOptions(kind, raw, options as Record<string, unknown>);
    if (typed !== undefined) {
      const inner = handler as (session: DefaultWebSocketSession) => unknown;
      handler = (session: DefaultWebSocketSession) => inner(attachTypedMessages(session, typed));
    }
    const pattern = joinPaths(this.path, path);
    parsePattern(pattern);
    this.host.tree.add(pattern, {
      kind: "ws",
      raw,
      protocol,
      autoPong: options.autoPong ?? !raw,
      beforeUpgrade: options.beforeUpgrade as ((call: UpgradeCall) => unknown) | undefined,
      handler: handler as (session: never) => unknown,
    });
  }
}

/** The typed-message options of a route, checked; undefined when it has none. */
function typedOptions(
  kind: string,
  raw: boolean,
  options: Record<string, unknown>,
): TypedMessageOptions<StandardSchemaV1, StandardSchemaV1 | undefined> | undefined {
  const { incoming, outgoing, converter, onInvalidMessage } = options;
  if (
    incoming === undefined &&
    outgoing === undefined &&
    converter === undefined &&
    onInvalidMessage === undefined
  )
    return undefined;
  const invalid = (what: string) => new AppError("INVALID_OPTION", `${kind}(): ${what}`);
  if (raw)
    throw invalid(
      "typed messages (incoming, outgoing, converter, onInvalidMessage) need webSocket, not webSocketRaw",
    );
  if (!isStandardSchema(incoming))
    throw invalid("incoming must be a Standard Schema v1 (Zod 4, Valibot 1, ...)");
  if (outgoing !== undefined && !isStandardSchema(outgoing))
    throw invalid("outgoing must be a Standard Schema v1 (Zod 4, Valibot 1, ...)");
  if (
    converter !== undefined &&
    (typeof converter !== "object" ||
      converter === null ||
      typeof (converter as { serialize?: unknown }).serialize !== "function" ||
      typeof (converter as { deserialize?: unknown }).deserialize !== "function")
  )
    throw invalid("converter must have serialize(value) and deserialize(frame)");
  if (
    onInvalidMessage !== undefined &&
    onInvalidMessage !== "close" &&
    onInvalidMessage !== "skip" &&
    typeof onInvalidMessage !== "function"
  )
    throw invalid(
      `onInvalidMessage must be "close", "skip" or a function, got ${JSON.stringify(onInvalidMessage)}`,
    );
  return options as unknown as TypedMessageOptions<StandardSchemaV1, StandardSchemaV1 | undefined>;
}
