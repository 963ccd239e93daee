import type { MessageCodec } from "../extensions/index.js";
import type { ExtensionOffer } from "../protocol/index.js";
import type { CloseReason } from "./close-reason.js";
import type { FlushScheduler } from "./flush-scheduler.js";
import type { WebSocketFrame } from "./frames.js";

/** What a send accepts: text, bytes (any ArrayBuffer or view of one), or a frame. */
export type Sendable = string | ArrayBuffer | ArrayBufferView | WebSocketFrame;

export interface SendOptions {
  /** false: send this message uncompressed even when permessage-deflate is on. Default true. */
  compress?: boolean;
}

/**
 * Where a session is in its life. Every transition is made in `WebSocketSession`; docs/architecture.md
 * has the table of what each operation does in each state.
 * - open: messages flow both ways.
 * - replying: the peer's Close (or a protocol violation) has arrived. What the handler sends during this
 *   event-loop turn still goes out; then our Close (the echo, or the violation's code) is queued.
 * - closing: our Close is queued behind the messages accepted before it (some still compressing).
 * - close-sent: our Close is with the protocol connection; waiting for the peer's (`timeout`).
 * - draining: both Closes are through, or the connection failed or was abandoned: TCP is ending.
 * - closed: the socket is gone; everything is settled.
 */
export type SessionState = "open" | "replying" | "closing" | "close-sent" | "draining" | "closed";

/**
 * What every session offers whatever its route and frame type: for code that holds the sessions of
 * several routes at once, as `app.sessions` does (ws's `wss.clients`).
 */
export interface SessionHandle<C = unknown> {
  readonly call: C;
  readonly protocol: string | undefined;
  readonly extensions: readonly ExtensionOffer[];
  readonly state: SessionState;
  readonly isOpen: boolean;
  readonly bufferedAmount: number;
  readonly closeReason: Promise<CloseReason>;
  readonly signal: AbortSignal;
  send(data: Sendable, options?: SendOptions): Promise<void>;
  flush(): Promise<void>;
  subscribe(topic: string): Promise<void>;
  unsubscribe(topic: string): boolean;
  isSubscribed(topic: string): boolean;
  readonly topics: readonly string[];
  slowSubscriberPolicy: SlowSubscriberPolicy | undefined;
  close(code?: number | CloseReason, reason?: string): Promise<void>;
  terminate(): void;
}

/**
 * What happens to a publication for a subscriber over its `outgoingHighWaterMark`: "drop" skips it
 * (the session stays open), "close" closes the session (the pub/sub's `slowCloseCode`).
 */
export type SlowSubscriberPolicy = "drop" | "close";

/** Where sessions' topic subscriptions are kept: an application's pub/sub. */
export interface TopicRegistry {
  /** Throws a UsageError for an invalid topic or past the subscription limit; the promise never rejects. */
  subscribe(session: SessionHandle, topic: string): Promise<void>;
  unsubscribe(session: SessionHandle, topic: string): boolean;
  /** The session no longer takes publications: every subscription it has ends. */
  leaveAll(session: SessionHandle): void;
}

/** Why a session reports to the error hook: the application's handler failed, or the peer broke the protocol. */
export type SessionErrorKind = "handler" | "protocol";

export interface SessionHooks {
  /** Errors worth reporting: a handler that threw, a protocol violation by the peer. */
  onError?: (error: unknown, kind: SessionErrorKind) => void;
  /** The transport is gone and every timer released. */
  onEnd?: (session: SessionHandle) => void;
}

/** How a session is put together (by the app layer, a client, or a test). */
export interface SessionSetup<C, D> {
  call: C;
  data: D;
  hooks?: SessionHooks;
  extensions?: readonly ExtensionOffer[];
  protocol?: string | undefined;
  codec?: MessageCodec | undefined;
  /** Writes at the end of each turn; an application shares one among its sessions. */
  scheduler?: FlushScheduler;
  /** Topic subscriptions (the application's pub/sub); without it, `subscribe` throws NO_PUBSUB. */
  topics?: TopicRegistry;
}
