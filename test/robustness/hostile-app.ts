/**
 * The server for the robustness suite: sockway in-process with an echo route and handlers that
 * misbehave, every session and error hook call recorded so tests can check what the server saw.
 */
import {
  type ApplicationCall,
  type CloseReason,
  createApp,
  type DefaultWebSocketSession,
  WebSockets,
  type WebSocketsOptions,
} from "../../src/index.js";

type Session = DefaultWebSocketSession<ApplicationCall, unknown>;

export interface HostileServer {
  port: number;
  app: ReturnType<typeof createApp>;
  /** Everything given to the error hook. */
  errors: Array<{ error: unknown; kind: string }>;
  /** Sessions of /observe, /hang and /leak, in order of arrival. */
  sessions: Session[];
  /** What `send` threw in /send-after-close and /close-then-send. */
  sendErrors: unknown[];
  stop(): Promise<void>;
}

export class HandlerFailure extends Error {
  override readonly name = "HandlerFailure";
}

export async function startHostileServer(options: WebSocketsOptions = {}): Promise<HostileServer> {
  const errors: HostileServer["errors"] = [];
  const sessions: Session[] = [];
  const sendErrors: unknown[] = [];
  const echo = async (s: Session) => {
    for await (const f of s.incoming) await s.send(f);
  };
  const app = createApp()
    .install(WebSockets, { pingPeriod: 0, ...options })
    .onError((error, kind) => errors.push({ error, kind }))
    .routing((r) => {
      r.webSocket("/echo", echo);
      r.webSocket("/observe", (s) => {
        sessions.push(s);
        return echo(s);
      });
      r.webSocket("/throw", () => {
        throw new HandlerFailure("thrown synchronously");
      });
      r.webSocket("/throw-later", async (s) => {
        await s.incoming.receive();
        throw new HandlerFailure("thrown after a message");
      });
      r.webSocket("/reject", () => Promise.reject(new HandlerFailure("rejected")));
      r.webSocket("/hang", (s) => {
        sessions.push(s);
        return new Promise<never>(() => {});
      });
      r.webSocket("/send-after-close", async (s) => {
        for await (const _ of s.incoming) {
          // drain until the peer closes
        }
        try {
          await s.send("too late");
        } catch (error) {
          sendErrors.push(error);
        }
      });
      r.webSocket("/close-then-send", async (s) => {
        await s.close();
        try {
          await s.send("too late");
        } catch (error) {
          sendErrors.push(error);
        }
      });
      r.webSocket("/leak", (s) => {
        sessions.push(s); // the handler returns at once but keeps the session
      });
    });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  return { port, app, errors, sessions, sendErrors, stop: () => app.stop({ grace: 200 }) };
}

/** Resolves with the close reason, or undefined if it does not resolve within `ms`. */
export function closeReasonWithin(s: Session, ms: number): Promise<CloseReason | undefined> {
  return Promise.race([s.closeReason, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);
}
