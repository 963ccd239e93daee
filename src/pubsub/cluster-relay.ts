import {
  DEFAULT_CLUSTER_BACKLOG,
  isWireMessage,
  MARK,
  positive,
  type WireMessage,
  wireSize,
} from "./cluster-adapter.js";

/** A worker as the relay sees it: a node:cluster Worker or a ChildProcess forked with an IPC channel. */
export interface RelayChannel {
  send(message: unknown, callback: (error: Error | null) => void): boolean;
  on(event: "message", listener: (message: unknown) => void): unknown;
  on(event: "disconnect" | "exit", listener: () => void): unknown;
  off(event: "message", listener: (message: unknown) => void): unknown;
  off(event: "disconnect" | "exit", listener: () => void): unknown;
}

export interface ClusterRelayOptions {
  /**
   * Most bytes of publications waiting in the channel to one worker (a worker whose event loop is
   * blocked). Past it, that worker's publications are dropped and, once the channel drains to half, it
   * gets a "lost" gap for the topics it missed, so one stuck worker cannot grow the primary's memory.
   * Default 8 MiB.
   */
  maxBacklogBytes?: number;
  /** Longest a count may wait for the workers, in ms, whatever the caller asked. Default 30,000. */
  maxCountTimeout?: number;
}

interface Member {
  readonly channel: RelayChannel;
  /** Has said hello (its adapter started): gets publications and count queries. */
  joined: boolean;
  readonly topics: Set<string>;
  backlog: number;
  readonly lost: Set<string>;
  readonly listeners: { message: (m: unknown) => void; gone: () => void };
}

interface PendingCount {
  readonly from: Member;
  readonly id: number;
  readonly waiting: Set<Member>;
  n: number;
  nodes: number;
  complete: boolean;
  readonly timer: NodeJS.Timeout;
}

/**
 * The primary's half of `clusterAdapter`: forwards each worker's publications to the other workers with
 * subscribers of the topic (workers report their first and last subscriber of each topic), in the order
 * received, and gathers counts. `runCluster` makes one; a primary of your own can too:
 *
 *   const relay = new ClusterRelay();
 *   cluster.on("fork", (worker) => relay.add(worker));
 */
export class ClusterRelay {
  private readonly members = new Map<RelayChannel, Member>();
  private readonly interest = new Map<string, Set<Member>>();
  private readonly pendingCounts = new Map<number, PendingCount>();
  private nextQuery = 1;
  private readonly maxBacklog: number;
  private readonly maxCountTimeout: number;

  constructor(options: ClusterRelayOptions = {}) {
    this.maxBacklog = positive("maxBacklogBytes", options.maxBacklogBytes, DEFAULT_CLUSTER_BACKLOG);
    this.maxCountTimeout = positive("maxCountTimeout", options.maxCountTimeout, 30_000);
  }

  /** Relays for this worker until it disconnects or exits (or `remove`). */
  add(channel: RelayChannel): void {
    if (this.members.has(channel)) return;
    const member: Member = {
      channel,
      joined: false,
      topics: new Set(),
      backlog: 0,
      lost: new Set(),
      listeners: {
        message: (m) => {
          if (isWireMessage(m)) this.onMessage(member, m);
        },
        gone: () => this.remove(channel),
      },
    };
    this.members.set(channel, member);
    channel.on("message", member.listeners.message);
    channel.on("disconnect", member.listeners.gone);
    channel.on("exit", member.listeners.gone);
  }

  /** Stops relaying for this worker: its interest is forgotten, counts waiting on it end without it. */
  remove(channel: RelayChannel): void {
    const member = this.members.get(channel);
    if (member === undefined) return;
    this.members.delete(channel);
    channel.off("message", member.listeners.message);
    channel.off("disconnect", member.listeners.gone);
    channel.off("exit", member.listeners.gone);
    this.leave(member);
  }

  /** Workers relayed for, and those whose adapter has started. */
  get size(): { workers: number; joined: number } {
    let joined = 0;
    for (const m of this.members.values()) if (m.joined) joined++;
    return { workers: this.members.size, joined };
  }

  /** Workers with subscribers of `topic` (as they reported). */
  interestIn(topic: string): number {
    return this.interest.get(topic)?.size ?? 0;
  }

  private onMessage(member: Member, m: WireMessage): void {
    switch (m[MARK]) {
      case "pub": {
        const targets = this.interest.get(m.t);
        if (targets === undefined) return;
        const size = wireSize(m.p);
        // The same object to every target: each send serializes it, nothing is copied here.
        for (const target of targets) if (target !== member) this.forward(target, m, size);
        return;
      }
      case "sub": {
        this.interested(member, m.t);
        this.send(member, { [MARK]: "ack", id: m.id });
        return;
      }
      case "unsub": {
        member.topics.delete(m.t);
        const set = this.interest.get(m.t);
        set?.delete(member);
        if (set?.size === 0) this.interest.delete(m.t);
        return;
      }
      case "hello": {
        // A (re)started adapter: what it says replaces what was known.
        this.leave(member);
        member.joined = true;
        for (const t of m.topics) this.interested(member, t);
        this.send(member, { [MARK]: "welcome", advanced: m.probe instanceof Uint8Array });
        return;
      }
      case "bye":
        this.leave(member);
        return;
      case "gap": {
        const byTarget = new Map<Member, string[]>();
        for (const t of m.t)
          for (const target of this.interest.get(t) ?? [])
            if (target !== member) byTarget.set(target, [...(byTarget.get(target) ?? []), t]);
        for (const [target, topics] of byTarget) this.send(target, { [MARK]: "gap", t: topics });
        return;
      }
      case "count":
        this.count(member, m.id, m.t, m.ms);
        return;
      case "counta": {
        const pending = this.pendingCounts.get(m.id);
        if (pending === undefined || !pending.waiting.delete(member)) return;
        pending.n += m.n;
        pending.nodes++;
        if (pending.waiting.size === 0) this.finishCount(m.id);
        return;
      }
    }
  }

  private interested(member: Member, topic: string): void {
    member.joined = true;
    member.topics.add(topic);
    let set = this.interest.get(topic);
    if (set === undefined) {
      set = new Set();
      this.interest.set(topic, set);
    }
    set.add(member);
  }

  private leave(member: Member): void {
    member.joined = false;
    for (const t of member.topics) {
      const set = this.interest.get(t);
      set?.delete(member);
      if (set?.size === 0) this.interest.delete(t);
    }
    member.topics.clear();
    member.lost.clear();
    for (const [id, pending] of this.pendingCounts) {
      if (pending.from === member) {
        clearTimeout(pending.timer);
        this.pendingCounts.delete(id);
      } else if (pending.waiting.delete(member)) {
        pending.complete = false;
        if (pending.waiting.size === 0) this.finishCount(id);
      }
    }
  }

  private count(from: Member, id: number, topic: string, ms: number): void {
    const waiting = new Set<Member>();
    for (const m of this.members.values()) if (m.joined && m !== from) waiting.add(m);
    const query = this.nextQuery++;
    const timeout = Math.min(Math.max(0, Number.isFinite(ms) ? ms : 0), this.maxCountTimeout);
    const timer = setTimeout(() => {
      const pending = this.pendingCounts.get(query);
      // Those still waited for make it partial (finishCount).
      if (pending !== undefined) this.finishCount(query);
    }, timeout);
    this.pendingCounts.set(query, { from, id, waiting, n: 0, nodes: 0, complete: true, timer });
    if (waiting.size === 0) return this.finishCount(query);
    for (const m of waiting) this.send(m, { [MARK]: "countq", id: query, t: topic });
  }

  private finishCount(query: number): void {
    const p = this.pendingCounts.get(query);
    if (p === undefined) return;
    this.pendingCounts.delete(query);
    clearTimeout(p.timer);
    const complete = p.complete && p.waiting.size === 0;
    this.send(p.from, { [MARK]: "countr", id: p.id, n: p.n, nodes: p.nodes, complete });
  }

  private forward(target: Member, m: WireMessage & { p: unknown; t: string }, size: number): void {
    if (target.backlog > this.maxBacklog) {
      target.lost.add(m.t);
      return;
    }
    target.backlog += size;
    const sent = (error: Error | null) => {
      target.backlog -= size;
      if (error || target.lost.size === 0 || target.backlog > this.maxBacklog / 2) return;
      const topics = [...target.lost].filter((t) => target.topics.has(t));
      target.lost.clear();
      if (topics.length > 0) this.send(target, { [MARK]: "gap", t: topics });
    };
    try {
      target.channel.send(m, sent);
    } catch {
      target.backlog -= size; // closed in this very turn: its 'disconnect' removes the member
    }
  }

  /** Never throws: a worker that is gone is removed by its 'disconnect'/'exit'. */
  private send(target: Member, message: WireMessage): void {
    try {
      target.channel.send(message, () => {});
    } catch {
      // A channel closed in this very turn: its 'disconnect' removes the member.
    }
  }
}
