/**
 * Header grammar for the opening handshake: RFC 7230 `#rule` lists of tokens (Upgrade, Connection,
 * Sec-WebSocket-Protocol) and the RFC 6455 §9.1 Sec-WebSocket-Extensions grammar.
 */

export type HeaderValue = string | readonly string[] | undefined;

/** One extension offered or accepted: its name and its parameters in order (`true` for no value). */
export interface ExtensionOffer {
  name: string;
  params: Array<[name: string, value: string | true]>;
}

// tchar per RFC 7230 §3.2.6, indexed by char code.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1;
}

export function isToken(s: string): boolean {
  return isTokenRange(s, 0, s.length);
}

/** Whether s[from, to) is a token (non-empty, tchar only). */
export function isTokenRange(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** HTAB, SP, visible ASCII and obs-text (0x80-0xFF), nothing else (RFC 9110 §5.5). */
export function isFieldValueRange(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return false;
  }
  return true;
}

/** Joins repeated header lines into one list value (a repeated list header means the same as commas). */
function joined(value: HeaderValue): string {
  if (value === undefined) return "";
  return typeof value === "string" ? value : value.join(",");
}

/**
 * Parses a comma-separated token list (empty elements are allowed and skipped, RFC 7230 §7).
 * Returns undefined when an element is not a token.
 */
export function parseTokenList(value: HeaderValue): string[] | undefined {
  const out: string[] = [];
  for (const part of joined(value).split(",")) {
    const t = trimOws(part);
    if (t === "") continue;
    if (!isToken(t)) return undefined;
    out.push(t);
  }
  return out;
}

/**
 * Whether a token list contains `token`, compared case-insensitively; false when
 * an element is not a token. Same answer as searching parseTokenList's result, without allocating.
 */
export function hasToken(value: HeaderValue, token: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "string") return hasToken(joined(value), token);
  const wanted = token.toLowerCase();
  let found = false;
  let i = 0;
  const n = value.length;
  while (i <= n) {
    let end = value.indexOf(",", i);
    if (end < 0) end = n;
    const a = owsEnd(value, i, end);
    const b = owsStart(value, a, end);
    if (a < b) {
      let match = b - a === wanted.length;
      for (let k = a; k < b; k++) {
        const c = value.charCodeAt(k);
        if (c >= 128 || TCHAR[c] === 0) return false;
        // A-Z folds to a-z; every other character must match as it is.
        if (match && (c >= 65 && c <= 90 ? c | 0x20 : c) !== wanted.charCodeAt(k - a)) match = false;
      }
      if (match) found = true;
    }
    i = end + 1;
  }
  return found;
}

/** Optional whitespace around list elements and field values: SP and HTAB (RFC 9110 §5.6.3). */
function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

/** The first index in s[from, to) that is not SP or HTAB (`to` if there is none). */
export function owsEnd(s: string, from: number, to: number): number {
  let i = from;
  while (i < to && isOws(s.charCodeAt(i))) i++;
  return i;
}

/** Where trailing SP and HTAB of s[from, to) begin (`from` if it is all whitespace). */
export function owsStart(s: string, from: number, to: number): number {
  let i = to;
  while (i > from && isOws(s.charCodeAt(i - 1))) i--;
  return i;
}

/** Removes SP and HTAB (only those) from both ends. */
export function trimOws(s: string): string {
  const a = owsEnd(s, 0, s.length);
  const b = owsStart(s, a, s.length);
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * Parses Sec-WebSocket-Extensions (RFC 6455 §9.1):
 *   extension-list = 1#extension; extension = token *( ";" extension-param )
 *   extension-param = token [ "=" (token | quoted-string) ]
 * A quoted value must itself be a token once unquoted. Returns undefined on any syntax error.
 */
export function parseExtensions(value: HeaderValue): ExtensionOffer[] | undefined {
  const src = joined(value);
  const out: ExtensionOffer[] = [];
  let i = 0;
  const n = src.length;
  const skipOws = () => {
    while (i < n && (src[i] === " " || src[i] === "\t")) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n) {
      const c = src.charCodeAt(i);
      if (c >= 128 || TCHAR[c] === 0) break;
      i++;
    }
    return src.slice(start, i);
  };
  while (i < n) {
    skipOws();
    if (src[i] === ",") {
      i++; // empty list element
      continue;
    }
    if (i >= n) break;
    const name = readToken();
    if (name === "") return undefined;
    const offer: ExtensionOffer = { name, params: [] };
    skipOws();
    while (src[i] === ";") {
      i++;
      skipOws();
      const param = readToken();
      if (param === "") return undefined;
      skipOws();
      let paramValue: string | true = true;
      if (src[i] === "=") {
        i++;
        skipOws();
        if (src[i] === '"') {
          const quoted = readQuoted(src, i);
          if (!quoted) return undefined;
          i = quoted.end;
          if (!isToken(quoted.value)) return undefined;
          paramValue = quoted.value;
        } else {
          paramValue = readToken();
          if (paramValue === "") return undefined;
        }
        skipOws();
      }
      offer.params.push([param, paramValue]);
    }
    if (i < n && src[i] !== ",") return undefined;
    out.push(offer);
  }
  return out;
}

/** Reads a quoted-string starting at `start` (the opening quote); handles quoted-pairs. */
function readQuoted(src: string, start: number): { value: string; end: number } | undefined {
  let value = "";
  for (let i = start + 1; i < src.length; i++) {
    const ch = src[i]!;
    if (ch === '"') return { value, end: i + 1 };
    if (ch === "\\") {
      i++;
      if (i >= src.length) return undefined;
      value += src[i];
    } else {
      value += ch;
    }
  }
  return undefined;
}

/** Formats extensions for a response header: `name; p1; p2=v`. */
export function formatExtensions(list: readonly ExtensionOffer[]): string {
  return list
    .map((e) => [e.name, ...e.params.map(([k, v]) => (v === true ? k : `${k}=${v}`))].join("; "))
    .join(", ");
}
