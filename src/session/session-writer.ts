import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import type { Connection } from "../protocol/index.js";
import type { SessionError } from "./errors.js";
import type { SessionOptions } from "./options.js";
import type { OutboundQueue } from "./outbound-queue.js";
import { MIN_QUEUED_WRITE, writePieces } from "./socket-output.js";

export const RESOLVED: Promise<void> = Promise.resolve();
export const noop = (): void => {};
export const EMPTY = Buffer.alloc(0);
/** Heap bytes charged per frame queued in the connection beside its bytes (measured ~180 B). */
export const FRAME_OVERHEAD = 192;

/** One promise for every send waiting on the same drain, so waiting sends cost nothing each. */
type Drain = { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void };

/**
 * The writing half of a session, without any of its lifecycle: hands the connection's output to the
 * socket (pings and pongs first, small frames coalesced), measures what is buffered, and keeps the
 * promises that wait on writes (`send`'s drain, `flush`, our Close being written). `WebSocketSession`
 * decides when to write and what; this only knows how.
 */
export abstract class SessionWriter {
  /** @internal */
  protected readonly connection: Connection;
  /** @internal */
  protected readonly socket: Duplex;
  /** @internal */
  protected options: SessionOptions;
  /** @internal What waits in order to be sent (made the first time something has to wait). */
  protected outbound: OutboundQueue | undefined;
  private wakeupPending = false;
  private drain: Drain | undefined;
  private closeWaiters: Array<() => void> | undefined;

  /** @internal */
  constructor(socket: Duplex, connection: Connection, options: SessionOptions) {
    this.socket = socket;
    this.connection = connection;
    this.options = options; // copied on first change (pingPeriod, timeout setters)
  }

  /** @internal The error pending writes are rejected with once the session is closing. */
  protected abstract closedError(): SessionError;

  /**
   * What is buffered for sending and not yet handed to the kernel, in bytes of memory: frame bytes
   * (including messages still being compressed) plus a fixed charge per queued frame for the objects
   * that hold it, so that many tiny messages count for what they cost.
   */
  get bufferedAmount(): number {
    const c = this.connection;
    return (
      c.bufferedBytes +
      c.controlBytes +
      (c.queuedFrames + c.controlFrames) * FRAME_OVERHEAD +
      (this.outbound?.cost ?? 0) +
      this.socket.writableLength
    );
  }

  /** @internal What `send` returns once its frame is queued: resolved below the high-water mark, else the drain. */
  protected afterQueued(): Promise<void> {
    if (this.bufferedAmount <= this.options.outgoingHighWaterMark) return RESOLVED;
    if (this.drain === undefined) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.drain = { promise, resolve, reject };
    }
    return this.drain.promise;
  }

  /**
   * @internal
   * Hands queued frames to the socket up to the high-water mark (unless `all`): pings and pongs first,
   * then data, so frames still queued here can be overtaken by a later pong (§5.5).
   */
  protected writeOutput(all: boolean): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    const conn = this.connection;
    const queued = socket.writableLength;
    // A peer that does not read gets nothing more, control frames included: pongs wait in the core,
    // which keeps only the latest few. Small output waits for earlier writes, so it goes out in one piece.
    const budget = all
      ? Number.POSITIVE_INFINITY
      : queued > 0 && conn.bufferedBytes < MIN_QUEUED_WRITE
        ? 0
        : this.options.outgoingHighWaterMark - queued;
    if (budget > 0) {
      const tail = conn.takeTailOnly();
      if (tail !== undefined) socket.write(tail);
      else if (conn.hasOutput) writePieces(socket, conn.takeOutput(budget));
    }
    // More is queued here: come back when the socket has room. 'drain' only follows a refused write.
    if (conn.hasOutput && !socket.writableNeedDrain && !this.wakeupPending) {
      this.wakeupPending = true;
      socket.write(EMPTY, () => this.onWakeup());
    }
    if (this.closeWaiters !== undefined && conn.closeSent && conn.queuedFrames === 0)
      this.closeFrameWritten();
    if (this.drain !== undefined) {
      if (this.bufferedAmount <= this.options.outgoingHighWaterMark) this.checkDrain();
      else if (!socket.writableNeedDrain && !conn.hasOutput) socket.write(EMPTY, () => this.checkDrain());
    }
  }

  private onWakeup(): void {
    this.wakeupPending = false;
    this.onDrain();
  }

  /** @internal */
  onDrain(): void {
    if (this.socket.destroyed) return;
    if (this.connection.hasOutput) this.writeOutput(false);
    this.checkDrain();
  }

  private checkDrain(): void {
    const drain = this.drain;
    if (drain === undefined || this.bufferedAmount > this.options.outgoingHighWaterMark) return;
    this.drain = undefined;
    drain.resolve();
  }

  /** @internal */
  protected writeAll(): Promise<void> {
    this.writeOutput(true);
    const socket = this.socket;
    if (socket.writableLength === 0) return RESOLVED;
    if (socket.destroyed) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      if (socket.writableEnded) {
        socket.once("close", () => (socket.writableFinished ? resolve() : reject(this.closedError())));
        return;
      }
      socket.write(EMPTY, (error) => (error ? reject(this.closedError()) : resolve()));
    });
  }

  /** @internal A promise for our Close frame reaching the kernel (or the session ending: see `settleWrites`). */
  protected closeWritten(): Promise<void> {
    if (this.socket.destroyed) return RESOLVED;
    if (this.connection.closeSent && this.connection.queuedFrames === 0) {
      return this.socket.writableLength === 0 ? RESOLVED : this.writeAll().catch(noop);
    }
    return new Promise((resolve) => {
      this.closeWaiters ??= [];
      this.closeWaiters.push(resolve);
    });
  }

  private closeFrameWritten(): void {
    const waiters = this.closeWaiters!;
    this.closeWaiters = undefined;
    const done = () => {
      for (const w of waiters) w();
    };
    const socket = this.socket;
    if (socket.writableLength === 0 || socket.writableEnded) done();
    else socket.write(EMPTY, done);
  }

  /** @internal Something waits on the writes: a send for the drain, or a wait for our Close. */
  protected get writesPending(): boolean {
    return this.drain !== undefined || this.closeWaiters !== undefined;
  }

  /** @internal The socket is gone: rejects the drain wait with `error`, resolves waits for our Close. */
  protected settleWrites(error: unknown): void {
    const drain = this.drain;
    this.drain = undefined;
    drain?.reject(error);
    const waiters = this.closeWaiters;
    this.closeWaiters = undefined;
    if (waiters !== undefined) for (const w of waiters) w();
  }
}
