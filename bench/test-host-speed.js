// @ts-check
/**
 * The same route test (open /echo, send "hello", expect it back, close) run by testApplication in
 * memory and over TCP, N times each, alternating: the median wall time of one, and the ratio.
 *   npm run bench:testhost        (BENCH_N, default 200)
 */
import { fileURLToPath, pathToFileURL } from "node:url";

const dist = process.env.BENCH_SOCKWAY_DIST ?? fileURLToPath(new URL("../dist/src", import.meta.url));
const { createApp, testApplication, WebSockets } = await import(pathToFileURL(`${dist}/index.js`).href);
const N = Number(process.env.BENCH_N ?? 200);

const echoApp = () =>
  createApp()
    .install(WebSockets)
    .routing((/** @type {any} */ r) =>
      r.webSocket("/echo", async (/** @type {any} */ session) => {
        for await (const frame of session.incoming) await session.send(frame);
      }),
    );
const memoryApp = echoApp();

async function routeTest(/** @type {"memory" | "tcp"} */ transport) {
  // Over TCP, testApplication stops the application after the test: a fresh one each time.
  await testApplication(
    transport === "memory" ? memoryApp : echoApp(),
    (/** @type {any} */ { client }) =>
      client.webSocket("/echo", {}, async (/** @type {any} */ s) => {
        await s.send("hello");
        await s.expectText("hello");
      }),
    { transport },
  );
}

/** @type {{ memory: number[], tcp: number[] }} */
const times = { memory: [], tcp: [] };
await routeTest("memory"); // warm up both paths
await routeTest("tcp");
for (let i = 0; i < N; i++) {
  for (const transport of /** @type {const} */ (["memory", "tcp"])) {
    const start = process.hrtime.bigint();
    await routeTest(transport);
    times[transport].push(Number(process.hrtime.bigint() - start) / 1e6);
  }
}
const median = (/** @type {number[]} */ a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
const memory = median(times.memory);
const tcp = median(times.tcp);
console.log(
  `route test, median of ${N}: memory ${memory.toFixed(3)} ms, tcp ${tcp.toFixed(3)} ms, memory is ${(tcp / memory).toFixed(1)}x faster`,
);
