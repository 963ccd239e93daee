import { CloseCode } from "../protocol/index.js";

const NAMES = new Map<number, string>(Object.entries(CloseCode).map(([name, code]) => [code, name]));

/** Why a session ended: a close code (see `CloseCode`) and its reason text. */
export class CloseReason {
  constructor(
    readonly code: number,
    readonly reason = "",
  ) {}

  /** The registered name of the code ("Normal", "GoingAway", ...), if it has one. */
  get knownReason(): string | undefined {
    return NAMES.get(this.code);
  }

  toString(): string {
    return `CloseReason(${this.knownReason ?? this.code}${this.reason ? `, ${this.reason}` : ""})`;
  }
}
