import { Buffer, isUtf8 } from "node:buffer";

/**
 * The envelope of a message between nodes on a backplane (Redis):
 *
 *   u8 version (1) | u8 flags | u8 origin length | origin (UTF-8) | u16 BE topic length | topic (UTF-8) | payload
 *
 * The origin lets a node drop its own echo; the topic travels with the payload so the receiver does not
 * trust the channel name alone. Everything from the wire is checked before use: a message that does
 * not parse, or is larger than allowed, is refused with a reason (never an exception).
 */
export const ENVELOPE_VERSION = 1;

/** The payload is bytes (a binary message); otherwise UTF-8 text. */
export const FLAG_BINARY = 0x01;
/** A count request (payload: u32 request id); not a publication. */
export const FLAG_COUNT_REQUEST = 0x02;
/** A count reply (payload: u32 request id, u32 subscriber count); not a publication. */
export const FLAG_COUNT_REPLY = 0x04;
const KNOWN_FLAGS = FLAG_BINARY | FLAG_COUNT_REQUEST | FLAG_COUNT_REPLY;

/** Longest origin (a node id), in bytes: it has a one-byte length. */
export const MAX_ORIGIN_BYTES = 255;
/** Longest topic, in bytes: it has a two-byte length (PubSub's maxTopicLength is at most this too). */
export const MAX_TOPIC_BYTES = 65_535;

export interface Envelope {
  flags: number;
  origin: string;
  topic: string;
  /** A view of the decoded message (not a copy). */
  payload: Buffer;
}

/** Bytes of an envelope besides origin, topic and payload. */
export const ENVELOPE_OVERHEAD = 5;

/**
 * Encodes into one Buffer (one allocation). `origin` is given as bytes because a node encodes its id
 * for every message. Throws a RangeError for an origin or topic too long for its length field.
 */
export function encodeEnvelope(flags: number, origin: Buffer, topic: string, payload: Uint8Array): Buffer {
  if (origin.length === 0 || origin.length > MAX_ORIGIN_BYTES)
    throw new RangeError(`envelope origin must be 1 to ${MAX_ORIGIN_BYTES} bytes`);
  const topicBytes = Buffer.byteLength(topic, "utf8");
  if (topicBytes === 0 || topicBytes > MAX_TOPIC_BYTES)
    throw new RangeError(`envelope topic must be 1 to ${MAX_TOPIC_BYTES} bytes`);
  const out = Buffer.allocUnsafe(ENVELOPE_OVERHEAD + origin.length + topicBytes + payload.length);
  out[0] = ENVELOPE_VERSION;
  out[1] = flags & KNOWN_FLAGS;
  out[2] = origin.length;
  let at = 3 + origin.copy(out, 3);
  out.writeUInt16BE(topicBytes, at);
  at += 2;
  at += out.write(topic, at, topicBytes, "utf8");
  out.set(payload, at);
  return out;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes a message from the wire: the envelope, or a string saying why it is refused (bad version,
 * unknown flags, a length past the end, invalid UTF-8, a payload over `maxPayload`). Never throws.
 */
export function decodeEnvelope(message: Uint8Array, maxPayload: number): Envelope | string {
  const n = message.length;
  if (n < ENVELOPE_OVERHEAD + 2) return `message of ${n} bytes is shorter than an envelope`;
  if (message[0] !== ENVELOPE_VERSION) return `unknown envelope version ${message[0]}`;
  const flags = message[1]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) return `unknown envelope flags 0x${flags.toString(16)}`;
  const originLength = message[2]!;
  if (originLength === 0) return "empty origin";
  let at = 3 + originLength;
  if (at + 2 > n) return "origin runs past the end";
  const topicLength = (message[at]! << 8) | message[at + 1]!;
  at += 2;
  if (topicLength === 0) return "empty topic";
  if (at + topicLength > n) return "topic runs past the end";
  const payloadLength = n - at - topicLength;
  if (payloadLength > maxPayload) return `payload of ${payloadLength} bytes is over ${maxPayload}`;
  let origin: string;
  let topic: string;
  try {
    origin = strictUtf8.decode(message.subarray(3, 3 + originLength));
    topic = strictUtf8.decode(message.subarray(at, at + topicLength));
  } catch {
    return "origin or topic is not valid UTF-8";
  }
  const payload = Buffer.from(message.buffer, message.byteOffset + at + topicLength, payloadLength);
  // A text payload becomes a text message: invalid UTF-8 there would break RFC 6455 for our peers.
  if ((flags & (FLAG_BINARY | FLAG_COUNT_REQUEST | FLAG_COUNT_REPLY)) === 0 && !isUtf8(payload))
    return "text payload is not valid UTF-8";
  return { flags, origin, topic, payload };
}
