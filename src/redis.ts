/**
 * `sockway/redis`: the Redis pub/sub adapter, on its own entry point.
 *
 *   import { redisAdapter } from "sockway/redis";
 *   app.install(PubSub, { adapter: redisAdapter({ client: await createClient({ url }).connect() }) });
 *
 * The client is the application's own node-redis (v4 or later) or ioredis client (optional peer
 * dependencies); sockway imports neither. The main entry re-exports the same bindings.
 */
export type { AdapterHost, PubSubAdapter } from "./pubsub/index.js";
export {
  type RedisAdapter,
  RedisAdapterError,
  type RedisAdapterOptions,
  type RedisAdapterStats,
  redisAdapter,
} from "./pubsub/index.js";
