import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import type { MessageCodec } from "../extensions/index.js";
import {
  CloseCode,
  type Connection,
  isValidUtf8,
  type MessageEvent,
  ProtocolError,
  type ProtocolEvent,
} from "../protocol/index.js";
import type { CloseReason } from "./close-reason.js";
import { IncomingQueue } from "./incoming-queue.js";
import type { SessionOptions } from "./options.js";
import { OrderedPipeline } from "./ordered-pipeline.js";

/** Why a session reports to the error hook: the application's handler failed, or the peer broke the protocol. */
export type SessionErrorKind = "handler" | "protocol";

export interface SessionHooks {
  /** Errors worth reporting: a handler that threw, a protocol violation by the peer. */
  onError?: (error: unknown, kind: SessionErrorKind) => void;
  /** The transport is gone and every timer released. */
  onEnd?: (session: ManagedSession) => void;
}

/** What an application needs to manage a session it started, whatever the session's frame type. */
export interface ManagedSession {
  readonly closeReason: Promise<CloseReason>;
  receiveHead(head: Buffer): void;
  handlerFinished(error?: unknown): void;
  goAway(): void;
  terminate(): void;
}

/** Shared by both session layers. */
export const RESOLVED: Promise<void> = Promise.resolve();
export const EMPTY = Buffer.alloc(0);
const NOTHING: Buffer[] = [];
const PAUSED_BY_QUEUE = 1;
const PAUSED_BY_DECODING = 2;
export const noop = () => {};
const SESSION = Symbol("sockway.session");
// biome-ignore lint/suspicious/noExplicitAny: any session, whatever its frame type
type AnyChannel = SessionChannel<any>;
/** A socket that a session listens to, pointing back to it. */
type SessionSocket = Duplex & { [SESSION]: AnyChannel };
/** Sessions with output to write at the end of this event-loop turn. */
let flushQueue: AnyChannel[] = [];
/** Shared by every session until one has to wait for a drain (never written to). */
export type DrainWaiter = { resolve: () => void; reject: (e: unknown) => void };
export const NO_WAITERS: DrainWaiter[] = Object.freeze([]) as never as DrainWaiter[];
/** Without a codec nothing ever waits in a pipeline: one idle pipeline serves every such session. */
const IDLE_PIPELINE = new OrderedPipeline();

/**
 * The I/O half of a session: binds a sans-I/O `Connection` to a Node stream. It reads frames into
 * `incoming` (decoding them through the extension's codec in order), writes the connection's output
 * once per event-loop turn for every session at once, and keeps backpressure both ways: reads pause
 * while `incoming` or the decoder is full, sends wait while the socket is over its high-water mark.
 * `WebSocketSession` adds the API, keepalive and the closing sequence on top.
 */
export abstract class SessionChannel<F extends { data: Uint8Array }> {
  /** Received items; ends when the session ends. Iterate once, or call `incoming.receive()`. */
  readonly incoming: IncomingQueue<F>;

  protected readonly connection: Connection;
  protected options: SessionOptions;
  protected finished = false;
  protected ended = false; // no more sends: closing, or the handler returned
  private flushScheduled = false;
  /** A zero-byte write is pending whose callback resumes writing what is still queued. */
  private wakeupPending = false;
  protected drainWaiters: DrainWaiter[] = NO_WAITERS;
  protected readonly hooks: SessionHooks;
  /** The negotiated extension's message codec (permessage-deflate), if any. */
  protected readonly codec: MessageCodec | undefined;
  /** Messages waiting for the codec, in order: received ones and ones to send. */
  protected readonly inbound: OrderedPipeline;
  protected readonly outbound: OrderedPipeline;
  /** Reasons reads are paused: the queue is full, or too much is waiting to be decoded. */
  protected pausedFor = 0;

  constructor(
    protected readonly socket: Duplex,
    connection: Connection,
    options: SessionOptions,
    hooks: SessionHooks | undefined,
    codec: MessageCodec | undefined,
  ) {
    this.connection = connection;
    this.options = options; // copied on first change (pingPeriod, timeout setters)
    this.hooks = hooks ?? {};
    this.codec = codec;
    this.inbound = codec ? new OrderedPipeline() : IDLE_PIPELINE;
    this.outbound = codec ? new OrderedPipeline() : IDLE_PIPELINE;
    this.incoming = new IncomingQueue<F>(options.incomingBufferLimit, this);
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    // Listeners are shared by every session (no closures per session): they find it through the socket.
    (socket as SessionSocket)[SESSION] = this;
    socket.on("data", SessionChannel.socketData);
    socket.on("end", SessionChannel.socketEnd);
    socket.on("close", SessionChannel.socketClose);
    // A reset or broken pipe from the peer: the 'close' event follows and reports 1006.
    if (socket.listenerCount("error") === 0) socket.on("error", noop);
    socket.on("drain", SessionChannel.socketDrain);
  }

  /** A pong arrived. */
  protected abstract onPong(data: Buffer): void;
  /** The peer's Close frame arrived. */
  protected abstract onPeerClose(): void;
  /** The connection failed with this protocol error (its Close frame is queued). */
  protected abstract onFailure(failure: ProtocolError): void;
  /** Both Close frames are through, or the connection failed: end the transport. */
  protected abstract closeTransport(): void;
  /** Queues the reply to the peer's Close frame, if one is owed. */
  protected abstract replyToPeerClose(): boolean;
  /** The transport has closed: settle everything. */
  protected abstract finish(): void;

  /** @internal (IncomingQueueOwner) The queue is over its limit: stop reading from the socket. */
  incomingFull(): void {
    this.pauseReading(PAUSED_BY_QUEUE);
  }

  /** @internal (IncomingQueueOwner) */
  incomingDrained(): void {
    this.resumeReading(PAUSED_BY_QUEUE);
  }

  /** @internal (IncomingQueueOwner) The handler has read to the end after the peer's Close: answer it. */
  incomingReadToEnd(): void {
    if (this.replyToPeerClose()) this.scheduleFlush();
  }

  private static socketData(this: SessionSocket, chunk: Buffer): void {
    // biome-ignore lint/complexity/noThisInStatic: an event listener, called with the socket as `this`
    this[SESSION].onData(chunk);
  }

  private static socketEnd(this: SessionSocket): void {
    // biome-ignore lint/complexity/noThisInStatic: an event listener, called with the socket as `this`
    this[SESSION].onEnd();
  }

  private static socketClose(this: SessionSocket): void {
    // biome-ignore lint/complexity/noThisInStatic: an event listener, called with the socket as `this`
    this[SESSION].finish();
  }

  private static socketDrain(this: SessionSocket): void {
    // biome-ignore lint/complexity/noThisInStatic: an event listener, called with the socket as `this`
    this[SESSION].onDrain();
  }

  private static flushAll(): void {
    const sessions = flushQueue;
    flushQueue = [];
    let i = 0;
    try {
      for (; i < sessions.length; i++) sessions[i]!.flushNow();
    } finally {
      // Should one throw (a bug), the sessions after it still get their turn.
      if (i + 1 < sessions.length) {
        if (flushQueue.length === 0) setImmediate(SessionChannel.flushAll);
        for (let j = i + 1; j < sessions.length; j++) flushQueue.push(sessions[j]!);
      }
    }
  }

  /** Bytes accepted by `send` and not yet handed to the kernel (including messages being compressed). */
  get bufferedAmount(): number {
    return this.connection.bufferedBytes + this.outbound.bytes + this.socket.writableLength;
  }

  protected afterQueued(): Promise<void> {
    if (this.bufferedAmount <= this.options.outgoingHighWaterMark) return RESOLVED;
    return new Promise((resolve, reject) => {
      if (this.drainWaiters === NO_WAITERS) this.drainWaiters = [];
      this.drainWaiters.push({ resolve, reject });
    });
  }

  // ---- reading ----------------------------------------------------------------------------------

  /**
   * Delivers a whole received message to `incoming`, decoding it first when the extension compressed it.
   * Order is kept: a message never overtakes one that is still being decoded.
   */
  protected receiveMessage(event: MessageEvent, make: (payload: Buffer) => F): void {
    if (!event.compressed) {
      this.enqueue(make(event.data));
      return;
    }
    this.decodeAndEnqueue(event.data, true, (payload) => {
      if (event.type === "text" && !isValidUtf8(payload)) {
        throw new ProtocolError("INVALID_UTF8", CloseCode.InvalidPayload, "text message is not valid UTF-8");
      }
      return make(payload);
    });
  }

  /** Puts an item in `incoming` after everything received before it. */
  protected enqueue(item: F): void {
    if (this.inbound.idle) this.incoming.push(item);
    else void this.inbound.run(0, () => this.incoming.push(item));
  }

  /**
   * Decodes compressed data (a whole message, or with `final` false one fragment of it) through the
   * codec, in order, then hands the result to `make`. A decoding failure fails the connection.
   */
  protected decodeAndEnqueue(data: Buffer, final: boolean, make: (payload: Buffer) => F): void {
    const codec = this.codec;
    if (!codec) {
      this.failWith(
        new ProtocolError(
          "RESERVED_BITS_SET",
          CloseCode.ProtocolError,
          "compressed data without an extension",
        ),
      );
      return;
    }
    this.inbound
      .run(data.length, async () =>
        this.incoming.push(make(await codec.decode(data, this.options.maxFrameSize, final))),
      )
      .catch((error: unknown) => this.failWith(error))
      .finally(() => {
        if (this.inbound.bytes <= this.options.incomingBufferLimit / 2)
          this.resumeReading(PAUSED_BY_DECODING);
      });
    if (this.inbound.bytes > this.options.incomingBufferLimit) this.pauseReading(PAUSED_BY_DECODING);
  }

  /** Ends `incoming` once every message before this point has been delivered. */
  protected endIncoming(): void {
    if (this.inbound.idle) this.incoming.end();
    else void this.inbound.run(0, () => this.incoming.end());
  }

  private pauseReading(reason: number): void {
    if (this.pausedFor === 0) this.socket.pause();
    this.pausedFor |= reason;
  }

  private resumeReading(reason: number): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if (this.pausedFor === 0 && !this.finished) this.socket.resume();
  }

  /** Fails the connection from above the core (a codec error): its close code, or 1011. */
  protected failWith(error: unknown): void {
    if (this.finished) return;
    const failure =
      error instanceof ProtocolError
        ? error
        : new ProtocolError(
            "EXTENSION_FAILED",
            CloseCode.InternalError,
            error instanceof Error ? error.message : String(error),
          );
    this.connection.fail(failure);
    this.onFailure(failure);
    this.closeTransport();
  }

  /** Feeds bytes that arrived with the upgrade request (the `head` of node:http's upgrade event). */
  receiveHead(head: Buffer): void {
    if (head.length > 0) this.onData(head);
  }

  private onData(chunk: Buffer): void {
    const conn = this.connection;
    conn.receiveData(chunk);
    const events = conn.takeEvents();
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      if (event.type === "pong") this.onPong(event.data);
      this.onProtocolEvent(event);
      if (event.type === "close") this.onPeerClose();
    }
    if (conn.failure) this.onFailure(conn.failure);
    if (conn.hasOutput) this.scheduleFlush();
    if (conn.state === "closed") this.closeTransport();
  }

  private onEnd(): void {
    this.connection.receiveEof();
    // Usually our side has ended already (the server closes first); ending again costs an error object.
    if (!this.socket.writableEnded) this.socket.end();
  }

  // ---- writing ----------------------------------------------------------------------------------

  protected scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // One write per event-loop turn: every frame produced in this tick goes out together. One
    // setImmediate serves every session that has something to write in this turn.
    if (flushQueue.length === 0) setImmediate(SessionChannel.flushAll);
    flushQueue.push(this);
  }

  private flushNow(): void {
    this.flushScheduled = false;
    // A handler that does not read `incoming` cannot answer what came before the Close: reply now.
    if (!this.incoming.hasReader) this.replyToPeerClose();
    this.writeOutput();
    if (this.connection.state === "closed") this.closeTransport();
  }

  /**
   * Hands queued frames to the socket up to the high-water mark (unless `all`): pings and pongs first,
   * then data, so frames still queued here can be overtaken by a later pong (§5.5).
   */
  protected writeOutput(all = false): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    const budget = all
      ? Number.POSITIVE_INFINITY
      : this.options.outgoingHighWaterMark - socket.writableLength;
    // A peer that does not read gets nothing more, control frames included: pongs wait in the core,
    // which keeps only the latest few, so a ping flood cannot grow the socket's buffer.
    const out = budget > 0 ? this.connection.takeOutput(budget) : NOTHING;
    if (out.length === 1) {
      socket.write(out[0]!);
    } else if (out.length > 1) {
      socket.cork();
      for (let i = 0; i < out.length; i++) socket.write(out[i]!);
      socket.uncork();
    }
    // More is queued here: come back when the socket has room. 'drain' only follows a refused write.
    if (this.connection.hasOutput && !socket.writableNeedDrain && !this.wakeupPending) {
      this.wakeupPending = true;
      socket.write(EMPTY, () => this.onWakeup());
    }
    if (this.drainWaiters.length > 0) {
      if (this.bufferedAmount <= this.options.outgoingHighWaterMark) this.checkDrain();
      else if (!socket.writableNeedDrain && !this.connection.hasOutput)
        socket.write(EMPTY, () => this.checkDrain());
    }
  }

  private onWakeup(): void {
    this.wakeupPending = false;
    this.onDrain();
  }

  private onDrain(): void {
    if (this.finished) return;
    if (this.connection.hasOutput) this.writeOutput();
    this.checkDrain();
  }

  private checkDrain(): void {
    if (this.drainWaiters.length === 0 || this.bufferedAmount > this.options.outgoingHighWaterMark) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = NO_WAITERS;
    for (const w of waiters) w.resolve();
  }

  protected abstract onProtocolEvent(event: ProtocolEvent): void;

  /** Detaches the data and drain listeners once the transport is gone. */
  protected stopListening(): void {
    this.socket.off("data", SessionChannel.socketData);
    this.socket.off("drain", SessionChannel.socketDrain);
  }
}
