/**
 * The chat's wire format and its rules for what users may type.
 *
 * Server → page: one JSON object per message, with a `type`. System lines (joined, left, gap, error) and
 * user messages are different types, so no text a user sends can become a system line: the page builds
 * each line from the fields, with textContent. Page → server: the message text, as a text frame.
 */

/** Longest user or room name, in code points. */
export const MAX_NAME_LENGTH = 32;
/** Longest message, in code points. */
export const MAX_TEXT_LENGTH = 1000;

export type ChatEvent =
  | { type: "joined"; room: string; name: string }
  | { type: "left"; room: string; name: string }
  | { type: "message"; room: string; name: string; text: string }
  /** The backplane reconnected: messages of this room may have been missed. */
  | { type: "gap"; room: string }
  /** To one member only: why what it sent was not published. */
  | { type: "error"; text: string };

export const encodeEvent = (event: ChatEvent): string => JSON.stringify(event);

/** The topic of a room. */
export const roomTopic = (room: string): string => `room:${room}`;

export type Checked = { ok: true; value: string } | { ok: false; reason: string };

/*
 * Refused in names: controls (line breaks included), format characters (bidi embeddings, overrides,
 * isolates and marks, zero-width spaces and joiners, the BOM, tags), line and paragraph separators,
 * private-use and surrogate code points, noncharacters, and characters that render as nothing at all
 * (default-ignorables such as the Hangul fillers, and the Braille blank); variation selectors stay, for
 * emoji. Any of these lets a name hide text, reorder what follows it, or pass for another user's name.
 */
const HIDDEN_OR_CONTROL =
  /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cs}\p{Noncharacter_Code_Point}\u2800]|(?![\uFE00-\uFE0F])\p{Default_Ignorable_Code_Point}/u;
/** Spaces other than U+0020 (no-break, ideographic, en/em spaces...): look like a space, compare unequal. */
const ODD_SPACE = /(?! )\p{Zs}/u;
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

/** Checks a user or room name (`what` is "Name" or "Room"); the reason fits a close frame. */
export function checkName(raw: string | null | undefined, what: "Name" | "Room"): Checked {
  // Only plain spaces are trimmed: a line break or BOM at either end is refused like one inside.
  const value = (raw ?? "").normalize("NFC").replace(/^ +| +$/g, "");
  if (value === "") return { ok: false, reason: `${what} required` };
  if (codePoints(value) > MAX_NAME_LENGTH)
    return { ok: false, reason: `${what} too long (at most ${MAX_NAME_LENGTH} characters)` };
  if (HIDDEN_OR_CONTROL.test(value))
    return { ok: false, reason: `${what} has control, bidi or invisible characters` };
  if (ODD_SPACE.test(value)) return { ok: false, reason: `${what} may only contain plain spaces` };
  // A name of punctuation alone ("*", "—") would read as decoration rather than as someone.
  if (!LETTER_OR_DIGIT.test(value)) return { ok: false, reason: `${what} needs a letter or digit` };
  return { ok: true, value };
}

/** Line breaks and other controls: a message stays one line. */
const BREAKS_AND_CONTROLS = /[\p{Cc}\p{Zl}\p{Zp}]+/gu;
/** Bidi embeddings, overrides and isolates: they reorder text around them (the page isolates each field too). */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/gu;

/**
 * A message as it is published: controls and line breaks become one space, bidi embeddings, overrides
 * and isolates are removed, ends trimmed. Empty or over MAX_TEXT_LENGTH: refused.
 */
export function cleanText(raw: string): Checked {
  const value = raw.replace(BREAKS_AND_CONTROLS, " ").replace(BIDI_CONTROLS, "").normalize("NFC").trim();
  if (value === "") return { ok: false, reason: "Empty message" };
  if (codePoints(value) > MAX_TEXT_LENGTH)
    return { ok: false, reason: `Message too long (at most ${MAX_TEXT_LENGTH} characters)` };
  return { ok: true, value };
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export interface RateOptions {
  /** Messages a member may send at once. */
  burst: number;
  /** Messages per second it may send on average. */
  perSecond: number;
}

/**
 * Messages a member may still send (a token bucket). Without it one member could publish thousands of
 * messages in one event-loop turn, and every reader of the room would find itself over its high-water
 * mark and be closed as too slow.
 */
export class RateLimit {
  private tokens: number;
  private last: number;

  constructor(
    private readonly options: RateOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = options.burst;
    this.last = now();
  }

  /** Takes one message's token: false when the member is over its rate. */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(
      this.options.burst,
      this.tokens + ((now - this.last) / 1000) * this.options.perSecond,
    );
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}
