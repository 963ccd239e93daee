/**
 * What the hub asks of an adapter and what it does with the adapter's callbacks, with a recording
 * adapter in place of a backplane.
 */
import { Buffer } from "node:buffer";
import { afterEach, describe, expect, it } from "vitest";
import type { AdapterHost, ClusterCount, GapEvent, PubSubAdapter, SessionHandle } from "../../src/index.js";
import { cleanup } from "../helpers/cleanup.js";
import { deferred, until } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import { startPubSub } from "./pubsub-app.js";

afterEach(cleanup);

class RecordingAdapter implements PubSubAdapter {
  host: AdapterHost | undefined;
  readonly calls: string[] = [];
  readonly published: Array<{ topic: string; payload: Buffer; binary: boolean }> = [];
  subscribed = deferred();
  failPublish = false;
  countAnswer: (topic: string, timeout: number) => Promise<ClusterCount> = async () => ({
    count: 5,
    nodes: 2,
    complete: true,
  });
  start(host: AdapterHost): void {
    this.host = host;
    this.calls.push("start");
  }
  subscribe(topic: string): Promise<void> {
    this.calls.push(`subscribe ${topic}`);
    return this.subscribed.promise;
  }
  unsubscribe(topic: string): void {
    this.calls.push(`unsubscribe ${topic}`);
  }
  publish(topic: string, payload: Buffer, binary: boolean): void {
    if (this.failPublish) throw new Error("backplane down");
    this.published.push({ topic, payload, binary });
  }
  count(topic: string, timeout: number): Promise<ClusterCount> {
    return this.countAnswer(topic, timeout);
  }
  async close(): Promise<void> {
    this.calls.push("close");
  }
}

async function setUp() {
  const adapter = new RecordingAdapter();
  const gaps: GapEvent[] = [];
  const sessions: SessionHandle[] = [];
  const subscribed: string[] = [];
  const started = await startPubSub(
    (r) =>
      r.webSocket("/sub/{topic}", async (session) => {
        sessions.push(session);
        const topic = session.call.parameters.topic!;
        await session.subscribe(topic);
        subscribed.push(topic);
        await session.send("ready");
        for await (const _ of session.incoming);
      }),
    { adapter, onGap: (event) => gaps.push(event) },
  );
  return { ...started, adapter, gaps, sessions, subscribed };
}

describe("the adapter contract", () => {
  it("interest: subscribe on the first local subscriber, unsubscribe when the last leaves", async () => {
    const { app, wsUrl, adapter, subscribed } = await setUp();
    const a = new WsClient(`${wsUrl}/sub/t`);
    const b = new WsClient(`${wsUrl}/sub/t`);
    await Promise.all([a.opened, b.opened]);
    await until(() => app.subscriberCount("t") === 2, 2000, "both subscriptions");
    // session.subscribe waits for the backplane's confirmation
    expect(subscribed).toEqual([]);
    adapter.subscribed.resolve();
    await a.nextText();
    await b.nextText();
    expect(subscribed).toEqual(["t", "t"]);
    expect(adapter.calls).toEqual(["start", "subscribe t"]);
    a.close();
    await a.closed;
    await until(() => app.subscriberCount("t") === 1, 2000, "one left");
    expect(adapter.calls).toEqual(["start", "subscribe t"]);
    b.close();
    await b.closed;
    await until(() => adapter.calls.length === 3, 2000, "the unsubscribe");
    expect(adapter.calls).toEqual(["start", "subscribe t", "unsubscribe t"]);
    await app.stop({ grace: 0 });
    expect(adapter.calls.at(-1)).toBe("close");
  });

  it("publications go to the adapter after local delivery; local: true stays here", async () => {
    const { app, wsUrl, adapter } = await setUp();
    adapter.subscribed.resolve();
    const a = await WsClient.open(`${wsUrl}/sub/t`);
    await a.nextText();
    expect(app.publish("t", "text").delivered).toBe(1);
    app.publish("nobody-here", new Uint8Array([1, 2]));
    app.publish("t", "mine only", { local: true });
    expect(adapter.published.map((p) => [p.topic, p.payload.toString("hex"), p.binary])).toEqual([
      ["t", Buffer.from("text").toString("hex"), false],
      ["nobody-here", "0102", true],
    ]);
    expect(await a.nextText()).toBe("text");
    expect(await a.nextText()).toBe("mine only");
  });

  it("publications from other nodes reach local subscribers; oversized ones are dropped", async () => {
    const { app, wsUrl, adapter } = await setUp();
    adapter.subscribed.resolve();
    const a = await WsClient.open(`${wsUrl}/sub/t`);
    await a.nextText();
    adapter.host!.deliver("t", Buffer.from([9, 8, 7]), true);
    adapter.host!.deliver("t", Buffer.alloc(adapter.host!.maxPublicationSize + 1), true);
    adapter.host!.deliver("t", Buffer.from("after"), false);
    const m = await a.next();
    expect(m.isBinary).toBe(true);
    expect([...m.data]).toEqual([9, 8, 7]);
    expect(await a.nextText()).toBe("after");
    expect(app.pubsub.stats.received).toBe(2);
    expect(adapter.published).toEqual([]); // never sent back out
    expect(adapter.host!.localCount("t")).toBe(1);
    expect([...adapter.host!.topics()]).toEqual(["t"]);
  });

  it("a gap reaches onGap with the topic's local subscribers", async () => {
    const { app, wsUrl, adapter, gaps, sessions } = await setUp();
    adapter.subscribed.resolve();
    const a = await WsClient.open(`${wsUrl}/sub/t`);
    const b = await WsClient.open(`${wsUrl}/sub/u`);
    await a.nextText();
    await b.nextText();
    adapter.host!.gap("reconnected");
    adapter.host!.gap("lost", ["u", "none"]);
    expect(gaps.map((g) => [g.topic, g.reason, [...g.subscribers]])).toEqual([
      ["t", "reconnected", [sessions[0]]],
      ["u", "reconnected", [sessions[1]]],
      ["u", "lost", [sessions[1]]],
    ]);
    expect(app.pubsub.stats.gaps).toBe(3);
  });

  it("counts add this node's; a failing count is partial; a failing publish is reported, local delivery done", async () => {
    const { app, wsUrl, adapter, errors } = await setUp();
    adapter.subscribed.resolve();
    const a = await WsClient.open(`${wsUrl}/sub/t`);
    await a.nextText();
    expect(await app.clusterSubscriberCount("t")).toEqual({ count: 6, nodes: 3, complete: true });
    let asked = 0;
    adapter.countAnswer = async (_t, timeout) => {
      asked = timeout;
      throw new Error("no answer");
    };
    expect(await app.clusterSubscriberCount("t", { timeout: 250 })).toEqual({
      count: 1,
      nodes: 1,
      complete: false,
    });
    expect(asked).toBe(250);
    adapter.failPublish = true;
    expect(app.publish("t", "still here").delivered).toBe(1);
    expect(await a.nextText()).toBe("still here");
    expect(errors.map((e) => [e.kind, (e.error as Error).message])).toEqual([
      ["pubsub", "no answer"],
      ["pubsub", "backplane down"],
    ]);
  });

  it("starts at listen; after stop, publications stay local until the app listens again", async () => {
    const { app, adapter } = await setUp();
    expect(adapter.calls).toEqual(["start"]); // counted in the cluster before any subscriber
    await app.stop({ grace: 0 });
    expect(adapter.calls).toEqual(["start", "close"]);
    app.publish("t", "after stop");
    expect(adapter.published).toEqual([]);
    expect(adapter.calls).toEqual(["start", "close"]);
    await app.listen({ port: 0 });
    expect(adapter.calls).toEqual(["start", "close", "start"]);
    app.publish("t", "again");
    expect(adapter.published.map((p) => p.payload.toString())).toEqual(["again"]);
    await app.stop({ grace: 0 });
  });

  it("without an adapter, the cluster is this node", async () => {
    const { app, wsUrl } = await startPubSub((r) =>
      r.webSocket("/s", async (session) => {
        await session.subscribe("x");
        for await (const _ of session.incoming);
      }),
    );
    await WsClient.open(`${wsUrl}/s`);
    await until(() => app.subscriberCount("x") === 1, 2000, "the subscription");
    expect(await app.clusterSubscriberCount("x")).toEqual({ count: 1, nodes: 1, complete: true });
  });
});
