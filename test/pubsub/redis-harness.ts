/**
 * Shared pieces of the Redis pub/sub tests: clients of both libraries (with a quick reconnect, so a
 * fault test resumes within its bound), apps with the Redis adapter, and a guard that fails a test on
 * any unhandled rejection.
 */
import { Redis } from "ioredis";
import { createClient } from "redis";
import { afterEach, expect } from "vitest";
import {
  type Application,
  createApp,
  type GapEvent,
  PubSub,
  type PubSubOptions,
  type RedisAdapter,
  type RedisAdapterOptions,
  redisAdapter,
  WebSockets,
} from "../../src/index.js";
import { onCleanup } from "../helpers/cleanup.js";
import { within } from "../helpers/wait.js";

export type ClientKind = "node-redis" | "ioredis";
export const CLIENT_KINDS: ClientKind[] = ["node-redis", "ioredis"];

/** Reconnect delay of the test clients (and of the adapter's duplicate, which inherits it). */
const retry = (attempt: number) => Math.min(20 + attempt * 20, 200);

/** A connected client of `kind`, closed at cleanup; its errors are recorded (a client without an error listener would crash). */
export async function connectClient(
  kind: ClientKind,
  url: string,
): Promise<{ client: unknown; errors: unknown[] }> {
  const errors: unknown[] = [];
  if (kind === "node-redis") {
    const client = createClient({ url, socket: { reconnectStrategy: retry, connectTimeout: 2000 } });
    client.on("error", (e) => errors.push(e));
    onCleanup(() => client.destroy());
    await within(client.connect(), 5000, "node-redis connect");
    return { client, errors };
  }
  const client = new Redis(url, { retryStrategy: retry, connectTimeout: 2000, maxRetriesPerRequest: 1 });
  client.on("error", (e) => errors.push(e));
  onCleanup(() => client.disconnect());
  await within(
    new Promise<void>((resolve) =>
      client.status === "ready" ? resolve() : client.once("ready", () => resolve()),
    ),
    5000,
    "ioredis ready",
  );
  return { client, errors };
}

/** A node-redis client for the test's own queries (PUBSUB CHANNELS, CLIENT KILL, CONFIG SET). */
export async function adminClient(url: string) {
  const client = createClient({ url, socket: { reconnectStrategy: retry } });
  client.on("error", () => {});
  onCleanup(() => client.destroy());
  await within(client.connect(), 5000, "admin connect");
  return client;
}

export interface RedisApp {
  app: Application;
  wsUrl: string;
  adapter: RedisAdapter;
  /** What the application reported to its error hook. */
  errors: unknown[];
  gaps: GapEvent[];
}

/**
 * An app on 127.0.0.1 with the Redis adapter over a new client of `kind`. Route `/t/{topic}`: the
 * session subscribes (awaited), says "joined", then publishes what it receives to the topic, except
 * to itself ("leave" unsubscribes it).
 */
export async function startRedisApp(
  kind: ClientKind,
  url: string,
  adapterOptions: Omit<RedisAdapterOptions, "client"> = {},
  pubsub: Omit<PubSubOptions, "adapter"> = {},
): Promise<RedisApp> {
  const { client } = await connectClient(kind, url);
  const adapter = redisAdapter({ client, ...adapterOptions });
  const errors: unknown[] = [];
  const gaps: GapEvent[] = [];
  const app: Application = createApp()
    .install(WebSockets, { pingPeriod: 0 })
    .install(PubSub, { adapter, onGap: (g) => gaps.push(g), ...pubsub })
    .onError((e) => errors.push(e));
  app.routing((r) =>
    r.webSocket("/t/{topic}", async (session) => {
      const topic = session.call.parameters.topic!;
      await session.subscribe(topic);
      await session.send(`joined ${topic}`);
      for await (const m of session.incoming) {
        if (m.type === "text" && m.text === "leave") session.unsubscribe(topic);
        else app.publish(topic, m.type === "text" ? m.text : m.data, { except: session });
      }
    }),
  );
  const { url: http } = await app.listen({ host: "127.0.0.1", port: 0 });
  onCleanup(() => app.stop({ grace: 0 }));
  return { app, wsUrl: http.replace(/^http/, "ws"), adapter, errors, gaps };
}

/** Fails the test that saw an unhandled rejection (registered per test file). */
export function guardUnhandledRejections(): void {
  const seen: string[] = [];
  // Kept as text: a client error can hold the whole client, too big for the diff of a failed expect.
  const listener = (reason: unknown) =>
    seen.push(reason instanceof Error ? (reason.stack ?? reason.message) : String(reason));
  process.on("unhandledRejection", listener);
  afterEach(() => {
    const got = seen.splice(0);
    expect(got, "unhandled rejections").toEqual([]);
  });
}

/** Error codes the adapter reported, in order (RedisAdapterError has a `code`). */
export const codes = (errors: unknown[]): string[] =>
  errors.map((e) => String((e as { code?: unknown }).code ?? (e as Error).message));
