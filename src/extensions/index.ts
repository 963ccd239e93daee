export { DeflateCodec, type DeflateCodecOptions } from "./deflate-codec.js";
export type { AcceptedExtension, MessageCodec, MessageEncoder, ServerExtension } from "./extension.js";
export { type NegotiatedExtensions, negotiateExtensions } from "./negotiate.js";
export { type PermessageDeflateOptions, parseDeflateOffer, permessageDeflate } from "./permessage-deflate.js";
export { ConcurrencyLimiter } from "./zlib-limiter.js";
