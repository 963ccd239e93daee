import { Buffer } from "node:buffer";
import { isDeepStrictEqual } from "node:util";
import type { ClientSession } from "../client/index.js";
import type { CloseReason, Sendable, SendOptions } from "../session/index.js";
import type { MemorySocket } from "./memory-pair.js";

/** Milliseconds an `expect*` waits by default (real time, even under fake timers). */
export const DEFAULT_EXPECT_TIMEOUT = 2000;

// Captured when this module loads, before a test fakes the clock: an expectation that cannot be met
// fails after real milliseconds instead of hanging on a clock nobody advances.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** An expectation of the test host was not met (wrong message, nothing in time, another close code). */
export class ExpectationError extends Error {
  override readonly name = "ExpectationError";
}

/** The test host was misused, or the test left something behind (a session left open). */
export class TestHostError extends Error {
  override readonly name = "TestHostError";
}

export interface ExpectOptions {
  /** Milliseconds to wait, real time. Default `DEFAULT_EXPECT_TIMEOUT` (2000). */
  timeout?: number;
}

type Received = { type: "text"; text: string } | { type: "binary"; data: Buffer };

const describe = (item: Received | undefined): string =>
  item === undefined
    ? "the end of the messages (the server closed)"
    : item.type === "text"
      ? `text ${JSON.stringify(item.text.length > 200 ? `${item.text.slice(0, 200)}...` : item.text)}`
      : `binary (${item.data.length} bytes)`;

/**
 * A client session of the test host with timed expectations. Every message the server sends is
 * collected as it arrives; each `expect*` takes the next one (in order) or fails with an
 * `ExpectationError` after its timeout. `session` is the client session itself (the same one
 * `connect` gives) for anything else.
 */
export class TestSession {
  private readonly received: Received[] = [];
  private ended = false;
  private waiter: (() => void) | undefined;

  constructor(
    /** The client session. */
    readonly session: ClientSession,
    /** The path (and query) this session connected to. */
    readonly path: string,
    /** @internal The client's end of an in-memory connection; undefined over TCP. */
    private readonly link: MemorySocket | undefined,
  ) {
    void this.collect();
  }

  private async collect(): Promise<void> {
    try {
      for await (const frame of this.session.incoming) {
        this.received.push(
          frame.type === "text" ? { type: "text", text: frame.text } : { type: "binary", data: frame.data },
        );
        this.wake();
      }
    } catch {
      // the session failed: its closeReason says how
    }
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Whether the session is open (not closing, not closed). */
  get isOpen(): boolean {
    return this.session.isOpen;
  }

  send(data: Sendable, options?: SendOptions): Promise<void> {
    return this.session.send(data, options);
  }

  /** Sends `JSON.stringify(value)` as a text message. */
  sendJson(value: unknown): Promise<void> {
    return this.session.send(JSON.stringify(value));
  }

  /** Starts the closing handshake (default 1000); resolves when the Close frame is written. */
  close(code?: number, reason?: string): Promise<void> {
    return this.session.close(code, reason);
  }

  /**
   * In memory only: what this client sends is held, not delivered (an unresponsive client: the
   * server's pings go unanswered), until `resumeOutgoing`. Messages from the server still arrive.
   */
  stallOutgoing(): void {
    this.memoryLink("stallOutgoing").hold();
  }

  /** Delivers what `stallOutgoing` held, in order. */
  resumeOutgoing(): void {
    this.memoryLink("resumeOutgoing").release();
  }

  private memoryLink(what: string): MemorySocket {
    if (this.link === undefined) throw new TestHostError(`${what}() works only with the in-memory transport`);
    return this.link;
  }

  /** The next message, whatever it is; undefined if the server closed first. */
  private async next(what: string, options: ExpectOptions | undefined): Promise<Received | undefined> {
    const timeout = options?.timeout ?? DEFAULT_EXPECT_TIMEOUT;
    if (this.received.length === 0 && !this.ended) {
      let timer: NodeJS.Timeout | undefined;
      const arrived = await new Promise<boolean>((resolve) => {
        this.waiter = () => resolve(true);
        timer = realSetTimeout(() => resolve(false), timeout);
      });
      realClearTimeout(timer);
      if (!arrived) {
        this.waiter = undefined;
        throw new ExpectationError(`${this.path}: expected ${what}, got nothing within ${timeout} ms`);
      }
    }
    return this.received.shift();
  }

  /**
   * Expects the next message to be text (equal to `expected` if a string, matching it if a RegExp,
   * accepted by it if a function). Resolves with the text.
   */
  async expectText(
    expected?: string | RegExp | ((text: string) => boolean),
    options?: ExpectOptions,
  ): Promise<string> {
    const what =
      expected === undefined
        ? "a text message"
        : typeof expected === "function"
          ? "a text message that passes the check"
          : `text ${typeof expected === "string" ? JSON.stringify(expected) : String(expected)}`;
    const item = await this.next(what, options);
    const ok =
      item?.type === "text" &&
      (expected === undefined ||
        (typeof expected === "string"
          ? item.text === expected
          : typeof expected === "function"
            ? expected(item.text)
            : expected.test(item.text)));
    if (!ok) throw new ExpectationError(`${this.path}: expected ${what}, got ${describe(item)}`);
    return (item as { text: string }).text;
  }

  /** Expects the next message to be binary (with these bytes, if given). Resolves with its bytes. */
  async expectBinary(expected?: Uint8Array, options?: ExpectOptions): Promise<Buffer> {
    const what =
      expected === undefined ? "a binary message" : `binary ${Buffer.from(expected).toString("hex")}`;
    const item = await this.next(what, options);
    if (item?.type !== "binary" || (expected !== undefined && !item.data.equals(expected)))
      throw new ExpectationError(
        `${this.path}: expected ${what}, got ${item?.type === "binary" ? `binary ${item.data.toString("hex")}` : describe(item)}`,
      );
    return item.data;
  }

  /**
   * Expects the next message to be text holding JSON (deeply equal to `expected`, if given).
   * Resolves with the parsed value.
   */
  async expectJson<T = unknown>(expected?: T, options?: ExpectOptions): Promise<T> {
    const what = expected === undefined ? "a JSON message" : `JSON ${JSON.stringify(expected)}`;
    const item = await this.next(what, options);
    if (item?.type !== "text")
      throw new ExpectationError(`${this.path}: expected ${what}, got ${describe(item)}`);
    let value: unknown;
    try {
      value = JSON.parse(item.text);
    } catch {
      throw new ExpectationError(
        `${this.path}: expected ${what}, got text that is not JSON: ${describe(item)}`,
      );
    }
    if (expected !== undefined && !isDeepStrictEqual(value, expected))
      throw new ExpectationError(`${this.path}: expected ${what}, got JSON ${item.text}`);
    return value as T;
  }

  /**
   * Expects the server to close (with `code`, if given) with no message before it. Resolves with the
   * close reason once the session has ended.
   */
  async expectClose(code?: number, options?: ExpectOptions): Promise<CloseReason> {
    const what = code === undefined ? "the session to close" : `a close with ${code}`;
    const timeout = options?.timeout ?? DEFAULT_EXPECT_TIMEOUT;
    const item = await this.next(what, options);
    if (item !== undefined)
      throw new ExpectationError(`${this.path}: expected ${what}, got ${describe(item)}`);
    let timer: NodeJS.Timeout | undefined;
    const reason = await Promise.race([
      this.session.closeReason,
      new Promise<undefined>((resolve) => {
        timer = realSetTimeout(() => resolve(undefined), timeout);
      }),
    ]);
    realClearTimeout(timer);
    if (reason === undefined)
      throw new ExpectationError(
        `${this.path}: expected ${what}, the session did not end within ${timeout} ms`,
      );
    if (code !== undefined && reason.code !== code)
      throw new ExpectationError(`${this.path}: expected ${what}, got ${reason.toString()}`);
    return reason;
  }
}
