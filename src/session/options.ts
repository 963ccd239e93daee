import { AppError } from "../protocol/index.js";

/** Limits and timings of one session. Every field has a default in `DEFAULT_SESSION_OPTIONS`. */
export interface SessionOptions {
  /** Milliseconds between keepalive pings; 0 disables them. */
  pingPeriod: number;
  /** Milliseconds to wait for a pong, and for the peer's Close frame after ours; 0 waits forever. */
  timeout: number;
  /** Largest message after reassembly (and decompression), in bytes; larger ones close with 1009. */
  maxFrameSize: number;
  /** Most frames in one fragmented message; more close with 1009. */
  maxFragments: number;
  /** Unread received bytes queued before socket reads pause (TCP then pushes back on the peer). */
  incomingBufferLimit: number;
  /** Bytes buffered for sending under which `send` resolves at once; above it, `send` waits for drain. */
  outgoingHighWaterMark: number;
  /** Bytes buffered for sending past which `send` rejects with SEND_BUFFER_FULL instead of queueing. */
  outgoingBufferLimit: number;
}

export const DEFAULT_SESSION_OPTIONS: Readonly<SessionOptions> = Object.freeze({
  pingPeriod: 30_000,
  timeout: 15_000,
  maxFrameSize: 1024 * 1024,
  maxFragments: 1024,
  incomingBufferLimit: 1024 * 1024,
  outgoingHighWaterMark: 1024 * 1024,
  outgoingBufferLimit: 16 * 1024 * 1024,
});

/** Checks user-supplied options: every value a non-negative integer, with the stated minimums. */
export function resolveSessionOptions(given: Partial<SessionOptions> = {}): SessionOptions {
  const out = { ...DEFAULT_SESSION_OPTIONS };
  for (const [key, value] of Object.entries(given) as Array<[keyof SessionOptions, unknown]>) {
    if (value === undefined) continue;
    if (!(key in DEFAULT_SESSION_OPTIONS)) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new AppError(
        "INVALID_OPTION",
        `WebSockets option ${key} must be a non-negative integer, got ${String(value)}`,
      );
    }
    out[key] = value;
  }
  if (out.maxFrameSize < 125)
    throw new AppError("INVALID_OPTION", "WebSockets option maxFrameSize must be at least 125");
  if (out.maxFragments < 1)
    throw new AppError("INVALID_OPTION", "WebSockets option maxFragments must be at least 1");
  // Otherwise sends would be refused before backpressure ever made them wait.
  if (out.outgoingBufferLimit < out.outgoingHighWaterMark)
    throw new AppError(
      "INVALID_OPTION",
      `WebSockets option outgoingBufferLimit (${out.outgoingBufferLimit}) must be at least outgoingHighWaterMark (${out.outgoingHighWaterMark})`,
    );
  return out;
}
