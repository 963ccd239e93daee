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
  | "HEADER_SYNTAX";

/** The upgrade request is not a valid WebSocket opening handshake (§4.2.1). */
export class HandshakeError extends Error {
  override readonly name = "HandshakeError";
  constructor(
    readonly code: HandshakeErrorCode,
    /** HTTP status to answer with: 400, 405 or 426. */
    readonly status: number,
    message: string,
    /** Extra response headers the RFC asks for (e.g. `Sec-WebSocket-Version` with 426). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

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
