export { HANDSHAKE_ERROR_BODY_LIMIT } from "../protocol/index.js";
export {
  CLIENT_HANDSHAKE_TIMEOUT,
  type ClientCall,
  type ClientOptions,
  type ClientSession,
  connect,
  connectOver,
  DEFAULT_MAX_REDIRECTS,
} from "./connect.js";
export type { ClientDeflateOptions } from "./deflate.js";
