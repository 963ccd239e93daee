import type { Buffer } from "node:buffer";
import type { MessageCodec } from "../extensions/index.js";

/** Heap bytes charged per waiting entry beside its payload (the entry and its promise). */
export const ENTRY_OVERHEAD = 256;

/** Where entries go once it is their turn. */
export interface OutboundSink {
  /** Hands one frame to the protocol connection (may throw a UsageError, which rejects that send). */
  writeFrame(opcode: number, payload: Buffer, fin: boolean, rsv1: boolean): void;
  /** The codec failed to compress: the session fails with it. */
  encodeFailed(error: unknown): void;
}

class Entry {
  /** The codec's work for this entry, once started; its result once done. */
  encoding: Promise<Buffer | undefined> | undefined;
  encoded: Buffer | undefined;
  ready = false;
  constructor(
    /** -1: an action, not a frame. */
    readonly opcode: number,
    readonly payload: Buffer | undefined,
    readonly fin: boolean,
    readonly rsv1: boolean,
    /** Compress through the codec when it is this entry's turn. */
    public compress: boolean,
    readonly action: (() => void) | undefined,
    readonly resolve: () => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

/**
 * The one ordered way out of a session while something asynchronous is in it: messages to compress,
 * messages behind them, flush marks and the Close. Entries leave strictly in order, each only when the
 * one before it has been handed on, so the Close always follows the messages accepted before it; the
 * codec works on one message at a time and only at the front, so nothing ever waits on itself.
 *
 * When the queue is empty the session writes straight to its connection and no entry is made.
 */
export class OutboundQueue {
  private readonly entries: Entry[] = [];
  private head = 0;
  private waitingCost = 0;
  private pumping = false;
  private aborted: unknown;

  constructor(
    private readonly sink: OutboundSink,
    private readonly codec: MessageCodec | undefined,
  ) {}

  get idle(): boolean {
    return this.head === this.entries.length;
  }

  /** Payload bytes waiting here, plus a fixed charge per entry. */
  get cost(): number {
    return this.waitingCost;
  }

  /**
   * Queues a frame. `started` is a compression already running for it (the caller began it because
   * the queue was empty). Resolves once the frame is handed to the connection.
   */
  sendFrame(
    opcode: number,
    payload: Buffer,
    fin: boolean,
    rsv1: boolean,
    compress: boolean,
    started?: Promise<Buffer | undefined>,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = new Entry(opcode, payload, fin, rsv1, compress, undefined, resolve, reject);
      if (started) this.watch(entry, started);
      this.add(entry, payload.length);
    });
  }

  /** Runs `action` once everything queued before it has been handed on; resolves after it ran. */
  runAfter(action: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.add(new Entry(-1, undefined, true, false, false, action, resolve, reject), 0);
    });
  }

  /** Rejects every waiting entry with `error`; later results of the codec are dropped. */
  abort(error: unknown): void {
    if (this.aborted === undefined) this.aborted = error;
    const entries = this.entries;
    for (let i = this.head; i < entries.length; i++) entries[i]!.reject(error);
    entries.length = 0;
    this.head = 0;
    this.waitingCost = 0;
  }

  private add(entry: Entry, bytes: number): void {
    if (this.aborted !== undefined) {
      entry.reject(this.aborted);
      return;
    }
    this.entries.push(entry);
    this.waitingCost += ENTRY_OVERHEAD + bytes;
    this.pump();
  }

  private watch(entry: Entry, encoding: Promise<Buffer | undefined>): void {
    entry.encoding = encoding;
    encoding.then(
      (encoded) => {
        entry.encoded = encoded;
        entry.ready = true;
        this.pump();
      },
      (error: unknown) => {
        if (this.aborted !== undefined) return;
        this.sink.encodeFailed(error);
        // The session aborts the queue when it fails; if it had already ended, settle here.
        entry.reject(error);
      },
    );
  }

  private pump(): void {
    if (this.pumping) return; // an action that queues more: the loop below picks it up
    this.pumping = true;
    try {
      const entries = this.entries;
      while (this.head < entries.length && this.aborted === undefined) {
        const entry = entries[this.head]!;
        if (entry.compress && !entry.ready) {
          if (entry.encoding !== undefined) return; // compressing: its result calls pump again
          const encoding = this.codec?.encode(entry.payload!);
          if (encoding !== undefined) {
            this.watch(entry, encoding);
            return;
          }
          entry.compress = false; // under the threshold: sent as it is
        }
        entries[this.head++] = undefined as never;
        if (this.head >= 1024 && this.head * 2 > entries.length) {
          entries.splice(0, this.head); // always something waiting: keep the array from growing
          this.head = 0;
        }
        this.waitingCost -= ENTRY_OVERHEAD + (entry.payload?.length ?? 0);
        try {
          if (entry.action) entry.action();
          else if (entry.encoded !== undefined)
            this.sink.writeFrame(entry.opcode, entry.encoded, entry.fin, true);
          else this.sink.writeFrame(entry.opcode, entry.payload!, entry.fin, entry.rsv1);
        } catch (error) {
          entry.reject(error);
          continue;
        }
        entry.resolve();
      }
      if (this.head === entries.length) {
        entries.length = 0;
        this.head = 0;
      }
    } finally {
      this.pumping = false;
    }
  }
}
