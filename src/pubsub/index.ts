export type { AdapterHost, ClusterCount, GapReason, PubSubAdapter } from "./adapter.js";
export {
  type ClusterAdapterOptions,
  ClusterError,
  type ClusterErrorCode,
  clusterAdapter,
} from "./cluster-adapter.js";
export { ClusterRelay, type ClusterRelayOptions, type RelayChannel } from "./cluster-relay.js";
export {
  DEFAULT_PUBSUB_CONFIG,
  type DropReason,
  type GapEvent,
  type Publishable,
  type PublishOptions,
  type PublishResult,
  type PubSubConfig,
  PubSubHub,
  type PubSubStats,
} from "./hub.js";
export {
  type RedisAdapter,
  RedisAdapterError,
  type RedisAdapterOptions,
  type RedisAdapterStats,
  redisAdapter,
} from "./redis.js";
