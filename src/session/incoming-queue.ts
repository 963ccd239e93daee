import { SessionError } from "./errors.js";

/** The empty queue shared until an item has to wait (never written to). */
const NONE: never[] = Object.freeze([]) as never[];

/** Who is told when the queue fills, drains and is read to its end (an object, not three closures). */
export interface IncomingQueueOwner {
  incomingFull(): void;
  incomingDrained(): void;
  incomingReadToEnd(): void;
}

/**
 * The receive side of a session: an async-iterable queue with a byte limit. Past the limit it asks the
 * transport to pause reading (so TCP pushes back on the peer); once the consumer has taken it back
 * down to half the limit it resumes.
 * It is its own iterator, so iterating allocates nothing per session.
 */
export class IncomingQueue<T extends { data: Uint8Array }> implements AsyncIterable<T>, AsyncIterator<T> {
  private items: T[] = NONE as T[];
  private head = 0;
  private bytes = 0;
  private paused = false;
  private ended = false;
  private waiter: ((result: IteratorResult<T>) => void) | undefined;
  private iterating = false;
  private read = false;

  constructor(
    /** Bytes queued before reading pauses. */
    readonly limit: number,
    private readonly owner: IncomingQueueOwner,
  ) {}

  /** Whether anyone has read (iterated or called `receive`) yet. */
  get hasReader(): boolean {
    return this.read;
  }

  /** Bytes received and not yet taken by the application. */
  get bufferedBytes(): number {
    return this.bytes;
  }

  push(item: T): void {
    if (this.ended) return;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter({ value: item, done: false });
      return;
    }
    if (this.items === NONE) this.items = [];
    this.items.push(item);
    this.bytes += item.data.length;
    if (!this.paused && this.bytes > this.limit) {
      this.paused = true;
      this.owner.incomingFull();
    }
  }

  /** No more items will come; the iterator finishes once the queued ones are taken. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const waiter = this.waiter;
    if (waiter && this.head === this.items.length) {
      this.waiter = undefined;
      waiter({ value: undefined, done: true });
      this.owner.incomingReadToEnd();
    }
  }

  /** The next item, or undefined once the session has ended and the queue is empty. */
  async receive(): Promise<T | undefined> {
    const result = await this.next();
    return result.done ? undefined : result.value;
  }

  next(): Promise<IteratorResult<T>> {
    this.read = true;
    if (this.head < this.items.length) {
      const item = this.items[this.head]!;
      this.items[this.head++] = undefined as unknown as T; // release for GC
      if (this.head === this.items.length) {
        this.items = NONE as T[];
        this.head = 0;
      }
      this.bytes -= item.data.length;
      if (this.paused && this.bytes <= this.limit / 2) {
        this.paused = false;
        this.owner.incomingDrained();
      }
      return Promise.resolve({ value: item, done: false });
    }
    if (this.ended) {
      this.owner.incomingReadToEnd();
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.waiter)
      return Promise.reject(new SessionError("INCOMING_IN_USE", "incoming is already being read"));
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** The queue is its own iterator: no iterator object or closures per session. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterating) throw new SessionError("INCOMING_IN_USE", "incoming is already being iterated");
    this.iterating = true;
    return this;
  }

  return(): Promise<IteratorResult<T>> {
    this.iterating = false;
    return Promise.resolve({ value: undefined, done: true });
  }
}
