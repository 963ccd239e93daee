import { describe, expect, it } from "vitest";
import { createApp, type TestTransport, testApplication, WebSockets } from "../../src/index.js";

/**
 * The same route test in memory and over TCP, N times each: the median wall time of one. Run with
 * SOCKWAY_TEST_HOST_BENCH=1 for the figures (N=200); otherwise a short run that checks memory is faster.
 */
const BENCH = process.env.SOCKWAY_TEST_HOST_BENCH === "1";
const N = BENCH ? 200 : 20;

// One application per transport: over TCP, testApplication stops the application after each test.
const echoApp = () =>
  createApp()
    .install(WebSockets)
    .routing((r) =>
      r.webSocket("/echo", async (session) => {
        for await (const frame of session.incoming) await session.send(frame);
      }),
    );
const apps = { memory: echoApp(), tcp: echoApp() };

async function routeTest(transport: TestTransport): Promise<void> {
  await testApplication(
    apps[transport],
    ({ client }) =>
      client.webSocket("/echo", {}, async (s) => {
        await s.send("hello");
        await s.expectText("hello");
      }),
    { transport },
  );
}

async function median(transport: TestTransport): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const start = process.hrtime.bigint();
    await routeTest(transport);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

describe("the test host's speed", () => {
  it(`a route test in memory against the same over TCP (median of ${N})`, async () => {
    await routeTest("memory"); // warm up both paths
    await routeTest("tcp");
    const memory = await median("memory");
    const tcp = await median("tcp");
    if (BENCH)
      console.log(
        `route test, median of ${N}: memory ${memory.toFixed(3)} ms, tcp ${tcp.toFixed(3)} ms, ratio ${(tcp / memory).toFixed(1)}x`,
      );
    expect(memory).toBeLessThan(tcp);
  }, 60_000);
});
