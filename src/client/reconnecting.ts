import { AppError, CloseCode, HandshakeError } from "../protocol/index.js";
import type { CloseReason } from "../session/index.js";
import { type ClientOptions, type ClientSession, connect } from "./connect.js";

/** What `onRetry` is told before each wait. */
export interface RetryInfo {
  /** The retry's number since the start or the last stable connection: 1 for the first. */
  readonly attempt: number;
  /** Milliseconds about to be waited. */
  readonly delay: number;
  /** The handshake's failure; undefined when the wait follows a session that ended. */
  readonly error: HandshakeError | undefined;
  /** How the previous session ended, when the wait follows one. */
  readonly closeReason: CloseReason | undefined;
}

/** Options of `reconnecting`: those of `connect`, plus the backoff's. */
export interface ReconnectOptions extends ClientOptions {
  /** Milliseconds of the first wait (before jitter). Default 500. */
  initialDelay?: number;
  /** Longest wait, Retry-After included (and the base's cap before jitter). Default 30 000. */
  maxDelay?: number;
  /** Each retry's base is the previous one times this. Default 2. */
  factor?: number;
  /**
   * A wait is round(base × (1 − jitter × random())): "full" (1) spreads it over (0, base], a fraction f
   * in [0, 1] over (base·(1−f), base], "none" (0) is the base. Default "full".
   */
  jitter?: "full" | "none" | number;
  /** Handshakes that may fail in a row (a successful one resets the count); the next failure is thrown. Default Infinity. */
  maxAttempts?: number;
  /** A session that stayed up this many milliseconds resets the backoff to its first step. Default 10 000. */
  stableAfter?: number;
  /** Honour `Retry-After` on 429 and 503 (the wait is at least that, at most maxDelay). Default true. */
  retryAfter?: boolean;
  /** Called before each wait. A throw stops the iterator with that error. */
  onRetry?: (info: RetryInfo) => void;
  /** Random source in [0, 1), for the jitter. Default Math.random. */
  random?: () => number;
  /** Waits `ms`; should settle early when `signal` aborts. Default: a timer. */
  sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** Clock in milliseconds, for `stableAfter` and HTTP-date Retry-After. Default Date.now. */
  now?: () => number;
}

export const RECONNECT_DEFAULTS = {
  initialDelay: 500,
  maxDelay: 30_000,
  factor: 2,
  jitter: "full",
  maxAttempts: Number.POSITIVE_INFINITY,
  stableAfter: 10_000,
} as const;

/** Statuses retried besides 5xx: Request Timeout and Too Many Requests. */
const RETRIED_4XX = new Set([408, 429]);
/** Statuses whose Retry-After is honoured. */
const RETRY_AFTER_STATUSES = new Set([429, 503]);

/**
 * Whether a failed handshake is worth another try: no response at all (`CONNECT_FAILED`,
 * `HANDSHAKE_TIMEOUT`), 5xx, 408 and 429. Every other status (4xx, a redirect not followed, a 101 we
 * could not accept), `INVALID_URL` and `TOO_MANY_REDIRECTS` are final.
 */
export function isRetryable(error: unknown): error is HandshakeError {
  if (!(error instanceof HandshakeError)) return false;
  if (error.code === "CONNECT_FAILED" || error.code === "HANDSHAKE_TIMEOUT") return true;
  if (error.code !== "UNEXPECTED_STATUS") return false;
  return (error.status >= 500 && error.status <= 599) || RETRIED_4XX.has(error.status);
}

/** Milliseconds a 429/503's Retry-After asks for (delta-seconds or an HTTP-date), or undefined. */
export function retryAfterMs(error: HandshakeError, now: number): number | undefined {
  if (!RETRY_AFTER_STATUSES.has(error.status)) return undefined;
  const value = error.headers["retry-after"]?.trim();
  if (value === undefined || value === "") return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

const invalid = (message: string) => new AppError("INVALID_OPTION", message);

function number(name: string, value: unknown, fallback: number, min: number, infinite = false): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" ||
    Number.isNaN(value) ||
    value < min ||
    (!infinite && !Number.isFinite(value))
  )
    throw invalid(`reconnecting option ${name} must be a number ≥ ${min}, got ${String(value)}`);
  return value;
}

const defaultSleep = (ms: number, signal: AbortSignal | undefined): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });

/**
 * Connects to `url` again and again: each iteration yields a fresh open session; when the loop's body
 * is done with it (the session is closed with 1000 if still open) or it ended, the next connection is
 * made after a jittered exponential backoff. Handshakes that fail retryably (see `isRetryable`) are
 * retried after the same backoff; a final failure, or the `maxAttempts`-th in a row, is thrown by the
 * iterator. `signal` ends the iterator (a wait is cut short, the current session closes with 1001, a
 * handshake in flight is aborted). Breaking out of the loop closes the current session with 1000.
 * Invalid options throw `AppError` `INVALID_OPTION` here, at the call.
 */
export function reconnecting(
  url: string | URL,
  options: ReconnectOptions = {},
): AsyncGenerator<ClientSession, void, undefined> {
  const {
    initialDelay: initialOpt,
    maxDelay: maxOpt,
    factor: factorOpt,
    jitter: jitterOpt,
    maxAttempts: maxAttemptsOpt,
    stableAfter: stableOpt,
    retryAfter: retryAfterOpt,
    onRetry,
    random = Math.random,
    sleep = defaultSleep,
    now = Date.now,
    ...connectOptions
  } = options;
  const initialDelay = number("initialDelay", initialOpt, RECONNECT_DEFAULTS.initialDelay, 0);
  const maxDelay = number("maxDelay", maxOpt, RECONNECT_DEFAULTS.maxDelay, 0);
  const factor = number("factor", factorOpt, RECONNECT_DEFAULTS.factor, 1);
  const maxAttempts = number("maxAttempts", maxAttemptsOpt, RECONNECT_DEFAULTS.maxAttempts, 1, true);
  const stableAfter = number("stableAfter", stableOpt, RECONNECT_DEFAULTS.stableAfter, 0);
  const jitterSpec = jitterOpt ?? RECONNECT_DEFAULTS.jitter;
  let jitter: number;
  if (jitterSpec === "full") jitter = 1;
  else if (jitterSpec === "none") jitter = 0;
  else if (typeof jitterSpec === "number" && jitterSpec >= 0 && jitterSpec <= 1) jitter = jitterSpec;
  else
    throw invalid(
      `reconnecting option jitter must be "full", "none" or a number in [0, 1], got ${String(jitterSpec)}`,
    );
  if (!(Number.isSafeInteger(maxAttempts) || maxAttempts === Number.POSITIVE_INFINITY))
    throw invalid(`reconnecting option maxAttempts must be an integer or Infinity, got ${maxAttempts}`);
  const honourRetryAfter = retryAfterOpt ?? true;
  const signal = connectOptions.signal;

  /** The wait before retry `attempt` (1-based), before Retry-After. */
  const backoff = (attempt: number): number => {
    const base = Math.min(maxDelay, initialDelay * factor ** (attempt - 1));
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.round(base * (1 - jitter * r));
  };

  /** Waits; false when the signal aborted (a sleep hook that rejects on abort included). */
  const pause = async (ms: number): Promise<boolean> => {
    try {
      await sleep(ms, signal);
    } catch (error) {
      if (!signal?.aborted) throw error;
    }
    return !signal?.aborted;
  };

  return (async function* run(): AsyncGenerator<ClientSession, void, undefined> {
    let attempt = 0; // retries since the start or the last stable session
    let failures = 0; // failed handshakes in a row
    while (!signal?.aborted) {
      let session: ClientSession;
      try {
        session = await connect(url, connectOptions);
      } catch (error) {
        if (signal?.aborted) return;
        failures++;
        if (!isRetryable(error) || failures >= maxAttempts) throw error;
        attempt++;
        let wait = backoff(attempt);
        const asked = honourRetryAfter ? retryAfterMs(error, now()) : undefined;
        if (asked !== undefined) wait = Math.min(maxDelay, Math.max(wait, asked));
        onRetry?.({ attempt, delay: wait, error, closeReason: undefined });
        if (!(await pause(wait))) return;
        continue;
      }
      failures = 0;
      const openedAt = now();
      let endedAt: number | undefined;
      void session.closeReason.then(() => {
        endedAt = now();
      });
      const onAbort = () => void session.close(CloseCode.GoingAway).catch(() => {});
      signal?.addEventListener("abort", onAbort, { once: true });
      let closeReason: CloseReason;
      try {
        yield session;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        // The loop's body is done (returned, broke out or threw): the session goes if it has not.
        if (session.state !== "closed")
          void session.close(signal?.aborted ? CloseCode.GoingAway : CloseCode.Normal).catch(() => {});
        closeReason = await session.closeReason;
      }
      if (signal?.aborted) return;
      if ((endedAt ?? now()) - openedAt >= stableAfter) attempt = 0;
      attempt++;
      const wait = backoff(attempt);
      onRetry?.({ attempt, delay: wait, error: undefined, closeReason });
      if (!(await pause(wait))) return;
    }
  })();
}
