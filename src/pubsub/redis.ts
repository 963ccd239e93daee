import { Buffer } from "node:buffer";
import { AppError } from "../protocol/index.js";
import type { AdapterHost, ClusterCount, GapReason, PubSubAdapter } from "./adapter.js";
import {
  decodeEnvelope,
  ENVELOPE_OVERHEAD,
  encodeEnvelope,
  FLAG_BINARY,
  FLAG_COUNT_REPLY,
  FLAG_COUNT_REQUEST,
} from "./envelope.js";
import { type RedisBackend, redisBackend, type SubscriberConnection } from "./redis-clients.js";

export interface RedisAdapterOptions {
  /**
   * A client the application made and connected: node-redis (`createClient`, v4 or later) or ioredis.
   * It is used for PUBLISH and a few queries and is never closed by the adapter; the adapter makes
   * its subscriber connection with `client.duplicate()` (so TLS, auth, Sentinel come from it).
   */
  client: unknown;
  /** Prefix of every channel the adapter uses. Default `"sockway:"`. Topics go on `${prefix}t:<topic>`. */
  prefix?: string;
  /** Redis 7 sharded pub/sub (SSUBSCRIBE/SPUBLISH) instead of SUBSCRIBE/PUBLISH. Default false. */
  sharded?: boolean;
  /**
   * Bytes of publications sent to Redis and not yet acknowledged (each counted as its envelope plus
   * `PENDING_OVERHEAD`). A publication that would go over is dropped (counted in `stats`), so a slow
   * Redis cannot grow the process without bound. Default 16 MiB.
   */
  maxPendingBytes?: number;
  /**
   * Milliseconds `subscribe` waits for Redis to acknowledge before it rejects (the subscription is
   * still made once Redis is back). Also bounds the INFO query after a reconnect. Default 5000.
   */
  subscribeTimeout?: number;
  /** Most channels in one SUBSCRIBE or UNSUBSCRIBE command (sharded: one per command). Default 1000. */
  maxChannelsPerCommand?: number;
}

/** What an unacknowledged publication costs besides its bytes (the client's command, its promise). */
export const PENDING_OVERHEAD = 256;

export const DEFAULT_REDIS_ADAPTER_OPTIONS: Readonly<Required<Omit<RedisAdapterOptions, "client">>> =
  Object.freeze({
    prefix: "sockway:",
    sharded: false,
    maxPendingBytes: 16 * 1024 * 1024,
    subscribeTimeout: 5000,
    maxChannelsPerCommand: 1000,
  });

/** Counters since the adapter was made. */
export interface RedisAdapterStats {
  /** Publications sent to Redis. */
  published: number;
  /** Publications not sent: Redis not ready, over `maxPendingBytes`, or failed. */
  dropped: number;
  /** Publications from other nodes handed to the pub/sub. */
  received: number;
  /** Own publications coming back from Redis, dropped (delivered locally already). */
  echoes: number;
  /** Messages from Redis that did not decode or were too large, dropped. */
  malformed: number;
  /** Gap signals given (one per reconnect after a loss). */
  gaps: number;
  /** Bytes now awaiting Redis's acknowledgment (see `maxPendingBytes`). */
  pendingBytes: number;
}

export interface RedisAdapter extends PubSubAdapter {
  readonly stats: Readonly<RedisAdapterStats>;
  /** Resolves once `pendingBytes` is at most `bytes` (for a publisher that wants to pace itself). */
  drained(bytes?: number): Promise<void>;
}

/** A failure of the Redis backplane, given to the application's error hook (never thrown at callers). */
export class RedisAdapterError extends Error {
  override readonly name = "RedisAdapterError";
  constructor(
    readonly code:
      | "REDIS_UNAVAILABLE"
      | "PUBLISH_FAILED"
      | "PUBLISH_OVERLOAD"
      | "MALFORMED_MESSAGE"
      | "SUBSCRIBE_TIMEOUT"
      | "SUBSCRIBE_FAILED"
      | "SUBSCRIBER_DOWN",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout;
}

interface CountRequest {
  expected: number;
  count: number;
  nodes: Set<string>;
  finish: () => void;
}

/**
 * Carries publications between the processes of a cluster over Redis pub/sub.
 *
 *   app.install(PubSub, { adapter: redisAdapter({ client: await createClient({ url }).connect() }) });
 *
 * Each node subscribes to a topic's channel only while it has local subscribers, on its own
 * connection; its publications go through the given client. Messages are binary envelopes (origin node
 * id, topic, payload), so a node drops its own echo and delivers exactly one copy locally.
 */
export function redisAdapter(options: RedisAdapterOptions): RedisAdapter {
  const { client, ...given } = options;
  const o: Resolved = { ...DEFAULT_REDIS_ADAPTER_OPTIONS, ...withoutUndefined(given) };
  if (typeof o.prefix !== "string")
    throw new AppError("INVALID_OPTION", "redisAdapter: prefix must be a string");
  if (typeof o.sharded !== "boolean")
    throw new AppError("INVALID_OPTION", "redisAdapter: sharded must be a boolean");
  positiveInteger("maxPendingBytes", o.maxPendingBytes);
  positiveInteger("subscribeTimeout", o.subscribeTimeout);
  positiveInteger("maxChannelsPerCommand", o.maxChannelsPerCommand);
  return new RedisPubSubAdapter(redisBackend(client), o);
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function positiveInteger(name: string, value: unknown): void {
  if (!Number.isSafeInteger(value) || (value as number) < 1)
    throw new AppError(
      "INVALID_OPTION",
      `redisAdapter: ${name} must be a positive integer, got ${String(value)}`,
    );
}

type Resolved = Required<Omit<RedisAdapterOptions, "client">>;

class RedisPubSubAdapter implements RedisAdapter {
  private readonly counters: Omit<RedisAdapterStats, "pendingBytes"> = {
    published: 0,
    dropped: 0,
    received: 0,
    echoes: 0,
    malformed: 0,
    gaps: 0,
  };
  private pendingBytes = 0;
  private drainWaiters: Array<{ bytes: number; resolve: () => void }> = [];

  private host: AdapterHost | undefined;
  private origin = Buffer.alloc(0);
  private sub: SubscriberConnection | undefined;
  /** Channels this node wants (topics with local subscribers, and the two control channels). */
  private wanted = new Set<string>();
  /** Channels Redis acknowledged on the subscriber connection (as far as we know). */
  private subscribed = new Set<string>();
  /** Channels with an UNSUBSCRIBE in flight. */
  private leaving = new Set<string>();
  /** Channels whose wanted state changed since the last reconcile. */
  private dirty = new Set<string>();
  private waiters = new Map<string, Waiter[]>();
  private reconciling = false;
  private everReady = false;
  /** The subscriber connection was lost after being ready: a gap is due once it is back. */
  private lost = false;
  private gapDue = false;
  private runId: string | undefined;
  /** An outage was reported (publishing, or the subscriber): reported again only after recovery. */
  private publishReported = false;
  private subscriberReported = false;
  private malformedReportedAt = 0;
  private countSeq = 0;
  private counts = new Map<number, CountRequest>();

  private readonly topicPrefix: string;
  private readonly requestChannel: string;
  private replyChannel = "";

  constructor(
    private readonly backend: RedisBackend,
    private readonly options: Resolved,
  ) {
    this.topicPrefix = `${options.prefix}t:`;
    this.requestChannel = `${options.prefix}c:count`;
  }

  get stats(): Readonly<RedisAdapterStats> {
    return { ...this.counters, pendingBytes: this.pendingBytes };
  }

  drained(bytes = 0): Promise<void> {
    if (this.pendingBytes <= bytes) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push({ bytes, resolve }));
  }

  start(host: AdapterHost): void {
    this.host = host;
    this.origin = Buffer.from(host.nodeId, "utf8");
    this.replyChannel = `${this.options.prefix}c:reply:${host.nodeId}`;
    this.wanted = new Set([this.requestChannel, this.replyChannel]);
    this.subscribed = new Set();
    this.dirty = new Set(this.wanted);
    this.everReady = false;
    this.lost = false;
    this.gapDue = false;
    this.runId = undefined;
    const sub = this.backend.openSubscriber({
      message: (channel, message) => this.onMessage(channel, message),
      ready: () => this.onReady(sub),
      down: (error) => this.onDown(sub, error),
    });
    this.sub = sub;
  }

  subscribe(topic: string): Promise<void> | void {
    const channel = this.topicPrefix + topic;
    this.wanted.add(channel);
    // Already there, and not on its way out: nothing to wait for.
    if (this.subscribed.has(channel) && !this.dirty.has(channel) && !this.leaving.has(channel)) return;
    this.dirty.add(channel);
    const acked = this.waitFor(channel);
    this.reconcile();
    return acked;
  }

  unsubscribe(topic: string): void {
    const channel = this.topicPrefix + topic;
    this.wanted.delete(channel);
    this.settle(channel); // nobody waits for a topic nobody wants
    this.dirty.add(channel);
    this.reconcile();
  }

  publish(topic: string, payload: Buffer, binary: boolean): void {
    this.send(this.topicPrefix + topic, binary ? FLAG_BINARY : 0, topic, payload);
  }

  async count(topic: string, timeout: number): Promise<ClusterCount> {
    const host = this.host;
    const sub = this.sub;
    if (host === undefined || sub === undefined) return { count: 0, nodes: 0, complete: false };
    if (!this.backend.commands.ready) return { count: 0, nodes: 0, complete: false };
    const deadline = Date.now() + timeout;
    this.countSeq = (this.countSeq + 1) >>> 0;
    const id = this.countSeq;
    const request: CountRequest = {
      expected: Number.POSITIVE_INFINITY,
      count: 0,
      nodes: new Set(),
      finish: noop,
    };
    const finished = new Promise<void>((resolve) => {
      request.finish = resolve;
    });
    this.counts.set(id, request);
    const timer = setTimeout(() => request.finish(), timeout);
    try {
      // Our replies can only come once our reply channel is acknowledged.
      if (!this.subscribed.has(this.replyChannel))
        await Promise.race([this.waitFor(this.replyChannel).catch(noop), finished]);
      const left = deadline - Date.now();
      if (left <= 0 || !this.subscribed.has(this.replyChannel))
        return { count: 0, nodes: 0, complete: false };
      const subscribers = await Promise.race([
        this.backend.commands.numsub(this.requestChannel, this.options.sharded),
        finished.then(() => undefined),
      ]);
      if (subscribers === undefined) return { count: 0, nodes: 0, complete: false };
      // Every started node listens on the request channel; this one does not answer itself.
      request.expected = subscribers - (this.subscribed.has(this.requestChannel) ? 1 : 0);
      if (request.nodes.size >= request.expected) request.finish();
      else {
        const payload = Buffer.allocUnsafe(4);
        payload.writeUInt32BE(id);
        this.send(this.requestChannel, FLAG_COUNT_REQUEST, topic, payload);
        await finished;
      }
      return {
        count: request.count,
        nodes: request.nodes.size,
        complete: request.nodes.size >= request.expected,
      };
    } finally {
      clearTimeout(timer);
      this.counts.delete(id);
    }
  }

  async close(): Promise<void> {
    const sub = this.sub;
    this.sub = undefined;
    this.host = undefined;
    for (const channel of [...this.waiters.keys()]) this.settle(channel);
    for (const request of this.counts.values()) request.finish();
    this.wanted.clear();
    this.dirty.clear();
    this.subscribed.clear();
    if (sub !== undefined) await sub.close();
  }

  // ---- the subscriber connection --------------------------------------------------------------

  private onReady(sub: SubscriberConnection): void {
    if (sub !== this.sub) return;
    this.subscriberReported = false;
    if (!sub.keepsSubscriptions) this.subscribed.clear();
    // Reconcile everything: the client may have restored channels we no longer want, or lost some.
    for (const channel of this.wanted) this.dirty.add(channel);
    for (const channel of this.subscribed) this.dirty.add(channel);
    if (this.lost) {
      this.lost = false;
      this.gapDue = true;
    }
    if (!this.everReady) {
      this.everReady = true;
      void this.readRunId();
    }
    this.reconcile();
  }

  private onDown(sub: SubscriberConnection, error: unknown): void {
    if (sub !== this.sub) return;
    if (this.everReady) this.lost = true;
    if (!this.subscriberReported) {
      this.subscriberReported = true;
      this.report(
        new RedisAdapterError("SUBSCRIBER_DOWN", "Redis subscriber connection lost", { cause: error }),
      );
    }
  }

  /** Brings Redis's subscriptions in line with `wanted`, in batches, while the connection is ready. */
  private reconcile(): void {
    const sub = this.sub;
    if (this.reconciling || sub?.ready !== true) return;
    this.reconciling = true;
    void this.reconcileLoop(sub).finally(() => {
      this.reconciling = false;
      // A connection that came back while the loop was winding down.
      if (this.sub === sub && sub.ready && (this.dirty.size > 0 || this.gapDue)) this.reconcile();
    });
  }

  private async reconcileLoop(sub: SubscriberConnection): Promise<void> {
    const { sharded, maxChannelsPerCommand } = this.options;
    const batch = sharded ? 1 : maxChannelsPerCommand;
    while (this.sub === sub && sub.ready && this.dirty.size > 0) {
      const add: string[] = [];
      const remove: string[] = [];
      for (const channel of this.dirty) {
        if (add.length >= batch || remove.length >= batch) break;
        this.dirty.delete(channel);
        const want = this.wanted.has(channel);
        if (want === this.subscribed.has(channel)) {
          if (want) this.settle(channel);
        } else (want ? add : remove).push(channel);
      }
      try {
        if (remove.length > 0) {
          for (const channel of remove) this.leaving.add(channel);
          try {
            await sub.unsubscribe(remove, sharded);
          } finally {
            for (const channel of remove) this.leaving.delete(channel);
          }
          for (const channel of remove) {
            this.subscribed.delete(channel);
            // Wanted again while the UNSUBSCRIBE was in flight: subscribe once more.
            if (this.wanted.has(channel)) this.dirty.add(channel);
          }
        }
        if (add.length > 0) {
          await sub.subscribe(add, sharded);
          for (const channel of add) {
            this.subscribed.add(channel);
            if (this.wanted.has(channel)) this.settle(channel);
          }
        }
      } catch (error) {
        // Lost with the connection, most likely: tried again on the next 'ready'.
        for (const channel of [...add, ...remove]) this.dirty.add(channel);
        if (this.sub === sub && sub.ready)
          this.report(
            new RedisAdapterError("SUBSCRIBE_FAILED", "Redis refused a (un)subscribe", { cause: error }),
          );
        return;
      }
    }
    if (this.sub === sub && this.dirty.size === 0 && this.gapDue) {
      this.gapDue = false;
      await this.signalGap();
    }
  }

  private async signalGap(): Promise<void> {
    const before = this.runId;
    await this.readRunId();
    const reason: GapReason =
      before !== undefined && this.runId !== undefined && this.runId !== before ? "restarted" : "reconnected";
    const host = this.host;
    if (host === undefined) return;
    this.counters.gaps++;
    host.gap(reason);
  }

  private async readRunId(): Promise<void> {
    const commands = this.backend.commands;
    try {
      if (!(await commands.whenReady(this.options.subscribeTimeout))) return;
      const runId = await withTimeout(commands.runId(), this.options.subscribeTimeout);
      if (runId !== undefined) this.runId = runId;
    } catch {
      // Unknown: the gap is then reported as "reconnected".
    }
  }

  private waitFor(channel: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const list = this.waiters.get(channel);
          const i = list?.indexOf(waiter) ?? -1;
          if (i >= 0) list!.splice(i, 1);
          if (list?.length === 0) this.waiters.delete(channel);
          reject(
            new RedisAdapterError(
              "SUBSCRIBE_TIMEOUT",
              `Redis did not acknowledge the subscription to ${channel} within ${this.options.subscribeTimeout} ms (it is made when Redis is back)`,
            ),
          );
        }, this.options.subscribeTimeout),
      };
      const list = this.waiters.get(channel);
      if (list === undefined) this.waiters.set(channel, [waiter]);
      else list.push(waiter);
    });
  }

  private settle(channel: string): void {
    const list = this.waiters.get(channel);
    if (list === undefined) return;
    this.waiters.delete(channel);
    for (const waiter of list) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
  }

  // ---- messages from Redis ------------------------------------------------------------------------

  private onMessage(channel: string, message: Buffer): void {
    // Called from the client's parser: nothing may throw out of here.
    try {
      const host = this.host;
      if (host === undefined) return;
      const envelope = decodeEnvelope(message, host.maxPublicationSize);
      if (typeof envelope === "string") return this.malformed(channel, envelope);
      if (envelope.origin === host.nodeId) {
        this.counters.echoes++;
        return;
      }
      if (channel === this.requestChannel) {
        if (envelope.flags !== FLAG_COUNT_REQUEST || envelope.payload.length !== 4)
          return this.malformed(channel, "not a count request");
        const reply = Buffer.allocUnsafe(8);
        envelope.payload.copy(reply, 0);
        reply.writeUInt32BE(host.localCount(envelope.topic), 4);
        this.send(
          `${this.options.prefix}c:reply:${envelope.origin}`,
          FLAG_COUNT_REPLY,
          envelope.topic,
          reply,
        );
        return;
      }
      if (channel === this.replyChannel) {
        if (envelope.flags !== FLAG_COUNT_REPLY || envelope.payload.length !== 8)
          return this.malformed(channel, "not a count reply");
        const request = this.counts.get(envelope.payload.readUInt32BE(0));
        if (request === undefined || request.nodes.has(envelope.origin)) return; // late, or twice
        request.nodes.add(envelope.origin);
        request.count += envelope.payload.readUInt32BE(4);
        if (request.nodes.size >= request.expected) request.finish();
        return;
      }
      if (
        (envelope.flags & ~FLAG_BINARY) !== 0 ||
        channel.length !== this.topicPrefix.length + envelope.topic.length ||
        !channel.startsWith(this.topicPrefix) ||
        !channel.endsWith(envelope.topic)
      )
        return this.malformed(channel, "publication does not match its channel");
      this.counters.received++;
      host.deliver(envelope.topic, envelope.payload, (envelope.flags & FLAG_BINARY) !== 0);
    } catch (error) {
      this.report(error);
    }
  }

  private malformed(channel: string, why: string): void {
    const first = this.counters.malformed === 0;
    this.counters.malformed++;
    // At most one report a second: a flood of garbage must not flood the error hook.
    const now = Date.now();
    if (!first && now - this.malformedReportedAt < 1000) return;
    this.malformedReportedAt = now;
    this.report(
      new RedisAdapterError(
        "MALFORMED_MESSAGE",
        `dropped a message on ${channel}: ${why} (${this.counters.malformed} dropped so far)`,
      ),
    );
  }

  // ---- publishing ---------------------------------------------------------------------------------

  private send(channel: string, flags: number, topic: string, payload: Buffer): void {
    const commands = this.backend.commands;
    if (this.host === undefined) return;
    if (!commands.ready) {
      // Not queued: the client's offline queue would grow for as long as Redis is away.
      return this.dropped(
        new RedisAdapterError("REDIS_UNAVAILABLE", "Redis is not ready: publications are dropped"),
      );
    }
    const cost =
      ENVELOPE_OVERHEAD + this.origin.length + Buffer.byteLength(topic) + payload.length + PENDING_OVERHEAD;
    if (this.pendingBytes + cost > this.options.maxPendingBytes)
      return this.dropped(
        new RedisAdapterError(
          "PUBLISH_OVERLOAD",
          `over maxPendingBytes (${this.options.maxPendingBytes}) awaiting Redis: publications are dropped`,
        ),
      );
    const message = encodeEnvelope(flags, this.origin, topic, payload);
    this.pendingBytes += cost;
    this.counters.published++;
    let sent: Promise<number>;
    try {
      sent = commands.publish(channel, message, this.options.sharded);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      () => {
        this.publishReported = false;
        this.acknowledged(cost);
      },
      (error: unknown) => {
        this.acknowledged(cost);
        this.counters.published--;
        this.dropped(
          new RedisAdapterError("PUBLISH_FAILED", "Redis did not take a publication", { cause: error }),
        );
      },
    );
  }

  private acknowledged(cost: number): void {
    this.pendingBytes -= cost;
    if (this.drainWaiters.length === 0) return;
    const still: typeof this.drainWaiters = [];
    for (const waiter of this.drainWaiters) {
      if (this.pendingBytes <= waiter.bytes) waiter.resolve();
      else still.push(waiter);
    }
    this.drainWaiters = still;
  }

  private dropped(error: RedisAdapterError): void {
    this.counters.dropped++;
    if (this.publishReported) return;
    this.publishReported = true;
    this.report(error);
  }

  private report(error: unknown): void {
    try {
      this.host?.reportError(error);
    } catch {
      // The error hook failing must not reach the Redis client's callbacks.
    }
  }
}

const noop = (): void => {};

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
