import type { Buffer } from "node:buffer";
import type { MessageEncoder } from "../extensions/index.js";
import { encodeFrame, Opcode } from "../protocol/index.js";

/** What became of a publication at one session (see `WebSocketSession.deliverPublication`). */
export type Delivery = typeof QUEUED | typeof SLOW | typeof SKIPPED;
/** Queued for sending, in order with the session's own sends. */
export const QUEUED = 0;
/** The session is over its outgoing high-water mark: nothing was queued. */
export const SLOW = 1;
/** The session is closing, or is in the middle of sending a fragmented message: nothing was queued. */
export const SKIPPED = 2;

/**
 * One message sent to many sessions, encoded once: one frame (header and payload) shared by every
 * session that sends it uncompressed, and one compression per shared encoder for the sessions that
 * negotiated permessage-deflate without server context takeover. Nothing here is written to after
 * it is made, so the same buffers sit in every session's output.
 */
export class Publication {
  readonly opcode: number;
  private encodedFrame: Buffer[] | undefined;
  private compressed: Map<MessageEncoder, Promise<Buffer | undefined> | undefined> | undefined;
  /** Frames and compressions made, for the statistics and for the tests that count them. */
  framesEncoded = 0;
  compressions = 0;

  constructor(
    readonly payload: Buffer,
    binary: boolean,
    /** false: sessions with permessage-deflate get it uncompressed too. */
    readonly compress: boolean,
  ) {
    this.opcode = binary ? Opcode.Binary : Opcode.Text;
  }

  /** The uncompressed frame, made on first use. */
  frame(): Buffer[] {
    if (this.encodedFrame === undefined) {
      this.encodedFrame = encodeFrame(this.opcode, this.payload);
      this.framesEncoded++;
    }
    return this.encodedFrame;
  }

  /** The payload compressed by `encoder` (one compression, whoever asks), or undefined to send it as it is. */
  compressedBy(encoder: MessageEncoder): Promise<Buffer | undefined> | undefined {
    this.compressed ??= new Map();
    if (this.compressed.has(encoder)) return this.compressed.get(encoder);
    const encoding = encoder.encode(this.payload);
    if (encoding !== undefined) this.compressions++;
    this.compressed.set(encoder, encoding);
    return encoding;
  }
}
