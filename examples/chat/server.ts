/**
 * Chat rooms over WebSockets: open http://127.0.0.1:8080/ in two browser tabs.
 *   npm start            (PORT and HOST override the defaults; DEFLATE=0 turns compression off)
 *   CHAT_ORIGINS=https://chat.example.com   page origins allowed to connect (default: this server's own)
 *   REDIS_URL=redis://127.0.0.1:6379        share rooms with the other processes using that Redis
 * Each room is a path parameter (`/chat/{room}`) and a topic (`room:<name>`): joins, leaves and
 * messages are publications to it, so every member, in this process or another, gets them.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Application,
  CloseCode,
  createApp,
  type ErrorKind,
  PubSub,
  type PubSubAdapter,
  permessageDeflate,
  redisAdapter,
  WebSockets,
} from "../../src/index.js";
import { originsFor, parseOrigins } from "./origins.js";
import {
  type ChatEvent,
  checkName,
  cleanText,
  encodeEvent,
  RateLimit,
  type RateOptions,
  roomTopic,
} from "./protocol.js";

const publicDir = findPublicDir(dirname(fileURLToPath(import.meta.url)));

/** The page lives beside the source; a built server (dist/examples/chat/, or another outDir) looks up. */
function findPublicDir(here: string): string {
  if (existsSync(resolve(here, "public/chat.js"))) return resolve(here, "public");
  for (let dir = here; dirname(dir) !== dir; dir = dirname(dir))
    if (existsSync(resolve(dir, "examples/chat/public/chat.js"))) return resolve(dir, "examples/chat/public");
  throw new Error(`examples/chat/public not found above ${here}`);
}

/** A member with more than this waiting to be sent (bytes of memory, see `bufferedAmount`) is closed. */
export const SLOW_MEMBER_LIMIT = 256 * 1024;
/**
 * Messages a member may send: 20 at once, 5 a second on average. A burst of 20 of the largest messages
 * (1,000 characters, at most ~8 KB of JSON each) stays well under SLOW_MEMBER_LIMIT for the readers.
 */
export const MESSAGE_RATE: Readonly<RateOptions> = { burst: 20, perSecond: 5 };

export interface ChatOptions {
  /** Negotiate permessage-deflate with clients that offer it (browsers do). Default true. */
  deflate?: boolean | undefined;
  /**
   * Page origins allowed to open chat sockets, in the form browsers send (lower case, no default port);
   * read at each handshake, so it may be filled once the port is known. Other origins get 403. A
   * handshake without Origin does not come from a browser page and is let in. Default: none.
   */
  origins?: ReadonlySet<string> | undefined;
  /** Carries the rooms to other processes (Redis). Default: this process only. */
  adapter?: PubSubAdapter | undefined;
  /** See SLOW_MEMBER_LIMIT. */
  slowMemberLimit?: number | undefined;
  /** See MESSAGE_RATE; false: no limit (tests that flood). */
  rate?: RateOptions | false | undefined;
  /** The rate limit's clock (tests fix it). */
  now?: (() => number) | undefined;
}

export function createChatApp(options: ChatOptions = {}): Application {
  const origins = options.origins ?? new Set<string>();
  const app = createApp();
  app.install(WebSockets, {
    pingPeriod: 20_000,
    timeout: 10_000,
    maxFrameSize: 64 * 1024,
    outgoingHighWaterMark: options.slowMemberLimit ?? SLOW_MEMBER_LIMIT,
    extensions: options.deflate === false ? [] : [permessageDeflate({ threshold: 256 })],
    allowedOrigins: (origin) => origin === undefined || origins.has(origin.toLowerCase()),
  });
  // A member that does not read is closed (1008) as soon as a publication finds it over its
  // high-water mark, rather than skipped: a chat with silent holes misleads, while a closed page says
  // so and can rejoin. Either way it holds at most the high-water mark and never slows the room.
  app.install(PubSub, {
    ...(options.adapter === undefined ? {} : { adapter: options.adapter }),
    slowSubscriber: "close",
    slowCloseCode: CloseCode.PolicyViolation,
    onGap: ({ topic }) => {
      // The backplane reconnected: tell this node's members of the room they may have missed lines.
      if (topic.startsWith("room:"))
        app.publish(topic, encodeEvent({ type: "gap", room: topic.slice(5) }), { local: true });
    },
  });
  const publish = (room: string, event: ChatEvent) => app.publish(roomTopic(room), encodeEvent(event));

  app.routing((r) => {
    r.get("/", (call) => call.respondFile(resolve(publicDir, "index.html")));
    r.get("/health", (call) => call.respondJson({ status: "ok", rooms: app.pubsub.topics().length }));
    r.staticFiles("/static", publicDir);
    r.route("/chat", (r) => {
      r.webSocket("/{room}", { protocol: "chat.v2" }, async (session) => {
        const name = checkName(session.call.query.get("name"), "Name");
        const room = checkName(session.call.parameters.room, "Room");
        // Refused after the upgrade, with a close code and reason: the page sees them, whereas an HTTP
        // refusal reaches a browser's script as a bare 1006.
        if (!name.ok) return void (await session.close(CloseCode.PolicyViolation, name.reason));
        if (!room.ok) return void (await session.close(CloseCode.PolicyViolation, room.reason));
        const who = { room: room.value, name: name.value };
        const rate =
          options.rate === false ? undefined : new RateLimit(options.rate ?? MESSAGE_RATE, options.now);
        // Subscribed (on every node, with an adapter) before anyone hears of the join.
        await session.subscribe(roomTopic(who.room));
        publish(who.room, { type: "joined", ...who });
        try {
          for await (const frame of session.incoming) {
            const text =
              frame.type === "text" ? cleanText(frame.text) : { ok: false as const, reason: "Text only" };
            if (text.ok && (rate === undefined || rate.take()))
              publish(who.room, { type: "message", ...who, text: text.value });
            else {
              // Only the sender hears why; awaiting it is backpressure on the sender alone.
              const reason = text.ok ? "Too many messages: slow down" : text.reason;
              await session.send(encodeEvent({ type: "error", text: reason })).catch(() => {});
            }
          }
        } finally {
          // The session is closing, so it has left the topic: the others hear it, it does not.
          publish(who.room, { type: "left", ...who });
        }
      });
    });
  });
  return app;
}

export interface StartChatOptions {
  host?: string | undefined;
  port?: number | undefined;
  deflate?: boolean | undefined;
  /** Allowed page origins (CHAT_ORIGINS), instead of those derived from host and the bound port. */
  origins?: readonly string[] | undefined;
  /** Share rooms with every process using this Redis (REDIS_URL). */
  redisUrl?: string | undefined;
  slowMemberLimit?: number | undefined;
  rate?: RateOptions | false | undefined;
  now?: (() => number) | undefined;
  /** What the app and the Redis client report (default: logged to stderr). */
  onError?: ErrorReporter | undefined;
}

type ErrorReporter = (error: unknown, kind: ErrorKind) => void;

export interface RunningChat {
  app: Application;
  /** http://host:port */
  url: string;
  /** The page origins allowed to connect. */
  origins: readonly string[];
  stop(grace?: number): Promise<void>;
}

/** Builds the chat, connects to Redis if asked, listens, and allows the origins of its own address. */
export async function startChat(options: StartChatOptions = {}): Promise<RunningChat> {
  const origins = new Set<string>();
  const report = options.onError ?? ((error, kind) => console.error(`chat: ${kind} error:`, error));
  const redis = options.redisUrl === undefined ? undefined : await connectRedis(options.redisUrl, report);
  const app = createChatApp({ ...options, origins, adapter: redis?.adapter });
  app.onError(report);
  const host = options.host ?? "127.0.0.1";
  const { url, port } = await app.listen({ port: options.port ?? 8080, host });
  // Until this line no page origin is allowed: the port may have been 0.
  for (const origin of options.origins ?? originsFor(host, port)) origins.add(origin.toLowerCase());
  return {
    app,
    url,
    origins: [...origins],
    async stop(grace = 2000) {
      await app.stop({ grace });
      await redis?.close();
    },
  };
}

/** node-redis is loaded only in REDIS_URL mode, so `npm start` needs neither Redis nor the package. */
async function connectRedis(
  url: string,
  report: ErrorReporter,
): Promise<{ adapter: PubSubAdapter; close(): Promise<void> }> {
  const { createClient } = await import("redis");
  const client = createClient({ url });
  // node-redis emits errors while it reconnects; unheard, one would end the process.
  client.on("error", (error: unknown) => report(error, "pubsub"));
  await client.connect();
  return {
    adapter: redisAdapter({ client }),
    close: async () => {
      if (client.isOpen) await client.close();
    },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const env = process.env;
  const chat = await startChat({
    port: Number(env.PORT ?? 8080),
    host: env.HOST ?? "127.0.0.1",
    deflate: env.DEFLATE !== "0",
    ...(env.CHAT_ORIGINS ? { origins: parseOrigins(env.CHAT_ORIGINS) } : {}),
    ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}),
  });
  console.log(`chat at ${chat.url}/ (pages from ${chat.origins.join(", ")})`);
  if (env.REDIS_URL) console.log("rooms shared through Redis (REDIS_URL)"); // the URL may hold a password
  // No process.exit: once the sessions, the server and Redis are closed, nothing is left to run.
  const stop = () => void chat.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
