export { CloseCode, isValidWireCloseCode } from "./close-codes.js";
export {
  type CloseInfo,
  Connection,
  type ConnectionOptions,
  type ConnectionState,
  DEFAULT_MAX_FRAGMENTS,
  DEFAULT_MAX_MESSAGE_SIZE,
  MAX_CLOSE_REASON_BYTES,
  MAX_PENDING_PONGS,
  type Side,
  truncateReason,
} from "./connection.js";
export {
  AppError,
  type AppErrorCode,
  HANDSHAKE_ERROR_BODY_LIMIT,
  HandshakeError,
  type HandshakeErrorCode,
  ProtocolError,
  type ProtocolErrorCode,
  UsageError,
  type UsageErrorCode,
} from "./errors.js";
export type { CloseEvent, FrameEvent, MessageEvent, PingEvent, PongEvent, ProtocolEvent } from "./events.js";
export {
  type EncodeOptions,
  encodeFrame,
  type Frame,
  headerSize,
  MAX_HEADER_SIZE,
  toBuffer,
  writeHeader,
} from "./frame.js";
export { type FrameHeader, FrameParser, type FrameSink } from "./frame-parser.js";
export { GATHER_COPY_LIMIT, GatherBuffer } from "./gather-buffer.js";
export {
  acceptResponseHead,
  computeAccept,
  type ExtendedConnectRequest,
  errorResponse,
  generateKey,
  type HandshakeResult,
  isSafeHeaderValue,
  type UpgradeRequest,
  type UpgradeRequestLike,
  validateConnectResponse,
  validateExtendedConnect,
  validateUpgradeRequest,
  validateUpgradeResponse,
  WEBSOCKET_GUID,
  WEBSOCKET_VERSION,
} from "./handshake.js";
export {
  type ExtensionOffer,
  formatExtensions,
  hasToken,
  isFieldValueRange,
  isToken,
  isTokenRange,
  owsEnd,
  owsStart,
  parseExtensions,
  parseTokenList,
  trimOws,
} from "./header-grammar.js";
export { applyMask, applyMaskPortable, nativeMasking } from "./mask.js";
export { isControlOpcode, isKnownOpcode, Opcode } from "./opcodes.js";
export { findHeadEnd, MAX_UPGRADE_HEAD_LINES, readUpgradeHead, type UpgradeHead } from "./request-head.js";
export { isValidUtf8, Utf8Validator } from "./utf8.js";
