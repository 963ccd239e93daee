/**
 * The Redis adapter between processes: each node is test/pubsub/redis-node.mjs in a child process,
 * running sockway compiled from src/ (test/memory's `sockwayDist`, or SOCKWAY_DIST).
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { startRedisServer } from "../helpers/redis-server.js";
import { until, within } from "../helpers/wait.js";
import { sockwayDist } from "../memory/flood-harness.js";
import { adminClient, CLIENT_KINDS, type ClientKind, guardUnhandledRejections } from "./redis-harness.js";

afterEach(cleanup);
guardUnhandledRejections();

const nodeScript = fileURLToPath(new URL("./redis-node.mjs", import.meta.url));
let dist: { dir: string; dispose: () => void };
beforeAll(async () => {
  dist = await sockwayDist();
}, 120_000);
afterAll(() => dist?.dispose());

interface Node {
  child: ChildProcess;
  port: number;
  nodeId: string;
  ask<T = Record<string, unknown>>(request: Record<string, unknown>, ms?: number): Promise<T>;
}

async function startNode(kind: ClientKind, url: string): Promise<Node> {
  const child = fork(nodeScript, [], {
    env: { ...process.env, SOCKWAY_DIST: dist.dir, REDIS_URL: url, REDIS_CLIENT: kind },
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  onCleanup(() => {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const waiting = new Map<number, (answer: Record<string, unknown>) => void>();
  let seq = 0;
  const ready = new Promise<{ port: number; nodeId: string }>((resolve, reject) => {
    child.on("message", (m: { type?: string; id?: number; port: number; nodeId: string }) => {
      if (m.type === "ready") resolve(m);
      else if (m.id !== undefined) waiting.get(m.id)?.(m as unknown as Record<string, unknown>);
    });
    child.once("exit", (code) => reject(new Error(`node exited with ${code}: ${stderr}`)));
  });
  const { port, nodeId } = await within(ready, 15_000, "a node to listen");
  return {
    child,
    port,
    nodeId,
    ask<T>(request: Record<string, unknown>, ms = 30_000) {
      const id = ++seq;
      const answer = new Promise<T>((resolve, reject) =>
        waiting.set(id, (a) => {
          waiting.delete(id);
          if (a.error !== undefined) reject(new Error(String(a.error)));
          else resolve(a as T);
        }),
      );
      child.send({ id, ...request });
      return within(answer, ms, `the node's answer to ${String(request.type)}`);
    },
  };
}

/** A ws client that checks numbered messages as they come, without keeping them. */
function sequenceClient(port: number, topic: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/t/${topic}`);
  onCleanup(() => ws.terminate());
  const state = { received: 0, outOfOrder: 0, joined: false };
  ws.on("error", () => {});
  ws.on("message", (data: Buffer) => {
    const text = data.toString();
    if (text === "joined") {
      state.joined = true;
      return;
    }
    if (Number(text) !== state.received) state.outOfOrder++;
    state.received++;
  });
  return { ws, state };
}

interface Stats {
  stats: { published: number; dropped: number; received: number; echoes: number };
  errors: string[];
  topics: string[];
}

describe.each(CLIENT_KINDS)("Redis adapter across processes (%s)", (kind: ClientKind) => {
  it("three processes: 100,000 numbered messages from one reach clients on every node complete, in order, once", async () => {
    const server = await startRedisServer();
    const nodes = await Promise.all([0, 1, 2].map(() => startNode(kind, server.url)));
    const clients = nodes.map((n) => sequenceClient(n.port, "seq"));
    await until(() => clients.every((c) => c.state.joined), 5000, "clients to join");
    const n = 100_000;
    const started = Date.now();
    const published = await nodes[0]!.ask<{ stats: Stats["stats"] }>({ type: "publish", topic: "seq", n });
    expect(published.stats).toMatchObject({ published: n + 1, dropped: 0 }); // +1: "node-started"
    await until(() => clients.every((c) => c.state.received >= n), 40_000, "every client to get all").catch(
      async (error) => {
        const stats = await Promise.all(nodes.map((node) => node.ask({ type: "stats" })));
        throw new Error(`${error}: ${JSON.stringify(clients.map((c) => c.state))} ${JSON.stringify(stats)}`);
      },
    );
    // The publisher's echoes all came back from Redis (and were dropped): nothing more can arrive.
    await until(
      async () => (await nodes[0]!.ask<Stats>({ type: "stats" })).stats.echoes === n,
      5000,
      "the publisher's echoes",
    );
    for (const c of clients) expect(c.state).toEqual({ received: n, outOfOrder: 0, joined: true });
    for (const node of nodes.slice(1)) {
      const s = await node.ask<Stats>({ type: "stats" });
      expect(s.stats.received).toBe(n);
      expect(s.errors).toEqual([]);
    }
    console.log(`${kind}: 100,000 messages to 3 nodes in ${Date.now() - started} ms`);
  }, 60_000);

  it("two processes: a join/leave storm leaves Redis holding exactly the channels with local interest", async () => {
    const server = await startRedisServer();
    const admin = await adminClient(server.url);
    const nodes = await Promise.all([0, 1].map(() => startNode(kind, server.url)));
    const topics = Array.from({ length: 20 }, (_, i) => `room${i}`);
    // A seeded walk: 200 clients join random topics on random nodes, half of them leave at random times.
    let x = 12345;
    const random = (k: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % k;
    };
    const live: Array<{ ws: WebSocket; node: number; topic: string; state: { joined: boolean } }> = [];
    for (let i = 0; i < 200; i++) {
      const node = random(2);
      const topic = topics[random(topics.length)]!;
      const c = sequenceClient(nodes[node]!.port, topic);
      live.push({ ws: c.ws, node, topic, state: c.state });
      if (random(2) === 0) {
        const gone = live.splice(random(live.length), 1)[0]!;
        gone.ws.terminate();
      }
    }
    await until(() => live.every((c) => c.state.joined), 10_000, "the storm's remaining clients to join");
    const expected = () => {
      const interest = new Map<string, Set<number>>();
      for (const c of live) {
        const set = interest.get(`sockway:t:${c.topic}`) ?? new Set();
        set.add(c.node);
        interest.set(`sockway:t:${c.topic}`, set);
      }
      return interest;
    };
    const matches = async (interest: Map<string, Set<number>>) => {
      const channels = (await admin.PUBSUB_CHANNELS("sockway:t:*")).map(String).sort();
      if (JSON.stringify(channels) !== JSON.stringify([...interest.keys()].sort())) return false;
      if (channels.length === 0) return true;
      const numsub = await admin.PUBSUB_NUMSUB(channels);
      return channels.every((ch) => numsub[ch] === interest.get(ch)!.size);
    };
    await until(() => matches(expected()), 10_000, "Redis's channels to match local interest");
    // And everyone leaves: nothing left under the topic prefix, control channels still there.
    for (const c of live.splice(0)) c.ws.terminate();
    await until(() => matches(new Map()), 10_000, "no topic channels left");
    expect(await admin.PUBSUB_NUMSUB("sockway:c:count")).toEqual({ "sockway:c:count": 2 });
    expect(await admin.PUBSUB_NUMPAT()).toBe(0);
    for (const node of nodes) expect((await node.ask<Stats>({ type: "stats" })).topics).toEqual([]);
  }, 60_000);

  it("clusterSubscriberCount over three processes; with one frozen it is partial, within the timeout", async () => {
    const server = await startRedisServer();
    const nodes = await Promise.all([0, 1, 2].map(() => startNode(kind, server.url)));
    const perNode = [3, 1, 2];
    const clients = nodes.flatMap((node, i) =>
      Array.from({ length: perNode[i]! }, () => sequenceClient(node.port, "room")),
    );
    await until(() => clients.every((c) => c.state.joined), 5000, "clients to join");
    const count = (timeout: number) =>
      nodes[0]!.ask<{ count: { count: number; nodes: number; complete: boolean } }>({
        type: "count",
        topic: "room",
        timeout,
      });
    // Complete as soon as every node answered, not at the timeout.
    const asked = Date.now();
    expect((await count(10_000)).count).toEqual({ count: 6, nodes: 3, complete: true });
    expect(Date.now() - asked).toBeLessThan(2000);
    nodes[2]!.child.kill("SIGSTOP"); // its connections stay open: Redis still counts it as a subscriber
    const started = Date.now();
    expect((await count(400)).count).toEqual({ count: 4, nodes: 2, complete: false });
    expect(Date.now() - started).toBeLessThan(2000);
    nodes[2]!.child.kill("SIGCONT");
    expect((await count(1000)).count).toEqual({ count: 6, nodes: 3, complete: true });
  }, 30_000);
});
