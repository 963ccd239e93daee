// @ts-check
/**
 * The processes of the cluster tests (test/pubsub/cluster.test.ts), run from the compiled sockway.
 *
 *   SOCKWAY_DIST     directory of the compiled sockway (the one holding index.js)
 *   CLUSTER_MODE     "cluster" (default): runCluster with CLUSTER_OPTIONS (JSON); the primary reports
 *                    to the test over IPC: {type:"event", event, at}, {type:"listening", port},
 *                    {type:"done", reason, cpu, elapsed}; {cmd:"stop"} from the test calls stop().
 *                    "plain": one app with clusterAdapter() in a child forked by the test, whose
 *                    process runs the ClusterRelay: {type:"listening", port}.
 *   CLUSTER_CRASH    "1": every worker exits at once (a crash loop).
 *   CLUSTER_REDIS_URL  set: the workers use redisAdapter over a node-redis client of this Redis instead
 *                    of the relay's adapter.
 *
 * The app: /ws?topic=T (subscribes to T) sends "pid <pid>" first, "subscribed" once subscribed. Text
 * commands: "pub T text", "seq T N tag" (N publications "tag i"), "count T ms" (answers "count {json}"),
 * "sub T" (answers "subscribed T"), "block ms" (answers "blocking", then busy-waits: an
 * unresponsive worker, then "unblocked"), "errors" (answers "errors [codes]"), "stats" (answers "stats {app.pubsub.stats}"); a binary
 * message is published as it is to T.
 */
import cluster from "node:cluster";
import { pathToFileURL } from "node:url";

const dist = process.env.SOCKWAY_DIST;
if (!dist) throw new Error("SOCKWAY_DIST is not set");
const { createApp, WebSockets, PubSub, runCluster, clusterAdapter, redisAdapter } = await import(
  pathToFileURL(`${dist}/index.js`).href
);

/** The relay's adapter, or with CLUSTER_REDIS_URL one over Redis. @param {any} context */
async function adapterFor(context) {
  const url = process.env.CLUSTER_REDIS_URL;
  if (!url) return context.adapter;
  const { createClient } = await import("redis");
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return redisAdapter({ client });
}

/** @param {any} adapter */
async function startApp(adapter) {
  if (process.env.CLUSTER_CRASH === "1") process.exit(3);
  /** @type {string[]} */
  const errors = [];
  const app = createApp()
    .install(WebSockets, {
      pingPeriod: 0,
      // 10,000 publications in one turn are ~2 MiB queued per subscriber (frame overhead included):
      // over the default high-water mark they would be dropped, which is not what the tests look at.
      outgoingHighWaterMark: 32 * 1024 * 1024,
      outgoingBufferLimit: 64 * 1024 * 1024,
    })
    .install(PubSub, { adapter })
    .onError((/** @type {any} */ error, /** @type {string} */ kind) => {
      errors.push(`${kind}:${error?.code ?? String(error)}`);
    });
  app.routing((/** @type {any} */ r) =>
    r.webSocket("/ws", async (/** @type {any} */ session) => {
      const topic = session.call.query.get("topic") ?? "t";
      await session.send(`pid ${process.pid}`);
      await session.subscribe(topic);
      await session.send("subscribed");
      for await (const m of session.incoming) {
        if (m.type !== "text") {
          app.publish(topic, m.data);
          continue;
        }
        const [cmd, a = "", b = "", c = ""] = m.text.split(" ");
        if (cmd === "pub") app.publish(a, m.text.slice(5 + a.length));
        else if (cmd === "seq") for (let i = 0; i < Number(b); i++) app.publish(a, `${c} ${i}`);
        else if (cmd === "count")
          await session.send(
            `count ${JSON.stringify(await app.clusterSubscriberCount(a, { timeout: Number(b) }))}`,
          );
        else if (cmd === "sub") {
          await session.subscribe(a);
          await session.send(`subscribed ${a}`);
        } else if (cmd === "block") {
          await session.send("blocking");
          await session.flush(); // so the test knows the loop has begun
          const until = Date.now() + Number(a);
          while (Date.now() < until); // the point: this worker's event loop answers nothing meanwhile
          await session.send("unblocked");
        } else if (cmd === "errors") await session.send(`errors ${JSON.stringify(errors)}`);
        else if (cmd === "stats") await session.send(`stats ${JSON.stringify(app.pubsub.stats)}`);
      }
    }),
  );
  const { port } = await app.listen({ port: 0 });
  if (process.env.CLUSTER_MODE === "plain") process.send?.({ type: "listening", port });
  return app;
}

if (process.env.CLUSTER_MODE === "plain") {
  await startApp(clusterAdapter());
} else {
  const options = JSON.parse(process.env.CLUSTER_OPTIONS ?? "{}");
  const started = Date.now();
  const report = (/** @type {any} */ message) => {
    if (cluster.isPrimary && process.connected) process.send?.(message);
  };
  const handle = await runCluster({
    ...options,
    start: async (/** @type {any} */ context) => startApp(await adapterFor(context)),
    onEvent: (/** @type {any} */ event) => report({ type: "event", event, at: Date.now() }),
  });
  if (handle.isPrimary) {
    cluster.on("listening", (_worker, address) => report({ type: "listening", port: address.port }));
    process.on("message", (/** @type {any} */ m) => {
      if (m?.cmd === "stop") void handle.stop();
    });
    handle.done.then((/** @type {string} */ reason) => {
      report({ type: "done", reason, cpu: process.cpuUsage(), elapsed: Date.now() - started });
      // The channel to the test is the one thing left: without it the primary exits on its own.
      process.disconnect?.();
    });
  }
}
