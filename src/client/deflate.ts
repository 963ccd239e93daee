import { ConcurrencyLimiter, DeflateCodec, type MessageCodec } from "../extensions/index.js";
import { AppError, type ExtensionOffer } from "../protocol/index.js";

/** The client side of permessage-deflate (RFC 7692): what `connect` offers and accepts. */
export interface ClientDeflateOptions {
  /** Messages smaller than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number;
  /** zlib compression level 0–9. Default 6. */
  level?: number;
  /** zlib memLevel 1–9. Default 8. */
  memLevel?: number;
  /**
   * `client_max_window_bits`: true (default) offers it without a value (the server may limit our window);
   * 9–15 offers that value (we compress with at most it); false leaves it out, and a response that
   * limits our window then fails the connection (§7.1.2.2).
   */
  clientMaxWindowBits?: boolean | number;
  /** `server_max_window_bits`: 8–15 asks the server to compress with at most that window. Default: not offered. */
  serverMaxWindowBits?: number;
  /** `client_no_context_takeover`: we reset our compression context after every message. Default false. */
  clientNoContextTakeover?: boolean;
  /** `server_no_context_takeover`: ask the server to reset its context after every message. Default false. */
  serverNoContextTakeover?: boolean;
}

/** The offer and, once the server has answered, the codec. */
export interface DeflateOffer {
  /** The Sec-WebSocket-Extensions offer. */
  readonly offer: ExtensionOffer;
  /**
   * Checks the server's acceptance (RFC 7692 §7.1). Returns the codec, or a message saying why the
   * connection must fail.
   */
  accept(response: ExtensionOffer): { codec: MessageCodec } | { error: string };
}

/** zlib operations in flight at once across every client connection of the process. */
const CLIENT_ZLIB_CONCURRENCY = 10;
let limiter: ConcurrencyLimiter | undefined;

const WINDOW_BITS = /^(?:8|9|1[0-5])$/;

function range(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new AppError(
      "INVALID_OPTION",
      `permessageDeflate option ${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

/** Validates the options and makes the offer. Throws `AppError` `INVALID_OPTION`. */
export function deflateOffer(options: ClientDeflateOptions = {}): DeflateOffer {
  const threshold = range("threshold", options.threshold ?? 1024, 0, Number.MAX_SAFE_INTEGER);
  const level = range("level", options.level ?? 6, 0, 9);
  const memLevel = range("memLevel", options.memLevel ?? 8, 1, 9);
  const clientMax = options.clientMaxWindowBits ?? true;
  // zlib cannot compress with a window of 8 (it uses 9): we never promise to.
  if (typeof clientMax === "number") range("clientMaxWindowBits", clientMax, 9, 15);
  else if (typeof clientMax !== "boolean")
    throw new AppError(
      "INVALID_OPTION",
      "permessageDeflate option clientMaxWindowBits must be a boolean or 9–15",
    );
  const serverMax =
    options.serverMaxWindowBits === undefined
      ? undefined
      : range("serverMaxWindowBits", options.serverMaxWindowBits, 8, 15);
  const clientNoContext = options.clientNoContextTakeover ?? false;
  const serverNoContext = options.serverNoContextTakeover ?? false;

  const offer: ExtensionOffer = { name: "permessage-deflate", params: [] };
  if (clientNoContext) offer.params.push(["client_no_context_takeover", true]);
  if (serverNoContext) offer.params.push(["server_no_context_takeover", true]);
  if (serverMax !== undefined) offer.params.push(["server_max_window_bits", String(serverMax)]);
  if (clientMax !== false)
    offer.params.push(["client_max_window_bits", clientMax === true ? true : String(clientMax)]);

  const accept = (response: ExtensionOffer): { codec: MessageCodec } | { error: string } => {
    let serverNoContextGot = false;
    let clientNoContextGot = false;
    let serverBits: number | undefined;
    let clientBits: number | undefined;
    const seen = new Set<string>();
    for (const [rawName, value] of response.params) {
      const name = rawName.toLowerCase();
      if (seen.has(name)) return { error: `permessage-deflate parameter ${name} given twice` };
      seen.add(name);
      switch (name) {
        case "server_no_context_takeover":
        case "client_no_context_takeover":
          if (value !== true) return { error: `permessage-deflate parameter ${name} takes no value` };
          // §7.1.1: the server may add either even if we did not ask; both only make things stricter.
          if (name === "server_no_context_takeover") serverNoContextGot = true;
          else clientNoContextGot = true;
          break;
        case "server_max_window_bits":
          if (value === true || !WINDOW_BITS.test(value))
            return { error: "permessage-deflate server_max_window_bits must be 8–15" };
          serverBits = Number(value);
          // §7.1.2.1: no larger than what we offered.
          if (serverMax !== undefined && serverBits > serverMax)
            return { error: `server_max_window_bits ${serverBits} exceeds the ${serverMax} offered` };
          break;
        case "client_max_window_bits":
          // §7.1.2.2: only if we offered it, and with a value.
          if (clientMax === false) return { error: "client_max_window_bits was not offered" };
          if (value === true || !WINDOW_BITS.test(value))
            return { error: "permessage-deflate client_max_window_bits must be 8–15" };
          clientBits = Number(value);
          if (typeof clientMax === "number" && clientBits > clientMax)
            return { error: `client_max_window_bits ${clientBits} exceeds the ${clientMax} offered` };
          break;
        default:
          return { error: `unknown permessage-deflate parameter ${name}` };
      }
    }
    // What we asked of the server must be in its acceptance: a server that cannot do it declines the offer.
    if (serverNoContext && !serverNoContextGot)
      return { error: "server_no_context_takeover was asked for and not accepted" };
    if (serverMax !== undefined && serverBits === undefined)
      return { error: "server_max_window_bits was asked for and not accepted" };
    const deflateBits = clientBits ?? (typeof clientMax === "number" ? clientMax : 15);
    limiter ??= new ConcurrencyLimiter(CLIENT_ZLIB_CONCURRENCY);
    return {
      codec: new DeflateCodec({
        deflateWindowBits: Math.max(9, deflateBits),
        inflateWindowBits: 15, // a larger window decodes a smaller one's output
        deflateNoContextTakeover: clientNoContext || clientNoContextGot,
        inflateNoContextTakeover: serverNoContextGot,
        level,
        memLevel,
        // Limited to a window of 8, which zlib cannot produce: send everything uncompressed (always allowed).
        threshold: deflateBits < 9 ? Number.POSITIVE_INFINITY : threshold,
        limiter,
      }),
    };
  };
  return { offer, accept };
}
