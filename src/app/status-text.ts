import { STATUS_CODES } from "node:http";

/** Reason phrases for status lines. */
export const STATUS_TEXT: Readonly<Record<number, string | undefined>> = STATUS_CODES;
