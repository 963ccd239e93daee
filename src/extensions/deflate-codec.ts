import { Buffer } from "node:buffer";
import { constants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from "node:zlib";
import { CloseCode, ProtocolError } from "../protocol/index.js";
import type { MessageCodec, MessageEncoder } from "./extension.js";
import type { ConcurrencyLimiter } from "./zlib-limiter.js";

const noop = (): void => {};
const codecClosed = () => new ProtocolError("EXTENSION_FAILED", CloseCode.InternalError, "codec closed");

/** The empty stored block that ends a sync flush; stripped when sending, restored when receiving (RFC 7692 §7.2). */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export interface DeflateCodecOptions {
  /** Window bits for compressing (what the client allowed us). */
  deflateWindowBits: number;
  /** Window bits for decompressing (what we allowed the client). */
  inflateWindowBits: number;
  /** Reset our compression context after every message (server_no_context_takeover). */
  deflateNoContextTakeover: boolean;
  /** The client resets its context after every message (client_no_context_takeover). */
  inflateNoContextTakeover: boolean;
  level: number;
  memLevel: number;
  /** Messages smaller than this many bytes are sent uncompressed. */
  threshold: number;
  limiter: ConcurrencyLimiter;
  /** Offered to publications (see `MessageCodec.sharedEncoder`); only with deflateNoContextTakeover. */
  sharedEncoder?: MessageEncoder | undefined;
}

/**
 * permessage-deflate for one session. zlib streams are created on first use and freed on `close`. With
 * no context takeover in a direction, that direction's stream is reset after each message and freed by
 * `releaseIdle` when it went unused since the previous call (the session calls it on its keepalive
 * rhythm), so an idle session holds no zlib memory there. With context takeover the window is state the
 * peer relies on, and it lives as long as the session.
 */
export class DeflateCodec implements MessageCodec {
  private inflater: InflateRaw | undefined;
  private deflater: DeflateRaw | undefined;
  private closed = false;
  /** Rejecters of operations in progress, so that `close` settles them (zlib may never call back). */
  private readonly inFlight = new Set<() => void>();
  private inflaterUsed = false;
  private deflaterUsed = false;
  /** A stream with an operation in flight is never closed under it (zlib asserts): see `settle`. */
  private readonly busy = new Set<InflateRaw | DeflateRaw>();

  constructor(private readonly options: DeflateCodecOptions) {}

  get sharedEncoder(): MessageEncoder | undefined {
    return this.options.sharedEncoder;
  }

  /** @internal True while a compression stream is allocated. */
  get holdsDeflater(): boolean {
    return this.deflater !== undefined;
  }

  decode(data: Buffer, maxSize: number, final = true): Promise<Buffer> {
    return this.options.limiter.run(() => this.unlessClosed(this.inflate(data, maxSize, final)));
  }

  encode(data: Buffer): Promise<Buffer | undefined> | undefined {
    if (data.length < this.options.threshold) return undefined;
    return this.options.limiter.run(() => this.unlessClosed(this.deflate(data)));
  }

  /** Settles with `work`, unless `close()` comes first: then it rejects, never with partial output. */
  private unlessClosed<T>(work: Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const abort = () => reject(codecClosed());
      this.inFlight.add(abort);
      work.then(
        (value) => {
          this.inFlight.delete(abort);
          if (this.closed) reject(codecClosed());
          else resolve(value);
        },
        (error: unknown) => {
          this.inFlight.delete(abort);
          reject(error);
        },
      );
    });
  }

  releaseIdle(): void {
    // A stream working right now (one long operation can span ticks) is in use, not idle.
    const idle = (stream: InflateRaw | DeflateRaw | undefined) =>
      stream !== undefined && !this.busy.has(stream);
    if (this.options.inflateNoContextTakeover && !this.inflaterUsed && idle(this.inflater))
      this.release("inflater");
    if (this.options.deflateNoContextTakeover && !this.deflaterUsed && idle(this.deflater))
      this.release("deflater");
    this.inflaterUsed = this.deflaterUsed = false;
  }

  close(): void {
    this.closed = true;
    for (const abort of this.inFlight) abort();
    this.inFlight.clear();
    this.release("inflater");
    this.release("deflater");
  }

  private inflate(data: Buffer, maxSize: number, final: boolean): Promise<Buffer> {
    if (this.closed) return Promise.reject(codecClosed());
    // zlib turns a requested window of 8 into 9; a larger window always decodes a smaller one's output.
    // A message that ended with a BFINAL block (RFC 7692 §7.2.3.4) ended the zlib stream: the next
    // message starts a new one.
    if (this.inflater?.readableEnded) this.release("inflater");
    this.inflater ??= createInflateRaw({ windowBits: Math.max(9, this.options.inflateWindowBits) });
    const inflater = this.inflater;
    this.inflaterUsed = true;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let failed = false;
      const cleanup = () => {
        inflater.off("data", onData);
        inflater.off("error", onError);
      };
      const fail = (error: ProtocolError) => {
        if (failed) return;
        failed = true;
        cleanup();
        // The stream's state is unusable now; drop it (the session is failing anyway).
        if (this.inflater === inflater) this.inflater = undefined;
        this.busy.delete(inflater);
        inflater.close();
        reject(error);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        // Checked while inflating: a bomb stops here, without inflating the rest (RFC 7692 §8.1 caution).
        if (size > maxSize) {
          fail(
            new ProtocolError(
              "MESSAGE_TOO_BIG",
              CloseCode.MessageTooBig,
              `inflated message exceeds ${maxSize} bytes`,
            ),
          );
          return;
        }
        chunks.push(chunk);
      };
      const onError = (error: Error) => {
        fail(
          new ProtocolError(
            "EXTENSION_FAILED",
            CloseCode.InvalidPayload,
            `invalid compressed data: ${error.message}`,
          ),
        );
      };
      inflater.on("data", onData);
      inflater.on("error", onError);
      inflater.write(data);
      if (final) inflater.write(TAIL);
      this.busy.add(inflater);
      inflater.flush(() => {
        const usable = this.settle("inflater", inflater);
        if (failed) return;
        cleanup();
        if (!usable) {
          reject(codecClosed()); // closed or released meanwhile: never partial output
          return;
        }
        if (final && this.options.inflateNoContextTakeover) inflater.reset();
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      });
    });
  }

  private deflate(data: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(codecClosed());
    this.deflater ??= createDeflateRaw({
      windowBits: this.options.deflateWindowBits,
      level: this.options.level,
      memLevel: this.options.memLevel,
    });
    const deflater = this.deflater;
    this.deflaterUsed = true;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
      };
      const onError = (error: Error) => {
        deflater.off("data", onData);
        if (this.deflater === deflater) this.deflater = undefined;
        this.busy.delete(deflater);
        deflater.close();
        reject(
          new ProtocolError(
            "EXTENSION_FAILED",
            CloseCode.InternalError,
            `compression failed: ${error.message}`,
          ),
        );
      };
      deflater.on("data", onData);
      deflater.once("error", onError);
      deflater.write(data);
      this.busy.add(deflater);
      deflater.flush(constants.Z_SYNC_FLUSH, () => {
        deflater.off("data", onData);
        deflater.off("error", onError);
        if (!this.settle("deflater", deflater)) {
          reject(codecClosed());
          return;
        }
        let out = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
        // A sync flush ends with the empty stored block 00 00 FF FF: leave it off (§7.2.1).
        if (out.length >= 4 && out.subarray(out.length - 4).equals(TAIL))
          out = out.subarray(0, out.length - 4);
        if (this.options.deflateNoContextTakeover) deflater.reset();
        resolve(out);
      });
    });
  }

  /** Drops a stream; one with an operation in flight is closed when that operation ends (`settle`). */
  private release(which: "inflater" | "deflater"): void {
    const stream = this[which];
    this[which] = undefined;
    if (stream && !this.busy.has(stream)) stream.close();
  }

  /** An operation on `stream` ended. False if the stream was closed or released meanwhile (it is closed now). */
  private settle(which: "inflater" | "deflater", stream: InflateRaw | DeflateRaw): boolean {
    this.busy.delete(stream);
    if (!this.closed && this[which] === stream && !stream.destroyed) return true;
    if (!stream.destroyed) stream.close();
    return false;
  }
}

/** How often a shared encoder checks whether its zlib stream went unused (and frees it). */
const SHARED_IDLE_CHECK = 30_000;

/**
 * One compressor for every session that negotiated the same window and no context takeover: its
 * output does not depend on earlier messages, so one compression serves all of them. Its zlib stream
 * is freed after a quiet period.
 */
export class SharedDeflater implements MessageEncoder {
  private readonly codec: DeflateCodec;
  private readonly threshold: number;
  private timer: NodeJS.Timeout | undefined;
  /** The last compression asked for: one zlib stream does one message at a time, in order. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: Omit<DeflateCodecOptions, "sharedEncoder" | "deflateNoContextTakeover">) {
    this.codec = new DeflateCodec({ ...options, deflateNoContextTakeover: true });
    this.threshold = options.threshold;
  }

  encode(data: Buffer): Promise<Buffer | undefined> | undefined {
    if (data.length < this.threshold) return undefined;
    const encoding = this.tail.then(() => this.codec.encode(data));
    this.tail = encoding.catch(noop);
    if (this.timer === undefined) {
      this.timer = setInterval(() => {
        this.codec.releaseIdle();
        if (!this.codec.holdsDeflater) {
          clearInterval(this.timer);
          this.timer = undefined;
        }
      }, SHARED_IDLE_CHECK);
      this.timer.unref();
    }
    return encoding;
  }
}
