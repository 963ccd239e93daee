import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import type { MessageCodec } from "../extensions/index.js";
import {
  CloseCode,
  type Connection,
  type ExtensionOffer,
  Opcode,
  type ProtocolError,
  toBuffer,
  UsageError,
} from "../protocol/index.js";
import { CloseReason } from "./close-reason.js";
import { SessionError } from "./errors.js";
import type { WebSocketFrame } from "./frames.js";
import type { SessionOptions } from "./options.js";
import {
  EMPTY,
  type ManagedSession,
  NO_WAITERS,
  noop,
  RESOLVED,
  SessionChannel,
  type SessionHooks,
} from "./session-channel.js";

export type { ManagedSession, SessionErrorKind, SessionHooks } from "./session-channel.js";

/** What a send accepts: text, bytes, or a frame. */
export type Sendable = string | Uint8Array | WebSocketFrame;

/** How a session is put together by the app layer. */
export interface SessionSetup<C, D> {
  call: C;
  data: D;
  hooks?: SessionHooks;
  extensions?: readonly ExtensionOffer[];
  protocol?: string | undefined;
  codec?: MessageCodec | undefined;
}

// biome-ignore lint/suspicious/noExplicitAny: any session, whatever its frame, call and data types
type AnySession = WebSocketSession<any, any, any>;

/**
 * A WebSocket session: what a handler gets. On top of the I/O in `SessionChannel` it has the API
 * (send, flush, close, closeReason, signal...), keepalive pings and the closing sequence with its
 * timeouts. All timers of a session live here.
 *
 * `F` is what `incoming` yields; `C` the call (request) information; `D` the per-session user data.
 */
export abstract class WebSocketSession<F extends { data: Uint8Array }, C = unknown, D = unknown>
  extends SessionChannel<F>
  implements ManagedSession
{
  /** Per-session user data, from the route's `beforeUpgrade` hook. */
  data: D;
  // Made on first use: most sessions never ask, and each costs memory and handshake time.
  private abort: AbortController | undefined;
  private closePromise: Promise<CloseReason> | undefined;
  private resolveCloseReason: ((reason: CloseReason) => void) | undefined;
  private finalReason: CloseReason | undefined;
  private writer: WritableStream<Sendable> | undefined;
  private localReason: CloseReason | undefined;
  private endedBy: "close" | "handler" = "close";
  private pingTimer: NodeJS.Timeout | undefined;
  private pongTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private pingCounter = 0;
  private expectedPong: Buffer | undefined;
  /** Request information: path parameters, headers, query, remote address. */
  readonly call: C;
  /** Negotiated extensions, as the response header listed them. */
  readonly extensions: readonly ExtensionOffer[];
  /** The subprotocol agreed in the handshake, if any. */
  readonly protocol: string | undefined;

  constructor(socket: Duplex, connection: Connection, options: SessionOptions, setup: SessionSetup<C, D>) {
    super(socket, connection, options, setup.hooks, setup.codec);
    this.call = setup.call;
    this.data = setup.data;
    this.extensions = setup.extensions ?? [];
    this.protocol = setup.protocol;
    this.schedulePing();
  }

  private static pingDue(session: AnySession): void {
    session.sendKeepalivePing();
  }

  private static pongDue(session: AnySession): void {
    session.onPingTimeout();
  }

  private static closeDue(session: AnySession): void {
    session.onCloseTimer();
  }

  /**
   * Resolves once the session has ended, with the code and reason of the Close frame received from the
   * peer (RFC 6455 §7.1.5: when we closed first, the peer's echo); ours if the peer never answered; 1006
   * if the connection dropped without a Close frame.
   */
  get closeReason(): Promise<CloseReason> {
    if (!this.closePromise) {
      this.closePromise = this.finalReason
        ? Promise.resolve(this.finalReason)
        : new Promise((resolve) => {
            this.resolveCloseReason = resolve;
          });
    }
    return this.closePromise;
  }

  /**
   * The sending side as a stream (Ktor's `outgoing`): each chunk written goes through `send`, so a
   * pipe from another stream gets the same backpressure. Closing the writer starts the closing handshake.
   */
  get outgoing(): WritableStream<Sendable> {
    this.writer ??= new WritableStream<Sendable>({
      write: (chunk) => this.send(chunk),
      close: () => this.close(),
      abort: () => this.close(new CloseReason(CloseCode.GoingAway, "")),
    });
    return this.writer;
  }

  /** Aborted when the session ends; its reason is the `CloseReason`. */
  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      if (this.finalReason) this.abort.abort(this.finalReason);
    }
    return this.abort.signal;
  }

  /** Milliseconds between keepalive pings (0: none). Changing it reschedules the next ping. */
  get pingPeriod(): number {
    return this.options.pingPeriod;
  }

  set pingPeriod(ms: number) {
    this.options = { ...this.options, pingPeriod: ms };
    clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
    if (!this.pongTimer) this.schedulePing();
  }

  /** Milliseconds to wait for a pong or for the peer's Close frame. */
  get timeout(): number {
    return this.options.timeout;
  }

  set timeout(ms: number) {
    this.options = { ...this.options, timeout: ms };
  }

  /** Largest message accepted, in bytes (1009 beyond it). */
  get maxFrameSize(): number {
    return this.options.maxFrameSize;
  }

  /** True until the session starts closing. */
  get isOpen(): boolean {
    return !this.ended && !this.finished;
  }

  // ---- sending ----------------------------------------------------------------------------------

  /**
   * Sends a message (text for strings, binary for bytes) or a frame. Resolves at once while less than
   * `outgoingHighWaterMark` bytes are buffered, otherwise when the socket has drained below it; so
   * `await send(...)` is backpressure. Rejects with a `SessionError` once the session is closing.
   */
  send(data: Sendable): Promise<void> {
    if (this.ended || this.finished) return Promise.reject(this.closedError());
    const size =
      typeof data === "string"
        ? Buffer.byteLength(data)
        : data instanceof Uint8Array
          ? data.length
          : data.data.length;
    if (this.bufferedAmount + size > this.options.outgoingBufferLimit) {
      return Promise.reject(
        new SessionError(
          "SEND_BUFFER_FULL",
          `more than ${this.options.outgoingBufferLimit} bytes queued; await send() for backpressure`,
        ),
      );
    }
    const message = this.codec ? asMessage(data) : undefined;
    if (message) return this.sendThroughCodec(this.codec!, message.opcode, message.bytes);
    // Behind a message that is still being encoded, later data waits its turn.
    if (!this.outbound.idle)
      return this.outbound.run(size, () => this.queueData(data)).then(() => this.afterQueued());
    try {
      this.queueData(data);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.afterQueued();
  }

  private queueData(data: Sendable): void {
    if (typeof data === "string") this.connection.sendText(data);
    else if (data instanceof Uint8Array) this.connection.sendBinary(data);
    else this.sendFrame(data);
    this.scheduleFlush();
  }

  private sendThroughCodec(codec: MessageCodec, opcode: number, bytes: Buffer): Promise<void> {
    const size = bytes.length;
    if (this.outbound.idle) {
      let encoding: Promise<Buffer | undefined> | undefined;
      try {
        encoding = codec.encode(bytes);
      } catch (error) {
        return Promise.reject(error);
      }
      if (encoding === undefined) {
        // Under the threshold: sent as it is, synchronously.
        this.queueMessage(opcode, bytes, undefined);
        return this.afterQueued();
      }
      const started = encoding;
      return this.outbound
        .run(size, async () => this.queueMessage(opcode, bytes, await started))
        .then(
          () => this.afterQueued(),
          (e: unknown) => this.encodeFailed(e),
        );
    }
    return this.outbound
      .run(size, async () => this.queueMessage(opcode, bytes, await codec.encode(bytes)))
      .then(
        () => this.afterQueued(),
        (e: unknown) => this.encodeFailed(e),
      );
  }

  private queueMessage(opcode: number, original: Buffer, encoded: Buffer | undefined): void {
    if (this.connection.closeSent || this.finished) throw this.closedError(); // closed while we were encoding
    if (encoded === undefined) this.connection.sendFrame(opcode, original);
    else this.connection.sendFrame(opcode, encoded, { rsv1: true });
    this.scheduleFlush();
  }

  private encodeFailed(error: unknown): never {
    if (!(error instanceof SessionError)) this.failWith(error);
    throw error;
  }

  /** Resolves when everything sent so far has been handed to the kernel. */
  flush(): Promise<void> {
    if (this.finished) return RESOLVED;
    this.writeOutput(true);
    if (this.socket.writableLength === 0) return RESOLVED;
    return new Promise((resolve) => this.socket.write(EMPTY, () => resolve()));
  }

  /**
   * Starts the closing handshake (default 1000) and resolves when our Close frame is written. The session
   * ends when the peer answers, or after `timeout` ms.
   */
  async close(reason: CloseReason = new CloseReason(CloseCode.Normal)): Promise<void> {
    if (this.finished) return;
    this.ended = true;
    this.startClose(reason.code, reason.message);
    await this.flush();
  }

  /** Destroys the transport at once, without a closing handshake (1006). */
  terminate(): void {
    this.socket.destroy();
  }

  // ---- lifecycle --------------------------------------------------------------------------------

  protected abstract sendFrame(frame: WebSocketFrame): void;
  /** Called by the app when the handler has returned or thrown: the close sequence starts (as in Ktor). */
  handlerFinished(error?: unknown): void {
    // A send that failed because the peer already closed is how a handler learns of it: not an app error.
    const peerGone = error instanceof SessionError && error.code === "SESSION_CLOSED" && this.ended;
    this.endedBy = "handler";
    if (error === undefined || peerGone) {
      this.ended = true;
      this.startClose(CloseCode.Normal, "");
      return;
    }
    this.ended = true;
    this.hooks.onError?.(error, "handler");
    this.localReason ??= new CloseReason(CloseCode.InternalError, "Internal error");
    this.startClose(CloseCode.InternalError, "Internal error");
  }

  /** Closes with 1001 for a server shutdown. */
  goAway(): void {
    this.ended = true;
    this.startClose(CloseCode.GoingAway, "Server shutting down");
  }

  /**
   * The peer's Close frame arrived. Our reply waits until the handler has taken what arrived before it,
   * so an answer to the last message still goes out first (§5.5.1); `timeout` bounds the wait.
   */
  protected onPeerClose(): void {
    this.scheduleFlush();
    if (this.options.timeout > 0) this.armCloseTimer(this.options.timeout);
  }

  /** Queues the reply to the peer's Close frame, if one is owed; from then on nothing more can be sent. */
  protected replyToPeerClose(): boolean {
    if (!this.connection.replyToClose()) return false;
    this.ended = true;
    return true;
  }

  protected onFailure(failure: ProtocolError): void {
    if (this.localReason) return;
    this.ended = true;
    this.localReason = new CloseReason(failure.closeCode, failure.message);
    this.hooks.onError?.(failure, "protocol");
  }

  // ---- keepalive --------------------------------------------------------------------------------

  private schedulePing(): void {
    if (this.options.pingPeriod <= 0 || this.finished || this.ended) return;
    this.pingTimer = setTimeout(WebSocketSession.pingDue, this.options.pingPeriod, this);
    this.pingTimer.unref?.();
  }

  private sendKeepalivePing(): void {
    this.pingTimer = undefined;
    if (this.finished || this.connection.state !== "open") return;
    this.codec?.releaseIdle?.();
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(++this.pingCounter >>> 0);
    this.expectedPong = payload;
    this.connection.sendPing(payload);
    this.scheduleFlush();
    if (this.options.timeout > 0) {
      this.pongTimer = setTimeout(WebSocketSession.pongDue, this.options.timeout, this);
      this.pongTimer.unref?.();
    } else {
      this.schedulePing();
    }
  }

  protected onPong(data: Buffer): void {
    // Only the pong that answers our latest ping counts (§5.5.3: same application data).
    if (!this.expectedPong || !data.equals(this.expectedPong)) return;
    this.expectedPong = undefined;
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
    this.schedulePing();
  }

  private onPingTimeout(): void {
    this.pongTimer = undefined;
    if (this.finished) return;
    // We stopped reading (the handler is behind): the pong may be waiting in the socket unread. That
    // is not the peer's fault; wait another round instead of closing a live peer.
    if (this.pausedFor !== 0) {
      this.pongTimer = setTimeout(WebSocketSession.pongDue, this.options.timeout, this);
      this.pongTimer.unref?.();
      return;
    }
    // The peer is unresponsive: send our Close frame, then free the session without waiting for an answer.
    this.ended = true;
    this.localReason ??= new CloseReason(CloseCode.InternalError, "Ping timeout");
    this.connection.sendClose(CloseCode.InternalError, "Ping timeout");
    this.writeOutput(true);
    this.socket.end();
    this.armCloseTimer(Math.min(this.options.timeout || 1000, 1000));
  }

  // ---- closing ----------------------------------------------------------------------------------

  private startClose(code: number, reason: string): void {
    if (this.finished) return;
    // Messages accepted before the close go out before it.
    if (!this.outbound.idle) {
      void this.outbound.run(0, () => this.startClose(code, reason));
      return;
    }
    try {
      if (this.connection.closeReceived) {
        // The peer closed first: answer with its code (§5.5.1).
        if (this.connection.replyToClose()) this.scheduleFlush();
      } else if (this.connection.sendClose(code, reason)) {
        this.localReason ??= new CloseReason(code, reason);
        this.scheduleFlush();
      }
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      this.connection.sendClose(CloseCode.Normal);
      this.scheduleFlush();
    }
    if (this.connection.state === "closed") this.closeTransport();
    else if (this.options.timeout > 0) this.armCloseTimer(this.options.timeout);
  }

  /** Both Close frames are through (or the connection failed): the server closes TCP first (§7.1.1). */
  protected closeTransport(): void {
    if (this.closeTimer && this.socket.writableEnded) return;
    this.writeOutput(true);
    if (!this.socket.writableEnded) this.socket.end();
    // A peer that never closes its side is cut off after the timeout.
    this.armCloseTimer(this.options.timeout > 0 ? this.options.timeout : 30_000);
  }

  private armCloseTimer(ms: number): void {
    clearTimeout(this.closeTimer);
    this.closeTimer = setTimeout(WebSocketSession.closeDue, ms, this);
    this.closeTimer.unref?.();
  }

  private onCloseTimer(): void {
    this.closeTimer = undefined;
    // Still holding our reply to the peer's Close (the handler did not take its messages): send it now.
    if (this.replyToPeerClose()) {
      this.closeTransport();
      return;
    }
    this.socket.destroy();
  }

  protected finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.ended = true;
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.closeTimer);
    this.pingTimer = this.pongTimer = this.closeTimer = undefined;
    this.stopListening();
    if (this.connection.state !== "closed") this.connection.receiveEof();
    const received = this.connection.closeReceived;
    const reason =
      received && received.code !== CloseCode.Abnormal
        ? new CloseReason(received.code, received.reason)
        : (this.localReason ?? new CloseReason(CloseCode.Abnormal, ""));
    this.endIncoming();
    // Messages already received are decoded in full first; then the codec's zlib memory goes.
    const codec = this.codec;
    if (codec) {
      if (this.inbound.idle && this.outbound.idle) codec.close();
      else
        void Promise.all([this.inbound.run(0, noop), this.outbound.run(0, noop)]).then(() => codec.close());
    }
    const waiters = this.drainWaiters;
    this.drainWaiters = NO_WAITERS;
    for (const w of waiters) w.reject(this.closedError());
    this.finalReason = reason;
    this.resolveCloseReason?.(reason);
    this.abort?.abort(reason);
    this.socket.on("error", noop);
    this.hooks.onEnd?.(this);
  }

  private closedError(): SessionError {
    return this.endedBy === "handler"
      ? new SessionError(
          "HANDLER_RETURNED",
          "the WebSocket handler has returned; the session can no longer be used",
        )
      : new SessionError(
          "SESSION_CLOSED",
          "the WebSocket session is closing or closed; nothing more can be sent",
        );
  }
}

/** A whole text or binary message in any of the forms `send` takes; undefined for control frames and fragments. */
function asMessage(data: Sendable): { opcode: number; bytes: Buffer } | undefined {
  if (typeof data === "string") return { opcode: Opcode.Text, bytes: Buffer.from(data, "utf8") };
  if (data instanceof Uint8Array) return { opcode: Opcode.Binary, bytes: toBuffer(data) };
  if ((data.type === "text" || data.type === "binary") && data.fin && !data.rsv1)
    return { opcode: data.opcode, bytes: data.data };
  return undefined;
}
