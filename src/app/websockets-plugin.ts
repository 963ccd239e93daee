import type { ServerExtension } from "../extensions/index.js";
import { resolveSessionOptions, type SessionOptions } from "../session/index.js";
import type { Application } from "./application.js";
import { AppError } from "./errors.js";

/** Options of the WebSockets plugin. Every limit has a safe default; see docs/options.md. */
export interface WebSocketsOptions extends Partial<SessionOptions> {
  /**
   * Mask frames we send. RFC 6455 §5.1 forbids a server to mask, so only `false` (the default) is
   * accepted; the option exists for parity with Ktor, whose client and server share it.
   */
  masking?: boolean;
  /**
   * Origins allowed to open WebSockets (cross-site WebSocket hijacking protection): a list of exact
   * origins ("https://example.com"), or a predicate. Others get 403. Default: any origin.
   */
  allowedOrigins?: readonly string[] | ((origin: string | undefined) => boolean);
  /**
   * Extensions to negotiate, in order of our preference: `[permessageDeflate({ threshold: 1024 })]`.
   * Default: none.
   */
  extensions?: readonly ServerExtension[];
  /** Milliseconds for a client to send its whole upgrade request (and for `beforeUpgrade`); default 10 s. */
  handshakeTimeout?: number;
  /** Largest request head in bytes, when sockway runs the server (`listen`); default 8 KiB. Larger: 431. */
  maxHeaderSize?: number;
  /**
   * Keep node:http's `IncomingMessage` as `session.call.request` for the whole session. Default false:
   * it is released once the handshake is done (about 1 KiB per connection); `call.headers`, `path`,
   * `parameters`, `query` and `remoteAddress` stay available, and `beforeUpgrade` sees the request.
   */
  keepRequest?: boolean;
}

/** The plugin's resolved configuration. */
export interface WebSocketsConfig {
  session: SessionOptions;
  extensions: readonly ServerExtension[];
  originAllowed: (origin: string | undefined) => boolean;
  handshakeTimeout: number;
  maxHeaderSize: number;
  keepRequest: boolean;
}

export interface Plugin<O, C> {
  readonly key: string;
  /** How the plugin is named in error messages. */
  readonly name: string;
  /** Checks the options and returns the plugin's configuration; may set up what it needs on `app`. */
  install(options: O | undefined, app: Application): C;
}

export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
export const DEFAULT_MAX_HEADER_SIZE = 8 * 1024;

/** The WebSockets plugin: install it before defining `webSocket` routes. */
export const WebSockets: Plugin<WebSocketsOptions, WebSocketsConfig> = {
  key: "sockway.websockets",
  name: "WebSockets",
  install(options = {}) {
    if (options.masking) {
      throw new AppError("INVALID_OPTION", "masking: a server must not mask its frames (RFC 6455 §5.1)");
    }
    const {
      allowedOrigins,
      handshakeTimeout,
      maxHeaderSize,
      keepRequest,
      extensions,
      masking: _masking,
      ...sessionOptions
    } = options;
    const session: SessionOptions = resolveSessionOptions(sessionOptions);
    return {
      session,
      extensions: [...(extensions ?? [])],
      originAllowed: originPolicy(allowedOrigins),
      handshakeTimeout: positiveInteger("handshakeTimeout", handshakeTimeout, DEFAULT_HANDSHAKE_TIMEOUT),
      maxHeaderSize: positiveInteger("maxHeaderSize", maxHeaderSize, DEFAULT_MAX_HEADER_SIZE),
      keepRequest: keepRequest === true,
    };
  },
};

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new AppError(
      "INVALID_OPTION",
      `WebSockets option ${name} must be a positive integer, got ${value}`,
    );
  }
  return value;
}

function originPolicy(allowed: WebSocketsOptions["allowedOrigins"]): (origin: string | undefined) => boolean {
  if (allowed === undefined) return () => true;
  if (typeof allowed === "function") return allowed;
  const set = new Set(allowed.map((o) => o.toLowerCase()));
  return (origin) => origin !== undefined && set.has(origin.toLowerCase());
}
