import type { Buffer } from "node:buffer";
import { AppError } from "../protocol/index.js";

/**
 * The two Redis clients behind one small interface, so the adapter does not care which one the user
 * made: node-redis (v4 to v6, `createClient` or `createCluster`) and ioredis (`Redis`, `Cluster`).
 * They are told apart by their shape, not their classes, so sockway depends on neither.
 */

/** The user's client, for commands: PUBLISH, PUBSUB NUMSUB, INFO. Never closed by us. */
export interface CommandConnection {
  /** Connected and not in the middle of a reconnect: a command now goes out at once. */
  readonly ready: boolean;
  /** Resolves with the number of subscribers that got it (PUBLISH or SPUBLISH). */
  publish(channel: string, message: Buffer, sharded: boolean): Promise<number>;
  /** Subscriber connections of `channel` (PUBSUB NUMSUB or SHARDNUMSUB). */
  numsub(channel: string, sharded: boolean): Promise<number>;
  /** The server's run_id (INFO server), which changes when it restarts. */
  runId(): Promise<string | undefined>;
  /** Resolves true once `ready`, false after `ms`. */
  whenReady(ms: number): Promise<boolean>;
}

/** What the subscriber connection reports. */
export interface SubscriberEvents {
  /** A message on a subscribed channel, as bytes. */
  message(channel: string, message: Buffer): void;
  /** Connected (again); the subscriptions it `keeps` are back in place. */
  ready(): void;
  /** The connection was lost (or failed to be made). */
  down(error: unknown): void;
}

/** The adapter's own connection in subscriber mode (made with `duplicate()`). */
export interface SubscriberConnection {
  readonly ready: boolean;
  /** The client subscribes again by itself after a reconnect (before it says `ready`). */
  readonly keepsSubscriptions: boolean;
  /** Resolves once Redis acknowledged every channel. */
  subscribe(channels: string[], sharded: boolean): Promise<void>;
  unsubscribe(channels: string[], sharded: boolean): Promise<void>;
  /** Closes the connection at once (what is in flight is abandoned). */
  close(): Promise<void>;
}

export interface RedisBackend {
  readonly kind: "node-redis" | "ioredis";
  readonly commands: CommandConnection;
  openSubscriber(events: SubscriberEvents): SubscriberConnection;
}

// The parts of each client we use, loosely typed: the real types differ from version to version.
type Fn = (...args: never[]) => unknown;
interface Emitter {
  on(event: string, listener: (...args: never[]) => void): unknown;
  once(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
}
type NodeRedisLike = Emitter & {
  readonly isReady: boolean;
  duplicate(overrides?: object): NodeRedisLike;
  connect(): Promise<unknown>;
  PUBLISH(channel: string, message: Buffer): Promise<number>;
  SPUBLISH?(channel: string, message: Buffer): Promise<number>;
  PUBSUB_NUMSUB(channels: string): Promise<Record<string, number>>;
  PUBSUB_SHARDNUMSUB?(channels: string): Promise<Record<string, number>>;
  INFO(section: string): Promise<string>;
  SUBSCRIBE(
    channels: string[],
    listener: (message: Buffer, channel: Buffer) => void,
    buffers: true,
  ): Promise<void>;
  UNSUBSCRIBE(channels: string[]): Promise<void>;
  SSUBSCRIBE?(
    channels: string[],
    listener: (message: Buffer, channel: Buffer) => void,
    buffers: true,
  ): Promise<void>;
  SUNSUBSCRIBE?(channels: string[]): Promise<void>;
  destroy?(): void;
  disconnect?(): Promise<void>;
};
type IORedisLike = Emitter & {
  readonly status: string;
  duplicate(overrides?: object): IORedisLike;
  connect(): Promise<unknown>;
  publish(channel: string, message: Buffer): Promise<number>;
  spublish(channel: string, message: Buffer): Promise<unknown>;
  pubsub(subcommand: string, channel: string): Promise<unknown>;
  info(section: string): Promise<string>;
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  disconnect(): void;
};

const isFn = (value: unknown): value is Fn => typeof value === "function";

/** Recognizes the client, or throws an AppError (INVALID_OPTION) saying what was expected. */
export function redisBackend(client: unknown): RedisBackend {
  const c = client as Record<string, unknown> | null;
  if (c !== null && typeof c === "object" && isFn(c.duplicate) && isFn(c.on)) {
    if (typeof c.status === "string" && isFn(c.publish) && isFn(c.pubsub))
      return ioredisBackend(client as IORedisLike);
    if ("isReady" in c && isFn(c.PUBLISH) && isFn(c.SUBSCRIBE))
      return nodeRedisBackend(client as NodeRedisLike);
  }
  throw new AppError(
    "INVALID_OPTION",
    "redisAdapter: client must be a node-redis (v4 or later) or ioredis client",
  );
}

function parseRunId(info: string): string | undefined {
  return /^run_id:([0-9a-f]+)/m.exec(info)?.[1];
}

function whenReady(client: Emitter, isReady: () => boolean, ms: number): Promise<boolean> {
  if (isReady()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      client.removeListener("ready", onReady);
      resolve(value);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(isReady()), ms);
    client.once("ready", onReady);
  });
}

function nodeRedisBackend(client: NodeRedisLike): RedisBackend {
  const commands: CommandConnection = {
    get ready() {
      return client.isReady;
    },
    publish(channel, message, sharded) {
      if (!sharded) return client.PUBLISH(channel, message);
      if (!isFn(client.SPUBLISH)) return Promise.reject(new Error("this client has no SPUBLISH"));
      return client.SPUBLISH(channel, message);
    },
    async numsub(channel, sharded) {
      const reply =
        sharded && isFn(client.PUBSUB_SHARDNUMSUB)
          ? await client.PUBSUB_SHARDNUMSUB(channel)
          : await client.PUBSUB_NUMSUB(channel);
      return Number(reply[channel] ?? 0);
    },
    async runId() {
      return parseRunId(String(await client.INFO("server")));
    },
    whenReady: (ms) => whenReady(client, () => client.isReady, ms),
  };
  return {
    kind: "node-redis",
    commands,
    openSubscriber(events) {
      // No offline queue: the adapter only sends while the connection is ready, and reconciles on 'ready'.
      const sub = client.duplicate({ disableOfflineQueue: true });
      const onMessage = (message: Buffer, channel: Buffer) =>
        events.message(channel.toString("utf8"), message);
      sub.on("error", (error: unknown) => events.down(error));
      sub.on("ready", () => events.ready());
      sub.connect().catch((error: unknown) => events.down(error));
      return {
        get ready() {
          return sub.isReady;
        },
        keepsSubscriptions: true,
        subscribe(channels, sharded) {
          if (!sharded) return sub.SUBSCRIBE(channels, onMessage, true);
          if (!isFn(sub.SSUBSCRIBE)) return Promise.reject(new Error("this client has no SSUBSCRIBE"));
          return sub.SSUBSCRIBE(channels, onMessage, true);
        },
        unsubscribe(channels, sharded) {
          if (!sharded) return sub.UNSUBSCRIBE(channels);
          if (!isFn(sub.SUNSUBSCRIBE)) return Promise.reject(new Error("this client has no SUNSUBSCRIBE"));
          return sub.SUNSUBSCRIBE(channels);
        },
        async close() {
          if (isFn(sub.destroy)) sub.destroy();
          else await sub.disconnect?.();
        },
      };
    },
  };
}

function ioredisBackend(client: IORedisLike): RedisBackend {
  const commands: CommandConnection = {
    get ready() {
      return client.status === "ready";
    },
    publish(channel, message, sharded) {
      return sharded ? client.spublish(channel, message).then(Number) : client.publish(channel, message);
    },
    async numsub(channel, sharded) {
      const reply = await client.pubsub(sharded ? "SHARDNUMSUB" : "NUMSUB", channel);
      return Array.isArray(reply) ? Number(reply[1] ?? 0) : 0;
    },
    async runId() {
      return parseRunId(String(await client.info("server")));
    },
    whenReady: (ms) => whenReady(client, () => client.status === "ready", ms),
  };
  return {
    kind: "ioredis",
    commands,
    openSubscriber(events) {
      // The adapter subscribes again itself on 'ready' (ioredis would do it after 'ready', so the
      // adapter could not tell when the subscriptions are back), and sends nothing while not ready.
      const sub = client.duplicate({ autoResubscribe: false, enableOfflineQueue: false, lazyConnect: true });
      const onMessage = (channel: Buffer, message: Buffer) =>
        events.message(channel.toString("utf8"), message);
      sub.on("messageBuffer", onMessage);
      sub.on("smessageBuffer", onMessage);
      sub.on("error", (error: unknown) => events.down(error));
      sub.on("close", () => events.down(new Error("subscriber connection closed")));
      sub.on("ready", () => events.ready());
      sub.connect().catch((error: unknown) => events.down(error));
      return {
        get ready() {
          return sub.status === "ready";
        },
        keepsSubscriptions: false,
        async subscribe(channels, sharded) {
          if (sharded) await sub.ssubscribe(...channels);
          else await sub.subscribe(...channels);
        },
        async unsubscribe(channels, sharded) {
          if (sharded) await sub.sunsubscribe(...channels);
          else await sub.unsubscribe(...channels);
        },
        async close() {
          sub.disconnect();
        },
      };
    },
  };
}
