/**
 * Subscribers that never read: a publication finds them over their high-water mark and is dropped (or
 * closes them), so their memory stays bounded and a healthy subscriber gets everything, in order.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { DropReason, PubSubOptions, SessionHandle } from "../../src/index.js";
import { cleanup } from "../helpers/cleanup.js";
import { RawClient } from "../helpers/raw-client.js";
import { until } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import { startPubSub } from "./pubsub-app.js";

afterEach(cleanup);

// Each turn publishes ~82 KiB, well under the high-water mark: a subscriber that reads keeps up.
const HWM = 256 * 1024;
const LARGE = 16 * 1024;
const TURNS = 200;
const SMALL = 100;

async function setUp(pubsub: PubSubOptions, slowCount = 10) {
  const slow: SessionHandle[] = [];
  const healthy: SessionHandle[] = [];
  const started = await startPubSub(
    (r) => {
      const route =
        (list: SessionHandle[]) => async (session: SessionHandle & { incoming: AsyncIterable<unknown> }) => {
          list.push(session);
          await session.subscribe("burst");
          await session.send("ready");
          for await (const _ of session.incoming);
        };
      r.webSocket("/slow", route(slow));
      r.webSocket("/healthy", route(healthy));
    },
    pubsub,
    { outgoingHighWaterMark: HWM, outgoingBufferLimit: 4 * HWM },
  );
  const raw = await Promise.all(
    Array.from({ length: slowCount }, () => RawClient.connect(started.port, "/slow")),
  );
  for (const c of raw) c.socket.pause(); // never read again
  const good = await WsClient.open(`${started.wsUrl}/healthy`);
  expect(await good.nextText()).toBe("ready");
  await until(() => started.app.subscriberCount("burst") === slowCount + 1, 2000, "every subscription");
  return { ...started, slow, healthy, good };
}

/** TURNS turns of 50 small and 5 large publications; returns the largest `bufferedAmount` seen on a slow session. */
async function burst(
  app: { publish: (t: string, d: string | Uint8Array) => { delivered: number; dropped: number } },
  slow: SessionHandle[],
  subscribers: number,
) {
  let maxBuffered = 0;
  let seq = 0;
  for (let turn = 0; turn < TURNS; turn++) {
    for (let i = 0; i < 55; i++) {
      const n = seq++;
      const data =
        i % 11 === 10
          ? Buffer.alloc(LARGE, n & 0xff) // a new buffer each time: nothing shared between publications
          : `${n} ${"s".repeat(SMALL)}`;
      const result = app.publish("burst", data);
      expect(result.delivered + result.dropped).toBeLessThanOrEqual(subscribers);
    }
    for (const s of slow) maxBuffered = Math.max(maxBuffered, s.bufferedAmount);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { maxBuffered, published: seq };
}

async function healthyGetsEverything(good: WsClient, published: number) {
  const start = Date.now();
  for (let n = 0; n < published; n++) {
    const m = await good.next(5000);
    if (n % 11 === 10) {
      expect(m.isBinary).toBe(true);
      expect(m.data.length).toBe(LARGE);
      expect(m.data[0]).toBe(n & 0xff);
    } else {
      expect(m.data.toString()).toBe(`${n} ${"s".repeat(SMALL)}`);
    }
  }
  return Date.now() - start;
}

describe("slow subscribers", () => {
  it('"drop": slow ones stay under their high-water mark plus one message; the healthy one gets all', async () => {
    const drops: Array<{ session: SessionHandle; reason: DropReason }> = [];
    const { app, slow, good } = await setUp({
      onDrop: (session, _t, reason) => drops.push({ session, reason }),
    });
    const { maxBuffered, published } = await burst(app, slow, 11);
    const took = await healthyGetsEverything(good, published);
    expect(took, "the healthy subscriber's wait after the burst (ms)").toBeLessThan(3000);
    expect(maxBuffered).toBeGreaterThan(HWM / 2); // they did fill up
    expect(maxBuffered).toBeLessThanOrEqual(HWM + LARGE + 1024);
    const stats = app.pubsub.stats;
    expect(stats.dropped).toBeGreaterThan(published); // most publications missed most slow subscribers
    expect(drops.length).toBe(stats.dropped);
    expect(drops.every((d) => d.reason === "slow" && slow.includes(d.session))).toBe(true);
    expect(stats.closed).toBe(0);
    for (const s of slow) expect(s.isOpen).toBe(true);
    expect(app.subscriberCount("burst")).toBe(11);
  });

  it('"close": slow ones are closed with the configured code, once; a per-session "drop" overrides', async () => {
    const { app, slow, good, healthy } = await setUp({ slowSubscriber: "close", slowCloseCode: 1013 });
    slow[0]!.slowSubscriberPolicy = "drop";
    healthy[0]!.slowSubscriberPolicy = "close"; // never slow: never closed
    const closes = slow.slice(1).map((s) => s.closeReason);
    const { maxBuffered, published } = await burst(app, slow, 11);
    await healthyGetsEverything(good, published);
    expect(maxBuffered).toBeLessThanOrEqual(HWM + LARGE + 1024);
    const stats = app.pubsub.stats;
    expect(stats.closed).toBe(9);
    for (const s of slow.slice(1)) expect(s.isOpen).toBe(false);
    expect(slow[0]!.isOpen).toBe(true);
    expect(app.subscriberCount("burst")).toBe(2);
    // The slow peers never read our Close: the session gives up after `timeout` with our code.
    for (const s of slow.slice(1)) s.terminate();
    for (const reason of await Promise.all(closes)) expect([1013, 1006]).toContain(reason.code);
    expect(healthy[0]!.isOpen).toBe(true);
  });
});
