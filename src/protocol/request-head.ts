import { Buffer } from "node:buffer";
import { hasToken, isFieldValueRange, isTokenRange, owsEnd, owsStart } from "./header-grammar.js";

/**
 * A WebSocket upgrade request head read straight off a socket, for servers that answer upgrades without
 * node:http's parser. The reader is deliberately narrow: it recognises the plain form every WebSocket
 * client sends (RFC 9112 §2-§5 and RFC 6455 §4.1) and gives up on anything else, so that the caller can
 * hand the bytes, untouched, to a full HTTP parser. Giving up is never wrong; accepting must agree with
 * what node:http would have parsed (same method, target and lower-cased header map).
 */
export interface UpgradeHead {
  readonly method: "GET";
  /** The request target as sent (origin form, or absolute form from a proxy). */
  readonly url: string;
  readonly httpVersion: "1.1";
  /** Lower-cased names, values with surrounding spaces and tabs removed; each name appears once. */
  readonly headers: Record<string, string>;
}

/** Most header lines an upgrade head may have here; a longer one goes to the full parser. */
export const MAX_UPGRADE_HEAD_LINES = 64;

const CRLF_CRLF = Buffer.from("\r\n\r\n");
const CR = 0x0d;
const LF = 0x0a;
// RFC 3986 characters only (a narrower set than node:http accepts, which is the point).
const TARGET = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;

/**
 * Where the head ends: the index just past the blank line (CRLF CRLF), or -1 while it is incomplete. `from`
 * lets a caller that appends chunks resume the search near the end of what it searched before.
 *
 * Returns 0 when an incomplete head already has a bare LF (one not after a CR): readUpgradeHead never
 * accepts such a head, so it is for the full parser now. node:http refuses it as soon as it reads that
 * LF (unless its lenient parser is on); waiting for a CRLF CRLF that may never come would only hold
 * that answer back until the handshake timeout.
 */
export function findHeadEnd(bytes: Buffer, from = 0): number {
  const at = bytes.indexOf(CRLF_CRLF, Math.max(0, from - 3));
  if (at >= 0) return at + 4;
  // Only incomplete heads are scanned (a whole one with a bare LF is refused by readUpgradeHead), and
  // only the bytes added since the last search: the ones before have been scanned already.
  for (let lf = bytes.indexOf(LF, from); lf >= 0; lf = bytes.indexOf(LF, lf + 1)) {
    if (bytes[lf - 1] !== CR) return 0;
  }
  return -1;
}

/**
 * Reads `head` (the bytes before the blank line, as latin1 text, without the final CRLF CRLF) as a
 * WebSocket upgrade request: `GET <target> HTTP/1.1`, header fields without folding, duplicates or a
 * body, and both `Upgrade: websocket` and `Connection: upgrade`. Returns undefined for anything else.
 * `bytes`, if given, are the same bytes (see `take` below).
 */
export function readUpgradeHead(head: string, bytes?: Buffer): UpgradeHead | undefined {
  // V8 makes a string of 13 or more characters cut from a longer one a view that keeps the whole text
  // alive. The url and header values live as long as the session, so when the head's bytes are given,
  // long ones are made from them as strings of their own.
  const take = (a: number, b: number): string =>
    bytes !== undefined && b - a >= 13 ? bytes.toString("latin1", a, b) : head.slice(a, b);
  let end = head.indexOf("\r\n");
  if (end < 0) end = head.length;
  // "GET " + target + " HTTP/1.1"
  if (!head.startsWith("GET ") || head.slice(end - 9, end) !== " HTTP/1.1") return undefined;
  const url = take(4, end - 9);
  if (!TARGET.test(url)) return undefined;
  const headers: Record<string, string> = {};
  // Names are read from one lower-cased copy (token characters are ASCII), values from the original.
  const lower = head.toLowerCase();
  let lines = 0;
  let start = end + 2;
  while (start < head.length) {
    if (++lines > MAX_UPGRADE_HEAD_LINES) return undefined;
    end = head.indexOf("\r\n", start);
    if (end < 0) end = head.length;
    const colon = head.indexOf(":", start);
    // Also rules out folding: a line that starts with SP or HTAB has no token before its colon.
    if (colon < 0 || colon > end || !isTokenRange(head, start, colon)) return undefined;
    const key = lower.slice(start, colon);
    // A repeated field is joined or dropped by node:http depending on its name; a body needs framing;
    // "__proto__" would not be an ordinary property. All of them: the full parser's business.
    if (
      Object.hasOwn(headers, key) ||
      key === "content-length" ||
      key === "transfer-encoding" ||
      key === "__proto__"
    )
      return undefined;
    const a = owsEnd(head, colon + 1, end);
    const b = owsStart(head, a, end);
    if (!isFieldValueRange(head, a, b)) return undefined;
    headers[key] = take(a, b);
    start = end + 2;
  }
  if (!hasToken(headers.upgrade, "websocket") || !hasToken(headers.connection, "upgrade")) return undefined;
  return { method: "GET", url, httpVersion: "1.1", headers };
}
