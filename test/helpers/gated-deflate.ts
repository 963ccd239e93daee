/**
 * permessage-deflate with a hand on its timing: each session's codec is the real one (node:zlib), but a
 * test can hold the results of its encodes or decodes until it lets them go. The session sees an
 * operation that simply takes longer, so "while a message is being compressed" or "while a decode is
 * running" become states a test can put a session in and keep it in, instead of races on zlib's speed.
 */
import {
  type MessageCodec,
  type PermessageDeflateOptions,
  permessageDeflate,
  type ServerExtension,
} from "../../src/index.js";

/** Holds the results of one direction's operations (encode or decode) while closed. */
export class Gate {
  /** Operations started (that returned a promise). */
  started = 0;
  /** Operations whose result (or failure) has reached the session. */
  settled = 0;
  /** Of those, how many failed. */
  failed = 0;
  private holding: Promise<void> | undefined;
  private open: (() => void) | undefined;

  /** From now on, results wait until `release()`. */
  hold(): void {
    if (this.holding) return;
    this.holding = new Promise((resolve) => {
      this.open = resolve;
    });
  }

  /** Lets every held result through, and later ones pass at once. */
  release(): void {
    this.open?.();
    this.holding = undefined;
    this.open = undefined;
  }

  /** @internal Wraps one operation's promise. */
  pass<T>(work: Promise<T>): Promise<T> {
    this.started++;
    const gate = this.holding;
    const done =
      gate === undefined
        ? work
        : work.then(
            (value) => gate.then(() => value),
            (error: unknown) => gate.then(() => Promise.reject(error)),
          );
    return done.then(
      (value) => {
        this.settled++;
        return value;
      },
      (error: unknown) => {
        this.settled++;
        this.failed++;
        throw error;
      },
    );
  }
}

export interface GatedDeflate {
  extension: ServerExtension;
  encodes: Gate;
  decodes: Gate;
  /** How many sessions' codecs were closed (their zlib memory released). */
  closed: number;
}

/** permessage-deflate (with `options`) whose codecs' encodes and decodes pass through two gates. */
export function gatedDeflate(options: PermessageDeflateOptions = {}): GatedDeflate {
  const inner = permessageDeflate(options);
  const gated: GatedDeflate = {
    encodes: new Gate(),
    decodes: new Gate(),
    closed: 0,
    extension: {
      name: inner.name,
      negotiate(offers) {
        const accepted = inner.negotiate(offers);
        if (!accepted) return undefined;
        return {
          response: accepted.response,
          createCodec(): MessageCodec {
            const codec = accepted.createCodec();
            let closed = false;
            return {
              decode: (data, maxSize, final) => gated.decodes.pass(codec.decode(data, maxSize, final)),
              encode: (data) => {
                const work = codec.encode(data);
                return work === undefined ? undefined : gated.encodes.pass(work);
              },
              releaseIdle: () => codec.releaseIdle?.(),
              close: () => {
                if (!closed) gated.closed++;
                closed = true;
                codec.close();
              },
            };
          },
        };
      },
    },
  };
  return gated;
}
