// @ts-check
/**
 * The same route test (open /echo, send "hello", expect it back, close) run by testApplication in
 * memory and over TCP, alternating (which goes first alternates too), each on an application of its
 * own that every test reuses (the README's pattern; over TCP, testApplication listens on 127.0.0.1:0
 * before the test and stops the application after it, so each TCP test includes a listen and a stop).
 *
 * Two phases, each the median of BENCH_N tests of each transport:
 *  - cold: the first BENCH_N rounds after one warm-up round. Most of the code still runs in V8's
 *    interpreter and baseline compiler, and TurboFan compiles as it goes (on the same core when pinned).
 *  - warm: BENCH_N rounds after BENCH_WARMUP (default 1000) more, once TurboFan has compiled the hot
 *    code: the cost of a route test in a test run that has been going for a while.
 *  - warm, in runs of RUN: the same, but each transport runs RUN (10) tests in a row before the other
 *    does (as in a test file whose tests all use one transport). Alternating one by one, each test
 *    starts with caches full of the other transport's code and data (TCP: node:http, node:net, the
 *    kernel); in memory that costs as much CPU time as the test itself.
 *   npm run bench:testhost        (BENCH_N, default 200; BENCH_WARMUP, default 1000)
 */
import { fileURLToPath, pathToFileURL } from "node:url";

const dist = process.env.BENCH_SOCKWAY_DIST ?? fileURLToPath(new URL("../dist/src", import.meta.url));
const { createApp, testApplication, WebSockets } = await import(pathToFileURL(`${dist}/index.js`).href);
const N = Number(process.env.BENCH_N ?? 200);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1000);

const echoApp = () =>
  createApp()
    .install(WebSockets)
    .routing((/** @type {any} */ r) =>
      r.webSocket("/echo", async (/** @type {any} */ session) => {
        for await (const frame of session.incoming) await session.send(frame);
      }),
    );
const apps = { memory: echoApp(), tcp: echoApp() };

async function routeTest(/** @type {"memory" | "tcp"} */ transport) {
  await testApplication(
    apps[transport],
    (/** @type {any} */ { client }) =>
      client.webSocket("/echo", {}, async (/** @type {any} */ s) => {
        await s.send("hello");
        await s.expectText("hello");
      }),
    { transport },
  );
}

const RUN = 10;

/**
 * Runs `rounds` rounds of `run` tests of each transport; returns each transport's times in ms (none
 * kept when `keep` is false).
 */
async function run(/** @type {number} */ rounds, keep = true, run = 1) {
  /** @type {{ memory: number[], tcp: number[] }} */
  const times = { memory: [], tcp: [] };
  for (let i = 0; i < rounds; i++) {
    for (const transport of /** @type {const} */ (i % 2 === 0 ? ["memory", "tcp"] : ["tcp", "memory"])) {
      for (let j = 0; j < run; j++) {
        const start = process.hrtime.bigint();
        await routeTest(transport);
        if (keep) times[transport].push(Number(process.hrtime.bigint() - start) / 1e6);
      }
    }
  }
  return times;
}

const median = (/** @type {number[]} */ a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
const report = (/** @type {string} */ phase, /** @type {{ memory: number[], tcp: number[] }} */ t) => {
  const memory = median(t.memory);
  const tcp = median(t.tcp);
  console.log(
    `route test, ${phase}, median of ${N}: memory ${memory.toFixed(3)} ms, tcp ${tcp.toFixed(3)} ms, memory is ${(tcp / memory).toFixed(1)}x faster`,
  );
};

await run(1, false); // both paths once
report("cold", await run(N));
await run(WARMUP, false);
report(`warm (after ${N + WARMUP + 1} rounds)`, await run(N));
report(`warm, in runs of ${RUN}`, await run(Math.ceil(N / RUN), true, RUN));
