/**
 * The client over HTTP/2 (RFC 8441): the opening handshake is an extended CONNECT on a stream of an
 * HTTP/2 connection, and the session runs on that stream. Several WebSockets share one connection: the
 * caller's (`http2: session`), or one pooled per origin and TLS options (`http2: true`).
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants,
  type IncomingHttpHeaders as Http2IncomingHeaders,
  connect as http2Connect,
  type OutgoingHttpHeaders,
} from "node:http2";
import {
  formatExtensions,
  HandshakeError,
  validateConnectResponse,
  WEBSOCKET_VERSION,
} from "../protocol/index.js";
import {
  acceptExtensions,
  type ClientSession,
  flatHeaders,
  handshakeDeadline,
  handshakeError,
  type Resolved,
  readBody,
  repeatedField,
  repeatedFieldError,
  startSession,
} from "./connect.js";

/**
 * Request headers the caller may not set over HTTP/2: connection-specific ones (RFC 9113 §8.2.2),
 * `host` (the URL's authority is `:authority`), and those of HTTP/1.1's upgrade (RFC 8441 §5).
 */
export const H2_FORBIDDEN_HEADERS = new Set([
  "connection",
  "upgrade",
  "host",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "http2-settings",
  "sec-websocket-key",
]);

const EMPTY = Buffer.alloc(0);
const noop = (): void => {};

/** Whether `value` looks like node:http2's ClientHttp2Session (the class is not exported). */
export function isHttp2Session(value: unknown): value is ClientHttp2Session {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.request === "function" && typeof v.ping === "function" && "remoteSettings" in v;
}

// ---- the pool ---------------------------------------------------------------------------------------

interface PooledConnection {
  readonly key: string;
  readonly session: ClientHttp2Session;
  /** WebSockets on it, handshakes in flight included. */
  users: number;
}

/** Connections that new `http2: true` connects may use, by origin and TLS options. */
const pool = new Map<string, PooledConnection>();

/** @internal How many connections are in the pool now (for tests). */
export function pooledHttp2Connections(): number {
  return pool.size;
}

interface Lease {
  readonly session: ClientHttp2Session;
  /** The WebSocket (or its handshake) no longer uses the connection. Idempotent. */
  release(): void;
}

function drop(c: PooledConnection): void {
  if (pool.get(c.key) === c) pool.delete(c.key);
}

function lease(url: URL, o: Resolved): Lease {
  if (o.http2 !== true) return { session: o.http2!, release: noop };
  const secure = url.protocol === "wss:";
  const origin = `${secure ? "https" : "http"}://${url.host}`;
  const key = secure ? `${origin} ${optionsKey(o.tls)}` : origin;
  let c = pool.get(key);
  if (c === undefined || c.session.closed || c.session.destroyed) c = openPooled(key, origin, secure, o);
  const connection = c;
  connection.users++;
  let released = false;
  return {
    session: connection.session,
    release: () => {
      if (released) return;
      released = true;
      // The last WebSocket is gone: close at once (GOAWAY), so that nothing keeps the process alive.
      if (--connection.users > 0) return;
      drop(connection);
      if (connection.session.connecting) connection.session.destroy();
      else connection.session.close();
    },
  };
}

function openPooled(key: string, origin: string, secure: boolean, o: Resolved): PooledConnection {
  // node:http2 offers h2 by ALPN and sets SNI to the host unless it is an IP address.
  const session = http2Connect(origin, { ...(secure ? o.tls : {}), settings: { enablePush: false } });
  const c: PooledConnection = { key, session, users: 0 };
  pool.set(key, c);
  const settings = waitForSettings(session);
  settings.catch(noop);
  settingsSeen.set(session, settings);
  // No new WebSockets on a connection that is going away or broken; those on it end with it.
  session.on("error", () => drop(c));
  session.on("goaway", () => drop(c));
  session.on("close", () => drop(c));
  return c;
}

const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;

/** A string equal for equal TLS options: buffers by content, plain objects and arrays by value, the rest by identity. */
function optionsKey(value: unknown): string {
  switch (typeof value) {
    case "undefined":
      return "u";
    case "string":
      return JSON.stringify(value);
    case "number":
    case "boolean":
    case "bigint":
      return `${typeof value}:${String(value)}`;
    case "symbol":
      return `s:${String(value)}`;
  }
  if (value === null) return "null";
  if (ArrayBuffer.isView(value))
    return `b:${createHash("sha256")
      .update(new Uint8Array(value.buffer, value.byteOffset, value.byteLength))
      .digest("base64")}`;
  if (Array.isArray(value)) return `[${value.map(optionsKey).join(",")}]`;
  const proto = Object.getPrototypeOf(value);
  if (typeof value === "object" && (proto === Object.prototype || proto === null)) {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${optionsKey(record[k])}`).join(",")}}`;
  }
  // Functions (checkServerIdentity), SecureContext, KeyObject...: the same object only.
  let id = objectIds.get(value as object);
  if (id === undefined) {
    id = ++nextObjectId;
    objectIds.set(value as object, id);
  }
  return `#${id}`;
}

// ---- the server's SETTINGS --------------------------------------------------------------------------

/** Per connection: settles once its server's first SETTINGS have been received. */
const settingsSeen = new WeakMap<ClientHttp2Session, Promise<void>>();

function settingsKnown(session: ClientHttp2Session): Promise<void> {
  let known = settingsSeen.get(session);
  if (known === undefined) {
    known = waitForSettings(session);
    known.catch(noop);
    settingsSeen.set(session, known);
  }
  return known;
}

/**
 * Resolves when the server's SETTINGS have arrived (RFC 8441 §3: a client waits for them before using
 * the extended CONNECT). A connection that is already up may have had them long ago: node:http2 does
 * not say, but the server sends SETTINGS first, so the answer to a PING comes after them in any case.
 */
function waitForSettings(session: ClientHttp2Session): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (session.destroyed || session.closed) {
      reject(new Error("the HTTP/2 session is closed"));
      return;
    }
    const done = (error?: Error) => {
      session.off("remoteSettings", onSettings);
      session.off("error", onError);
      session.off("close", onClose);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onSettings = () => done();
    const onError = (error: Error) => done(error);
    const onClose = () => done(new Error("the HTTP/2 connection closed before the server's SETTINGS"));
    session.on("remoteSettings", onSettings);
    session.on("error", onError);
    session.on("close", onClose);
    if (!session.connecting) {
      try {
        session.ping((error) => done(error ?? undefined));
      } catch (error) {
        done(error as Error);
      }
    }
  });
}

// ---- the handshake ----------------------------------------------------------------------------------

/** The extended CONNECT's headers (RFC 8441 §4, §5): the caller's in lower case, then the handshake's. */
function connectHeaders(url: URL, o: Resolved): OutgoingHttpHeaders {
  const headers: Record<string, string | string[]> = {
    ":method": "CONNECT",
    ":protocol": "websocket",
    ":scheme": url.protocol === "wss:" ? "https" : "http",
    ":authority": url.host,
    ":path": `${url.pathname}${url.search}`,
  };
  for (const [name, value] of Object.entries(o.headers)) {
    const lower = name.toLowerCase();
    const values = typeof value === "string" ? [value] : [...value];
    const before = headers[lower];
    headers[lower] =
      before === undefined
        ? values.length === 1
          ? values[0]!
          : values
        : [...(typeof before === "string" ? [before] : before), ...values];
  }
  if ((url.username || url.password) && headers.authorization === undefined) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString("base64")}`;
  }
  headers["sec-websocket-version"] = WEBSOCKET_VERSION;
  if (o.protocols.length > 0) headers["sec-websocket-protocol"] = o.protocols.join(", ");
  if (o.deflate) headers["sec-websocket-extensions"] = formatExtensions([o.deflate.offer]);
  return headers;
}

/** The response's headers without the pseudo-headers (`:status`). */
function regularHeaders(headers: Http2IncomingHeaders): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(":") && value !== undefined) out[name] = value as string | string[];
  }
  return out as IncomingHttpHeaders;
}

/** RST_STREAM error codes (RFC 9113 §7), for messages. */
const RST_NAMES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

/** Streams this client has open (or is opening) on a connection, and the connects waiting for one to end. */
interface StreamSlots {
  open: number;
  readonly waiting: Array<() => void>;
}
const streamSlots = new WeakMap<ClientHttp2Session, StreamSlots>();

/**
 * Runs `start` once the connection has room for one more stream under the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS; `start` must call `streamEnded` when its stream is done (or was not
 * opened). node:http2 itself queues a stream over the limit on Node 20 but sends it anyway on Node 24,
 * where the server refuses it (ENHANCE_YOUR_CALM): waiting here behaves the same on both. Returns a
 * function that gives up the wait. Streams the caller opened on its own session are not counted.
 */
function whenStreamSlot(h2: ClientHttp2Session, start: () => void): () => void {
  let slots = streamSlots.get(h2);
  if (slots === undefined) {
    const created: StreamSlots = { open: 0, waiting: [] };
    slots = created;
    streamSlots.set(h2, created);
    // A connection that goes: the waiting connects fail at once (start sees it closed).
    h2.once("close", () => {
      for (const next of created.waiting.splice(0)) next();
    });
  }
  const s = slots;
  const go = () => {
    s.open++;
    start();
  };
  if (s.open < (h2.remoteSettings.maxConcurrentStreams ?? Number.POSITIVE_INFINITY) || h2.closed) {
    go();
    return noop;
  }
  s.waiting.push(go);
  return () => {
    const i = s.waiting.indexOf(go);
    if (i >= 0) s.waiting.splice(i, 1);
  };
}

/** RST_STREAM codes of a stream the server did not take up, which `connect` sends again. */
function refusedUnanswered(code: number | undefined): boolean {
  return code === constants.NGHTTP2_REFUSED_STREAM || code === constants.NGHTTP2_ENHANCE_YOUR_CALM;
}

/** A stream counted by whenStreamSlot is done: the next waiting connect may open its own. */
function streamEnded(h2: ClientHttp2Session): void {
  const slots = streamSlots.get(h2);
  if (slots === undefined) return;
  slots.open--;
  slots.waiting.shift()?.();
}

/**
 * @internal `connect` with the `http2` option: the extended CONNECT on a stream of the caller's or a
 * pooled connection, and the session on that stream once the server answered 200.
 */
export function openHttp2Session(url: URL, o: Resolved): Promise<ClientSession> {
  return new Promise<ClientSession>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let connection: Lease | undefined;
    let stream: ClientHttp2Stream | undefined;
    /** Gives up waiting for a stream slot (see whenStreamSlot). */
    let cancelWait: (() => void) | undefined;
    const signal = o.signal;
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const fail = (error: unknown) => {
      if (settled) return;
      finish();
      // RST_STREAM(CANCEL): the stream's 'close' then releases the connection.
      if (stream !== undefined) {
        if (!stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
      } else {
        cancelWait?.();
        connection?.release();
      }
      reject(error);
    };
    const onAbort = () =>
      fail(handshakeError("ABORTED", "the handshake was aborted", signal?.reason ?? undefined));
    const failed = (what: string, error: Error) =>
      fail(handshakeError("CONNECT_FAILED", `${what} to ${url.host} failed: ${error.message}`, error));

    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    timer = handshakeDeadline(o, fail);
    try {
      connection = lease(url, o);
    } catch (error) {
      return failed("the HTTP/2 connection", error as Error);
    }
    const h2 = connection.session;

    let answered = false;
    let refusals = 0;
    /**
     * A stream the server refused before answering it (REFUSED_STREAM, which RFC 9113 §8.7 says is safe
     * to retry, or ENHANCE_YOUR_CALM, which node:http2 on Node 24 sends for a stream over its limit when
     * it has not yet counted one that just closed) is opened again after 20, 40, 80, 160 and 320 ms,
     * within the handshake's deadline.
     */
    const retryRefused = (s: ClientHttp2Stream): boolean => {
      const code = s.rstCode;
      if (answered || settled || refusals >= 5 || h2.closed || h2.destroyed) return false;
      if (!refusedUnanswered(code)) return false;
      refusals++;
      stream = undefined;
      setTimeout(
        () => {
          if (!settled) cancelWait = whenStreamSlot(h2, openStream);
        },
        10 * 2 ** refusals,
      );
      return true;
    };
    const onStreamError = (error: Error) => {
      // A refusal: its 'close' decides (sent again, or failed naming the code).
      const code = stream?.rstCode;
      if (!answered && refusedUnanswered(code)) return;
      failed("the HTTP/2 stream", error);
    };
    const onStreamClose = () => {
      const code = stream?.rstCode ?? 0;
      fail(
        handshakeError(
          "CONNECT_FAILED",
          `the HTTP/2 stream to ${url.host} closed before a response (${RST_NAMES[code] ?? code})`,
        ),
      );
    };
    const onResponse = (headers: Http2IncomingHeaders, rawHeaders: readonly string[] | undefined) => {
      const s = stream!;
      if (settled) return;
      const status = Number(headers[":status"]);
      const plain = regularHeaders(headers);
      const flat = flatHeaders(plain);
      // node:http2 joins a repeated field as node:http does; its raw list still shows the repeat.
      const repeated = status === 200 && rawHeaders !== undefined ? repeatedField(rawHeaders) : undefined;
      if (repeated !== undefined) return fail(repeatedFieldError(status, repeated, flat));
      const checked = validateConnectResponse(status, plain, o.protocols, o.requireProtocol);
      if (!checked.ok) {
        if (status === 200)
          return fail(new HandshakeError(checked.error.code, status, checked.error.message, flat));
        // A refusal: its body, up to the limit, as over HTTP/1.1.
        s.off("error", onStreamError);
        s.on("error", noop);
        readBody(s, (body, truncated) =>
          fail(
            new HandshakeError(checked.error.code, status, checked.error.message, flat, {
              body,
              bodyTruncated: truncated,
            }),
          ),
        );
        return;
      }
      const accepted = acceptExtensions(status, flat, checked.value, url, o);
      if (accepted instanceof HandshakeError) return fail(accepted);
      finish();
      s.off("error", onStreamError);
      let session: ClientSession;
      try {
        session = startSession(s, EMPTY, plain, url, o, accepted, "2.0");
      } catch (error) {
        s.destroy();
        return reject(error);
      }
      resolve(session);
    };

    const openStream = (): void => {
      cancelWait = undefined;
      if (settled) return streamEnded(h2);
      if (h2.closed || h2.destroyed) {
        streamEnded(h2);
        return fail(handshakeError("CONNECT_FAILED", `the HTTP/2 connection to ${url.host} is closed`));
      }
      let s: ClientHttp2Stream;
      try {
        s = h2.request(connectHeaders(url, o), { endStream: false });
      } catch (error) {
        streamEnded(h2);
        return failed("the HTTP/2 request", error as Error);
      }
      stream = s;
      s.on("error", onStreamError);
      s.once("close", () => {
        streamEnded(h2);
        if (retryRefused(s)) return; // the lease stays with the retry
        connection.release();
        if (!answered) onStreamClose();
      });
      s.once("response", (headers: Http2IncomingHeaders, _flags: number, rawHeaders?: string[]) => {
        answered = true;
        onResponse(headers, rawHeaders);
      });
    };

    settingsKnown(h2).then(
      () => {
        if (settled) return;
        if (h2.closed || h2.destroyed)
          return fail(handshakeError("CONNECT_FAILED", `the HTTP/2 connection to ${url.host} is closed`));
        if (h2.remoteSettings.enableConnectProtocol !== true)
          return fail(
            handshakeError(
              "H2_CONNECT_UNSUPPORTED",
              `${url.host} does not enable the extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441) on HTTP/2`,
            ),
          );
        cancelWait = whenStreamSlot(h2, openStream);
      },
      (error: Error) => failed("the HTTP/2 connection", error),
    );
  });
}
