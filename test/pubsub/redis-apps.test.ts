import { Buffer } from "node:buffer";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { AdapterHost, GapReason } from "../../src/index.js";
import { AppError, redisAdapter } from "../../src/index.js";
import { encodeEnvelope, FLAG_BINARY } from "../../src/pubsub/envelope.js";
import { PENDING_OVERHEAD } from "../../src/pubsub/redis.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { type RedisServer, startRedisServer } from "../helpers/redis-server.js";
import { until, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import {
  adminClient,
  CLIENT_KINDS,
  type ClientKind,
  codes,
  connectClient,
  guardUnhandledRejections,
  startRedisApp,
} from "./redis-harness.js";

afterEach(cleanup);
guardUnhandledRejections();

/** A host that records what the adapter hands it, for tests that drive the adapter directly. */
function recordingHost(nodeId = "node-under-test", maxPublicationSize = 1 << 20) {
  const delivered: Array<{ topic: string; payload: Buffer; binary: boolean }> = [];
  const errors: unknown[] = [];
  const gaps: GapReason[] = [];
  const local = new Map<string, number>();
  const host: AdapterHost = {
    nodeId,
    maxPublicationSize,
    deliver: (topic, payload, binary) => delivered.push({ topic, payload: Buffer.from(payload), binary }),
    gap: (reason) => gaps.push(reason),
    topics: () => local.keys(),
    localCount: (topic) => local.get(topic) ?? 0,
    reportError: (error) => errors.push(error),
  };
  return { host, delivered, errors, gaps, local };
}

type Admin = Awaited<ReturnType<typeof adminClient>>;

async function redisChannels(admin: Admin, pattern = "sockway:t:*"): Promise<string[]> {
  return (await admin.PUBSUB_CHANNELS(pattern)).map(String).sort();
}

describe.each(CLIENT_KINDS)("Redis adapter, apps in one process (%s)", (kind: ClientKind) => {
  let server: RedisServer;

  it("delivers across nodes: one copy on the publishing node, except honoured, bytes intact, in order", async () => {
    server = await startRedisServer();
    const a = await startRedisApp(kind, server.url);
    const b = await startRedisApp(kind, server.url);
    const a1 = await WsClient.open(`${a.wsUrl}/t/room`);
    const a2 = await WsClient.open(`${a.wsUrl}/t/room`);
    const b1 = await WsClient.open(`${b.wsUrl}/t/room`);
    for (const c of [a1, a2, b1]) expect(await c.nextText()).toBe("joined room");
    const n = 300;
    for (let i = 0; i < n; i++) await a1.send(`m${i}`);
    for (let i = 0; i < n; i++) expect(await a2.nextText()).toBe(`m${i}`);
    for (let i = 0; i < n; i++) expect(await b1.nextText()).toBe(`m${i}`);
    const bytes = Buffer.from([0, 1, 0x80, 0xc3, 0xff, 0]); // not UTF-8: must stay binary and intact
    b.app.publish("room", bytes);
    for (const c of [a1, a2, b1]) {
      const m = await c.next();
      expect(m.isBinary).toBe(true);
      expect(m.data.equals(bytes)).toBe(true);
    }
    // Every publication of A came back to A from Redis and was dropped there as an echo.
    await until(() => a.adapter.stats.echoes === n, 3000, "A's echoes");
    await until(() => b.adapter.stats.echoes === 1, 3000, "B's echo");
    expect(a1.messages.length).toBe(2); // "joined" and the bytes: its own were excepted
    expect(a2.messages.length).toBe(n + 2);
    expect(b1.messages.length).toBe(n + 2);
    expect(a.adapter.stats).toMatchObject({ published: n, received: 1, dropped: 0, malformed: 0 });
    expect(b.adapter.stats).toMatchObject({ published: 1, received: n });
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it("subscribe resolves once Redis acknowledged: a publication right after it arrives", async () => {
    server = await startRedisServer();
    const a = await startRedisApp(kind, server.url);
    const b = await startRedisApp(kind, server.url);
    b.app.publish("warm-up", "x"); // starts B's adapter
    for (let i = 0; i < 20; i++) {
      const c = await WsClient.open(`${a.wsUrl}/t/fresh-${i}`);
      expect(await c.nextText()).toBe(`joined fresh-${i}`); // sent after `await session.subscribe`
      b.app.publish(`fresh-${i}`, `hello ${i}`);
      expect(await c.nextText()).toBe(`hello ${i}`);
      c.close();
    }
    expect(a.errors).toEqual([]);
  });

  it("holds a channel only while the node has local subscribers, and never PSUBSCRIBEs", async () => {
    server = await startRedisServer();
    const a = await startRedisApp(kind, server.url);
    const admin = await adminClient(server.url);
    const x1 = await WsClient.open(`${a.wsUrl}/t/x`);
    const x2 = await WsClient.open(`${a.wsUrl}/t/x`);
    const y = await WsClient.open(`${a.wsUrl}/t/y`);
    for (const c of [x1, x2, y]) await c.nextText();
    expect(await redisChannels(admin)).toEqual(["sockway:t:x", "sockway:t:y"]);
    expect(await admin.PUBSUB_NUMSUB("sockway:t:x")).toEqual({ "sockway:t:x": 1 }); // one connection per node
    // The control channels are there too, under the prefix, apart from topics.
    expect(await redisChannels(admin, "sockway:c:*")).toEqual([
      "sockway:c:count",
      `sockway:c:reply:${a.app.pubsub.nodeId}`,
    ]);
    x1.close();
    await until(() => a.app.subscriberCount("x") === 1, 2000, "x1 gone");
    expect(await redisChannels(admin)).toEqual(["sockway:t:x", "sockway:t:y"]);
    x2.close();
    y.close();
    await until(async () => (await redisChannels(admin)).length === 0, 2000, "no topic channels");
    expect(await admin.PUBSUB_NUMPAT()).toBe(0);
  });

  it("ends up subscribed to exactly the wanted channels after any fast subscribe/unsubscribe sequence", async () => {
    server = await startRedisServer();
    const { client } = await connectClient(kind, server.url);
    const admin = await adminClient(server.url);
    const adapter = redisAdapter({ client });
    const { host, errors } = recordingHost();
    adapter.start(host);
    onCleanup(() => adapter.close());
    const topics = ["p", "q", "r"];
    const model = new Set<string>(); // what this node wants, across runs
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom(...topics), fc.boolean()), { minLength: 1, maxLength: 30 }),
        async (ops) => {
          // The hub's contract: subscribe on 0→1, unsubscribe on 1→0, so the calls alternate per topic.
          const acks: Array<Promise<void> | void> = [];
          for (const [topic, want] of ops) {
            if (want === model.has(topic)) continue;
            if (want) {
              model.add(topic);
              acks.push(adapter.subscribe(topic));
            } else {
              model.delete(topic);
              adapter.unsubscribe(topic);
            }
          }
          await within(Promise.all(acks), 3000, "subscribe acknowledgments");
          const expected = [...model].map((t) => `sockway:t:${t}`).sort();
          await until(
            async () => JSON.stringify(await redisChannels(admin)) === JSON.stringify(expected),
            3000,
            `channels ${expected}`,
          );
        },
      ),
      { seed: 42, numRuns: 40 },
    );
    expect(errors).toEqual([]);
  });

  it("drops malformed messages, mismatched topics and oversized payloads, reporting them", async () => {
    server = await startRedisServer();
    const { client } = await connectClient(kind, server.url);
    const adapter = redisAdapter({ client });
    const { host, delivered, errors } = recordingHost("me", 64);
    adapter.start(host);
    onCleanup(() => adapter.close());
    await adapter.subscribe("room");
    const admin = await adminClient(server.url);
    const other = Buffer.from("other-node");
    await admin.PUBLISH("sockway:t:room", Buffer.from([1, 2, 3])); // not an envelope
    await admin.PUBLISH("sockway:t:room", encodeEnvelope(0, other, "elsewhere", Buffer.from("hi"))); // wrong topic
    await admin.PUBLISH("sockway:t:room", encodeEnvelope(FLAG_BINARY, other, "room", Buffer.alloc(65))); // too large
    await admin.PUBLISH("sockway:t:room", encodeEnvelope(FLAG_BINARY, other, "room", Buffer.alloc(64, 7))); // at the limit
    await admin.PUBLISH("sockway:t:room", encodeEnvelope(0, Buffer.from("me"), "room", Buffer.from("echo"))); // own echo
    await until(() => delivered.length === 1 && adapter.stats.echoes === 1, 2000, "the one good message");
    expect(delivered[0]).toEqual({ topic: "room", payload: Buffer.alloc(64, 7), binary: true });
    expect(adapter.stats.malformed).toBe(3);
    // Reported, but at most once a second: the first of the three.
    expect(codes(errors)).toEqual(["MALFORMED_MESSAGE"]);
  });

  it("counts subscribers on every node; a node that cannot answer makes it partial within the timeout", async () => {
    server = await startRedisServer();
    const apps = [
      await startRedisApp(kind, server.url),
      await startRedisApp(kind, server.url),
      await startRedisApp(kind, server.url),
    ];
    const [a, b, c] = apps as [(typeof apps)[0], (typeof apps)[0], (typeof apps)[0]];
    for (const [app, n] of [
      [a, 2],
      [b, 3],
      [c, 0],
    ] as const)
      for (let i = 0; i < n; i++) await (await WsClient.open(`${app.wsUrl}/t/room`)).nextText();
    await (await WsClient.open(`${c.wsUrl}/t/elsewhere`)).nextText(); // C is started, with none in room
    const asked = Date.now();
    expect(await a.app.clusterSubscriberCount("room", { timeout: 10_000 })).toEqual({
      count: 5,
      nodes: 3,
      complete: true,
    });
    expect(Date.now() - asked).toBeLessThan(2000); // done when all answered, not at the timeout
    expect(await c.app.clusterSubscriberCount("room")).toEqual({ count: 5, nodes: 3, complete: true });
    expect(await b.app.clusterSubscriberCount("nobody")).toEqual({ count: 0, nodes: 3, complete: true });
    // A subscriber of the request channel that never answers: a node frozen, as Redis sees it.
    const ghost = (await adminClient(server.url)).duplicate();
    ghost.on("error", () => {});
    onCleanup(() => ghost.destroy());
    await ghost.connect();
    await ghost.SUBSCRIBE("sockway:c:count", () => {});
    const started = Date.now();
    expect(await a.app.clusterSubscriberCount("room", { timeout: 300 })).toEqual({
      count: 5,
      nodes: 3,
      complete: false,
    });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1500);
    await ghost.UNSUBSCRIBE("sockway:c:count");
    expect(await a.app.clusterSubscriberCount("room", { timeout: 300 })).toEqual({
      count: 5,
      nodes: 3,
      complete: true,
    });
  });

  it("sharded mode: SSUBSCRIBE/SPUBLISH on channels of their own", async () => {
    server = await startRedisServer();
    const a = await startRedisApp(kind, server.url, { sharded: true });
    const b = await startRedisApp(kind, server.url, { sharded: true });
    const admin = await adminClient(server.url);
    const a1 = await WsClient.open(`${a.wsUrl}/t/room`);
    const b1 = await WsClient.open(`${b.wsUrl}/t/room`);
    await a1.nextText();
    await b1.nextText();
    expect((await admin.PUBSUB_SHARDCHANNELS("sockway:t:*")).map(String)).toEqual(["sockway:t:room"]);
    expect(await admin.PUBSUB_SHARDNUMSUB("sockway:t:room")).toEqual({ "sockway:t:room": 2 });
    expect(await admin.PUBSUB_CHANNELS("sockway:*")).toEqual([]); // nothing on classic pub/sub
    for (let i = 0; i < 100; i++) await a1.send(`s${i}`);
    for (let i = 0; i < 100; i++) expect(await b1.nextText()).toBe(`s${i}`);
    await until(() => a.adapter.stats.echoes === 100, 2000, "echoes");
    expect(a1.messages.length).toBe(1);
    expect(await a.app.clusterSubscriberCount("room")).toEqual({ count: 2, nodes: 2, complete: true });
    b1.close();
    await until(async () => (await admin.PUBSUB_SHARDCHANNELS("sockway:t:*")).length === 1, 2000, "b left");
    expect(await admin.PUBSUB_SHARDNUMSUB("sockway:t:room")).toEqual({ "sockway:t:room": 1 });
  });

  it("Redis down at publish time: local delivery goes on, nothing piles up, reported once per outage", async () => {
    server = await startRedisServer();
    const a = await startRedisApp(kind, server.url);
    const b = await startRedisApp(kind, server.url);
    const a1 = await WsClient.open(`${a.wsUrl}/t/room`);
    const b1 = await WsClient.open(`${b.wsUrl}/t/room`);
    await a1.nextText();
    await b1.nextText();
    await server.stop();
    // Once A's client has noticed the outage, publications are dropped at once.
    await until(() => a.app.publish("probe", "x") && a.adapter.stats.dropped > 0, 3000, "the outage noticed");
    const base = a.adapter.stats.dropped;
    for (let i = 0; i < 100; i++) a.app.publish("room", `down ${i}`);
    for (let i = 0; i < 100; i++) expect(await a1.nextText()).toBe(`down ${i}`);
    // 20,000 publications of 10 KiB (200 MiB if anything queued them), with nobody local to receive.
    const payload = Buffer.alloc(10 * 1024, 1);
    const pendingBefore = a.adapter.stats.pendingBytes; // a probe caught in flight by the stop, at most
    const before = process.memoryUsage();
    for (let i = 0; i < 20_000; i++) a.app.publish("nobody-here", payload);
    const after = process.memoryUsage();
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(20 * 1024 * 1024);
    expect(a.adapter.stats.dropped - base).toBe(20_100);
    expect(a.adapter.stats.pendingBytes).toBe(pendingBefore);
    expect(codes(a.errors).filter((c) => c === "REDIS_UNAVAILABLE" || c === "PUBLISH_FAILED")).toHaveLength(
      1,
    );
    await server.start();
    // Back: publishing reaches B again (once both connections are up), then a second outage is reported again.
    await until(
      () => {
        a.app.publish("room", "back");
        return b1.messages.some((m) => m.data.toString() === "back");
      },
      5000,
      "publications to reach B again",
    );
    await server.stop();
    // One report for this outage too: "unavailable", or "failed" for one caught in flight by the stop.
    const reports = () => codes(a.errors).filter((c) => c === "REDIS_UNAVAILABLE" || c === "PUBLISH_FAILED");
    await until(
      () => {
        a.app.publish("room", "down again");
        return reports().length === 2;
      },
      3000,
      "the second outage reported",
    );
    for (let i = 0; i < 100; i++) a.app.publish("room", "down again");
    expect(reports()).toHaveLength(2);
    // What was caught in flight (node-redis keeps unwritten commands for the reconnect) settles once Redis is back.
    await server.start();
    await within(a.adapter.drained(), 5000, "in-flight publications settled");
    expect(reports()).toHaveLength(2);
    expect(b1.messages.every((m) => !/^down \d+$/.test(m.data.toString()))).toBe(true);
  });

  it("maxPendingBytes: publications over it while Redis does not answer are dropped, at the exact edge", async () => {
    server = await startRedisServer();
    const topic = "room";
    const payload = Buffer.alloc(100, 2);
    const probe = await startRedisApp(kind, server.url);
    const cost = 5 + probe.app.pubsub.nodeId.length + topic.length + payload.length + PENDING_OVERHEAD;
    const a = await startRedisApp(kind, server.url, { maxPendingBytes: 10 * cost });
    const b = await startRedisApp(kind, server.url);
    const b1 = await WsClient.open(`${b.wsUrl}/t/room`);
    await b1.nextText();
    a.app.publish("warm-up", "x");
    await a.adapter.drained();
    const base = a.adapter.stats.published;
    server.freeze();
    onCleanup(() => server.thaw());
    for (let i = 0; i < 15; i++) a.app.publish(topic, payload);
    expect(a.adapter.stats.published - base).toBe(10);
    expect(a.adapter.stats.dropped).toBe(5);
    expect(a.adapter.stats.pendingBytes).toBe(10 * cost);
    expect(codes(a.errors)).toEqual(["PUBLISH_OVERLOAD"]);
    server.thaw();
    await within(a.adapter.drained(), 3000, "acknowledgments");
    await until(() => b1.messages.length === 11, 3000, "the 10 sent");
    expect(a.adapter.stats.pendingBytes).toBe(0);
  });

  it("subscribeTimeout: a subscribe Redis does not acknowledge rejects in time, and is made once Redis answers", async () => {
    server = await startRedisServer();
    const { client } = await connectClient(kind, server.url);
    const admin = await adminClient(server.url);
    const adapter = redisAdapter({ client, subscribeTimeout: 200 });
    const { host } = recordingHost();
    adapter.start(host);
    onCleanup(() => adapter.close());
    await adapter.subscribe("first");
    server.freeze();
    onCleanup(() => server.thaw());
    const started = Date.now();
    await expect(adapter.subscribe("late")).rejects.toMatchObject({ code: "SUBSCRIBE_TIMEOUT" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(1000);
    server.thaw();
    await until(
      async () => (await redisChannels(admin)).includes("sockway:t:late"),
      3000,
      "the late subscription",
    );
  });
});

describe("redisAdapter options", () => {
  it("refuses what is not a Redis client, and invalid limits", () => {
    expect(() => redisAdapter({ client: {} })).toThrow(/node-redis .* or ioredis/);
    expect(() => redisAdapter({ client: undefined })).toThrow(AppError);
    expect(() => redisAdapter({ client: {}, prefix: 1 as unknown as string })).toThrowError(
      expect.objectContaining({ code: "INVALID_OPTION" }),
    );
    const fake = { duplicate() {}, on() {}, isReady: true, PUBLISH() {}, SUBSCRIBE() {} };
    expect(() => redisAdapter({ client: fake, maxPendingBytes: 0 })).toThrow(/maxPendingBytes/);
    expect(() => redisAdapter({ client: fake, subscribeTimeout: 1.5 })).toThrow(/subscribeTimeout/);
    expect(() => redisAdapter({ client: fake, maxChannelsPerCommand: -1 })).toThrow(/maxChannelsPerCommand/);
    expect(redisAdapter({ client: fake, maxPendingBytes: 1 }).stats.pendingBytes).toBe(0);
  });
});
