import type { Buffer } from "node:buffer";
import { Duplex } from "node:stream";

/**
 * One end of an in-memory connection. What one end writes the other reads, in order, with
 * backpressure (a write completes once the peer has room); ending one end is a FIN for the other,
 * destroying one is a reset: the other reads EOF and what it writes afterwards is dropped. Nothing
 * here uses a timer or real I/O: data moves on `process.nextTick`, which fake timers leave alone.
 */
export class MemoryEnd extends Duplex {
  /** @internal */ peer!: MemoryEnd;
  /** Writes held by `hold()`, delivered by `release()`. */
  private held: Buffer[] | undefined;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.held !== undefined) {
      this.held.push(chunk);
      return callback();
    }
    this.deliver(chunk, callback);
  }

  private deliver(chunk: Buffer, callback: () => void): void {
    const peer = this.peer;
    if (peer.destroyed || peer.readableEnded) return callback(); // the peer is gone: the bytes are lost
    if (peer.push(chunk)) callback();
    else peer.pendingRead = callback;
  }

  /** @internal Set on the reading end: the writer's callback, called when this end wants more. */
  pendingRead: (() => void) | undefined;

  override _read(): void {
    const next = this.pendingRead;
    this.pendingRead = undefined;
    next?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.held !== undefined) {
      this.held.push(END);
      return callback();
    }
    if (!this.peer.destroyed) this.peer.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    this.held = undefined;
    // A reset: the peer reads EOF (if it has not already) and closes once it has ended its side too.
    if (!peer.destroyed && !peer.readableEnded) peer.push(null);
    const pending = this.pendingRead;
    this.pendingRead = undefined;
    pending?.();
    callback(error);
  }

  /** Holds what this end writes (the network stops delivering in this direction), until `release`. */
  hold(): void {
    this.held ??= [];
  }

  /** Delivers what `hold` kept, in order, and stops holding. */
  release(): void {
    const held = this.held;
    this.held = undefined;
    for (const chunk of held ?? []) {
      if (chunk === END) {
        if (!this.peer.destroyed) this.peer.push(null);
      } else this.deliver(chunk, noop);
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
  readonly remoteAddress = "127.0.0.1";
  readonly remotePort = 0;
}

const END = Symbol("end") as unknown as Buffer;
const noop = (): void => {};

/** Two connected in-memory ends: `[client, server]`. */
export function memoryPair(): [MemoryEnd, MemoryEnd] {
  const a = new MemoryEnd();
  const b = new MemoryEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
