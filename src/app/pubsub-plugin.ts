import { isValidWireCloseCode } from "../protocol/index.js";
import {
  DEFAULT_PUBSUB_CONFIG,
  type DropReason,
  type GapEvent,
  type PubSubAdapter,
  type PubSubConfig,
} from "../pubsub/index.js";
import type { SessionHandle, SlowSubscriberPolicy } from "../session/index.js";
import { AppError } from "./errors.js";
import type { Plugin } from "./websockets-plugin.js";

/** Options of the PubSub plugin. Without it, pub/sub works in-process with these defaults. */
export interface PubSubOptions {
  /** Carries publications to other processes (`redisAdapter`, `clusterAdapter`). Default: none (one process). */
  adapter?: PubSubAdapter;
  /**
   * A subscriber over its `outgoingHighWaterMark` when a publication comes: "drop" skips the
   * publication for it (default), "close" closes it with `slowCloseCode`. `session.slowSubscriberPolicy`
   * overrides it for one session.
   */
  slowSubscriber?: SlowSubscriberPolicy;
  /** Close code for the "close" policy: 1008 (policy violation, default) or 1013 (try again later), or any valid code. */
  slowCloseCode?: number;
  /** Longest topic, in UTF-8 bytes. Default 1024. */
  maxTopicLength?: number;
  /** Most topics one session may subscribe to. Default 1024. */
  maxSubscriptionsPerSession?: number;
  /** Largest publication, in bytes; larger ones throw (and from other nodes are dropped). Default 1 MiB. */
  maxPublicationSize?: number;
  /** Called for each subscriber a publication was not sent to ("slow": over its high-water mark). */
  onDrop?: (session: SessionHandle, topic: string, reason: DropReason) => void;
  /** Called when the subscribers of a topic may have missed messages (the backplane reconnected). */
  onGap?: (event: GapEvent) => void;
}

/** The PubSub plugin: `app.install(PubSub, { adapter: redisAdapter({ client }) })`. */
export const PubSub: Plugin<PubSubOptions, PubSubConfig> = {
  key: "sockway.pubsub",
  name: "PubSub",
  install(options = {}, app) {
    const policy = options.slowSubscriber ?? DEFAULT_PUBSUB_CONFIG.slowSubscriber;
    if (policy !== "drop" && policy !== "close")
      throw new AppError(
        "INVALID_OPTION",
        `PubSub option slowSubscriber: "drop" or "close", not ${String(policy)}`,
      );
    const code = options.slowCloseCode ?? DEFAULT_PUBSUB_CONFIG.slowCloseCode;
    if (!isValidWireCloseCode(code))
      throw new AppError(
        "INVALID_OPTION",
        `PubSub option slowCloseCode: ${code} may not be sent (RFC 6455 §7.4)`,
      );
    const adapter = options.adapter;
    if (
      adapter !== undefined &&
      (typeof adapter.start !== "function" || typeof adapter.publish !== "function")
    )
      throw new AppError("INVALID_OPTION", "PubSub option adapter: not a PubSubAdapter");
    const config: PubSubConfig = {
      adapter,
      slowSubscriber: policy,
      slowCloseCode: code,
      maxTopicLength: limit(
        "maxTopicLength",
        options.maxTopicLength,
        DEFAULT_PUBSUB_CONFIG.maxTopicLength,
        65_535,
      ),
      maxSubscriptionsPerSession: limit(
        "maxSubscriptionsPerSession",
        options.maxSubscriptionsPerSession,
        DEFAULT_PUBSUB_CONFIG.maxSubscriptionsPerSession,
        Number.MAX_SAFE_INTEGER,
      ),
      maxPublicationSize: limit(
        "maxPublicationSize",
        options.maxPublicationSize,
        DEFAULT_PUBSUB_CONFIG.maxPublicationSize,
        2 ** 31 - 1,
      ),
      onDrop: options.onDrop,
      onGap: options.onGap,
    };
    app.pubsub.configure(config);
    return config;
  },
};

function limit(name: string, value: number | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1 || value > max)
    throw new AppError(
      "INVALID_OPTION",
      `PubSub option ${name} must be an integer from 1 to ${max}, got ${value}`,
    );
  return value;
}
