import { AppError, type ExtensionOffer } from "../protocol/index.js";
import { DeflateCodec, SharedDeflater } from "./deflate-codec.js";
import type { AcceptedExtension, ServerExtension } from "./extension.js";
import { ConcurrencyLimiter } from "./zlib-limiter.js";

export interface PermessageDeflateOptions {
  /** Messages smaller than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number;
  /** zlib compression level 0–9. Default 6 (zlib's default). */
  level?: number;
  /** zlib memLevel 1–9: memory for compression state, 2^(memLevel+9) bytes. Default 8. */
  memLevel?: number;
  /** Largest window we compress with, 9–15 (zlib cannot honour 8). Default 15. */
  serverMaxWindowBits?: number;
  /** Window we ask the client to compress with, 8–15, when it says it can be limited. Default 15. */
  clientMaxWindowBits?: number;
  /** Reset our compression context after every message (less memory, worse ratio). Default false. */
  serverNoContextTakeover?: boolean;
  /** Ask the client to reset its context after every message. Default false. */
  clientNoContextTakeover?: boolean;
  /** zlib operations in flight at once across every session using this extension. Default 10. */
  concurrency?: number;
}

type Params = {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number | undefined;
  /** true: offered without a value. */
  clientMaxWindowBits: number | true | undefined;
};

const WINDOW_BITS = /^(?:8|9|1[0-5])$/;

/**
 * Reads one permessage-deflate offer (RFC 7692 §7.1). Returns undefined for an offer that must be
 * declined: an unknown parameter, an invalid value, or a parameter given twice.
 */
export function parseDeflateOffer(offer: ExtensionOffer): Params | undefined {
  const params: Params = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
  };
  const seen = new Set<string>();
  for (const [name, value] of offer.params) {
    const key = name.toLowerCase();
    if (seen.has(key)) return undefined;
    seen.add(key);
    switch (key) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== true) return undefined;
        params[key === "server_no_context_takeover" ? "serverNoContextTakeover" : "clientNoContextTakeover"] =
          true;
        break;
      case "server_max_window_bits":
        if (value === true || !WINDOW_BITS.test(value)) return undefined;
        params.serverMaxWindowBits = Number(value);
        break;
      case "client_max_window_bits":
        if (value !== true && !WINDOW_BITS.test(value)) return undefined;
        params.clientMaxWindowBits = value === true ? true : Number(value);
        break;
      default:
        return undefined;
    }
  }
  return params;
}

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new AppError(
      "INVALID_OPTION",
      `permessageDeflate option ${name} must be an integer from ${min} to ${max}, got ${value}`,
    );
  }
  return value;
}

/** The permessage-deflate extension (RFC 7692), for `WebSockets` option `extensions`. */
export function permessageDeflate(options: PermessageDeflateOptions = {}): ServerExtension {
  const threshold = checkRange("threshold", options.threshold ?? 1024, 0, Number.MAX_SAFE_INTEGER);
  const level = checkRange("level", options.level ?? 6, 0, 9);
  const memLevel = checkRange("memLevel", options.memLevel ?? 8, 1, 9);
  const serverMax = checkRange("serverMaxWindowBits", options.serverMaxWindowBits ?? 15, 9, 15);
  const clientMax = checkRange("clientMaxWindowBits", options.clientMaxWindowBits ?? 15, 8, 15);
  const limiter = new ConcurrencyLimiter(checkRange("concurrency", options.concurrency ?? 10, 1, 1_000_000));
  // By window size: every session without server context takeover and with the same window shares one.
  const shared = new Map<number, SharedDeflater>();
  const sharedFor = (windowBits: number): SharedDeflater => {
    let encoder = shared.get(windowBits);
    if (!encoder) {
      encoder = new SharedDeflater({
        deflateWindowBits: windowBits,
        inflateWindowBits: 15,
        inflateNoContextTakeover: true,
        level,
        memLevel,
        threshold,
        limiter,
      });
      shared.set(windowBits, encoder);
    }
    return encoder;
  };

  const accept = (offer: Params): AcceptedExtension | undefined => {
    const serverBits = Math.min(serverMax, offer.serverMaxWindowBits ?? 15);
    // The client demands a window zlib cannot produce (8): decline this offer (§7.1.2.1 allows it).
    if (serverBits < 9) return undefined;
    const serverNoContext = offer.serverNoContextTakeover || (options.serverNoContextTakeover ?? false);
    const clientNoContext = offer.clientNoContextTakeover || (options.clientNoContextTakeover ?? false);
    const response: ExtensionOffer = { name: "permessage-deflate", params: [] };
    if (serverNoContext) response.params.push(["server_no_context_takeover", true]);
    if (clientNoContext) response.params.push(["client_no_context_takeover", true]);
    if (offer.serverMaxWindowBits !== undefined || serverBits < 15) {
      response.params.push(["server_max_window_bits", String(serverBits)]);
    }
    // We may limit the client's window only if it said it supports the parameter (§7.1.2.2).
    let clientBits = 15;
    if (offer.clientMaxWindowBits !== undefined) {
      const offered = offer.clientMaxWindowBits === true ? 15 : offer.clientMaxWindowBits;
      clientBits = Math.min(clientMax, offered);
      if (clientBits < offered || offer.clientMaxWindowBits !== true) {
        response.params.push(["client_max_window_bits", String(clientBits)]);
      }
    }
    return {
      response,
      createCodec: () =>
        new DeflateCodec({
          deflateWindowBits: serverBits,
          inflateWindowBits: clientBits,
          deflateNoContextTakeover: serverNoContext,
          inflateNoContextTakeover: clientNoContext,
          level,
          memLevel,
          threshold,
          limiter,
          sharedEncoder: serverNoContext ? sharedFor(serverBits) : undefined,
        }),
    };
  };

  return {
    name: "permessage-deflate",
    negotiate(offers) {
      // The first acceptable offer wins: the client lists them in order of preference (§5.1 of RFC 7692).
      for (const offer of offers) {
        const params = parseDeflateOffer(offer);
        const accepted = params && accept(params);
        if (accepted) return accepted;
      }
      return undefined;
    },
  };
}
