/**
 * Helpers for the permessage-deflate tests: RFC 7692 compression done independently of sockway (node:zlib
 * directly), codecs with explicit settings, timing and cleanup helpers, and an app with echo routes that
 * records what its sessions received. The raw TCP client is in deflate-raw-client.ts.
 */
import {
  constants,
  createDeflateRaw,
  createInflateRaw,
  deflateRawSync,
  type InflateRaw,
  inflateRawSync,
} from "node:zlib";
import { DeflateCodec, type DeflateCodecOptions } from "../../src/extensions/deflate-codec.js";
import { ConcurrencyLimiter } from "../../src/extensions/zlib-limiter.js";
import {
  type Application,
  createApp,
  type DefaultWebSocketSession,
  type ErrorKind,
  type MessageCodec,
  type PermessageDeflateOptions,
  permessageDeflate,
  type RawWebSocketSession,
  type ServerExtension,
  WebSockets,
  type WebSocketsOptions,
} from "../../src/index.js";

/** The empty stored block that ends a sync flush (RFC 7692 §7.2.1). */
export const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** One message compressed the RFC 7692 §7.2.1 way with a fresh stream: sync flush, tail removed. */
export function deflateMessage(data: Buffer | string, level = 6): Buffer {
  const out = deflateRawSync(data, { level, finishFlush: constants.Z_SYNC_FLUSH });
  if (!out.subarray(out.length - 4).equals(TAIL))
    throw new Error("a sync flush did not end with 00 00 ff ff");
  return out.subarray(0, out.length - 4);
}

/** Decompresses one message compressed with a fresh stream (RFC 7692 §7.2.2: the tail is appended). */
export function inflateMessage(payload: Buffer): Buffer {
  return inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: constants.Z_SYNC_FLUSH });
}

/** `megabytes` MiB of zeros compressed as one message, streamed so that the test itself stays small. */
export function zeroBomb(megabytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const deflater = createDeflateRaw({ level: 9 });
    const chunks: Buffer[] = [];
    deflater.on("data", (chunk: Buffer) => chunks.push(chunk));
    deflater.on("error", reject);
    const zeros = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < megabytes; i++) deflater.write(zeros);
    deflater.flush(constants.Z_SYNC_FLUSH, () => {
      deflater.close();
      const out = Buffer.concat(chunks);
      if (!out.subarray(out.length - 4).equals(TAIL)) reject(new Error("no sync flush tail"));
      else resolve(out.subarray(0, out.length - 4));
    });
  });
}

/** A receiver's inflate stream kept across messages (context takeover), independent of sockway. */
export class MessageInflater {
  private readonly stream: InflateRaw = createInflateRaw();

  inflate(payload: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const onData = (chunk: Buffer) => chunks.push(chunk);
      this.stream.on("data", onData);
      this.stream.once("error", reject);
      this.stream.write(Buffer.concat([payload, TAIL]));
      this.stream.flush(constants.Z_SYNC_FLUSH, () => {
        this.stream.off("data", onData);
        this.stream.off("error", reject);
        resolve(Buffer.concat(chunks));
      });
    });
  }

  close(): void {
    this.stream.close();
  }
}

/** A codec with explicit settings (defaults: windows 15, context takeover, level 6, threshold 0). */
export function makeCodec(overrides: Partial<DeflateCodecOptions> = {}): DeflateCodec {
  return new DeflateCodec({
    deflateWindowBits: 15,
    inflateWindowBits: 15,
    deflateNoContextTakeover: false,
    inflateNoContextTakeover: false,
    level: 6,
    memLevel: 8,
    threshold: 0,
    limiter: new ConcurrencyLimiter(10),
    ...overrides,
  });
}

/** Deterministic bytes that compress poorly (no short period). */
export function noisyBytes(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with `promise`, or rejects after `ms` naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `condition` until it holds; rejects after `ms`. */
export async function until(condition: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(2);
  }
}

/** Release steps registered by a test; `runCleanup` (in afterEach) runs them in reverse order. */
const cleanupTasks: Array<() => unknown> = [];
export const onCleanup = (task: () => unknown): void => void cleanupTasks.push(task);
export async function runCleanup(): Promise<void> {
  while (cleanupTasks.length > 0) {
    const task = cleanupTasks.pop()!;
    try {
      // A release step that hangs must not hold up the others (nor the next test).
      await within(Promise.resolve().then(task), 5000, "a cleanup step");
    } catch {
      // already released, or stuck: move on
    }
  }
}

// ---- app ------------------------------------------------------------------------------------------

export type EchoSession = DefaultWebSocketSession<unknown, unknown>;

export interface Received {
  type: "text" | "binary";
  data: Buffer;
}

export interface RecordedSession {
  session: EchoSession;
  /** Whole messages the handler took from `incoming`, in order. */
  received: Received[];
  /** Resolves when the handler's `for await` loop ended. */
  incomingEnded: Promise<void>;
}

export type RawSession = RawWebSocketSession<unknown, unknown>;

export interface RawReceived {
  type: string;
  fin: boolean;
  rsv1: boolean;
  data: Buffer;
}

export interface RecordedRawSession {
  session: RawSession;
  /** Every frame the raw handler took from `incoming`, in order. */
  frames: RawReceived[];
}

export interface DeflateApp {
  app: Application;
  port: number;
  wsUrl: string;
  errors: Array<{ error: unknown; kind: ErrorKind }>;
  /** Every session started on /echo, /sink or /push, in order. */
  sessions: RecordedSession[];
  /** Resolves with the nth (0-based) session once it starts. */
  session(index: number): Promise<RecordedSession>;
  /** Resolves with the nth (0-based) session of the raw route /raw once it starts. */
  rawSession(index: number): Promise<RecordedRawSession>;
  /** The codec of every session that negotiated permessage-deflate, in order. */
  codecs: DeflateCodec[];
  /** Calls across all codecs: `decode` (compressed data received), `encode` (messages compressed). */
  codecCalls: { decode: number; encode: number };
}

/** Wraps permessage-deflate to keep each session's codec and count what it compressed and inflated. */
function counting(
  extension: ServerExtension,
  codecs: DeflateCodec[],
  calls: { decode: number; encode: number },
): ServerExtension {
  return {
    name: extension.name,
    negotiate(offers) {
      const accepted = extension.negotiate(offers);
      if (!accepted) return undefined;
      return {
        response: accepted.response,
        createCodec: (): MessageCodec => {
          const codec = accepted.createCodec() as DeflateCodec;
          codecs.push(codec);
          return {
            decode: (data, maxSize, final) => {
              calls.decode++;
              return codec.decode(data, maxSize, final);
            },
            encode: (data) => {
              const encoding = codec.encode(data);
              if (encoding) calls.encode++;
              return encoding;
            },
            releaseIdle: () => codec.releaseIdle(),
            close: () => codec.close(),
          };
        },
      };
    },
  };
}

/**
 * An app with permessage-deflate. Routes: /echo (echoes every message), /sink (records only), /push (sends
 * `pushMessages` without awaiting each, then echoes), /raw (a raw route that records every frame).
 */
export async function startDeflateApp(
  deflate: PermessageDeflateOptions = { threshold: 0 },
  options: WebSocketsOptions = {},
  pushMessages: ReadonlyArray<string | Buffer> = [],
): Promise<DeflateApp> {
  const errors: DeflateApp["errors"] = [];
  const sessions: RecordedSession[] = [];
  const rawSessions: RecordedRawSession[] = [];
  const waiters: Array<() => void> = [];
  const codecs: DeflateCodec[] = [];
  const codecCalls = { decode: 0, encode: 0 };
  const extension = counting(permessageDeflate(deflate), codecs, codecCalls);
  const app = createApp()
    .install(WebSockets, { pingPeriod: 0, timeout: 3000, ...options, extensions: [extension] })
    .onError((error, kind) => errors.push({ error, kind }));
  const record = (session: EchoSession, echo: boolean, push: boolean) => {
    const received: Received[] = [];
    let ended!: () => void;
    const incomingEnded = new Promise<void>((resolve) => {
      ended = resolve;
    });
    sessions.push({ session, received, incomingEnded });
    for (const w of waiters.splice(0)) w();
    return (async () => {
      if (push) await Promise.all(pushMessages.map((m) => session.send(m)));
      for await (const frame of session.incoming) {
        received.push({ type: frame.type, data: frame.data });
        if (echo) await session.send(frame);
      }
      ended();
    })();
  };
  app.routing((r) => {
    r.webSocket("/echo", (s) => record(s as EchoSession, true, false));
    r.webSocket("/sink", (s) => record(s as EchoSession, false, false));
    r.webSocket("/push", (s) => record(s as EchoSession, true, true));
    r.webSocketRaw("/raw", async (s) => {
      const frames: RawReceived[] = [];
      rawSessions.push({ session: s as unknown as RawSession, frames });
      for (const w of waiters.splice(0)) w();
      for await (const frame of s.incoming) {
        frames.push({ type: frame.type, fin: frame.fin, rsv1: frame.rsv1, data: frame.data });
      }
    });
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  onCleanup(() => app.stop({ grace: 0 }));
  const session = async (index: number): Promise<RecordedSession> => {
    while (sessions.length <= index)
      await within(new Promise<void>((resolve) => waiters.push(resolve)), 3000, `session #${index + 1}`);
    return sessions[index]!;
  };
  const rawSession = async (index: number): Promise<RecordedRawSession> => {
    while (rawSessions.length <= index)
      await within(new Promise<void>((resolve) => waiters.push(resolve)), 3000, `raw session #${index + 1}`);
    return rawSessions[index]!;
  };
  return {
    app,
    port,
    wsUrl: `ws://127.0.0.1:${port}`,
    errors,
    sessions,
    session,
    rawSession,
    codecs,
    codecCalls,
  };
}
