import type { Buffer } from "node:buffer";
import type { MessageCodec } from "../extensions/index.js";
import { type IncomingQueue, ITEM_OVERHEAD } from "./incoming-queue.js";

const EMPTY = new Uint8Array(0);

/** What the decoder reports to its session. */
export interface DecoderOwner {
  /** A decode failed (corrupt data, too big, codec closed): fail the connection with it. */
  decodeFailed(error: unknown): void;
  /** A decode finished or the queue ran empty: the session may resume reading or send its Close reply. */
  decoderSettled(): void;
}

/** One received item waiting its turn: compressed data to decode, a ready item, or the end of input. */
class Pending<F> {
  constructor(
    readonly data: Buffer | undefined,
    readonly final: boolean,
    readonly make: ((payload: Buffer) => F) | undefined,
    readonly item: F | undefined,
  ) {}
}

/**
 * Decodes received messages (permessage-deflate) one at a time, in order, into `incoming`. Items that
 * need no decoding but arrive behind one that does wait their turn, and so does the end of `incoming`.
 * A decode starts only while `incoming` is under its limit, so inflated data cannot pile up beyond it
 * however much it expands; what waits here is compressed bytes, counted in `cost`.
 */
export class InboundDecoder<F extends { data: Uint8Array }> {
  private pending: Pending<F>[] = [];
  private head = 0;
  private decoding = false;
  private failed = false;
  private waitingCost = 0;

  constructor(
    private readonly codec: MessageCodec,
    private readonly incoming: IncomingQueue<F>,
    private readonly maxSize: () => number,
    private readonly owner: DecoderOwner,
  ) {}

  /** Nothing waiting and nothing decoding. */
  get idle(): boolean {
    return this.head === this.pending.length && !this.decoding;
  }

  /** A decode is in progress (it always ends: zlib calls back, or the codec's close rejects it). */
  get busy(): boolean {
    return this.decoding && !this.failed; // a discarded decode's result is dropped: nothing waits for it
  }

  /** Bytes waiting to be decoded, plus a fixed charge per waiting item. */
  get cost(): number {
    return this.waitingCost;
  }

  /** Compressed data (a whole message, or with `final` false one fragment), turned into an item by `make`. */
  decode(data: Buffer, final: boolean, make: (payload: Buffer) => F): void {
    this.add(new Pending(data, final, make, undefined));
  }

  /** An item that needs no decoding, delivered after everything before it. True if it went into `incoming`'s queue at once. */
  deliver(item: F): boolean {
    if (this.idle) return this.incoming.push(item);
    this.add(new Pending<F>(undefined, true, undefined, item));
    return false;
  }

  /** Ends `incoming` after everything before this point. */
  end(): void {
    if (this.idle) this.incoming.end();
    else this.add(new Pending<F>(undefined, true, undefined, undefined));
  }

  /** Drops everything still waiting (the session failed, or nobody will read any more). */
  discard(): void {
    this.pending = [];
    this.head = 0;
    this.waitingCost = 0;
    this.failed = true;
  }

  /** Called when `incoming` has room again. */
  resume(): void {
    this.pump();
  }

  private add(p: Pending<F>): void {
    if (this.failed) return;
    this.pending.push(p);
    this.waitingCost += ITEM_OVERHEAD + (p.data ?? p.item?.data ?? EMPTY).length;
    this.pump();
  }

  private pump(): void {
    // `take` may replace the array: read it afresh each time.
    while (!this.decoding && this.head < this.pending.length) {
      const head = this.pending[this.head]!;
      if (head.make === undefined) {
        this.take();
        this.waitingCost -= ITEM_OVERHEAD + (head.item?.data ?? EMPTY).length;
        if (head.item !== undefined) this.incoming.push(head.item);
        else this.incoming.end();
        continue;
      }
      if (this.incoming.full) return; // the handler is behind: wait until it takes some
      this.decoding = true;
      this.codec.decode(head.data!, this.maxSize(), head.final).then(
        (payload) => this.decoded(head, payload),
        (error: unknown) => this.fail(error),
      );
    }
  }

  private decoded(head: Pending<F>, payload: Buffer): void {
    this.decoding = false;
    if (this.failed) {
      this.owner.decoderSettled(); // discarded meanwhile: the codec may be released now
      return;
    }
    this.take();
    this.waitingCost -= ITEM_OVERHEAD + head.data!.length;
    let item: F;
    try {
      item = head.make!(payload);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.incoming.push(item);
    this.pump();
    this.owner.decoderSettled();
  }

  /** Drops the front entry; the array is cut back once most of it has been taken. */
  private take(): void {
    this.pending[this.head++] = undefined as never;
    if (this.head === this.pending.length) {
      this.pending = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
  }

  private fail(error: unknown): void {
    this.decoding = false;
    if (this.failed) return;
    this.discard();
    this.owner.decodeFailed(error);
  }
}
