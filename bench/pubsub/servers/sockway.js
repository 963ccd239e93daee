// @ts-check
/**
 * sockway's pub/sub under test: subscribers call `session.subscribe("t")`, the publisher's requests
 * become one `app.publish("t", payload)` each. See shared.js for the connections and commands.
 *   node bench/pubsub/servers/sockway.js                   → READY <port>
 *   BENCH_REDIS_PORT=<port>: PubSub with redisAdapter on that redis-server (the cross-process scenario)
 */
import { ready } from "../../servers/common.js";
import { memoryLine, payloadFor, REQUEST_BYTES, redisPort, TOPIC } from "./shared.js";

// BENCH_SOCKWAY_DIST points at another build (a copy of dist/src) to compare two versions of sockway.
const dist = process.env.BENCH_SOCKWAY_DIST ?? new URL("../../../dist/src", import.meta.url).pathname;
const sockway = await import(`${dist}/index.js`);
const { createApp, PubSub, WebSockets } = sockway;

const app = createApp().install(WebSockets, { pingPeriod: 0 });
app.onError((/** @type {unknown} */ error, /** @type {string} */ kind) =>
  console.error(`sockway ${kind} error:`, error),
);

if (redisPort !== undefined) {
  const { redisAdapter } = sockway;
  if (typeof redisAdapter !== "function") throw new Error("this sockway build has no redisAdapter");
  const { createClient } = await import("redis");
  const client = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  client.on("error", (/** @type {unknown} */ e) => console.error("redis:", e));
  await client.connect();
  app.install(PubSub, { adapter: redisAdapter({ client }) });
}

/** @type {Set<any>} */
const idle = new Set();

app.routing((/** @type {any} */ r) => {
  r.webSocket("/sub", async (/** @type {any} */ s) => {
    await s.subscribe(TOPIC);
    for await (const _ of s.incoming);
  });
  r.webSocket("/pub", async (/** @type {any} */ s) => {
    for await (const f of s.incoming) {
      if (f.data.length === REQUEST_BYTES) app.publish(TOPIC, payloadFor(f.data));
    }
  });
  r.webSocket("/", async (/** @type {any} */ s) => {
    idle.add(s);
    try {
      for await (const _ of s.incoming);
    } finally {
      idle.delete(s);
    }
  });
});

const { port } = await app.listen({ port: 0, host: "127.0.0.1" });
ready(port, (line) => {
  if (line === "COUNT") process.stdout.write(`COUNT ${app.subscriberCount(TOPIC)}\n`);
  else if (line === "MEM") process.stdout.write(memoryLine());
  else if (line === "STATS") process.stdout.write(`STATS ${JSON.stringify(app.pubsub.stats)}\n`);
  else if (line.startsWith("SUB ")) {
    const k = Number(line.slice(4));
    for (const s of idle) for (let i = 0; i < k; i++) s.subscribe(`t${i}`);
    process.stdout.write(`SUBBED ${idle.size}\n`);
  }
});
