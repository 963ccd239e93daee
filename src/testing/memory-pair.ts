import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";

/** Bytes one end takes in before what its peer writes has to wait (and a writer's drain threshold). */
const HIGH_WATER_MARK = 16 * 1024;

type Callback = (error?: Error | null) => void;
type Listener = Parameters<EventEmitter["on"]>[1];

const END = Symbol("end") as unknown as Buffer;
const EMPTY = Buffer.alloc(0);
const noop = (): void => {};

function streamError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * One end of an in-memory connection: the part of net.Socket that sockway's sessions and handshakes
 * use, without node:stream's machinery (a test's cost is mostly that machinery otherwise). What one end
 * writes the other reads (a copy), in order; a write completes once the peer has room for it (up to
 * HIGH_WATER_MARK unread bytes), else it waits, counting in `writableLength`, and 'drain' follows.
 * `end()` is a FIN: the peer reads EOF after the data. `destroy()` is a reset: the peer reads EOF after
 * what it had taken in, and what it writes afterwards is dropped. Either end emits 'close' once it has
 * read EOF and ended its side, or when destroyed.
 *
 * Data goes to the peer's 'data' listener from within `write` when the peer is reading (flowing, with
 * nothing queued, not inside its own 'data' listener: writes made from there queue, which keeps the
 * order and bounds the stack). Everything else (write callbacks, 'drain', 'end', 'close', data queued
 * while paused) comes on `process.nextTick`, which fake timers leave alone; nothing uses a timer.
 */
export class MemorySocket extends EventEmitter {
  /** @internal */ peer!: MemorySocket;
  destroyed = false;
  writableEnded = false;
  writableFinished = false;
  readableEnded = false;
  writableNeedDrain = false;
  readonly writableHighWaterMark = HIGH_WATER_MARK;
  readonly readableHighWaterMark = HIGH_WATER_MARK;
  readonly remoteAddress = "127.0.0.1";
  readonly remotePort = 0;

  /** null: nobody has started reading; false: paused; true: reading. As `readableFlowing`. */
  private flowing: boolean | null = null;
  /** Inside this end's 'data' listener: what arrives now is queued. */
  private delivering = false;
  // What the peer wrote and this end has not read, in order. Chunks before `accepted` have been taken
  // in (`acceptedBytes` of them, unread); the rest wait for room, with the writers' callbacks.
  private readonly queue: Buffer[] = [];
  private readonly callbacks: Array<Callback | undefined> = [];
  private next = 0;
  private accepted = 0;
  private acceptedBytes = 0;
  /** Bytes of the queue not yet taken in: the peer's `writableLength`. */
  private waitingBytes = 0;
  /** The peer's FIN (or reset) comes after the queue. */
  private eof = false;
  /** Writes held by `hold()`, delivered by `release()`. */
  private held: Buffer[] | undefined;
  private due: Callback[] = [];
  private scheduled = false;
  private closeEmitted = false;
  private destroyError: Error | undefined;
  private finishCallbacks: Callback[] | undefined;

  get writable(): boolean {
    return !this.destroyed && !this.writableEnded;
  }

  get readable(): boolean {
    return !this.destroyed && !this.readableEnded;
  }

  get writableLength(): number {
    return this.peer.waitingBytes;
  }

  get readableFlowing(): boolean | null {
    return this.flowing;
  }

  set readableFlowing(value: boolean | null) {
    this.flowing = value;
  }

  // As a Readable: a 'data' listener starts reading unless the end was paused.
  override on(event: string | symbol, listener: Listener): this {
    super.on(event, listener);
    if (event === "data" && this.flowing !== false) this.resume();
    return this;
  }

  override addListener(event: string | symbol, listener: Listener): this {
    return this.on(event, listener);
  }

  pause(): this {
    this.flowing = false;
    return this;
  }

  resume(): this {
    this.flowing = true;
    if (this.next < this.queue.length || this.eof) this.schedule();
    return this;
  }

  // Writes go out as they are made; grouping them changes nothing a reader may rely on.
  cork(): void {}
  uncork(): void {}

  write(chunk: Buffer | string, encoding?: BufferEncoding | Callback, callback?: Callback): boolean {
    if (typeof encoding === "function") {
      callback = encoding;
      encoding = undefined;
    }
    if (this.destroyed || this.writableEnded) {
      if (callback !== undefined)
        this.later(
          callback,
          this.destroyed ? DESTROYED("write") : streamError("ERR_STREAM_WRITE_AFTER_END", "write after end"),
        );
      return false;
    }
    // A copy, as the kernel makes: the writer may reuse its buffer once the write is done, while the
    // reader may keep views of what it read (a session's messages are views of its reads).
    const data = typeof chunk === "string" ? Buffer.from(chunk, encoding) : Buffer.from(chunk);
    if (this.held !== undefined) {
      if (data.length > 0) this.held.push(data);
      if (callback !== undefined) this.later(callback);
      return true;
    }
    const room = this.peer.receive(data, callback);
    if (!room) this.writableNeedDrain = true;
    return room;
  }

  end(chunk?: Buffer | string | Callback, encoding?: BufferEncoding | Callback, callback?: Callback): this {
    if (typeof chunk === "function") callback = chunk;
    else if (typeof encoding === "function") callback = encoding;
    if (chunk !== undefined && typeof chunk !== "function")
      this.write(chunk, typeof encoding === "string" ? encoding : undefined);
    if (callback !== undefined) {
      if (this.writableFinished) this.later(callback);
      else if (this.destroyed) this.later(callback, DESTROYED("end"));
      else {
        this.finishCallbacks ??= [];
        this.finishCallbacks.push(callback);
      }
    }
    if (this.writableEnded || this.destroyed) return this;
    this.writableEnded = true;
    if (this.held !== undefined) this.held.push(END);
    else this.peer.receiveEof();
    this.checkFinished();
    return this;
  }

  destroy(error?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.destroyError = error;
    this.held = undefined;
    // What the peer wrote to this end is lost; its waiting writes complete.
    this.dropQueue(undefined);
    const peer = this.peer;
    if (!peer.destroyed) {
      // Ours that the peer had no room for are lost with their writes failed; it reads EOF after the rest.
      peer.truncateWaiting(this, DESTROYED("write"));
      peer.receiveEof();
    }
    this.schedule();
    return this;
  }

  /** Holds what this end writes (the network stops delivering in this direction), until `release`. */
  hold(): void {
    this.held ??= [];
  }

  /** Delivers what `hold` kept, in order, and stops holding. */
  release(): void {
    const held = this.held;
    this.held = undefined;
    if (held === undefined) return;
    for (const chunk of held) {
      if (chunk === END) this.peer.receiveEof();
      else this.peer.receive(chunk, undefined);
    }
  }

  // Socket-like no-ops that sessions and node:http may call.
  setTimeout(_ms: number): this {
    return this;
  }
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }
  setKeepAlive(_enable?: boolean, _delay?: number): this {
    return this;
  }

  // ---- the reading side: called by the peer ------------------------------------------------------

  /** Takes a chunk the peer wrote; returns whether the peer is still below its high-water mark. */
  private receive(data: Buffer, callback: Callback | undefined): boolean {
    const writer = this.peer;
    if (this.destroyed) {
      if (callback !== undefined) writer.later(callback); // a reset connection: the bytes are lost
      return true;
    }
    if (this.queue.length === 0) {
      // Nothing before it: taken in at once, and read now if this end is reading.
      if (callback !== undefined) writer.later(callback);
      if (data.length === 0) return true;
      if (this.flowing === true && !this.delivering && this.listenerCount("data") > 0) {
        this.delivering = true;
        try {
          this.emit("data", data);
        } finally {
          this.delivering = false;
        }
        if (this.queue.length > 0 && this.flowing === true) this.flow();
        return true;
      }
      this.queue.push(data);
      this.callbacks.push(undefined);
      this.accepted = 1;
      this.acceptedBytes = data.length;
      return true;
    }
    if (data.length === 0 && this.accepted === this.queue.length) {
      // Everything before it is taken in: an empty write completes now.
      if (callback !== undefined) writer.later(callback);
      return this.waitingBytes < HIGH_WATER_MARK;
    }
    this.queue.push(data);
    this.callbacks.push(callback);
    this.waitingBytes += data.length;
    this.acceptWaiting();
    if (this.flowing === true && !this.delivering) this.flow();
    return this.waitingBytes < HIGH_WATER_MARK;
  }

  private receiveEof(): void {
    if (this.eof || this.destroyed) return;
    this.eof = true;
    if (this.next === this.queue.length) this.schedule();
  }

  /** Takes in waiting chunks while there is room; completes their writes. */
  private acceptWaiting(): void {
    const queue = this.queue;
    let i = this.accepted;
    if (i === queue.length) return;
    const writer = this.peer;
    while (i < queue.length && (this.acceptedBytes < HIGH_WATER_MARK || queue[i]!.length === 0)) {
      const length = queue[i]!.length;
      this.acceptedBytes += length;
      this.waitingBytes -= length;
      const callback = this.callbacks[i];
      if (callback !== undefined) {
        this.callbacks[i] = undefined;
        writer.later(callback);
      }
      i++;
    }
    this.accepted = i;
    if (this.waitingBytes === 0) writer.waitingDone();
  }

  /** Emits what is queued while this end reads. */
  private flow(): void {
    const queue = this.queue;
    this.delivering = true;
    try {
      while (this.next < queue.length && this.flowing === true && !this.destroyed) {
        if (this.listenerCount("data") === 0) break; // nobody listens yet: kept for the next listener
        if (this.next === this.accepted) this.acceptWaiting();
        const chunk = queue[this.next]!;
        queue[this.next] = EMPTY;
        this.next++;
        this.acceptedBytes -= chunk.length;
        if (chunk.length > 0) this.emit("data", chunk);
      }
    } finally {
      this.delivering = false;
    }
    if (this.next === queue.length) {
      // All read (or dropped by a destroy): the queue starts afresh rather than grow.
      queue.length = 0;
      this.callbacks.length = 0;
      this.next = 0;
      this.accepted = 0;
      if (this.eof) this.schedule();
    } else {
      // A reader that stops before the end on every turn (a session pausing after a burst) may never
      // empty the queue: the read prefix goes once it is half the arrays, so they stay bounded.
      if (this.next >= 1024 && this.next * 2 >= queue.length) {
        queue.splice(0, this.next);
        this.callbacks.splice(0, this.next);
        this.accepted -= this.next;
        this.next = 0;
      }
      this.acceptWaiting();
    }
  }

  /** The peer destroyed itself: drops what of its writes this end had no room for, failing them. */
  private truncateWaiting(writer: MemorySocket, error: Error): void {
    for (let i = this.accepted; i < this.queue.length; i++) {
      const callback = this.callbacks[i];
      if (callback !== undefined) writer.later(callback, error);
    }
    this.queue.length = this.accepted;
    this.callbacks.length = this.accepted;
    this.waitingBytes = 0;
  }

  /** This end was destroyed: what the peer wrote to it is gone, and the peer's writes complete. */
  private dropQueue(error: Error | undefined): void {
    const writer = this.peer;
    for (let i = this.accepted; i < this.queue.length; i++) {
      const callback = this.callbacks[i];
      if (callback !== undefined) writer.later(callback, error);
    }
    this.queue.length = 0;
    this.callbacks.length = 0;
    this.next = 0;
    this.accepted = 0;
    this.acceptedBytes = 0;
    this.waitingBytes = 0;
    writer.waitingDone();
  }

  // ---- the writing side's notifications ----------------------------------------------------------

  /** None of this end's writes waits for room any more: 'drain' if one was refused, finished if ended. */
  private waitingDone(): void {
    if (this.writableNeedDrain) this.schedule();
    this.checkFinished();
  }

  private checkFinished(): void {
    if (!this.writableEnded || this.writableFinished) return;
    if (this.peer.waitingBytes > 0 && !this.peer.destroyed) return;
    this.writableFinished = true;
    const callbacks = this.finishCallbacks;
    this.finishCallbacks = undefined;
    if (callbacks !== undefined) for (const callback of callbacks) this.later(callback);
    this.schedule();
  }

  private later(callback: Callback, error?: Error): void {
    this.due.push(error === undefined ? callback : () => callback(error));
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(runTick, this);
  }

  /** @internal One turn of notifications, in node:stream's order: write callbacks, 'drain', data, 'end', 'close'. */
  tick(): void {
    this.scheduled = false;
    const due = this.due;
    if (due.length > 0) {
      this.due = [];
      for (const callback of due) callback();
    }
    // As node:stream: no 'drain' once destroyed (the refused writes have failed).
    if (this.writableNeedDrain && !this.destroyed && (this.peer.waitingBytes === 0 || this.peer.destroyed)) {
      this.writableNeedDrain = false;
      this.emit("drain");
    }
    if (!this.destroyed && this.flowing === true) {
      if (this.next < this.queue.length && !this.delivering) this.flow();
      if (this.eof && !this.readableEnded && this.next === this.queue.length) {
        this.readableEnded = true;
        this.emit("end");
      }
    }
    if (this.closeEmitted) return;
    if (this.destroyed || (this.readableEnded && this.writableFinished)) {
      // Both sides done: as node:stream's autoDestroy, the end is destroyed and closes.
      this.destroyed = true;
      this.closeEmitted = true;
      if (this.destroyError !== undefined) this.emit("error", this.destroyError);
      this.emit("close", this.destroyError !== undefined);
    }
  }
}

const DESTROYED = (what: string): Error =>
  streamError("ERR_STREAM_DESTROYED", `Cannot call ${what} after a stream was destroyed`);

function runTick(socket: MemorySocket): void {
  socket.tick();
}

/** @internal Two connected in-memory sockets: `[client, server]`. */
export function memorySockets(): [MemorySocket, MemorySocket] {
  const a = new MemorySocket();
  const b = new MemorySocket();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * One end of an in-memory connection as a node:stream Duplex (for code that needs a real stream, such
 * as node:http, or a pipe). What one end writes the other reads, in order, with backpressure (a write
 * completes once the peer has room); ending one end is a FIN for the other, destroying one is a reset:
 * the other reads EOF and what it writes afterwards is dropped. Nothing here uses a timer or real I/O:
 * data moves on `process.nextTick`, which fake timers leave alone.
 */
export class MemoryEnd extends Duplex {
  constructor(
    /** @internal The socket this stream reads and writes. */
    readonly socket: MemorySocket,
  ) {
    super();
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", noop);
  }

  override _read(): void {
    if (this.socket.readableFlowing === false) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  /** Holds what this end writes (the network stops delivering in this direction), until `release`. */
  hold(): void {
    this.socket.hold();
  }

  /** Delivers what `hold` kept, in order, and stops holding. */
  release(): void {
    this.socket.release();
  }

  // Socket-like no-ops that sessions and node:http may call.
  setTimeout(_ms: number): this {
    return this;
  }
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }
  setKeepAlive(_enable?: boolean, _delay?: number): this {
    return this;
  }
  readonly remoteAddress = "127.0.0.1";
  readonly remotePort = 0;
}

/** Two connected in-memory ends: `[client, server]`. */
export function memoryPair(): [MemoryEnd, MemoryEnd] {
  const [a, b] = memorySockets();
  return [new MemoryEnd(a), new MemoryEnd(b)];
}
