import { type ExtensionOffer, formatExtensions } from "../protocol/index.js";
import type { MessageCodec, ServerExtension } from "./extension.js";

export interface NegotiatedExtensions {
  /** The Sec-WebSocket-Extensions response value, or undefined when nothing was accepted. */
  header: string | undefined;
  /** Accepted extensions as they appear in the response, for `session.extensions`. */
  accepted: ExtensionOffer[];
  /** The message codec of the accepted extension (only RSV1 users exist: at most one). */
  createCodec: (() => MessageCodec) | undefined;
}

const NONE: NegotiatedExtensions = Object.freeze({ header: undefined, accepted: [], createCodec: undefined });

/**
 * Matches the client's offers against the configured extensions. Each configured extension sees only the
 * offers with its name, in the client's order; the first one that accepts claims RSV1, so later ones
 * are not consulted (two extensions may not share RSV1).
 */
export function negotiateExtensions(
  configured: readonly ServerExtension[],
  offers: readonly ExtensionOffer[],
): NegotiatedExtensions {
  if (configured.length === 0 || offers.length === 0) return NONE;
  for (const extension of configured) {
    const mine = offers.filter((o) => o.name.toLowerCase() === extension.name);
    if (mine.length === 0) continue;
    const accepted = extension.negotiate(mine);
    if (accepted) {
      return {
        header: formatExtensions([accepted.response]),
        accepted: [accepted.response],
        createCodec: accepted.createCodec,
      };
    }
  }
  return NONE;
}
