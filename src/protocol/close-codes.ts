/**
 * Close status codes (RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry").
 * 1005, 1006 and 1015 are reserved for reporting and never appear on the wire.
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatusReceived: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  TlsHandshake: 1015,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Whether `code` may be sent in a Close frame (§7.4.1, §7.4.2 and the IANA registry):
 * 1000–1003 and 1007–1014 are registered for use on the wire, 3000–4999 belong to libraries and
 * applications. 1004 is reserved, 1005/1006/1015 are for reporting only, the rest of 1000–2999 is
 * unassigned, and anything below 1000 or above 4999 is invalid.
 */
export function isValidWireCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false;
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}
