// @ts-check
/**
 * One node of the multi-process Redis pub/sub tests (test/pubsub/redis-processes.test.ts), in its own
 * process so each has its own node id, subscriber connection and event loop.
 *
 *   SOCKWAY_DIST   directory of the compiled sockway (the one holding index.js)
 *   REDIS_URL      redis://127.0.0.1:port
 *   REDIS_CLIENT   "node-redis" or "ioredis"
 *
 * Route /t/{topic}: subscribes (awaited), says "joined", then holds the session until the peer leaves.
 * IPC, each answered with {id, ...}: {type:"publish", topic, n} publishes "0".."n-1" (pacing itself on
 * the adapter's pendingBytes) and answers once Redis took them all; {type:"count", topic, timeout};
 * {type:"stats"}. {type:"ready", port, nodeId} is sent once listening.
 */
import { pathToFileURL } from "node:url";

const dist = process.env.SOCKWAY_DIST;
const url = process.env.REDIS_URL;
const kind = process.env.REDIS_CLIENT;
if (!dist || !url || !kind) throw new Error("SOCKWAY_DIST, REDIS_URL and REDIS_CLIENT must be set");
const { createApp, WebSockets, PubSub, redisAdapter } = await import(pathToFileURL(`${dist}/index.js`).href);

const retry = (/** @type {number} */ n) => Math.min(20 + n * 20, 200);
/** @type {any} */
let client;
if (kind === "ioredis") {
  const { Redis } = await import("ioredis");
  client = new Redis(url, { retryStrategy: retry, maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  await new Promise((resolve) => client.once("ready", resolve));
} else {
  const { createClient } = await import("redis");
  client = createClient({ url, socket: { reconnectStrategy: retry } });
  client.on("error", () => {});
  await client.connect();
}

/** @type {string[]} */
const errors = [];
const adapter = redisAdapter({ client });
const app = createApp()
  // Room for a whole burst per session: the test checks the backplane, not the slow-subscriber drop.
  .install(WebSockets, {
    pingPeriod: 0,
    outgoingHighWaterMark: 64 * 1024 * 1024,
    outgoingBufferLimit: 128 * 1024 * 1024,
  })
  .install(PubSub, { adapter })
  .onError((/** @type {unknown} */ e) => {
    if (errors.length < 20) errors.push(String(e));
  });
app.routing((/** @type {any} */ r) =>
  r.webSocket("/t/{topic}", async (/** @type {any} */ session) => {
    await session.subscribe(session.call.parameters.topic);
    await session.send("joined");
    for await (const _ of session.incoming);
  }),
);
const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
app.publish("node-started", "x"); // starts the adapter: it answers counts from now on

/** @param {any} m */
async function handle(m) {
  if (m.type === "publish") {
    for (let i = 0; i < m.n; i++) {
      app.publish(m.topic, String(i));
      // Keep well under maxPendingBytes: a publisher that outruns Redis would see drops.
      if (adapter.stats.pendingBytes > 4 * 1024 * 1024) await adapter.drained(1024 * 1024);
    }
    await adapter.drained();
    return { stats: adapter.stats };
  }
  if (m.type === "count") return { count: await app.clusterSubscriberCount(m.topic, { timeout: m.timeout }) };
  if (m.type === "stats")
    return { stats: adapter.stats, hub: app.pubsub.stats, errors, topics: app.pubsub.topics() };
  throw new Error(`unknown request ${m.type}`);
}

process.on("message", (/** @type {any} */ m) => {
  handle(m).then(
    (answer) => process.send?.({ id: m.id, ...answer }),
    (error) => process.send?.({ id: m.id, error: String(error) }),
  );
});
process.on("disconnect", () => process.exit(0));
process.send?.({ type: "ready", port, nodeId: app.pubsub.nodeId });
