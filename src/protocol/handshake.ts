import { Buffer } from "node:buffer";
import * as crypto from "node:crypto";
import { HandshakeError, type HandshakeErrorCode } from "./errors.js";
import {
  type ExtensionOffer,
  type HeaderValue,
  hasToken,
  isToken,
  parseExtensions,
  parseTokenList,
} from "./header-grammar.js";

/** The GUID appended to the key before hashing (RFC 6455 §1.3, §4.2.2). */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
export const WEBSOCKET_VERSION = "13";

/** The parts of an HTTP request the handshake needs; node:http's IncomingMessage fits. */
export interface UpgradeRequestLike {
  method?: string | undefined;
  httpVersion: string;
  headers: Readonly<Record<string, HeaderValue>>;
}

/** A valid opening handshake request (§4.2.1). */
export interface UpgradeRequest {
  key: string;
  /** Sec-WebSocket-Protocol, in the client's order of preference. */
  protocols: string[];
  /** Sec-WebSocket-Extensions offers, in the client's order. */
  extensions: ExtensionOffer[];
}

export type HandshakeResult<T> = { ok: true; value: T } | { ok: false; error: HandshakeError };

// 16 bytes in base64: 22 characters, the last carrying only 2 bits, then "==".
const KEY_PATTERN = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

const fail = (error: HandshakeError): { ok: false; error: HandshakeError } => ({ ok: false, error });

/**
 * Validates a client's opening handshake (RFC 6455 §4.2.1). Never throws; a failure carries the HTTP
 * status to answer with: 405 (not GET), 426 (no `Upgrade: websocket`, or a version other than 13, with
 * `Sec-WebSocket-Version: 13`), 400 otherwise.
 */
export function validateUpgradeRequest(req: UpgradeRequestLike): HandshakeResult<UpgradeRequest> {
  if (req.method !== "GET") {
    return fail(
      new HandshakeError("METHOD_NOT_GET", 405, "the opening handshake must be a GET request", {
        Allow: "GET",
      }),
    );
  }
  const [major = 0, minor = 0] = req.httpVersion === "1.1" ? [1, 1] : req.httpVersion.split(".").map(Number);
  if (major < 1 || (major === 1 && minor < 1)) {
    return fail(new HandshakeError("HTTP_VERSION", 400, "the opening handshake needs HTTP/1.1 or later"));
  }
  const h = req.headers;
  if (!hasToken(h.upgrade, "websocket")) {
    return fail(
      new HandshakeError(
        "UPGRADE_HEADER",
        426,
        "this resource needs a WebSocket upgrade (Upgrade: websocket)",
        {
          Upgrade: "websocket",
          Connection: "Upgrade",
          "Sec-WebSocket-Version": WEBSOCKET_VERSION,
        },
      ),
    );
  }
  if (!hasToken(h.connection, "upgrade")) {
    return fail(new HandshakeError("CONNECTION_HEADER", 400, "the Connection header must include 'Upgrade'"));
  }
  const rawKey = h["sec-websocket-key"];
  if (rawKey === undefined)
    return fail(new HandshakeError("KEY_MISSING", 400, "Sec-WebSocket-Key is missing"));
  const key = typeof rawKey === "string" ? rawKey.trim() : undefined;
  if (key === undefined || !KEY_PATTERN.test(key)) {
    return fail(new HandshakeError("KEY_INVALID", 400, "Sec-WebSocket-Key must be 16 bytes in base64"));
  }
  if (trimmed(h["sec-websocket-version"]) !== WEBSOCKET_VERSION) {
    return fail(
      new HandshakeError("VERSION_UNSUPPORTED", 426, "only WebSocket version 13 is supported", {
        "Sec-WebSocket-Version": WEBSOCKET_VERSION,
      }),
    );
  }
  const offers = parseOffers(h);
  return offers.ok
    ? { ok: true, value: { key, protocols: offers.value.protocols, extensions: offers.value.extensions } }
    : offers;
}

/** A valid extended CONNECT for a WebSocket (RFC 8441 §4): no key, the rest as in §4.2.1. */
export type ExtendedConnectRequest = Omit<UpgradeRequest, "key">;

/**
 * Validates a WebSocket opening handshake carried over HTTP/2 by an extended CONNECT (RFC 8441 §4-5):
 * `:method` CONNECT with `:protocol` websocket; Sec-WebSocket-Version 13; subprotocols and extensions as
 * over HTTP/1.1. There is no Sec-WebSocket-Key nor Accept on HTTP/2 (§5). Never throws.
 */
export function validateExtendedConnect(
  headers: Readonly<Record<string, HeaderValue>>,
): HandshakeResult<ExtendedConnectRequest> {
  if (headers[":method"] !== "CONNECT")
    return fail(new HandshakeError("METHOD_NOT_GET", 405, "a WebSocket over HTTP/2 is an extended CONNECT"));
  const protocol = trimmed(headers[":protocol"]);
  if (protocol === undefined || protocol.toLowerCase() !== "websocket")
    return fail(
      new HandshakeError("UPGRADE_HEADER", 400, "the extended CONNECT's :protocol must be websocket"),
    );
  if (trimmed(headers["sec-websocket-version"]) !== WEBSOCKET_VERSION) {
    return fail(
      new HandshakeError("VERSION_UNSUPPORTED", 426, "only WebSocket version 13 is supported", {
        "Sec-WebSocket-Version": WEBSOCKET_VERSION,
      }),
    );
  }
  return parseOffers(headers);
}

/** The subprotocols and extensions a client offers, the same over HTTP/1.1 and HTTP/2. */
function parseOffers(h: Readonly<Record<string, HeaderValue>>): HandshakeResult<ExtendedConnectRequest> {
  const protocols = parseTokenList(h["sec-websocket-protocol"]);
  if (!protocols)
    return fail(new HandshakeError("HEADER_SYNTAX", 400, "Sec-WebSocket-Protocol is not a token list"));
  const extensions = parseExtensions(h["sec-websocket-extensions"]);
  if (!extensions)
    return fail(new HandshakeError("HEADER_SYNTAX", 400, "Sec-WebSocket-Extensions is malformed"));
  return { ok: true, value: { protocols, extensions } };
}

function trimmed(value: HeaderValue): string | undefined {
  return typeof value === "string" ? value.trim() : undefined;
}

/** crypto.hash (Node 20.12+, 21.7+): a one-shot digest without a Hash object; createHash before it. */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: "base64") => string })
  .hash;

/** Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)) (§4.2.2). */
export function computeAccept(key: string): string {
  const data = key + WEBSOCKET_GUID;
  return oneShotHash !== undefined
    ? oneShotHash("sha1", data, "base64")
    : crypto.createHash("sha1").update(data).digest("base64");
}

/** A new Sec-WebSocket-Key from 16 random bytes (§4.1), for clients. */
export function generateKey(randomFill: (target: Uint8Array) => void): string {
  const bytes = new Uint8Array(16);
  randomFill(bytes);
  return Buffer.from(bytes).toString("base64");
}

/** Whether a header value is safe to write (no CR, LF or NUL: no response splitting). */
export function isSafeHeaderValue(value: string): boolean {
  return !/[\r\n\0]/.test(value);
}

/** The `101 Switching Protocols` response head (§4.2.2), with any extra headers. */
export function acceptResponseHead(
  key: string,
  options: {
    protocol?: string | undefined;
    extensions?: string | undefined;
    headers?: Readonly<Record<string, string>>;
  } = {},
): string {
  let head = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAccept(key)}\r\n`;
  if (options.protocol !== undefined) {
    if (!isToken(options.protocol))
      throw new TypeError(`subprotocol ${JSON.stringify(options.protocol)} is not a token`);
    head += `Sec-WebSocket-Protocol: ${options.protocol}\r\n`;
  }
  if (options.extensions) head += headerLine("Sec-WebSocket-Extensions", options.extensions);
  for (const [name, value] of Object.entries(options.headers ?? {})) head += headerLine(name, value);
  return `${head}\r\n`;
}

/** A complete HTTP/1.1 error response that closes the connection (used before any upgrade). */
export function errorResponse(
  status: number,
  statusText: string,
  body = "",
  headers: Readonly<Record<string, string>> = {},
): string {
  let head = `HTTP/1.1 ${status} ${statusText}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += headerLine(name, value);
  return `${head}\r\n${body}`;
}

function headerLine(name: string, value: string): string {
  if (!isToken(name) || !isSafeHeaderValue(value))
    throw new TypeError(`invalid response header ${JSON.stringify(name)}`);
  return `${name}: ${value}\r\n`;
}

/**
 * Checks a server's 101 response against our request (§4.1), for clients. Never throws. `status` of the
 * error is the response's; the caller adds the response's headers and body. `requireProtocol`: when we
 * offered subprotocols, a response that picks none fails too (ws's behaviour; browsers accept it).
 * Which extensions are acceptable is the caller's to check (it knows what it offered).
 */
export function validateUpgradeResponse(
  status: number,
  headers: Readonly<Record<string, HeaderValue>>,
  key: string,
  offeredProtocols: readonly string[],
  requireProtocol = false,
): HandshakeResult<{ protocol: string | undefined; extensions: ExtensionOffer[] }> {
  const bad = (code: HandshakeErrorCode, message: string) => fail(new HandshakeError(code, status, message));
  if (status !== 101) return bad("UNEXPECTED_STATUS", `expected status 101, got ${status}`);
  if (!hasToken(headers.upgrade, "websocket"))
    return bad("UPGRADE_HEADER", "response lacks Upgrade: websocket");
  if (!hasToken(headers.connection, "upgrade"))
    return bad("CONNECTION_HEADER", "response lacks Connection: Upgrade");
  if (trimmed(headers["sec-websocket-accept"]) !== computeAccept(key))
    return bad("ACCEPT_MISMATCH", "Sec-WebSocket-Accept does not match");
  return negotiated(status, headers, offeredProtocols, requireProtocol);
}

/**
 * Checks a server's answer to an HTTP/2 extended CONNECT (RFC 8441 §5), for clients: a 200, then the
 * same subprotocol and extension checks as `validateUpgradeResponse` (no Upgrade, Connection or
 * Sec-WebSocket-Accept on HTTP/2). Never throws.
 */
export function validateConnectResponse(
  status: number,
  headers: Readonly<Record<string, HeaderValue>>,
  offeredProtocols: readonly string[],
  requireProtocol = false,
): HandshakeResult<{ protocol: string | undefined; extensions: ExtensionOffer[] }> {
  if (status !== 200)
    return fail(new HandshakeError("UNEXPECTED_STATUS", status, `expected status 200, got ${status}`));
  return negotiated(status, headers, offeredProtocols, requireProtocol);
}

/** The subprotocol and extensions a server's acceptance chose, checked against what we offered. */
function negotiated(
  status: number,
  headers: Readonly<Record<string, HeaderValue>>,
  offeredProtocols: readonly string[],
  requireProtocol: boolean,
): HandshakeResult<{ protocol: string | undefined; extensions: ExtensionOffer[] }> {
  const bad = (code: HandshakeErrorCode, message: string) => fail(new HandshakeError(code, status, message));
  const rawProtocol = headers["sec-websocket-protocol"];
  const protocol = trimmed(rawProtocol);
  if (rawProtocol !== undefined && (protocol === undefined || !offeredProtocols.includes(protocol)))
    return bad("PROTOCOL_MISMATCH", `server chose unoffered subprotocol ${String(rawProtocol)}`);
  if (protocol === undefined && requireProtocol && offeredProtocols.length > 0)
    return bad("PROTOCOL_MISMATCH", `server chose no subprotocol of [${offeredProtocols.join(", ")}]`);
  const extensions = parseExtensions(headers["sec-websocket-extensions"]);
  if (!extensions) return bad("HEADER_SYNTAX", "Sec-WebSocket-Extensions is malformed");
  return { ok: true, value: { protocol, extensions } };
}
