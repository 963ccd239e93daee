/**
 * The sockway app the interop peers talk to, started in-process on 127.0.0.1, port 0.
 *
 *   /echo           every text and binary message comes back unchanged
 *   /proto          the same, but only for clients that offer the subprotocol "echo.v2"
 *   /close-on-text  closes with 4001 "done" on the first text message
 *   /throw          the handler throws on the first message (the app closes with 1011)
 *
 * Every session is handed to the test through `nextSession()`, so a test can await its `closeReason`.
 */
import { createHash } from "node:crypto";
import {
  type Application,
  type ApplicationCall,
  CloseReason,
  createApp,
  type DefaultWebSocketSession,
  type ErrorKind,
  WebSockets,
  type WebSocketsOptions,
} from "../../src/index.js";

export const ECHO_PROTOCOL = "echo.v2";

type AnyDefaultSession = DefaultWebSocketSession<ApplicationCall, unknown>;

export interface EchoServer {
  app: Application;
  /** ws://127.0.0.1:port */
  wsBase: string;
  /** http://127.0.0.1:port */
  httpBase: string;
  /** Errors the app reported to its error hook. */
  errors: Array<{ kind: ErrorKind; error: unknown }>;
  /** The next session the app starts; call it before connecting. */
  nextSession(): Promise<AnyDefaultSession>;
  stop(): Promise<void>;
}

export async function startEchoApp(options: WebSocketsOptions = {}): Promise<EchoServer> {
  const errors: EchoServer["errors"] = [];
  const waiting: Array<(session: AnyDefaultSession) => void> = [];
  // A session nobody waits for is not kept: `nextSession()` is always called before connecting.
  const register = (session: AnyDefaultSession) => waiting.shift()?.(session);
  const echo = async (session: AnyDefaultSession) => {
    register(session);
    for await (const frame of session.incoming) await session.send(frame);
  };

  const app = createApp().install(WebSockets, { pingPeriod: 0, timeout: 5000, ...options });
  app.onError((error, kind) => errors.push({ kind, error }));
  app.routing((r) => {
    r.webSocket("/echo", echo);
    r.webSocket("/proto", { protocol: ECHO_PROTOCOL }, echo);
    r.webSocket("/close-on-text", async (session) => {
      register(session);
      for await (const frame of session.incoming) {
        if (frame.type === "text") {
          await session.close(new CloseReason(4001, "done"));
          return;
        }
      }
    });
    r.webSocket("/throw", async (session) => {
      register(session);
      await session.incoming.receive();
      throw new Error("boom (thrown on purpose by the interop test)");
    });
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  return {
    app,
    wsBase: `ws://127.0.0.1:${port}`,
    httpBase: `http://127.0.0.1:${port}`,
    errors,
    nextSession: () => new Promise((resolve) => waiting.push(resolve)),
    stop: () => app.stop({ grace: 1000 }),
  };
}

/** Deterministic bytes: a pattern that differs at every offset modulo 251 (a prime, so no 256-periodicity). */
export function patternBytes(size: number, seed = 7): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed + Math.floor(i / 251)) & 0xff;
  return out;
}

export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A close reason as a plain object, for `toEqual`. */
export async function closeOf(session: AnyDefaultSession): Promise<{ code: number; message: string }> {
  const reason = await session.closeReason;
  return { code: reason.code, message: reason.reason };
}

/** Rejects after `ms` with a message naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}
