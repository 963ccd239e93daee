import { Buffer } from "node:buffer";
import { EMPTY, NONE } from "./connection-output.js";

/**
 * Pieces shorter than this are copied once a payload has more than one piece; longer ones are kept as
 * views. A view costs a Buffer object plus the ArrayBuffer and backing store of the read it came from
 * (a few hundred bytes before its own data), so below a few KiB that overhead is a large share of what
 * it holds (a 1-byte read holds ~400 B), while copying a piece this small costs well under a
 * microsecond. At 4 KiB and over, the overhead is a few percent and a view saves copying the piece
 * twice (into the gather buffer, then into the joined payload).
 */
export const GATHER_COPY_LIMIT = 4096;
/**
 * A shorter piece is still kept as a view when it comes from the same read as the piece before it
 * (small fragments of a message, several to a read): that read is held anyway, so the view costs only
 * its Buffer object (~140 B, about 2 B per byte at this size), while copying each fragment into a
 * segment of its own (a header announces only its frame) cut such messages' throughput by about half.
 */
const SHARED_VIEW_MIN = 64;
/** The first segment's size, unless the headers announce less. At least GATHER_COPY_LIMIT. */
const MIN_SEGMENT = 4096;
/**
 * A full segment shorter than this (its frame announced few bytes) is copied into the next one instead
 * of becoming a part: a part with its own ArrayBuffer costs ~200 B (under 1 B per byte from this size
 * on), and carrying copies at most this many bytes per frame (more costs tiny frames throughput).
 */
const CARRY_LIMIT = 256;

/**
 * One payload (data message, data frame or control frame) collected from the pieces the frame parser
 * passes on, so that what it holds stays proportional to the bytes received, however they are chunked.
 *
 * A payload that arrives as one piece is returned as that piece: no copy. Once there is a second piece,
 * small pieces (the first one included) are copied into segments that together double in size when
 * full: each new segment is as large as everything copied so far, and never larger than the bytes the
 * headers have announced and not yet delivered (a huge announced length is not allocated up front).
 * Segments written in full are exactly the bytes they hold, so a payload gathered into one segment is
 * returned without a second copy. Large pieces, pieces from the read the piece before came from, and
 * the piece that completes the payload are kept as views; the parts are joined with one copy at the
 * end.
 *
 * Held: segments of at most 2 bytes per byte copied (plus one MIN_SEGMENT), none of them a slice of
 * Node's shared pool once kept; per view, a Buffer object for at least SHARED_VIEW_MIN bytes, and the
 * read it came from (bytes received).
 */
export class GatherBuffer {
  /** Payload bytes added since the last `take`. */
  size = 0;
  /** The only piece so far (most payloads): returned as it is. */
  private first: Buffer | undefined;
  /** In order: views of pieces and ranges of segments, for everything before `start`. */
  private parts: Buffer[] = NONE as never;
  /** The segment small pieces are copied into; [start, used) of it is not in `parts` yet. */
  private segment: Buffer | undefined;
  private start = 0;
  private used = 0;
  private segmentBytes = 0;
  /** Bytes copied into segments since the last `take`. */
  private copied = 0;
  /** The memory of the piece before (the read it came from). */
  private lastMemory: ArrayBufferLike | undefined;

  /** Bytes allocated for copies of small pieces since the last `take`, filled or not. */
  get gatherCapacity(): number {
    return this.segmentBytes;
  }

  /**
   * Adds the next piece. `announced`: the payload's length as far as the headers received so far tell
   * (the piece included). `endsThere`: the payload ends once `announced` bytes have arrived (false for
   * a message whose current frame is not its last).
   */
  add(piece: Buffer, announced: number, endsThere: boolean): void {
    // Kept this small so that the one-piece path inlines into the connection's.
    if (this.size === 0) {
      this.first = piece;
      this.size = piece.length;
    } else this.addMore(piece, announced, endsThere && this.size + piece.length === announced);
  }

  /** The whole payload; the buffer is then empty for the next one. */
  take(): Buffer {
    const first = this.first;
    if (first === undefined) return this.join();
    this.first = undefined;
    this.size = 0;
    return first;
  }

  private join(): Buffer {
    // The last bytes are joined at once (or are the whole payload): no need to copy them out first.
    const rest = this.unflushed();
    if (rest !== undefined) this.push(rest);
    const parts = this.parts;
    const out = parts.length === 1 ? parts[0]! : parts.length === 0 ? EMPTY : Buffer.concat(parts, this.size);
    this.parts = NONE as never;
    this.segment = undefined;
    this.start = 0;
    this.used = 0;
    this.segmentBytes = 0;
    this.copied = 0;
    this.lastMemory = undefined;
    this.size = 0;
    return out;
  }

  /** A second or later piece; `final`: it completes the payload. */
  private addMore(piece: Buffer, announced: number, final: boolean): void {
    const first = this.first;
    if (first !== undefined) {
      this.first = undefined;
      if (final) {
        // Two pieces, joined at once: copying the first into a segment would only add a copy.
        this.parts = [first, piece];
        this.size += piece.length;
        return;
      }
      this.size = 0;
      // The first piece stays a view too when the second one comes from the same read.
      this.lastMemory = piece.buffer;
      this.store(first, announced, false);
    }
    this.store(piece, announced, final);
  }

  private store(piece: Buffer, announced: number, final: boolean): void {
    const n = piece.length;
    const segment = this.segment;
    const memory = piece.buffer;
    // The final piece goes into the segment when that makes the segment the whole payload.
    const copy = final
      ? this.parts.length === 0 && segment !== undefined && segment.length - this.used >= n
      : n < GATHER_COPY_LIMIT && (n < SHARED_VIEW_MIN || memory !== this.lastMemory);
    this.lastMemory = memory;
    if (copy) this.copy(piece, announced);
    else {
      if (this.used !== this.start) this.flush(!final);
      this.push(piece);
    }
    this.size += n;
  }

  /** Copies a piece into the segment, starting a new one when it is full. `size` excludes the piece. */
  private copy(piece: Buffer, announced: number): void {
    const n = piece.length;
    const copiedBefore = this.copied;
    this.copied = copiedBefore + n;
    let done = 0;
    let carried = 0;
    const old = this.segment;
    if (old !== undefined) {
      done = Math.min(n, old.length - this.used);
      if (done > 0) {
        old.set(done === n ? piece : piece.subarray(0, done), this.used);
        this.used += done;
      }
      if (done === n) return;
      // Full. A short segment no part refers to moves into the next one, so that a message of many
      // tiny frames is not one part per frame.
      if (this.start === 0 && old.length < CARRY_LIMIT) carried = old.length;
      else this.flush();
      // A pooled segment is garbage now (carried, or its parts copied out by flush).
      if (old.length < CARRY_LIMIT) this.segmentBytes -= old.length;
    }
    // As large as everything copied so far, this piece included (so the segments' total doubles; views
    // do not count, or a payload of mostly views would get mostly empty segments), or MIN_SEGMENT; never
    // beyond what the headers announced. The rest of the piece always fits.
    const rest = n - done;
    const room = announced - this.size - done;
    const capacity = Math.min(room + carried, Math.max(MIN_SEGMENT, copiedBefore + n));
    // Short segments come from Node's shared pool (an ArrayBuffer each would cost tiny frames most of
    // their throughput); being short, they are carried or copied out rather than kept (see `flush`).
    const segment = capacity < CARRY_LIMIT ? Buffer.allocUnsafe(capacity) : Buffer.allocUnsafeSlow(capacity);
    if (carried > 0) segment.set(old!, 0);
    segment.set(done === 0 ? piece : piece.subarray(done), carried);
    this.segment = segment;
    this.start = 0;
    this.used = carried + rest;
    this.segmentBytes += capacity;
  }

  /** Moves the segment's bytes not yet in `parts` there; `keep`: they stay there a while. */
  private flush(keep = true): void {
    let part = this.unflushed();
    if (part === undefined) return;
    if (keep && this.segment!.length < CARRY_LIMIT) {
      // A pooled segment: a part kept as a view of it would hold its whole 8 KiB pool slab.
      const own = Buffer.allocUnsafeSlow(part.length);
      own.set(part);
      part = own;
      this.segmentBytes += own.length;
    }
    this.push(part);
    this.start = this.used;
  }

  /** The segment's bytes not yet in `parts`, as a view; undefined when there are none. */
  private unflushed(): Buffer | undefined {
    const segment = this.segment;
    if (segment === undefined || this.used === this.start) return undefined;
    return this.start === 0 && this.used === segment.length
      ? segment
      : segment.subarray(this.start, this.used);
  }

  private push(part: Buffer): void {
    if (this.parts === NONE) this.parts = [part];
    else this.parts.push(part);
  }
}
