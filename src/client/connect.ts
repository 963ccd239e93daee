import { Buffer } from "node:buffer";
import { randomFillSync } from "node:crypto";
import {
  type Agent,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
} from "node:http";
import type { ClientHttp2Session } from "node:http2";
import { request as httpsRequest } from "node:https";
import { createConnection, isIP, type Socket } from "node:net";
import type { Duplex, Readable } from "node:stream";
import { type ConnectionOptions as TlsConnectionOptions, connect as tlsConnect } from "node:tls";
import type { MessageCodec } from "../extensions/index.js";
import {
  AppError,
  Connection,
  type ExtensionOffer,
  formatExtensions,
  generateKey,
  HANDSHAKE_ERROR_BODY_LIMIT,
  HandshakeError,
  isFieldValueRange,
  isSafeHeaderValue,
  isToken,
  isTokenRange,
  owsEnd,
  owsStart,
  validateUpgradeResponse,
  WEBSOCKET_VERSION,
} from "../protocol/index.js";
import {
  DefaultWebSocketSession,
  FlushScheduler,
  resolveSessionOptions,
  type SessionErrorKind,
  type SessionHooks,
  type SessionOptions,
} from "../session/index.js";
import { type ClientDeflateOptions, deflateOffer } from "./deflate.js";
import { H2_FORBIDDEN_HEADERS, isHttp2Session, openHttp2Session } from "./http2.js";

/** Options of `connect`. Session limits and timings are the server's (`SessionOptions`), same defaults. */
export interface ClientOptions extends Partial<SessionOptions> {
  /** Extra request headers. The handshake's own (Upgrade, Connection, Sec-WebSocket-*) cannot be set here. */
  headers?: Readonly<Record<string, string | readonly string[]>>;
  /** Subprotocols to offer (Sec-WebSocket-Protocol), in order of preference. */
  protocols?: readonly string[];
  /**
   * With `protocols`: a response that picks none of them fails the handshake (`PROTOCOL_MISMATCH`).
   * Default true; false accepts a server that picks none (as browsers do).
   */
  requireProtocol?: boolean;
  /** The Origin header. */
  origin?: string;
  /** Aborts the handshake (rejects `ABORTED`). It has no effect once the session is open. */
  signal?: AbortSignal;
  /** Milliseconds for the whole handshake, redirects and the TCP/TLS connection included. Default 10 000. */
  handshakeTimeout?: number;
  /** Offer permessage-deflate (RFC 7692): true for the defaults, or its options. Default false. */
  permessageDeflate?: boolean | ClientDeflateOptions;
  /** TLS options for wss:// (ca, cert, key, rejectUnauthorized, servername, ...), as node:tls takes them. */
  tls?: TlsConnectionOptions;
  /** An http.Agent (https.Agent for wss://), e.g. one that goes through a proxy. Default: none, a direct connection. */
  agent?: Agent;
  /** Follow 301, 302, 303, 307 and 308 redirects. Default false: a redirect fails as `UNEXPECTED_STATUS`. */
  followRedirects?: boolean;
  /** Most redirects followed, with `followRedirects`. Default 5. */
  maxRedirects?: number;
  /**
   * Told of the session's errors: the server breaking the protocol ("protocol": the session closes
   * with the violation's code) and a handler that threw ("handler", besides `connect` rejecting).
   * Default: none (the close code still shows in `closeReason`). A hook that throws is ignored.
   */
  onError?: (error: unknown, kind: SessionErrorKind) => void;
  /**
   * Run the WebSocket over HTTP/2 (RFC 8441 extended CONNECT) instead of an HTTP/1.1 upgrade. `true`:
   * on a connection shared by every `connect` to the same origin with the same `tls` options (h2 by
   * ALPN for wss:, h2c with prior knowledge for ws:), closed when its last WebSocket ends. A
   * `ClientHttp2Session` (from node:http2's `connect`): on that connection, which the caller owns.
   * No `agent`, and redirects are not followed. Default false.
   */
  http2?: boolean | ClientHttp2Session;
}

/** What a client session's `call` holds: where it connected and what the server answered. */
export interface ClientCall {
  /** The URL finally connected to (after redirects), ws: or wss:. */
  readonly url: URL;
  /** The headers of the server's 101 response (over HTTP/2: of its 200, without pseudo-headers). */
  readonly headers: IncomingHttpHeaders;
  /** "1.1" for an HTTP/1.1 upgrade, "2.0" for an HTTP/2 extended CONNECT (as on the server's `call.httpVersion`) (the `http2` option). */
  readonly httpVersion: "1.1" | "2.0";
}

/** A client session: the same class as a server's default session, on the client side. */
export type ClientSession = DefaultWebSocketSession<ClientCall, undefined>;

export const CLIENT_HANDSHAKE_TIMEOUT = 10_000;
export const DEFAULT_MAX_REDIRECTS = 5;

/** Headers the handshake writes itself. */
const RESERVED_HEADERS = new Set([
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
]);
/** Dropped when a redirect leaves the origin: they were meant for the first one. */
const CREDENTIAL_HEADERS = new Set(["authorization", "cookie", "host"]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Every client session's output is written once per event-loop turn, from one `setImmediate`. */
const scheduler = new FlushScheduler();

/** Random bytes drawn by every client (handshake keys, masking-key pools), filled in bulk. */
const RANDOM_POOL_SIZE = 4096;
let randomPool: Buffer | undefined;
let randomOffset = RANDOM_POOL_SIZE;

/**
 * Fills `target` from the CSPRNG. Small requests (a 16-byte key, a connection's first 64 bytes of
 * masking keys) are cut from one pool filled 4 KiB at a time, each byte handed out once: one call to
 * the random source per ~50 connections instead of two per connection.
 */
const randomFill = (target: Uint8Array): void => {
  const n = target.length;
  if (n > RANDOM_POOL_SIZE / 8) {
    randomFillSync(target);
    return;
  }
  if (randomOffset + n > RANDOM_POOL_SIZE) {
    randomPool ??= Buffer.allocUnsafeSlow(RANDOM_POOL_SIZE);
    randomFillSync(randomPool);
    randomOffset = 0;
  }
  randomPool!.copy(target, 0, randomOffset, randomOffset + n);
  randomOffset += n;
};

/**
 * Opens a WebSocket connection (RFC 6455 §4.1).
 *
 * Without a handler, resolves with the open session; the caller closes it. With a handler, runs it
 * with the session: its return closes with 1000, a throw with 1011; the call resolves with what the
 * handler returned (or rejects with what it threw) once the session has ended. A failed handshake
 * rejects with a `HandshakeError`; invalid options reject with an `AppError` (`INVALID_OPTION`).
 */
export function connect(url: string | URL, options?: ClientOptions): Promise<ClientSession>;
export function connect<R>(
  url: string | URL,
  options: ClientOptions,
  handler: (session: ClientSession) => R | Promise<R>,
): Promise<Awaited<R>>;
export function connect<R>(
  url: string | URL,
  options: ClientOptions = {},
  handler?: (session: ClientSession) => R | Promise<R>,
): Promise<unknown> {
  const opened = openSession(url, options);
  if (handler === undefined) return opened;
  return opened.then(async (session): Promise<Awaited<R>> => {
    let result: Awaited<R> | undefined;
    let failure: { error: unknown } | undefined;
    try {
      result = await handler(session);
    } catch (error) {
      failure = { error };
    }
    session.handlerFinished(
      failure === undefined ? undefined : (failure.error ?? new Error("the handler threw undefined")),
    );
    await session.closeReason;
    if (failure !== undefined) throw failure.error;
    return result as Awaited<R>;
  });
}

/** @internal Validated `connect` options. */
export interface Resolved {
  session: SessionOptions;
  headers: Record<string, string | readonly string[]>;
  protocols: readonly string[];
  requireProtocol: boolean;
  handshakeTimeout: number;
  deflate: ReturnType<typeof deflateOffer> | undefined;
  tls: TlsConnectionOptions | undefined;
  agent: Agent | undefined;
  maxRedirects: number;
  signal: AbortSignal | undefined;
  hooks: SessionHooks | undefined;
  /** true: a pooled HTTP/2 connection; a session: the caller's; undefined: HTTP/1.1. */
  http2: true | ClientHttp2Session | undefined;
}

const invalid = (message: string) => new AppError("INVALID_OPTION", message);

function nonNegativeInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
    throw invalid(`connect option ${name} must be a non-negative integer, got ${String(value)}`);
  return value;
}

/** What `{}` resolves to: the same every time, so made once (its objects are never written to). */
let resolvedDefaults: Resolved | undefined;

function resolveOptions(options: ClientOptions): Resolved {
  for (const _ in options) return resolveGiven(options);
  if (resolvedDefaults === undefined) {
    const o = resolveGiven({});
    Object.freeze(o.session);
    Object.freeze(o.headers);
    Object.freeze(o.protocols);
    resolvedDefaults = Object.freeze(o);
  }
  return resolvedDefaults;
}

function resolveGiven(options: ClientOptions): Resolved {
  const h2 = options.http2;
  if (h2 !== undefined && typeof h2 !== "boolean" && !isHttp2Session(h2))
    throw invalid("connect option http2 must be a boolean or a ClientHttp2Session from node:http2");
  const http2 = h2 === true ? true : h2 === false || h2 === undefined ? undefined : h2;
  if (http2 !== undefined && options.agent !== undefined)
    throw invalid("connect option agent does not apply over HTTP/2 (http2)");
  let session: SessionOptions;
  try {
    session = resolveSessionOptions(options);
  } catch (error) {
    if (error instanceof AppError)
      throw new AppError(error.code, error.message.replace("WebSockets option", "connect option"));
    throw error;
  }
  const headers: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    const lower = name.toLowerCase();
    if (!isToken(name)) throw invalid(`connect option headers: ${JSON.stringify(name)} is not a header name`);
    if (RESERVED_HEADERS.has(lower))
      throw invalid(`connect option headers: ${name} is written by the handshake itself`);
    if (http2 !== undefined && H2_FORBIDDEN_HEADERS.has(lower))
      throw invalid(`connect option headers: ${name} is not allowed over HTTP/2`);
    const values = typeof value === "string" ? [value] : value;
    if (!values.every((v) => typeof v === "string" && isSafeHeaderValue(v)))
      throw invalid(`connect option headers: the value of ${name} is not a safe header value`);
    headers[name] = value;
  }
  if (options.origin !== undefined) {
    if (typeof options.origin !== "string" || !isSafeHeaderValue(options.origin))
      throw invalid("connect option origin must be a string without CR, LF or NUL");
    for (const name of Object.keys(headers)) if (name.toLowerCase() === "origin") delete headers[name];
    headers.Origin = options.origin;
  }
  const protocols = options.protocols ?? [];
  for (const p of protocols)
    if (typeof p !== "string" || !isToken(p))
      throw invalid(`connect option protocols: ${JSON.stringify(p)} is not a token`);
  if (new Set(protocols).size !== protocols.length)
    throw invalid("connect option protocols lists a subprotocol twice");
  const onError = options.onError;
  if (onError !== undefined && typeof onError !== "function")
    throw invalid("connect option onError must be a function");
  const pmd = options.permessageDeflate ?? false;
  const followRedirects = options.followRedirects ?? false;
  return {
    session,
    hooks:
      onError === undefined
        ? undefined
        : {
            onError: (error, kind) => {
              try {
                onError(error, kind);
              } catch {
                // A failing hook must not take the session (or the process) down.
              }
            },
          },
    headers,
    protocols,
    requireProtocol: options.requireProtocol ?? true,
    handshakeTimeout: nonNegativeInteger(
      "handshakeTimeout",
      options.handshakeTimeout,
      CLIENT_HANDSHAKE_TIMEOUT,
    ),
    deflate: pmd === false ? undefined : deflateOffer(pmd === true ? {} : pmd),
    tls: options.tls,
    agent: options.agent,
    maxRedirects: followRedirects
      ? nonNegativeInteger("maxRedirects", options.maxRedirects, DEFAULT_MAX_REDIRECTS)
      : 0,
    signal: options.signal,
    http2,
  };
}

/** A ws:, wss:, http: or https: URL in its ws form, or undefined. */
function webSocketUrl(input: string | URL, base?: URL): URL | undefined {
  let url: URL;
  try {
    url = new URL(input, base);
  } catch {
    return undefined;
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if ((url.protocol !== "ws:" && url.protocol !== "wss:") || url.hostname === "") return undefined;
  url.hash = "";
  return url;
}

/** @internal */
export const handshakeError = (
  code: ConstructorParameters<typeof HandshakeError>[0],
  message: string,
  cause?: unknown,
): HandshakeError => new HandshakeError(code, 0, message, {}, cause === undefined ? {} : { cause });

/** @internal The handshake's deadline: `fail` gets HANDSHAKE_TIMEOUT after `handshakeTimeout` ms (0: none). */
export function handshakeDeadline(
  o: Resolved,
  fail: (error: HandshakeError) => void,
): NodeJS.Timeout | undefined {
  if (o.handshakeTimeout <= 0) return undefined;
  return setTimeout(
    () => fail(handshakeError("HANDSHAKE_TIMEOUT", `no handshake within ${o.handshakeTimeout} ms`)),
    o.handshakeTimeout,
  );
}

/** The response's headers, names in lower case, repeated values joined with ", ". */
export function flatHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !name.startsWith(":"))
      out[name] = typeof value === "string" ? value : value.join(", ");
  }
  return out;
}

function tlsConnection(options: TlsConnectionOptions & { host?: string }): Duplex {
  // SNI names a host, never an IP address (RFC 6066 §3).
  const servername = options.servername ?? (options.host && isIP(options.host) ? "" : options.host);
  return tlsConnect({ ...options, ...(servername === undefined ? {} : { servername }) });
}

function netConnection(options: { host?: string; port?: number }): Socket {
  return createConnection(options as { host: string; port: number });
}

/** The URL to connect to, or a HandshakeError (INVALID_URL) thrown. */
function checkedUrl(input: string | URL): URL {
  const url = webSocketUrl(input);
  if (url === undefined)
    throw handshakeError("INVALID_URL", `not a ws:, wss:, http: or https: URL: ${String(input)}`);
  if (typeof input === "string" ? input.includes("#") : input.hash !== "")
    throw handshakeError("INVALID_URL", "a WebSocket URL has no fragment (RFC 6455 §3)");
  return url;
}

/** Runs the opening handshake, following redirects if asked, and makes the session on the 101. */
async function openSession(input: string | URL, options: ClientOptions): Promise<ClientSession> {
  const o = resolveOptions(options);
  const first = checkedUrl(input);
  if (o.http2 !== undefined) return openHttp2Session(first, o);

  return new Promise<ClientSession>((resolve, reject) => {
    let req: ClientRequest | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const signal = o.signal;
    const settle = (error: HandshakeError | undefined, session?: ClientSession) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (error !== undefined) {
        req?.destroy();
        reject(error);
      } else {
        resolve(session!);
      }
    };
    const onAbort = () =>
      settle(handshakeError("ABORTED", "the handshake was aborted", signal?.reason ?? undefined));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    timer = handshakeDeadline(o, settle);

    const attempt = (url: URL, headers: Record<string, string | readonly string[]>, redirects: number) => {
      const key = generateKey(randomFill);
      const secure = url.protocol === "wss:";
      const requestHeaders = handshakeHeaders(o, headers, key);
      const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
      const auth =
        url.username || url.password
          ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
          : undefined;
      const params = {
        ...(secure ? o.tls : {}),
        method: "GET",
        host: hostname,
        port: url.port === "" ? (secure ? 443 : 80) : Number(url.port),
        path: `${url.pathname}${url.search}`,
        headers: requestHeaders as Record<string, string | string[]>,
        ...(auth === undefined ? {} : { auth }),
        ...(o.agent === undefined
          ? { createConnection: secure ? tlsConnection : netConnection }
          : { agent: o.agent }),
      };
      const current = (secure ? httpsRequest : request)(params as never);
      req = current;
      current.on("error", (error: Error) =>
        settle(handshakeError("CONNECT_FAILED", `connecting to ${url.host} failed: ${error.message}`, error)),
      );
      current.on("upgrade", (res: IncomingMessage, socket: Duplex, head: Buffer) => {
        if (settled) return void socket.destroy();
        let session: ClientSession;
        try {
          const result = accept(res.statusCode ?? 0, res.headers, key, url, o, repeatedField(res.rawHeaders));
          if (result instanceof HandshakeError) {
            socket.destroy();
            settle(result);
            return;
          }
          session = startSession(socket, head, res.headers, url, o, result);
        } catch (error) {
          // A bug of ours must reject this connect, not escape from node:http's event as an uncaught error.
          socket.destroy();
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            signal?.removeEventListener("abort", onAbort);
            reject(error);
          }
          return;
        }
        settle(undefined, session);
      });
      current.on("response", (res: IncomingMessage) => {
        if (settled) return void res.destroy();
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (REDIRECT_STATUSES.has(status) && location !== undefined && o.maxRedirects > 0) {
          res.destroy();
          if (redirects >= o.maxRedirects) {
            settle(
              new HandshakeError(
                "TOO_MANY_REDIRECTS",
                status,
                `more than ${o.maxRedirects} redirects`,
                flatHeaders(res.headers),
              ),
            );
            return;
          }
          const next = webSocketUrl(location, httpForm(url));
          if (next === undefined) {
            settle(
              new HandshakeError(
                "INVALID_URL",
                status,
                `redirected to a URL that is not ws, wss, http or https: ${location}`,
                flatHeaders(res.headers),
              ),
            );
            return;
          }
          attempt(next, sameOrigin(url, next) ? headers : withoutCredentials(headers), redirects + 1);
          return;
        }
        // 101 without Upgrade comes here too: validation says what is wrong with it.
        readBody(res, (body, truncated) => settle(refusal(status, res.headers, key, o, body, truncated)));
      });
      current.end();
    };
    attempt(first, o.headers, 0);
  });
}

/** The same URL with an http: or https: scheme, to resolve a Location against. */
function httpForm(url: URL): URL {
  const copy = new URL(url.href);
  copy.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return copy;
}

/** Same scheme (security), host and port: credentials may follow the redirect. */
function sameOrigin(a: URL, b: URL): boolean {
  return a.protocol === b.protocol && a.host === b.host;
}

function withoutCredentials(
  headers: Record<string, string | readonly string[]>,
): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!CREDENTIAL_HEADERS.has(name.toLowerCase())) out[name] = value;
  }
  return out;
}

/** @internal Collects up to HANDSHAKE_ERROR_BODY_LIMIT bytes of a refusal's body, then stops reading. */
export function readBody(res: Readable, done: (body: Buffer, truncated: boolean) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (truncated: boolean) => {
    if (finished) return;
    finished = true;
    const body = Buffer.concat(chunks, Math.min(size, HANDSHAKE_ERROR_BODY_LIMIT));
    done(body, truncated);
  };
  res.on("data", (chunk: Buffer) => {
    if (finished) return;
    chunks.push(chunk);
    size += chunk.length;
    if (size > HANDSHAKE_ERROR_BODY_LIMIT) {
      finish(true);
      res.destroy();
    }
  });
  res.on("end", () => finish(false));
  res.on("error", () => finish(false));
  res.on("close", () => finish(false));
}

/** @internal What the handshake agreed on. */
export interface Accepted {
  protocol: string | undefined;
  extensions: ExtensionOffer[];
  codec: MessageCodec | undefined;
}

/** The request headers of the opening handshake: the caller's, then the handshake's own. */
function handshakeHeaders(
  o: Resolved,
  headers: Record<string, string | readonly string[]>,
  key: string,
): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {
    ...headers,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": key,
    "Sec-WebSocket-Version": WEBSOCKET_VERSION,
  };
  if (o.protocols.length > 0) out["Sec-WebSocket-Protocol"] = o.protocols.join(", ");
  if (o.deflate) out["Sec-WebSocket-Extensions"] = formatExtensions([o.deflate.offer]);
  return out;
}

/** The HandshakeError of a response that is not a (valid) 101, with up to HANDSHAKE_ERROR_BODY_LIMIT bytes of its body. */
function refusal(
  status: number,
  headers: IncomingHttpHeaders,
  key: string,
  o: Resolved,
  body: Buffer,
  truncated: boolean,
): HandshakeError {
  const checked = validateUpgradeResponse(status, headers, key, o.protocols, o.requireProtocol);
  const error = checked.ok ? undefined : checked.error;
  return new HandshakeError(
    error?.code ?? "UNEXPECTED_STATUS",
    status,
    error?.message ?? `expected status 101, got ${status}`,
    flatHeaders(headers),
    { body, bodyTruncated: truncated },
  );
}

/** Checks the 101 response (§4.1, RFC 7692 §7.1); a HandshakeError says why it is not acceptable. */
function accept(
  status: number,
  responseHeaders: IncomingHttpHeaders,
  key: string,
  url: URL,
  o: Resolved,
  repeated: string | undefined,
): Accepted | HandshakeError {
  const headers = flatHeaders(responseHeaders);
  if (repeated !== undefined) return repeatedFieldError(status, repeated, headers);
  const checked = validateUpgradeResponse(status, responseHeaders, key, o.protocols, o.requireProtocol);
  if (!checked.ok) return new HandshakeError(checked.error.code, status, checked.error.message, headers);
  return acceptExtensions(status, headers, checked.value, url, o);
}

/** @internal Checks the extensions of a validated acceptance against our offer and makes the codec. */
export function acceptExtensions(
  status: number,
  headers: Record<string, string>,
  negotiated: { protocol: string | undefined; extensions: ExtensionOffer[] },
  url: URL,
  o: Resolved,
): Accepted | HandshakeError {
  const { protocol, extensions } = negotiated;
  const mismatch = (message: string) =>
    new HandshakeError("EXTENSION_MISMATCH", status, `${message} (from ${url.host})`, headers);
  if (extensions.length === 0) return { protocol, extensions, codec: undefined };
  if (o.deflate === undefined)
    return mismatch(`the server accepted extensions we did not offer: ${formatExtensions(extensions)}`);
  if (extensions.length > 1 || extensions[0]!.name.toLowerCase() !== "permessage-deflate")
    return mismatch(`the server accepted extensions we did not offer: ${formatExtensions(extensions)}`);
  const accepted = o.deflate.accept(extensions[0]!);
  if ("error" in accepted) return mismatch(accepted.error);
  return { protocol, extensions, codec: accepted.codec };
}

/** @internal Makes the client session on a stream whose handshake succeeded. */
export function startSession(
  socket: Duplex,
  head: Buffer,
  responseHeaders: IncomingHttpHeaders,
  url: URL,
  o: Resolved,
  accepted: Accepted,
  httpVersion: "1.1" | "2.0" = "1.1",
): ClientSession {
  const connection = new Connection({
    side: "client",
    randomFill,
    rsv1: accepted.codec !== undefined,
    maxMessageSize: o.session.maxFrameSize,
    maxFragments: o.session.maxFragments,
    mode: "messages",
    deferCloseReply: true,
  });
  (socket as { setTimeout?: (ms: number) => void }).setTimeout?.(0);
  const session = new DefaultWebSocketSession<ClientCall, undefined>(socket, connection, o.session, {
    call: { url, headers: responseHeaders, httpVersion },
    data: undefined,
    ...(o.hooks ? { hooks: o.hooks } : {}),
    extensions: accepted.extensions,
    protocol: accepted.protocol,
    codec: accepted.codec,
    scheduler,
  });
  session.receiveHead(head);
  return session;
}

/**
 * Response fields RFC 6455 §11.3 allows once. node:http joins repeated fields with ", ", and a joined
 * value can still pass the checks ("permessage-deflate, " with an empty repeat), so a repeat fails.
 */
const ONCE_IN_RESPONSE = new Map(
  ["Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"].map((n) => [
    n.toLowerCase(),
    n,
  ]),
);

/** @internal The failure for a response that repeats `name`, one of the fields allowed once. */
export function repeatedFieldError(
  status: number,
  name: string,
  headers: Record<string, string>,
): HandshakeError {
  return new HandshakeError(
    "HEADER_SYNTAX",
    status,
    `${ONCE_IN_RESPONSE.get(name) ?? name} appears more than once in the response`,
    headers,
  );
}

/**
 * @internal The first field of ONCE_IN_RESPONSE that `rawHeaders` (name, value, ...: node:http's, or
 * node:http2's third 'response' argument) repeat.
 */
export function repeatedField(rawHeaders: readonly string[]): string | undefined {
  const seen: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (!ONCE_IN_RESPONSE.has(name)) continue;
    if (seen.includes(name)) return name;
    seen.push(name);
  }
  return undefined;
}

/** reason-phrase = *( HTAB / SP / VCHAR / obs-text ), left out with its SP too (node:http allows it). */
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [\t\x20-\x7e\x80-\xff]*)?$/;

/**
 * @internal Reads a response head's status line and headers (names in lower case, as node:http gives
 * them), refusing what node:http's parser refuses (RFC 9112 §5): a name that is not a token (space
 * before the colon, a folded or indented line), a value with a control character (bare CR or LF, NUL).
 * `repeated`: the first field of ONCE_IN_RESPONSE that came twice.
 */
export function parseResponseHead(
  text: string,
): { status: number; headers: IncomingHttpHeaders; repeated?: string } | undefined {
  // Line by line in place (no split into an array of lines): this runs on every connectOver.
  let eol = text.indexOf("\r\n");
  if (eol < 0) eol = text.length;
  const match = STATUS_LINE.exec(text.slice(0, eol));
  if (!match) return undefined;
  const headers: Record<string, string | string[]> = {};
  let repeated: string | undefined;
  for (let start = eol + 2; start <= text.length; start = eol + 2) {
    eol = text.indexOf("\r\n", start);
    if (eol < 0) eol = text.length;
    const colon = text.indexOf(":", start);
    if (colon < 0 || colon > eol || !isTokenRange(text, start, colon)) return undefined;
    const a = owsEnd(text, colon + 1, eol);
    const b = owsStart(text, a, eol);
    if (!isFieldValueRange(text, a, b)) return undefined;
    const name = text.slice(start, colon).toLowerCase();
    if (name === "__proto__") continue; // not a property an object can hold (node:http drops it too)
    const value = text.slice(a, b);
    const before = Object.hasOwn(headers, name) ? headers[name] : undefined;
    if (before !== undefined && repeated === undefined && ONCE_IN_RESPONSE.has(name)) repeated = name;
    if (name === "set-cookie") headers[name] = [...((before as string[] | undefined) ?? []), value];
    else headers[name] = before === undefined ? value : `${before as string}, ${value}`;
  }
  const status = Number(match[1]);
  return repeated === undefined
    ? { status, headers: headers as IncomingHttpHeaders }
    : { status, headers: headers as IncomingHttpHeaders, repeated };
}

const HEAD_END = Buffer.from("\r\n\r\n");
/** Most bytes of a response head read by `connectOver`. */
const MAX_RESPONSE_HEAD = 16 * 1024;

/**
 * Runs the client's opening handshake over a stream that is already connected to a server (an
 * in-memory pair, a socket made elsewhere) and makes the client session on the 101: the same checks,
 * headers and session as `connect`, without node:http (so no redirects, agent or TLS options; `url`
 * gives the path, the Host header and `call.url`). Rejects as `connect` does; the stream is destroyed
 * on failure.
 */
export function connectOver(
  socket: Duplex,
  url: string | URL,
  options: ClientOptions = {},
): Promise<ClientSession> {
  let o: Resolved;
  let target: URL;
  try {
    o = resolveOptions(options);
    target = checkedUrl(url);
    if (o.http2 !== undefined) throw invalid("connect option http2 does not apply to connectOver (HTTP/1.1)");
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise<ClientSession>((resolve, reject) => {
    const key = generateKey(randomFill);
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let head: Buffer = Buffer.alloc(0);
    let refused:
      | { status: number; headers: IncomingHttpHeaders; body: Buffer[]; size: number; length: number }
      | undefined;
    const signal = o.signal;
    const cleanup = () => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
    };
    const fail = (error: unknown) => {
      if (settled) return;
      cleanup();
      socket.destroy();
      reject(error);
    };
    const finishRefusal = (truncated: boolean) => {
      const r = refused!;
      const body = Buffer.concat(r.body, Math.min(r.size, HANDSHAKE_ERROR_BODY_LIMIT));
      fail(refusal(r.status, r.headers, key, o, body, truncated));
    };
    const onAbort = () =>
      fail(handshakeError("ABORTED", "the handshake was aborted", signal?.reason ?? undefined));
    const onError = (error: Error) =>
      fail(
        handshakeError("CONNECT_FAILED", `the connection to ${target.host} failed: ${error.message}`, error),
      );
    const onEnd = () => {
      if (refused) return finishRefusal(false);
      fail(handshakeError("CONNECT_FAILED", `the connection to ${target.host} closed before a response`));
    };
    const onBody = (chunk: Buffer) => {
      const r = refused!;
      r.body.push(chunk);
      r.size += chunk.length;
      if (r.size > HANDSHAKE_ERROR_BODY_LIMIT) finishRefusal(true);
      else if (r.size >= r.length) finishRefusal(false);
    };
    const onData = (chunk: Buffer) => {
      if (refused) return onBody(chunk);
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end < 0) {
        if (head.length > MAX_RESPONSE_HEAD)
          fail(handshakeError("CONNECT_FAILED", `a response head over ${MAX_RESPONSE_HEAD} bytes`));
        return;
      }
      const parsed = parseResponseHead(head.toString("latin1", 0, end));
      if (parsed === undefined) return fail(handshakeError("CONNECT_FAILED", "a malformed response head"));
      const rest = head.subarray(end + 4);
      if (parsed.status !== 101) {
        const length = Number(parsed.headers["content-length"] ?? Number.POSITIVE_INFINITY);
        refused = {
          ...parsed,
          body: [],
          size: 0,
          length: Number.isNaN(length) ? Number.POSITIVE_INFINITY : length,
        };
        if (rest.length > 0) onBody(rest);
        else if (refused.length === 0) finishRefusal(false);
        return;
      }
      const result = accept(parsed.status, parsed.headers, key, target, o, parsed.repeated);
      if (result instanceof HandshakeError) return fail(result);
      cleanup();
      // As node:http leaves an upgraded socket: not flowing until the session listens for data.
      socket.pause();
      (socket as { readableFlowing: boolean | null }).readableFlowing = null;
      let session: ClientSession;
      try {
        session = startSession(socket, rest, parsed.headers, target, o, result);
      } catch (error) {
        socket.destroy();
        return reject(error);
      }
      resolve(session);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    timer = handshakeDeadline(o, fail);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
    let request = `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n`;
    const headers = handshakeHeaders(o, o.headers, key);
    for (const name in headers) {
      if (name.toLowerCase() === "host") continue;
      const value = headers[name]!;
      if (typeof value === "string") request += `${name}: ${value}\r\n`;
      else for (const v of value) request += `${name}: ${v}\r\n`;
    }
    socket.write(`${request}\r\n`, "latin1");
  });
}
