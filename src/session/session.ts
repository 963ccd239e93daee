import type { Duplex } from "node:stream";
import {
  CloseCode,
  type Connection,
  type ProtocolError,
  type ProtocolEvent,
  UsageError,
} from "../protocol/index.js";
import { CloseReason } from "./close-reason.js";
import { SessionError } from "./errors.js";
import { BinaryFrame, type MessageFrame, TextFrame, type WebSocketFrame } from "./frames.js";
import { IncomingQueue } from "./incoming-queue.js";
import type { SessionOptions } from "./options.js";

/** Why a session reports to the error hook: the application's handler failed, or the peer broke the protocol. */
export type SessionErrorKind = "handler" | "protocol";

export interface SessionHooks {
  /** Errors worth reporting: a handler that threw, a protocol violation by the peer. */
  onError?: (error: unknown, kind: SessionErrorKind) => void;
  /** The transport is gone and every timer released. */
  onEnd?: () => void;
}

/** What a send accepts: text, bytes, or a frame. */
export type Sendable = string | Uint8Array | WebSocketFrame;

/** What an application needs to manage a session it started, whatever the session's frame type. */
export interface ManagedSession {
  readonly closeReason: Promise<CloseReason>;
  receiveHead(head: Buffer): void;
  handlerFinished(error?: unknown): void;
  goAway(): void;
  terminate(): void;
}

const RESOLVED: Promise<void> = Promise.resolve();
const noop = () => {};

/**
 * Binds a sans-I/O `Connection` to a Node stream: the read loop, batched writes, backpressure both ways,
 * keepalive pings and the close/timeout sequence. All timers of a session live here.
 *
 * `F` is what `incoming` yields; `C` the call (request) information; `D` the per-session user data.
 */
export abstract class WebSocketSession<F extends { data: Uint8Array }, C = unknown, D = unknown>
  implements ManagedSession
{
  /** Received items; ends when the session ends. Iterate once, or call `incoming.receive()`. */
  readonly incoming: IncomingQueue<F>;
  /** Resolves once the session has ended, with the peer's close reason (or ours, or 1006). */
  readonly closeReason: Promise<CloseReason>;
  /** Aborted when the session ends; its reason is the `CloseReason`. */
  readonly signal: AbortSignal;
  /** Per-session user data, from the route's `beforeUpgrade` hook. */
  data: D;

  protected readonly connection: Connection;
  protected readonly options: SessionOptions;
  private readonly abort = new AbortController();
  private resolveCloseReason!: (reason: CloseReason) => void;
  private localReason: CloseReason | undefined;
  private finished = false;
  private ended = false; // no more sends: closing, or the handler returned
  private endedBy: "close" | "handler" = "close";
  private flushScheduled = false;
  private pendingBytes = 0;
  private drainWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private pingTimer: NodeJS.Timeout | undefined;
  private pongTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private pingCounter = 0;
  private expectedPong: Buffer | undefined;

  constructor(
    protected readonly socket: Duplex,
    connection: Connection,
    options: SessionOptions,
    /** Request information: path parameters, headers, query, remote address. */
    readonly call: C,
    data: D,
    private readonly hooks: SessionHooks = {},
    /** Negotiated extensions, as the response header listed them. */
    readonly extensions: readonly string[] = [],
    /** The subprotocol agreed in the handshake, if any. */
    readonly protocol: string | undefined = undefined,
  ) {
    this.connection = connection;
    this.options = { ...options };
    this.data = data;
    this.signal = this.abort.signal;
    this.closeReason = new Promise((resolve) => {
      this.resolveCloseReason = resolve;
    });
    this.incoming = new IncomingQueue<F>(
      options.incomingBufferLimit,
      () => socket.pause(),
      () => socket.resume(),
    );
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.finish);
    socket.on("error", this.onSocketError);
    socket.on("drain", this.checkDrain);
    this.schedulePing();
  }

  /** Milliseconds between keepalive pings (0: none). Changing it reschedules the next ping. */
  get pingPeriod(): number {
    return this.options.pingPeriod;
  }
  set pingPeriod(ms: number) {
    this.options.pingPeriod = ms;
    clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
    if (!this.pongTimer) this.schedulePing();
  }

  /** Milliseconds to wait for a pong or for the peer's Close frame. */
  get timeout(): number {
    return this.options.timeout;
  }
  set timeout(ms: number) {
    this.options.timeout = ms;
  }

  /** Largest message accepted, in bytes (1009 beyond it). */
  get maxFrameSize(): number {
    return this.options.maxFrameSize;
  }

  /** Bytes accepted by `send` and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.pendingBytes + this.socket.writableLength;
  }

  /** True until the session starts closing. */
  get isOpen(): boolean {
    return !this.ended && !this.finished;
  }

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
    try {
      if (typeof data === "string") this.connection.sendText(data);
      else if (data instanceof Uint8Array) this.connection.sendBinary(data);
      else this.sendFrame(data);
    } catch (error) {
      return Promise.reject(error);
    }
    this.pendingBytes += size;
    this.scheduleFlush();
    if (this.bufferedAmount <= this.options.outgoingHighWaterMark) return RESOLVED;
    return new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
  }

  /** Resolves when everything sent so far has been handed to the kernel. */
  flush(): Promise<void> {
    if (this.finished) return RESOLVED;
    this.writeOutput();
    if (this.socket.writableLength === 0) return RESOLVED;
    return new Promise((resolve) => this.socket.write(Buffer.alloc(0), () => resolve()));
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

  protected abstract onProtocolEvent(event: ProtocolEvent): void;
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

  // ---- reading ----------------------------------------------------------------------------------

  /** Feeds bytes that arrived with the upgrade request (the `head` of node:http's upgrade event). */
  receiveHead(head: Buffer): void {
    if (head.length > 0) this.onData(head);
  }

  private readonly onData = (chunk: Buffer): void => {
    const conn = this.connection;
    conn.receiveData(chunk);
    const events = conn.takeEvents();
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      if (event.type === "pong") this.onPong(event.data);
      else if (event.type === "close") this.ended = true;
      this.onProtocolEvent(event);
    }
    if (conn.failure) this.onFailure(conn.failure);
    if (conn.hasOutput) this.scheduleFlush();
    if (conn.state === "closed") this.closeTransport();
  };

  private onFailure(failure: ProtocolError): void {
    if (this.localReason) return;
    this.ended = true;
    this.localReason = new CloseReason(failure.closeCode, failure.message);
    this.hooks.onError?.(failure, "protocol");
  }

  private readonly onEnd = (): void => {
    this.connection.receiveEof();
    this.socket.end();
  };

  private readonly onSocketError = (): void => {
    // A reset or broken pipe from the peer: the 'close' event follows and reports 1006.
  };

  // ---- writing ----------------------------------------------------------------------------------

  protected scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // One write per event-loop turn: every frame produced in this tick goes out together.
    setImmediate(this.flushNow);
  }

  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    this.writeOutput();
    if (this.connection.state === "closed") this.closeTransport();
  };

  private writeOutput(): void {
    const out = this.connection.takeOutput();
    this.pendingBytes = 0;
    const socket = this.socket;
    if (out.length === 0 || socket.destroyed || !socket.writable) return;
    if (out.length === 1) {
      socket.write(out[0]!);
    } else {
      socket.cork();
      for (let i = 0; i < out.length; i++) socket.write(out[i]!);
      socket.uncork();
    }
    if (this.drainWaiters.length > 0) {
      if (socket.writableLength <= this.options.outgoingHighWaterMark) this.checkDrain();
      else if (!socket.writableNeedDrain) socket.write(Buffer.alloc(0), this.checkDrain);
    }
  }

  private readonly checkDrain = (): void => {
    if (this.drainWaiters.length === 0 || this.bufferedAmount > this.options.outgoingHighWaterMark) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.resolve();
  };

  // ---- keepalive --------------------------------------------------------------------------------

  private schedulePing(): void {
    if (this.options.pingPeriod <= 0 || this.finished || this.ended) return;
    this.pingTimer = setTimeout(this.sendKeepalivePing, this.options.pingPeriod);
    this.pingTimer.unref?.();
  }

  private readonly sendKeepalivePing = (): void => {
    this.pingTimer = undefined;
    if (this.finished || this.connection.state !== "open") return;
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(++this.pingCounter >>> 0);
    this.expectedPong = payload;
    this.connection.sendPing(payload);
    this.scheduleFlush();
    if (this.options.timeout > 0) {
      this.pongTimer = setTimeout(this.onPingTimeout, this.options.timeout);
      this.pongTimer.unref?.();
    } else {
      this.schedulePing();
    }
  };

  private onPong(data: Buffer): void {
    // Only the pong that answers our latest ping counts (§5.5.3: same application data).
    if (!this.expectedPong || !data.equals(this.expectedPong)) return;
    this.expectedPong = undefined;
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
    this.schedulePing();
  }

  private readonly onPingTimeout = (): void => {
    this.pongTimer = undefined;
    if (this.finished) return;
    // The peer is unresponsive: send our Close frame, then free the session without waiting for an answer.
    this.ended = true;
    this.localReason ??= new CloseReason(CloseCode.InternalError, "Ping timeout");
    this.connection.sendClose(CloseCode.InternalError, "Ping timeout");
    this.writeOutput();
    this.socket.end();
    this.armCloseTimer(Math.min(this.options.timeout || 1000, 1000));
  };

  // ---- closing ----------------------------------------------------------------------------------

  private startClose(code: number, reason: string): void {
    if (this.finished) return;
    try {
      if (this.connection.sendClose(code, reason)) {
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
  private closeTransport(): void {
    if (this.closeTimer && this.socket.writableEnded) return;
    this.writeOutput();
    if (!this.socket.writableEnded) this.socket.end();
    // A peer that never closes its side is cut off after the timeout.
    this.armCloseTimer(this.options.timeout > 0 ? this.options.timeout : 30_000);
  }

  private armCloseTimer(ms: number): void {
    clearTimeout(this.closeTimer);
    this.closeTimer = setTimeout(() => this.socket.destroy(), ms);
    this.closeTimer.unref?.();
  }

  private readonly finish = (): void => {
    if (this.finished) return;
    this.finished = true;
    this.ended = true;
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.closeTimer);
    this.pingTimer = this.pongTimer = this.closeTimer = undefined;
    this.socket.off("data", this.onData);
    this.socket.off("drain", this.checkDrain);
    if (this.connection.state !== "closed") this.connection.receiveEof();
    const received = this.connection.closeReceived;
    const reason =
      received && received.code !== CloseCode.Abnormal
        ? new CloseReason(received.code, received.reason)
        : (this.localReason ?? new CloseReason(CloseCode.Abnormal, ""));
    this.incoming.end();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.reject(this.closedError());
    this.resolveCloseReason(reason);
    this.abort.abort(reason);
    this.socket.on("error", noop);
    this.hooks.onEnd?.();
  };

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

  /** Helper for subclasses: wraps a whole data message as a frame. */
  protected static messageFrame(type: "text" | "binary", data: Buffer): MessageFrame {
    return type === "text" ? new TextFrame(data) : new BinaryFrame(data);
  }
}
