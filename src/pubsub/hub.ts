import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { CloseCode, UsageError } from "../protocol/index.js";
import {
  Publication,
  QUEUED,
  type SessionHandle,
  SLOW,
  type SlowSubscriberPolicy,
  type WebSocketSession,
} from "../session/index.js";
import type { AdapterHost, ClusterCount, GapReason, PubSubAdapter } from "./adapter.js";

// biome-ignore lint/suspicious/noExplicitAny: sessions of every route, whatever their frame types
type Subscriber = WebSocketSession<any, any, any>;

/** What a publish may carry: text (sent as a text message) or bytes (a binary message). */
export type Publishable = string | ArrayBuffer | ArrayBufferView;

export interface PublishOptions {
  /** A session not to send it to (usually the publisher's own). */
  except?: SessionHandle | undefined;
  /** false: sent uncompressed even to sessions with permessage-deflate. Default true. */
  compress?: boolean;
  /** true: only this node's subscribers get it (the adapter is not told). Default false. */
  local?: boolean;
}

/** What a publish did on this node (other nodes' subscribers are not counted). */
export interface PublishResult {
  /** Subscribers it was queued for. */
  delivered: number;
  /** Subscribers it was not sent to: over their high-water mark (or mid-way through a fragmented send). */
  dropped: number;
  /** Of the dropped, those closed by the "close" policy. */
  closed: number;
}

/** Why a publication was dropped for one subscriber. */
export type DropReason = "slow" | "busy";

export interface GapEvent {
  topic: string;
  reason: GapReason;
  /** This node's subscribers of the topic: they may have missed messages. */
  subscribers: ReadonlySet<SessionHandle>;
}

/** Counters since the application started. */
export interface PubSubStats {
  /** Publications made on this node. */
  published: number;
  /** Publications from other nodes delivered here. */
  received: number;
  delivered: number;
  dropped: number;
  closed: number;
  /** Frames encoded for publications: at most one per publication, whatever the subscriber count. */
  framesEncoded: number;
  /** Compressions for publications: at most one per publication and shared encoder. */
  compressions: number;
  /** Gap signals given (one per topic affected). */
  gaps: number;
}

/** The pub/sub's resolved configuration (see `PubSubOptions` in the app layer). */
export interface PubSubConfig {
  adapter: PubSubAdapter | undefined;
  slowSubscriber: SlowSubscriberPolicy;
  slowCloseCode: number;
  maxTopicLength: number;
  maxSubscriptionsPerSession: number;
  maxPublicationSize: number;
  onDrop: ((session: SessionHandle, topic: string, reason: DropReason) => void) | undefined;
  onGap: ((event: GapEvent) => void) | undefined;
}

export const DEFAULT_PUBSUB_CONFIG: Readonly<PubSubConfig> = Object.freeze({
  adapter: undefined,
  slowSubscriber: "drop",
  slowCloseCode: CloseCode.PolicyViolation,
  maxTopicLength: 1024,
  maxSubscriptionsPerSession: 1024,
  maxPublicationSize: 1024 * 1024,
  onDrop: undefined,
  onGap: undefined,
});

const RESOLVED: Promise<void> = Promise.resolve();
const noop = (): void => {};

/**
 * An application's topics: who subscribes to what on this node, fan-out that encodes each publication
 * once, the slow-subscriber policy, and the adapter that carries publications to other nodes.
 */
export class PubSubHub {
  /** This node's id: random per process and application, carried by what it publishes. */
  readonly nodeId = randomBytes(8).toString("hex");
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  /** Topics whose adapter subscription is still being made: what `subscribe` resolves with. */
  private readonly pending = new Map<string, Promise<void>>();
  private config: PubSubConfig = DEFAULT_PUBSUB_CONFIG;
  private adapterStarted = false;
  private stopped = false;
  private readonly counters: PubSubStats = {
    published: 0,
    received: 0,
    delivered: 0,
    dropped: 0,
    closed: 0,
    framesEncoded: 0,
    compressions: 0,
    gaps: 0,
  };
  private readonly adapterHost: AdapterHost;

  constructor(private readonly reportError: (error: unknown) => void) {
    const hub = this;
    this.adapterHost = {
      nodeId: this.nodeId,
      get maxPublicationSize() {
        return hub.config.maxPublicationSize;
      },
      deliver: (topic, payload, binary) => {
        if (payload.length > this.config.maxPublicationSize) return;
        this.counters.received++;
        this.fanOut(topic, payload, binary, true, undefined);
      },
      gap: (reason, topics) => this.gap(reason, topics),
      topics: () => this.subscribers.keys(),
      localCount: (topic) => this.subscriberCount(topic),
      reportError: (error) => this.reportError(error),
    };
  }

  /** @internal Applies the PubSub plugin's configuration (once, at install). */
  configure(config: PubSubConfig): void {
    this.config = config;
  }

  get stats(): Readonly<PubSubStats> {
    return { ...this.counters };
  }

  /** Topics with subscribers on this node. */
  topics(): string[] {
    return [...this.subscribers.keys()];
  }

  /** Subscribers of `topic` on this node. */
  subscriberCount(topic: string): number {
    return this.subscribers.get(topic)?.size ?? 0;
  }

  /**
   * Subscribers of `topic` on every node. Waits at most `timeout` ms (default 1000) for the other
   * nodes; a node that does not answer is left out and `complete` is false.
   */
  async clusterSubscriberCount(topic: string, options: { timeout?: number } = {}): Promise<ClusterCount> {
    const local = this.subscriberCount(topic);
    const adapter = this.startedAdapter();
    if (adapter?.count === undefined) return { count: local, nodes: 1, complete: true };
    try {
      const remote = await adapter.count(topic, options.timeout ?? 1000);
      return { count: local + remote.count, nodes: 1 + remote.nodes, complete: remote.complete };
    } catch (error) {
      this.reportError(error);
      return { count: local, nodes: 1, complete: false };
    }
  }

  /**
   * Sends `data` to every subscriber of `topic`: on this node at once (queued behind each one's own
   * sends), on the others through the adapter. Text goes as a text message, bytes as binary. Returns
   * what happened on this node. Throws a UsageError for an invalid topic or an oversized payload.
   */
  publish(topic: string, data: Publishable, options: PublishOptions = {}): PublishResult {
    this.checkTopic(topic);
    let payload: Buffer;
    const binary = typeof data !== "string";
    if (typeof data === "string") payload = Buffer.from(data, "utf8");
    else if (Buffer.isBuffer(data)) payload = data;
    else if (data instanceof ArrayBuffer) payload = Buffer.from(data);
    else if (ArrayBuffer.isView(data)) payload = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    else throw new UsageError("INVALID_FRAME", "publish takes a string, or an ArrayBuffer or view of one");
    if (payload.length > this.config.maxPublicationSize)
      throw new UsageError(
        "PUBLICATION_TOO_LARGE",
        `publication of ${payload.length} bytes is over maxPublicationSize (${this.config.maxPublicationSize})`,
      );
    this.counters.published++;
    const result = this.fanOut(topic, payload, binary, options.compress !== false, options.except);
    if (options.local !== true) {
      const adapter = this.startedAdapter();
      if (adapter !== undefined) {
        try {
          adapter.publish(topic, payload, binary);
        } catch (error) {
          this.reportError(error); // the backplane is down: local delivery has happened
        }
      }
    }
    return result;
  }

  private fanOut(
    topic: string,
    payload: Buffer,
    binary: boolean,
    compress: boolean,
    except: SessionHandle | undefined,
  ): PublishResult {
    const result: PublishResult = { delivered: 0, dropped: 0, closed: 0 };
    const subscribers = this.subscribers.get(topic);
    if (subscribers === undefined) return result;
    const pub = new Publication(payload, binary, compress);
    const config = this.config;
    for (const session of subscribers) {
      if (session === except) continue;
      const delivery = session.deliverPublication(pub);
      if (delivery === QUEUED) {
        result.delivered++;
        continue;
      }
      result.dropped++;
      const slow = delivery === SLOW;
      if (slow && (session.slowSubscriberPolicy ?? config.slowSubscriber) === "close") {
        result.closed++;
        // Leaves every topic now (the set being iterated included, which is safe for a Set).
        session.close(config.slowCloseCode, "Too slow for its subscriptions").catch(noop);
      } else if (config.onDrop !== undefined) {
        try {
          config.onDrop(session, topic, slow ? "slow" : "busy");
        } catch (error) {
          this.reportError(error);
        }
      }
    }
    const c = this.counters;
    c.delivered += result.delivered;
    c.dropped += result.dropped;
    c.closed += result.closed;
    c.framesEncoded += pub.framesEncoded;
    c.compressions += pub.compressions;
    return result;
  }

  // ---- TopicRegistry: called by sessions ------------------------------------------------------
  // (No `implements TopicRegistry` on the class: these are @internal, so the published .d.ts has no
  // such members and the clause would not compile there. The hub is checked where it is passed as
  // one, `topics: TopicRegistry` in app/upgrade.ts.)

  /** @internal */
  subscribe(session: SessionHandle, topic: string): Promise<void> {
    this.checkTopic(topic);
    const s = session as Subscriber;
    let mine = s.subscriptions;
    if (mine?.has(topic)) return this.pending.get(topic) ?? RESOLVED;
    if (mine !== undefined && mine.size >= this.config.maxSubscriptionsPerSession)
      throw new UsageError(
        "TOO_MANY_SUBSCRIPTIONS",
        `a session may subscribe to at most ${this.config.maxSubscriptionsPerSession} topics`,
      );
    mine ??= s.subscriptions = new Set();
    mine.add(topic);
    const set = this.subscribers.get(topic);
    if (set !== undefined) {
      set.add(s);
      return this.pending.get(topic) ?? RESOLVED;
    }
    this.subscribers.set(topic, new Set([s]));
    return this.interestStarted(topic);
  }

  /** @internal */
  unsubscribe(session: SessionHandle, topic: string): boolean {
    const s = session as Subscriber;
    if (s.subscriptions?.delete(topic) !== true) return false;
    this.removeSubscriber(s, topic);
    return true;
  }

  /** @internal */
  leaveAll(session: SessionHandle): void {
    const s = session as Subscriber;
    const mine = s.subscriptions;
    if (mine === undefined) return;
    s.subscriptions = undefined;
    for (const topic of mine) this.removeSubscriber(s, topic);
  }

  private removeSubscriber(session: Subscriber, topic: string): void {
    const set = this.subscribers.get(topic);
    if (set === undefined || !set.delete(session) || set.size > 0) return;
    this.subscribers.delete(topic);
    this.pending.delete(topic);
    const adapter = this.startedAdapter();
    if (adapter === undefined) return;
    try {
      adapter.unsubscribe(topic);
    } catch (error) {
      this.reportError(error);
    }
  }

  private interestStarted(topic: string): Promise<void> {
    const adapter = this.startedAdapter();
    if (adapter === undefined) return RESOLVED;
    let made: Promise<void> | void;
    try {
      made = adapter.subscribe(topic);
    } catch (error) {
      this.reportError(error);
      return RESOLVED;
    }
    if (made === undefined) return RESOLVED;
    const ready = made.then(
      () => {
        if (this.pending.get(topic) === ready) this.pending.delete(topic);
      },
      (error: unknown) => {
        if (this.pending.get(topic) === ready) this.pending.delete(topic);
        this.reportError(error);
      },
    );
    this.pending.set(topic, ready);
    return ready;
  }

  // ---- the adapter ----------------------------------------------------------------------------

  /** The adapter, started on first need (an application used without `listen`); none once stopped. */
  private startedAdapter(): PubSubAdapter | undefined {
    if (this.stopped) return undefined;
    const adapter = this.config.adapter;
    if (adapter !== undefined && !this.adapterStarted) this.start();
    return adapter;
  }

  /**
   * @internal The application listens (or is attached): the adapter starts now, so this node counts
   * in the cluster before its first subscriber. After `stop`, this is what starts it again.
   */
  start(): void {
    this.stopped = false;
    const adapter = this.config.adapter;
    if (adapter === undefined || this.adapterStarted) return;
    this.adapterStarted = true;
    try {
      adapter.start(this.adapterHost);
    } catch (error) {
      this.reportError(error); // local delivery does not depend on the backplane
    }
  }

  /**
   * @internal The application stops: the adapter closes its connections. Until `start`, publications
   * stay on this node (a handler still running publishes locally only).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    const adapter = this.config.adapter;
    if (adapter === undefined || !this.adapterStarted) return;
    this.adapterStarted = false;
    this.pending.clear();
    try {
      await adapter.close();
    } catch (error) {
      this.reportError(error);
    }
  }

  private gap(reason: GapReason, topics?: readonly string[]): void {
    const onGap = this.config.onGap;
    for (const topic of topics ?? [...this.subscribers.keys()]) {
      const subscribers = this.subscribers.get(topic);
      if (subscribers === undefined) continue;
      this.counters.gaps++;
      if (onGap === undefined) continue;
      try {
        onGap({ topic, reason, subscribers });
      } catch (error) {
        this.reportError(error);
      }
    }
  }

  private checkTopic(topic: string): void {
    const max = this.config.maxTopicLength;
    if (
      typeof topic !== "string" ||
      topic.length === 0 ||
      (topic.length * 3 > max && Buffer.byteLength(topic, "utf8") > max)
    )
      throw new UsageError("INVALID_TOPIC", `a topic is a string of 1 to ${max} UTF-8 bytes`);
  }
}
