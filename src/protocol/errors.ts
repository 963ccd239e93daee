import { Buffer } from "node:buffer";
import { CloseCode } from "./close-codes.js";

/** Stable codes for every way a peer can break RFC 6455 §5–§7. */
export type ProtocolErrorCode =
  | "RESERVED_BITS_SET"
  | "RESERVED_OPCODE"
  | "CONTROL_FRAME_TOO_LONG"
  | "CONTROL_FRAME_FRAGMENTED"
  | "UNEXPECTED_CONTINUATION"
  | "EXPECTED_CONTINUATION"
  | "MASK_REQUIRED"
  | "MASK_FORBIDDEN"
  | "LENGTH_MSB_SET"
  | "NON_MINIMAL_LENGTH"
  | "MESSAGE_TOO_BIG"
  | "TOO_MANY_FRAGMENTS"
  | "INVALID_UTF8"
  | "INVALID_CLOSE_PAYLOAD"
  | "INVALID_CLOSE_CODE"
  | "INVALID_CLOSE_REASON"
  /** An extension could not decode what the peer sent (1007), or failed itself (1011). */
  | "EXTENSION_FAILED";

/**
 * A peer broke the protocol. The core never throws these at its caller for peer input: it records
 * one on the connection (`Connection.failure`) and queues the matching close frame.
 */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
  constructor(
    readonly code: ProtocolErrorCode,
    /** The close code that the failure maps to (§7.4.1). */
    readonly closeCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Shorthands for the close codes the parser uses, kept beside the error type for readability. */
export const protocolError = (code: ProtocolErrorCode, message: string) =>
  new ProtocolError(code, CloseCode.ProtocolError, message);

/** Stable codes for handshake failures; each maps to an HTTP status. */
export type HandshakeErrorCode =
  | "METHOD_NOT_GET"
  | "HTTP_VERSION"
  | "UPGRADE_HEADER"
  | "CONNECTION_HEADER"
  | "KEY_MISSING"
  | "KEY_INVALID"
  | "VERSION_UNSUPPORTED"
  | "HEADER_SYNTAX"
  // Client side (`connect`): what went wrong with the server's answer, or before one came.
  /** The server answered with a status other than 101 (refused, or a redirect not followed). */
  | "UNEXPECTED_STATUS"
  /** Sec-WebSocket-Accept missing or not the hash of our key. */
  | "ACCEPT_MISMATCH"
  /** The server chose a subprotocol we did not offer, or none when we required one. */
  | "PROTOCOL_MISMATCH"
  /** The server accepted an extension we did not offer, or answered our offer with invalid parameters. */
  | "EXTENSION_MISMATCH"
  /** No complete answer within `handshakeTimeout`. */
  | "HANDSHAKE_TIMEOUT"
  /** The caller's `signal` aborted the handshake. */
  | "ABORTED"
  /** The TCP or TLS connection failed (refused, DNS, certificate): see `cause`. */
  | "CONNECT_FAILED"
  /** The URL is not a ws:, wss:, http: or https: URL (or a redirect pointed to such a URL). */
  | "INVALID_URL"
  /** More than `maxRedirects` redirects. */
  | "TOO_MANY_REDIRECTS"
  /**
   * Over HTTP/2 (`http2` option): the server's SETTINGS do not enable the extended CONNECT
   * (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441 §3), so it cannot carry WebSockets on that connection.
   */
  | "H2_CONNECT_UNSUPPORTED";

/** What a client keeps of a refused handshake's response body, at most (bytes). */
export const HANDSHAKE_ERROR_BODY_LIMIT = 16 * 1024;

/**
 * An opening handshake that failed. On the server: the request is not a valid WebSocket opening
 * handshake (§4.2.1), `status` and `headers` are what to answer with. On the client (`connect`): the
 * server's answer was not an acceptable 101 (§4.1), `status`, `headers` and `body` are what it answered
 * (`status` 0 when no response came).
 */
export class HandshakeError extends Error {
  override readonly name = "HandshakeError";
  /** Client side: the response body, at most `HANDSHAKE_ERROR_BODY_LIMIT` bytes of it; else empty. */
  readonly body: Buffer;
  /** Client side: true when the body was longer than what `body` holds. */
  readonly bodyTruncated: boolean;
  constructor(
    readonly code: HandshakeErrorCode,
    /** Server side: the HTTP status to answer with (400, 405 or 426). Client side: the server's status. */
    readonly status: number,
    message: string,
    /**
     * Server side: extra response headers the RFC asks for (e.g. `Sec-WebSocket-Version` with 426).
     * Client side: the response's headers, names in lower case, repeated ones joined with ", ".
     */
    readonly headers: Readonly<Record<string, string>> = {},
    details: { body?: Buffer; bodyTruncated?: boolean; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.body = details.body ?? EMPTY_BODY;
    this.bodyTruncated = details.bodyTruncated ?? false;
  }
}

const EMPTY_BODY = Buffer.alloc(0);

/** Stable codes for misuse of the sending API by the application (not by the peer). */
export type UsageErrorCode =
  | "CONTROL_PAYLOAD_TOO_LONG"
  | "INVALID_CLOSE_CODE"
  | "CLOSE_REASON_TOO_LONG"
  | "SEND_AFTER_CLOSE"
  | "INVALID_FRAME"
  /** A topic that is not a string of 1 to `maxTopicLength` UTF-8 bytes. */
  | "INVALID_TOPIC"
  /** A session already subscribed to `maxSubscriptionsPerSession` topics. */
  | "TOO_MANY_SUBSCRIPTIONS"
  /** A publication over `maxPublicationSize` bytes. */
  | "PUBLICATION_TOO_LARGE"
  /** Topics on a session that no application's pub/sub serves. */
  | "NO_PUBSUB";

/** The application asked for something the protocol forbids. Thrown synchronously to the caller. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  constructor(
    readonly code: UsageErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Stable codes for mistakes in how an application is put together. */
export type AppErrorCode =
  | "PLUGIN_MISSING"
  | "PLUGIN_ALREADY_INSTALLED"
  | "INVALID_OPTION"
  | "INVALID_REJECTION"
  | "REQUEST_RELEASED"
  | "ALREADY_LISTENING";

/**
 * The application is put together wrongly (an option out of range, a plugin missing). Defined here,
 * with sockway's other typed errors, so that every layer (extensions, sessions, the app) throws the same.
 */
export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly code: AppErrorCode,
    message: string,
  ) {
    super(message);
  }
}
