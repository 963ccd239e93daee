import type { ExtensionOffer } from "../protocol/index.js";

/**
 * A server-side WebSocket extension (RFC 6455 §9). Given the client's offers for its name, in the
 * client's order of preference, it accepts one (returning the response parameters and a factory for
 * the per-session codec) or declines them all.
 */
export interface ServerExtension {
  readonly name: string;
  negotiate(offers: readonly ExtensionOffer[]): AcceptedExtension | undefined;
}

export interface AcceptedExtension {
  /** What goes into the response's Sec-WebSocket-Extensions. */
  readonly response: ExtensionOffer;
  /** Creates the codec of one session. Creation must be cheap: allocate lazily on first use. */
  createCodec(): MessageCodec;
}

/**
 * Transforms whole messages for one session. Calls for one direction never overlap: the session waits
 * for each result before the next call in that direction.
 */
export interface MessageCodec {
  /**
   * Decodes one received message whose first frame had RSV1 set, or, with `final` false, the next
   * fragment of one (raw sessions decode fragment by fragment; the last call has `final` true).
   * Rejects with a `ProtocolError` (1009 when this call's output would exceed `maxSize`, 1007 when the
   * data is corrupt).
   */
  decode(data: Buffer, maxSize: number, final?: boolean): Promise<Buffer>;
  /** Encodes one message to send, or resolves undefined to send it as it is (e.g. under a threshold). */
  encode(data: Buffer): Promise<Buffer | undefined> | undefined;
  /** Frees memory that went unused since the previous call; called periodically by the session. */
  releaseIdle?(): void;
  /** Frees everything (zlib streams); the codec is not used again. */
  close(): void;
  /**
   * An encoder whose output is valid for every session whose codec holds this same object (same
   * parameters, no context kept between messages): a publication is compressed once per encoder.
   */
  readonly sharedEncoder?: MessageEncoder | undefined;
}

/** Encodes messages to send; what `MessageCodec.sharedEncoder` offers. */
export interface MessageEncoder {
  /** Encodes one message, or returns undefined to send it as it is (e.g. under a threshold). */
  encode(data: Buffer): Promise<Buffer | undefined> | undefined;
}
