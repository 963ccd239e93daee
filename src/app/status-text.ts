import { STATUS_CODES } from "node:http";

/** Reason phrases for status lines. */
export const STATUS_TEXT: Readonly<Record<number, string | undefined>> = STATUS_CODES;

/** A status line and `Connection: close`, no body: how a connection is turned away before a request. */
export function closingResponse(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\n\r\n`;
}
