import { Buffer } from "node:buffer";
import { SessionError } from "./errors.js";

/** The empty queue shared until an item has to wait (never written to). */
const NONE: never[] = Object.freeze([]) as never[];

/**
 * Heap bytes one queued item costs beside its payload: the frame object, the Buffer view and its slot
 * in the queue (measured at about 180 B with `node --expose-gc`, rounded up).
 */
export const ITEM_OVERHEAD = 192;
/** A copied payload may keep at most this much of someone else's memory alive. */
const COPY_SLACK = 4096;

/** Who is told when the queue fills, drains and is read to its end (an object, not closures). */
export interface IncomingQueueOwner {
  incomingFull(): void;
  incomingDrained(): void;
  /** The reader has been told there is nothing more. */
  incomingReadToEnd(): void;
}

/** A payload of its own: copied unless it already is the whole of its memory, or close to it. */
export function compact(data: Buffer): Buffer {
  return data.buffer.byteLength > data.length + COPY_SLACK ? Buffer.from(data) : data;
}

// One executor for every `next()` that has to wait, told its queue through `waitingQueue` (executors
// run synchronously inside `new Promise`): no closure per wait.
// biome-ignore lint/suspicious/noExplicitAny: any queue
let waitingQueue: IncomingQueue<any> | undefined;
// biome-ignore lint/suspicious/noExplicitAny: any queue's results
const storeWaiter = (resolve: (result: IteratorResult<any>) => void): void => {
  waitingQueue!.waiter = resolve;
};

/**
 * The receive side of a session: an async-iterable queue bounded by what its items cost in memory: each
 * is charged its payload, a fixed `ITEM_OVERHEAD`, and whatever else its owner says it keeps alive
 * (`chargeLast`: the rest of a read buffer the payload is a view of), so a flood of empty messages
 * fills it too. Past `limit` it asks the owner to pause reading (TCP then pushes back on the
 * peer); once the consumer has taken it back down to half the limit, to resume.
 * It is its own iterator, so iterating allocates nothing per session.
 */
export class IncomingQueue<T extends { data: Uint8Array }> implements AsyncIterable<T>, AsyncIterator<T> {
  /** Queued items, each followed by what it was charged (one array: one allocation per burst). */
  private items: Array<T | number> = NONE;
  private head = 0;
  private charged = 0;
  private paused = false;
  private ended = false;
  /** @internal The reader waiting in `next()`. */
  waiter: ((result: IteratorResult<T>) => void) | undefined;
  private iterating = false;

  /** @internal */
  constructor(
    /** Cost queued before reading pauses. */
    readonly limit: number,
    private readonly owner: IncomingQueueOwner,
  ) {}

  /** What the queued items cost (see `itemCost`). */
  get cost(): number {
    return this.charged;
  }

  /** Items waiting to be taken. */
  get length(): number {
    return (this.items.length - this.head) / 2;
  }

  /** @internal Whether the next item pushed goes straight to a waiting reader instead of the queue. */
  get readerWaiting(): boolean {
    return this.waiter !== undefined;
  }

  /** @internal Went over the limit and is not yet back to half of it: whoever feeds the queue should wait. */
  get full(): boolean {
    return this.paused;
  }

  /** @internal */
  get isEnded(): boolean {
    return this.ended;
  }

  /** @internal Queues an item, or hands it to a waiting reader. Returns true if it was queued. */
  push(item: T): boolean {
    if (this.ended) return false;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter({ value: item, done: false });
      return false;
    }
    if (this.items === NONE) this.items = [];
    const cost = ITEM_OVERHEAD + item.data.length;
    this.items.push(item, cost);
    this.add(cost);
    return true;
  }

  /** @internal Charges `bytes` more to the last queued item: memory it keeps alive beside its payload. */
  chargeLast(bytes: number): void {
    const last = this.items.length - 1;
    if (last < this.head || bytes <= 0) return;
    (this.items[last] as number) += bytes;
    this.add(bytes);
  }

  private add(cost: number): void {
    this.charged += cost;
    if (!this.paused && this.charged > this.limit) {
      this.paused = true;
      this.owner.incomingFull();
    }
  }

  /** @internal No more items will come; the iterator finishes once the queued ones are taken. */
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

  /** @internal Drops what is queued (the session is gone and nobody will read it). */
  clear(): void {
    this.items = NONE;
    this.head = 0;
    this.charged = 0;
    if (this.paused) {
      this.paused = false;
      this.owner.incomingDrained();
    }
  }

  /** The next item, or undefined once the session has ended and the queue is empty. */
  async receive(): Promise<T | undefined> {
    const result = await this.next();
    return result.done ? undefined : result.value;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.items.length) {
      const item = this.items[this.head] as T;
      this.charged -= this.items[this.head + 1] as number;
      this.items[this.head] = 0; // release for GC
      this.head += 2;
      if (this.head === this.items.length) {
        this.items = NONE;
        this.head = 0;
      } else if (this.head >= 2048 && this.head * 2 > this.items.length) {
        // A reader that stays behind: cut the taken part off rather than let the array grow.
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      if (this.paused && this.charged <= this.limit / 2) {
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
    waitingQueue = this;
    const promise = new Promise<IteratorResult<T>>(storeWaiter);
    waitingQueue = undefined;
    return promise;
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
