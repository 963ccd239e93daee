/** Stable codes for session misuse and session-level limits. */
export type SessionErrorCode =
  /** The session is closing or closed: nothing more can be sent. */
  | "SESSION_CLOSED"
  /** The handler returned; the session belongs to the library now (as in Ktor). */
  | "HANDLER_RETURNED"
  /** More than `outgoingBufferLimit` bytes were queued without awaiting `send`. */
  | "SEND_BUFFER_FULL"
  /** The same `incoming` was iterated twice at once. */
  | "INCOMING_IN_USE";

export class SessionError extends Error {
  override readonly name = "SessionError";
  constructor(
    readonly code: SessionErrorCode,
    message: string,
  ) {
    super(message);
  }
}
