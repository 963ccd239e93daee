import type { Buffer } from "node:buffer";

/** Why messages of some topics may have been missed: what a `gap` reports. */
export type GapReason =
  /** The backplane connection dropped (or was killed by the server) and has been made again. */
  | "reconnected"
  /** The backplane server restarted (its run id changed). */
  | "restarted"
  /** Messages arrived out of sequence from another node: some were lost on the way. */
  | "lost";

/** What an adapter is given by the application's pub/sub when it starts. */
export interface AdapterHost {
  /** This process's id in the cluster: publications carry it, so a node drops its own echo. */
  readonly nodeId: string;
  /** Largest payload accepted, in bytes (`maxPublicationSize`); larger ones from other nodes are dropped. */
  readonly maxPublicationSize: number;
  /** A publication from another node: delivered to this node's subscribers of `topic`. */
  deliver(topic: string, payload: Buffer, binary: boolean): void;
  /** Messages of these topics (every topic with local subscribers when omitted) may have been missed. */
  gap(reason: GapReason, topics?: readonly string[]): void;
  /** Topics with local subscribers now (to subscribe again after a reconnect). */
  topics(): Iterable<string>;
  /** Subscribers of `topic` on this node. */
  localCount(topic: string): number;
  /** Reports a failure that must not stop anything (the backplane being down). */
  reportError(error: unknown): void;
}

/** The answer of a count across the cluster (`clusterSubscriberCount`). */
export interface ClusterCount {
  /** Subscribers on every node that answered, this one included. */
  count: number;
  /** Nodes that answered, this one included. */
  nodes: number;
  /** false when some node did not answer in time: `count` is then a lower bound. */
  complete: boolean;
}

/**
 * Carries publications between the processes of a cluster (Redis, node:cluster's IPC). The pub/sub
 * delivers to local subscribers itself; the adapter only moves messages to and from the other nodes,
 * and is told when this node's interest in a topic starts and ends.
 */
export interface PubSubAdapter {
  /** Called once, before anything else (and again after `close`, if the application is used again). */
  start(host: AdapterHost): void;
  /** This node's first subscriber of `topic` arrived; resolves when other nodes' publications reach it. */
  subscribe(topic: string): Promise<void> | void;
  /** This node's last subscriber of `topic` left. */
  unsubscribe(topic: string): void;
  /** A publication made on this node, for the other nodes (already delivered locally). */
  publish(topic: string, payload: Buffer, binary: boolean): void;
  /** Subscribers of `topic` on the other nodes, waiting at most `timeout` ms for their answers. */
  count?(topic: string, timeout: number): Promise<ClusterCount>;
  /** Stops: the connections the adapter made are closed (the user's own client is left alone). */
  close(): Promise<void>;
}
