import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import type { MessageCodec } from "../extensions/index.js";
import {
  CloseCode,
  type Connection,
  type ExtensionOffer,
  isValidUtf8,
  isValidWireCloseCode,
  MAX_CLOSE_REASON_BYTES,
  type MessageEvent,
  Opcode,
  ProtocolError,
  type ProtocolEvent,
  UsageError,
} from "../protocol/index.js";
import { CloseReason } from "./close-reason.js";
import { SessionError } from "./errors.js";
import { FlushScheduler } from "./flush-scheduler.js";
import { BaseFrame, type WebSocketFrame } from "./frames.js";
import { InboundDecoder } from "./inbound-decoder.js";
import { compact, IncomingQueue } from "./incoming-queue.js";
import type { SessionOptions } from "./options.js";
import { OutboundQueue } from "./outbound-queue.js";
import { type Delivery, type Publication, QUEUED, SKIPPED, SLOW } from "./publication.js";
import type {
  Sendable,
  SendOptions,
  SessionHandle,
  SessionHooks,
  SessionSetup,
  SessionState,
  SlowSubscriberPolicy,
  TopicRegistry,
} from "./session-types.js";
import { EMPTY, FRAME_OVERHEAD, noop, RESOLVED, SessionWriter } from "./session-writer.js";
import { abortTransport } from "./socket-output.js";
import type { TimerEntry, TimerList } from "./timer-lists.js";

const SESSION = Symbol("sockway.session");
// biome-ignore lint/suspicious/noExplicitAny: any session, whatever its frame, call and data types
type AnySession = WebSocketSession<any, any, any>;
type SessionSocket = Duplex & { [SESSION]: AnySession };

/** Reads up to this size are kept whole by what is queued from them (and charged for it). */
const SMALL_READ = 16 * 1024;
/** After one read brings this many frames, reading pauses until the next turn so other peers get theirs. */
export const FRAMES_PER_TURN = 4096;

// Bits of `flags`.
const FLUSH_SCHEDULED = 1;
const HANDLER_DONE = 4;
const ABANDON = 8; // after our Close, end TCP at once (ping timeout, failure)
const TIMER_PING = 16;
const TIMER_PONG = 32;
const TIMER_CLOSE = 64;
const TIMERS = TIMER_PING | TIMER_PONG | TIMER_CLOSE;
// Bits of `pausedFor`: why reads are paused.
const PAUSED_QUEUE = 1;
const PAUSED_DECODING = 2;
const PAUSED_TURN = 4;
const PAUSED_FAILED = 8;

/**
 * A WebSocket session, server or client side: what a handler gets. It binds a sans-I/O `Connection` to
 * a Node stream, delivers whole messages to `incoming` (through the extension's codec when one was
 * negotiated), writes output once per event-loop turn, keeps backpressure both ways, and runs the
 * lifecycle (`SessionState`) with its keepalive and closing timers.
 *
 * `F` is what `incoming` yields; `C` the call (request) information; `D` the per-session user data.
 */
export abstract class WebSocketSession<F extends { data: Uint8Array }, C = unknown, D = unknown>
  extends SessionWriter
  // Also the owner its queues call back (IncomingQueueOwner, DecoderOwner, OutboundSink, Flushable) and a
  // TimerEntry of its scheduler's TimerLists: those methods are internal, so the interfaces are met
  // structurally rather than declared here.
  implements SessionHandle<C>
{
  /** Per-session user data, from the route's `beforeUpgrade` hook. */
  data: D;
  /** Request information: path parameters, headers, query, remote address. */
  readonly call: C;
  /** Negotiated extensions, as the response header listed them. */
  readonly extensions: readonly ExtensionOffer[];
  /** The subprotocol agreed in the handshake, if any. */
  readonly protocol: string | undefined;
  /** Received messages; ends after the peer's Close (or when the session ends). Iterate once. */
  readonly incoming: IncomingQueue<F>;
  /** Where the session is in its life (see `SessionState`). */
  get state(): SessionState {
    return this.phase;
  }

  private phase: SessionState = "open";
  private readonly hooks: SessionHooks;
  private readonly scheduler: FlushScheduler;
  private readonly codec: MessageCodec | undefined;
  private decoder: InboundDecoder<F> | undefined;
  private flags = 0;
  private pausedFor = 0;
  // While one read is being delivered (see onData).
  private copyQueued = false;
  private queuedFromRead = 0;
  // The one timer armed at a time (keepalive ping, pong, closing), linked into the scheduler's
  // TimerLists rather than a Timeout object of its own.
  /** @internal */
  timerDue = 0;
  /** @internal */
  timerList: TimerList | undefined;
  /** @internal */
  timerPrev: TimerEntry | undefined;
  /** @internal */
  timerNext: TimerEntry | undefined;
  private pingCounter = 0;
  private expectedPong: Buffer | undefined;
  // Made on first use: most sessions never ask, and each costs memory.
  private abort: AbortController | undefined;
  private closePromise: Promise<CloseReason> | undefined;
  private resolveCloseReason: ((reason: CloseReason) => void) | undefined;
  private finalReason: CloseReason | undefined;
  private localReason: CloseReason | undefined;
  private writer: WritableStream<Sendable> | undefined;
  private readonly topicRegistry: TopicRegistry | undefined;
  /** @internal The topics subscribed to (kept by the registry; made on the first subscription). */
  subscriptions: Set<string> | undefined;
  /** What the pub/sub does when this session is too slow for a publication; undefined: its default. */
  slowSubscriberPolicy: SlowSubscriberPolicy | undefined;

  /** @internal Sessions are made by the app layer (or a client); handlers receive them. */
  constructor(socket: Duplex, connection: Connection, options: SessionOptions, setup: SessionSetup<C, D>) {
    super(socket, connection, options);
    this.hooks = setup.hooks ?? {};
    this.scheduler = setup.scheduler ?? new FlushScheduler();
    this.codec = setup.codec;
    this.call = setup.call;
    this.data = setup.data;
    this.extensions = setup.extensions ?? [];
    this.protocol = setup.protocol;
    this.topicRegistry = setup.topics;
    this.incoming = new IncomingQueue<F>(options.incomingBufferLimit, this);
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    // Listeners are shared by every session (no closures per session): they find it through the socket.
    (socket as SessionSocket)[SESSION] = this;
    socket.on("data", onSocketData);
    socket.on("end", onSocketEnd);
    socket.on("close", onSocketClose);
    socket.on("drain", onSocketDrain);
    // A reset or broken pipe from the peer: the 'close' event follows and reports 1006.
    if (socket.listenerCount("error") === 0) socket.on("error", noop);
    this.schedulePing();
  }

  /** @internal Turns a protocol event into what `incoming` yields (subclasses: whole messages, or every frame). */
  protected abstract onProtocolEvent(event: ProtocolEvent): void;
  /** @internal Throws a UsageError for a frame this kind of session cannot send. */
  protected abstract checkFrame(frame: WebSocketFrame): void;

  // ---- the public API ---------------------------------------------------------------------------

  /**
   * Resolves once the session has ended, with the code and reason of the Close frame received from the
   * peer (RFC 6455 §7.1.5: when we closed first, the peer's echo); ours if the peer never answered; 1006
   * if the connection dropped without a Close frame.
   */
  get closeReason(): Promise<CloseReason> {
    this.closePromise ??= this.finalReason
      ? Promise.resolve(this.finalReason)
      : new Promise((resolve) => {
          this.resolveCloseReason = resolve;
        });
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
      abort: () => this.close(CloseCode.GoingAway),
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
    if (this.flags & TIMER_PING) this.clearTimer();
    if (!(this.flags & TIMERS)) this.schedulePing();
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

  /** True while messages flow both ways: false from the moment either side starts closing. */
  get isOpen(): boolean {
    return this.phase === "open";
  }

  /**
   * Sends a message (text for strings, binary for bytes) or a frame. Resolves at once while less than
   * `outgoingHighWaterMark` is buffered, otherwise when the socket has drained below it; so
   * `await send(...)` is backpressure. Rejects with a `SessionError` once the session is closing, with
   * `SEND_BUFFER_FULL` when over `outgoingBufferLimit`, with a `UsageError` for what cannot be sent.
   */
  send(data: Sendable, options?: SendOptions): Promise<void> {
    const phase = this.phase;
    if (phase !== "open" && phase !== "replying") return Promise.reject(this.closedError());
    let opcode: number = Opcode.Binary;
    let payload: Buffer;
    let fin = true;
    let rsv1 = false;
    if (typeof data === "string") {
      opcode = Opcode.Text;
      payload = Buffer.from(data, "utf8");
    } else if (data instanceof BaseFrame) {
      if (data.type === "close") return this.closeWithPayload(data.data);
      try {
        this.checkFrame(data);
      } catch (error) {
        return Promise.reject(error);
      }
      opcode = data.opcode;
      payload = data.data;
      fin = data.fin;
      rsv1 = data.rsv1;
    } else if (data instanceof Uint8Array) {
      payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    } else if (data instanceof ArrayBuffer) {
      payload = Buffer.from(data);
    } else if (ArrayBuffer.isView(data)) {
      payload = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    } else {
      return Promise.reject(
        new UsageError("INVALID_FRAME", "send takes a string, an ArrayBuffer or view of one, or a frame"),
      );
    }
    const buffered = this.bufferedAmount;
    // One message into an empty buffer is always taken, so any message can be sent by awaiting sends.
    if (buffered > 0 && buffered + payload.length + FRAME_OVERHEAD > this.options.outgoingBufferLimit) {
      return Promise.reject(
        new SessionError(
          "SEND_BUFFER_FULL",
          `more than ${this.options.outgoingBufferLimit} bytes queued; await send() for backpressure`,
        ),
      );
    }
    const compress =
      this.codec !== undefined &&
      options?.compress !== false &&
      fin &&
      !rsv1 &&
      (opcode === Opcode.Text || opcode === Opcode.Binary);
    return this.queueMessage(opcode, payload, fin, rsv1, compress, buffered);
  }

  /** Queues a frame behind whatever waits, compressing it first when asked (and the codec agrees). */
  private queueMessage(
    opcode: number,
    payload: Buffer,
    fin: boolean,
    rsv1: boolean,
    compress: boolean,
    buffered: number,
  ): Promise<void> {
    const codec = this.codec;
    const outbound = this.outbound;
    if (outbound !== undefined && !outbound.idle) {
      return outbound.sendFrame(opcode, payload, fin, rsv1, compress).then(() => this.afterQueued());
    }
    if (compress && codec !== undefined) {
      let encoding: Promise<Buffer | undefined> | undefined;
      try {
        encoding = codec.encode(payload);
      } catch (error) {
        return Promise.reject(error);
      }
      if (encoding !== undefined) {
        return this.ensureOutbound()
          .sendFrame(opcode, payload, fin, rsv1, true, encoding)
          .then(() => this.afterQueued());
      }
    }
    try {
      this.writeFrame(opcode, payload, fin, rsv1);
    } catch (error) {
      return Promise.reject(error);
    }
    // What the frame added, but for its header (at most 14 bytes): no need to measure again.
    if (buffered + payload.length + FRAME_OVERHEAD <= this.options.outgoingHighWaterMark) return RESOLVED;
    return this.afterQueued();
  }

  /**
   * Resolves when everything sent so far (messages still being compressed included) has been handed
   * to the kernel. Rejects with a `SessionError` if the session ends first.
   */
  flush(): Promise<void> {
    if (this.phase === "closed") return RESOLVED;
    const outbound = this.outbound;
    if (outbound !== undefined && !outbound.idle) return outbound.runAfter(noop).then(() => this.writeAll());
    return this.writeAll();
  }

  /**
   * Subscribes to a topic of the application's pub/sub: publications to it are sent to this session,
   * in order with its own sends, until `unsubscribe` or the session starts closing. Resolves when
   * publications from every node reach it (at once without a backplane); never rejects. Throws a
   * UsageError for an invalid topic or past `maxSubscriptionsPerSession`. Does nothing once closing.
   */
  subscribe(topic: string): Promise<void> {
    const registry = this.topicRegistry;
    if (registry === undefined)
      throw new UsageError("NO_PUBSUB", "this session belongs to no application with pub/sub");
    if (this.phase !== "open" && this.phase !== "replying") return RESOLVED;
    return registry.subscribe(this, topic);
  }

  /** Ends a subscription; false if there was none. */
  unsubscribe(topic: string): boolean {
    return this.topicRegistry?.unsubscribe(this, topic) ?? false;
  }

  isSubscribed(topic: string): boolean {
    return this.subscriptions?.has(topic) ?? false;
  }

  /** The topics this session subscribes to. */
  get topics(): readonly string[] {
    return this.subscriptions === undefined ? [] : [...this.subscriptions];
  }

  /**
   * @internal A publication to one of this session's topics: queued behind its own sends (compressed
   * once for all sessions sharing an encoder, else by its own codec), or refused: SLOW over the
   * high-water mark, SKIPPED when closing or while a fragmented message of its own is unfinished.
   */
  deliverPublication(pub: Publication): Delivery {
    const phase = this.phase;
    if ((phase !== "open" && phase !== "replying") || this.connection.sendingFragments) return SKIPPED;
    const buffered = this.bufferedAmount;
    if (buffered > this.options.outgoingHighWaterMark) return SLOW;
    const opcode = pub.opcode;
    const codec = this.codec;
    if (codec !== undefined && pub.compress) {
      const shared = codec.sharedEncoder;
      if (shared === undefined) {
        // Context takeover: only this session's own compressor can encode for it.
        this.queueMessage(opcode, pub.payload, true, false, true, buffered).catch(noop);
        return QUEUED;
      }
      const encoding = pub.compressedBy(shared);
      if (encoding !== undefined) {
        this.ensureOutbound().sendFrame(opcode, pub.payload, true, false, true, encoding).catch(noop);
        return QUEUED;
      }
    }
    const outbound = this.outbound;
    if (outbound !== undefined && !outbound.idle) {
      outbound.sendFrame(opcode, pub.payload, true, false, false).catch(noop);
      return QUEUED;
    }
    if (!this.connection.sendEncoded(pub.frame())) return SKIPPED;
    this.scheduleFlush();
    return QUEUED;
  }

  /**
   * Starts the closing handshake (default 1000) after the messages already sent, and resolves when our
   * Close frame has been handed to the kernel (or the session has ended). The session ends when the
   * peer answers, or after `timeout` ms. An invalid code (RFC 6455 §7.4) or a reason over 123 bytes
   * rejects with a `UsageError` and sends nothing. After the peer's Close, it sends the reply at once.
   */
  close(code?: number | CloseReason, reason?: string): Promise<void> {
    let c: number;
    let r: string;
    if (code instanceof CloseReason) {
      c = code.code;
      r = code.reason;
    } else {
      c = code ?? CloseCode.Normal;
      r = reason ?? "";
    }
    if (!isValidWireCloseCode(c))
      return Promise.reject(
        new UsageError("INVALID_CLOSE_CODE", `close code ${c} may not be sent (RFC 6455 §7.4)`),
      );
    if (typeof r !== "string" || Buffer.byteLength(r, "utf8") > MAX_CLOSE_REASON_BYTES)
      return Promise.reject(
        new UsageError("CLOSE_REASON_TOO_LONG", `close reason over ${MAX_CLOSE_REASON_BYTES} bytes`),
      );
    if (this.phase === "open") this.startClose(c, r);
    else if (this.phase === "replying") this.startClose(undefined, "");
    return this.closeWritten();
  }

  /** Destroys the transport at once, without a closing handshake (1006). */
  terminate(): void {
    abortTransport(this.socket);
    this.finish(); // closed now, not at the socket's 'close' event a turn later
  }

  // ---- driven by the app layer ------------------------------------------------------------------

  /** @internal Bytes that arrived with the upgrade request (the `head` of node:http's upgrade event). */
  receiveHead(head: Buffer): void {
    if (head.length > 0) this.onData(head);
  }

  /** @internal The handler returned or threw: the close sequence starts (as in Ktor). */
  handlerFinished(error?: unknown): void {
    this.flags |= HANDLER_DONE;
    if (error !== undefined && !this.isSessionEndError(error)) {
      this.hooks.onError?.(error, "handler");
      if (this.phase === "open") {
        this.localReason ??= new CloseReason(CloseCode.InternalError, "Internal error");
        this.startClose(CloseCode.InternalError, "Internal error");
      }
    } else if (this.phase === "open") {
      this.startClose(CloseCode.Normal, "");
    }
    // Nobody reads any more: what is queued or waiting to be decoded goes, later messages are dropped,
    // and reading goes on so the peer's Close can still be read.
    this.decoder?.discard();
    this.incoming.end();
    this.incoming.clear();
    this.resumeReading(PAUSED_DECODING);
    if (this.phase === "closed") this.codec?.close();
    else if (this.phase === "replying") this.scheduleFlush(); // no decode to wait for any more
  }

  /** @internal Closes with 1001 for a server shutdown. */
  goAway(): void {
    if (this.phase === "open") this.startClose(CloseCode.GoingAway, "Server shutting down");
    else if (this.phase === "replying") this.startClose(undefined, "");
  }

  // ---- reading ----------------------------------------------------------------------------------

  /** @internal */
  onData(chunk: Buffer): void {
    const conn = this.connection;
    conn.receiveData(chunk);
    const events = conn.takeEvents();
    const n = events.length;
    if (n > 0) {
      // Payloads are views of this read. If what may wait in `incoming` is a small part of it (the rest
      // pings, headers, or messages taken at once), queued payloads are copied so the read can go;
      // otherwise the read's other bytes are charged to the last item queued from it.
      // A small read is charged whole, without looking further.
      if (chunk.length > SMALL_READ) {
        let payloadBytes = 0;
        for (let i = 0; i < n; i++) payloadBytes += eventBytes(events[i]!);
        this.copyQueued = payloadBytes * 4 < chunk.length;
      }
      this.queuedFromRead = 0;
      for (let i = 0; i < n; i++) {
        const event = events[i]!;
        if (event.type === "pong") this.onPong(event.data);
        this.onProtocolEvent(event);
        if (event.type === "close") this.peerClosed();
      }
      if (!this.copyQueued && this.queuedFromRead > 0)
        this.incoming.chargeLast(chunk.length - this.queuedFromRead);
      this.queuedFromRead = 0;
      this.copyQueued = false;
    }
    if (conn.failure) this.failed(conn.failure, false);
    if (n >= FRAMES_PER_TURN && this.phase !== "closed") {
      // A flood from one peer: let every other connection have this turn before reading more.
      this.pauseReading(PAUSED_TURN);
      this.scheduleFlush();
    }
    if (conn.hasOutput) this.scheduleFlush();
    if (conn.state === "closed" && this.phase === "close-sent") this.startDraining();
  }

  /** @internal A received payload as it may be kept (see `onData`). */
  protected keep(payload: Buffer): Buffer {
    if (this.decoder !== undefined && !this.decoder.idle) return compact(payload); // waits behind a decode
    if (!this.copyQueued || this.incoming.readerWaiting) return payload;
    return payload.length === 0 ? EMPTY : Buffer.from(payload);
  }

  /** @internal Delivers a whole received message, decoding it first when the extension compressed it. */
  protected receiveMessage(event: MessageEvent, make: (payload: Buffer) => F): void {
    if (!event.compressed) {
      this.deliver(make(this.keep(event.data)));
      return;
    }
    this.decode(event.data, true, (payload) => {
      if (event.type === "text" && !isValidUtf8(payload)) {
        throw new ProtocolError("INVALID_UTF8", CloseCode.InvalidPayload, "text message is not valid UTF-8");
      }
      return make(compact(payload));
    });
  }

  /** @internal Puts an item in `incoming` after everything received before it. */
  protected deliver(item: F): void {
    const decoder = this.decoder;
    if (decoder === undefined) {
      if (this.incoming.push(item)) this.queuedFromRead += item.data.length;
    } else if (decoder.deliver(item)) {
      this.queuedFromRead += item.data.length;
    } else if (decoder.cost > this.options.incomingBufferLimit) {
      this.pauseReading(PAUSED_DECODING);
    }
  }

  /** @internal Decodes compressed data (a message, or with `final` false one fragment) in order, then `make`s an item. */
  protected decode(data: Buffer, final: boolean, make: (payload: Buffer) => F): void {
    const codec = this.codec;
    if (codec === undefined) {
      this.failWith(
        new ProtocolError(
          "RESERVED_BITS_SET",
          CloseCode.ProtocolError,
          "compressed data without an extension",
        ),
      );
      return;
    }
    this.decoder ??= new InboundDecoder(codec, this.incoming, () => this.options.maxFrameSize, this);
    this.decoder.decode(this.decoder.idle ? data : compact(data), final, make);
    if (this.decoder.cost > this.options.incomingBufferLimit) this.pauseReading(PAUSED_DECODING);
  }

  private endIncoming(): void {
    if (this.decoder !== undefined) this.decoder.end();
    else this.incoming.end();
  }

  /** @internal (IncomingQueueOwner) */
  incomingFull(): void {
    this.pauseReading(PAUSED_QUEUE);
  }

  /** @internal (IncomingQueueOwner) */
  incomingDrained(): void {
    this.resumeReading(PAUSED_QUEUE);
    this.decoder?.resume();
  }

  /** @internal (IncomingQueueOwner) The handler has taken everything before the peer's Close: reply now. */
  incomingReadToEnd(): void {
    if (this.phase === "replying" && !this.decoder?.busy) this.startClose(undefined, "");
  }

  /** @internal (DecoderOwner) */
  decodeFailed(error: unknown): void {
    this.failWith(error);
  }

  /** @internal (DecoderOwner) */
  decoderSettled(): void {
    const decoder = this.decoder!;
    if (decoder.cost <= this.options.incomingBufferLimit / 2) this.resumeReading(PAUSED_DECODING);
    if (this.phase === "replying") this.scheduleFlush();
    else if (this.phase === "closed" && decoder.idle) this.codec?.close();
  }

  private pauseReading(reason: number): void {
    if (this.pausedFor === 0) this.socket.pause();
    this.pausedFor |= reason;
  }

  private resumeReading(reason: number): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if (this.pausedFor === 0 && this.phase !== "closed") this.socket.resume();
  }

  // ---- writing ----------------------------------------------------------------------------------

  /** @internal (OutboundSink) Hands one frame to the connection and schedules the write. */
  writeFrame(opcode: number, payload: Buffer, fin: boolean, rsv1: boolean): void {
    const c = this.connection;
    if (opcode === Opcode.Ping) c.sendPing(payload);
    else if (opcode === Opcode.Pong) c.sendPong(payload);
    else if (fin && !rsv1 && opcode === Opcode.Text) c.sendText(payload);
    else if (fin && !rsv1 && opcode === Opcode.Binary) c.sendBinary(payload);
    else c.sendFrame(opcode, payload, { fin, rsv1 });
    this.scheduleFlush();
  }

  /** @internal (OutboundSink) */
  encodeFailed(error: unknown): void {
    this.failWith(error, true);
  }

  private ensureOutbound(): OutboundQueue {
    this.outbound ??= new OutboundQueue(this, this.codec);
    return this.outbound;
  }

  private scheduleFlush(): void {
    if (this.flags & FLUSH_SCHEDULED) return;
    this.flags |= FLUSH_SCHEDULED;
    this.scheduler.schedule(this);
  }

  /** @internal (Flushable) The end of the turn: reply to the peer's Close if due, then write. */
  flushNow(): void {
    this.flags &= ~FLUSH_SCHEDULED;
    if (this.pausedFor & PAUSED_TURN) this.resumeReading(PAUSED_TURN);
    // What the handler sent in answer to the messages before the Close went out in this turn; messages
    // still being decoded are waited for, but never the handler.
    if (this.phase === "replying" && !this.decoder?.busy) this.startClose(undefined, "");
    this.writeOutput(false);
  }

  // ---- the lifecycle ----------------------------------------------------------------------------

  /** The peer's Close frame arrived: `incoming` ends after what came before it; the reply is due. */
  private peerClosed(): void {
    if (this.phase === "open") {
      this.phase = "replying";
      this.armTimer(TIMER_CLOSE, this.options.timeout);
      this.scheduleFlush();
    }
    this.endIncoming(); // a reader already waiting is told now, and the reply goes at once
  }

  /**
   * The connection failed (a protocol violation, or the codec): stop reading; the failure's Close is
   * due (§7.1.7), after what the handler sends this turn in answer to the messages before the violation.
   */
  private failed(failure: ProtocolError, decoding: boolean): void {
    if (this.phase === "closed") return;
    if (!(this.pausedFor & PAUSED_FAILED)) {
      this.pauseReading(PAUSED_FAILED);
      this.flags |= ABANDON;
      if (!this.localReason) {
        this.localReason = new CloseReason(failure.closeCode, failure.message);
        this.hooks.onError?.(failure, "protocol");
      }
    }
    if (this.phase === "open") {
      this.phase = "replying";
      this.armTimer(TIMER_CLOSE, this.options.timeout);
      this.scheduleFlush();
    } else if (this.phase === "replying") {
      this.scheduleFlush(); // the reply, now the failure's Close, at the end of this turn
    } else if (this.phase === "closing") {
      // Our queued Close carries the failure's code; if nothing is queued any more, it goes now.
      if (this.outbound === undefined || this.outbound.idle) this.sendClose(undefined, "");
    } else if (this.phase === "close-sent") {
      this.startDraining();
    }
    if (decoding) {
      // Nothing after a message that cannot be decoded is delivered.
      this.decoder?.discard();
      this.incoming.end();
    } else {
      this.endIncoming(); // the messages before the violation are still delivered
    }
  }

  /**
   * Fails the connection from above the core: a message that cannot be decoded (its close code), or
   * the codec failing to compress (1011; then nothing compressed can be sent any more).
   */
  private failWith(error: unknown, encoding = false): void {
    if (this.phase === "closed" || this.phase === "draining") {
      // Too late to tell the peer; the handler still learns that nothing more is coming.
      this.decoder?.discard();
      this.incoming.end();
      if (this.phase === "closed") this.codec?.close();
      return;
    }
    const failure =
      error instanceof ProtocolError
        ? error
        : new ProtocolError(
            "EXTENSION_FAILED",
            CloseCode.InternalError,
            error instanceof Error ? error.message : String(error),
          );
    this.connection.fail(failure);
    if (encoding) this.outbound?.abort(this.closedError());
    this.failed(failure, true);
  }

  /**
   * Queues our Close after every message accepted so far: `code` for a close we start, undefined to
   * answer the peer's Close or send the failure's. From here on `send` rejects.
   */
  private startClose(code: number | undefined, reason: string): void {
    if (this.phase !== "open" && this.phase !== "replying") return;
    this.phase = "closing";
    this.leaveTopics();
    this.clearTimer();
    const outbound = this.outbound;
    if (outbound !== undefined && !outbound.idle) {
      this.armTimer(TIMER_CLOSE, this.options.timeout);
      outbound.runAfter(() => this.sendClose(code, reason)).catch(noop);
    } else {
      this.sendClose(code, reason);
    }
  }

  private sendClose(code: number | undefined, reason: string): void {
    if (this.phase !== "closing") return;
    const conn = this.connection;
    if (code === undefined || conn.closeReceived || conn.failure) conn.replyToClose();
    else if (conn.sendClose(code, reason)) this.localReason ??= new CloseReason(code, reason);
    this.phase = "close-sent";
    this.scheduleFlush();
    if (conn.state === "closed" || this.flags & ABANDON) this.startDraining();
    else this.armTimer(TIMER_CLOSE, this.options.timeout);
  }

  /**
   * Writes what is left and waits for the socket to close. The server ends TCP first (§7.1.1); a client
   * waits for the server to, unless it is abandoning the connection.
   */
  private startDraining(): void {
    if (this.phase === "draining" || this.phase === "closed") return;
    this.phase = "draining";
    this.leaveTopics();
    this.outbound?.abort(this.closedError());
    this.writeOutput(true);
    if (this.connection.side === "server" || this.flags & ABANDON) this.endSocket();
    // Both sides ended and nothing of ours left in the socket: its 'close' follows without a timer.
    const socket = this.socket;
    if (socket.readableEnded && socket.writableEnded && socket.writableLength === 0) return;
    // A peer that never closes its side is cut off: soon after a failure or an abandoned close.
    const timeout = this.options.timeout;
    this.armTimer(
      TIMER_CLOSE,
      this.flags & ABANDON ? Math.min(timeout || 1000, 1000) : timeout > 0 ? timeout : 30_000,
    );
  }

  /** @internal The peer ended TCP (with or without its Close first). */
  onEof(): void {
    this.connection.receiveEof();
    this.endIncoming();
    if (this.phase !== "draining" && this.phase !== "closed") {
      this.flags |= ABANDON;
      this.startDraining();
    } else {
      this.endSocket(); // a client that waited for the server to close TCP first
    }
  }

  private endSocket(): void {
    if (!this.socket.writableEnded) this.socket.end();
  }

  /** @internal The socket has closed: settle everything. */
  finish(): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.leaveTopics();
    this.clearTimer();
    const socket = this.socket;
    socket.off("data", onSocketData);
    socket.off("drain", onSocketDrain);
    socket.on("error", noop);
    const conn = this.connection;
    if (conn.state !== "closed") conn.receiveEof();
    const received = conn.closeReceived;
    const reason =
      received && received.code !== CloseCode.Abnormal
        ? new CloseReason(received.code, received.reason)
        : (this.localReason ?? new CloseReason(CloseCode.Abnormal, ""));
    this.endIncoming();
    // An Error captures a stack: made only when something waits to be rejected with it.
    if (this.outbound !== undefined || this.writesPending) {
      const error = this.closedError();
      this.outbound?.abort(error);
      this.settleWrites(error);
    }
    // Messages already received are still decoded for the handler; then the codec's zlib memory goes.
    if (this.flags & HANDLER_DONE) this.releaseInbound();
    else if (this.decoder === undefined || this.decoder.idle) this.codec?.close();
    this.finalReason = reason;
    this.resolveCloseReason?.(reason);
    this.abort?.abort(reason);
    this.hooks.onEnd?.(this);
  }

  private leaveTopics(): void {
    if (this.subscriptions !== undefined) this.topicRegistry?.leaveAll(this);
  }

  private releaseInbound(): void {
    this.decoder?.discard();
    this.incoming.clear();
    this.codec?.close();
  }

  private closeWithPayload(payload: Buffer): Promise<void> {
    if (payload.length === 0) return this.close();
    if (payload.length === 1)
      return Promise.reject(
        new UsageError("INVALID_FRAME", "a close payload is empty or starts with a code"),
      );
    return this.close(payload.readUInt16BE(0), payload.subarray(2).toString("utf8"));
  }

  /** A SessionError thrown by a send after the session started closing: how a handler learns of it. */
  private isSessionEndError(error: unknown): boolean {
    return (
      error instanceof SessionError &&
      (error.code === "SESSION_CLOSED" || error.code === "HANDLER_RETURNED") &&
      this.phase !== "open"
    );
  }

  /** @internal */
  protected closedError(): SessionError {
    return this.flags & HANDLER_DONE
      ? new SessionError(
          "HANDLER_RETURNED",
          "the WebSocket handler has returned; the session can no longer be used",
        )
      : new SessionError(
          "SESSION_CLOSED",
          "the WebSocket session is closing or closed; nothing more can be sent",
        );
  }

  // ---- timers: keepalive, then the closing handshake ----------------------------------------------

  private armTimer(kind: number, ms: number): void {
    this.clearTimer();
    if (ms <= 0) return;
    this.flags |= kind;
    this.scheduler.timers.set(this, ms);
  }

  private clearTimer(): void {
    if (this.timerList !== undefined) this.scheduler.timers.clear(this);
    this.flags &= ~TIMERS;
  }

  /** @internal (TimerEntry) The armed timer is due; TimerLists has unlinked it. */
  onTimer(): void {
    const kind = this.flags & TIMERS;
    this.flags &= ~TIMERS;
    if (kind === TIMER_PING) this.sendKeepalivePing();
    else if (kind === TIMER_PONG) this.onPingTimeout();
    else if (kind === TIMER_CLOSE) this.onCloseTimeout();
  }

  private schedulePing(): void {
    if (this.phase === "open" && this.options.pingPeriod > 0)
      this.armTimer(TIMER_PING, this.options.pingPeriod);
  }

  private sendKeepalivePing(): void {
    if (this.phase !== "open") return;
    this.codec?.releaseIdle?.();
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(++this.pingCounter >>> 0);
    this.expectedPong = payload;
    this.connection.sendPing(payload);
    this.scheduleFlush();
    if (this.options.timeout > 0) this.armTimer(TIMER_PONG, this.options.timeout);
    else this.schedulePing();
  }

  private onPong(data: Buffer): void {
    // Only the pong that answers our latest ping counts (§5.5.3: same application data).
    if (!this.expectedPong || !data.equals(this.expectedPong)) return;
    this.expectedPong = undefined;
    if (this.flags & TIMER_PONG) this.clearTimer();
    this.schedulePing();
  }

  private onPingTimeout(): void {
    if (this.phase !== "open") return;
    // We stopped reading (the handler is behind): the pong may be waiting in the socket unread. That
    // is not the peer's fault; wait another round instead of closing a live peer.
    if (this.pausedFor !== 0) {
      this.armTimer(TIMER_PONG, this.options.timeout);
      return;
    }
    // The peer is unresponsive: send our Close frame, then free the session without waiting for an answer.
    this.flags |= ABANDON;
    this.localReason ??= new CloseReason(CloseCode.InternalError, "Ping timeout");
    this.startClose(CloseCode.InternalError, "Ping timeout");
  }

  private onCloseTimeout(): void {
    // Still owing the peer our reply (a decode that never finished): send it, then stop waiting.
    if (this.phase === "replying") {
      this.flags |= ABANDON;
      this.startClose(undefined, "");
      return;
    }
    abortTransport(this.socket);
  }
}

/** Payload bytes an event may leave in `incoming`. */
function eventBytes(event: ProtocolEvent): number {
  switch (event.type) {
    case "text":
    case "binary":
    case "ping":
    case "pong":
      return event.data.length;
    case "frame":
      return event.frame.payload.length;
    default:
      return 0;
  }
}

// Socket listeners shared by every session (called with the socket as `this`).
function onSocketData(this: SessionSocket, chunk: Buffer): void {
  this[SESSION].onData(chunk);
}
function onSocketEnd(this: SessionSocket): void {
  this[SESSION].onEof();
}
function onSocketClose(this: SessionSocket): void {
  this[SESSION].finish();
}
function onSocketDrain(this: SessionSocket): void {
  this[SESSION].onDrain();
}
