// @ts-check
/**
 * WebSockets over HTTP/2 against WebSockets over HTTP/1.1, same sockway server (listen({ tls, http2 })),
 * same run: echo of 32 B with 100 WebSockets on one h2 connection vs 100 TLS connections; handshakes per
 * second (open, Close, end) with 100 in flight on one h2 connection vs a TLS connection each; server
 * memory per idle WebSocket (1,000: 4 h2 connections x 250 streams vs 1,000 TLS connections). Server on
 * CPU 0, load client on CPU 1; the two transports alternate in every round; medians.
 *   npm run bench:http2      BENCH_ROUNDS (3), BENCH_SECONDS (4), BENCH_IDLE (1000), BENCH_QUIET_BUDGET (60)
 */
import { fileURLToPath } from "node:url";
import { Child, cpuList, rssKiB, sleep, waitForQuiet } from "../lib/proc.js";
import { fmt } from "../lib/report.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = process.env.BENCH_SECONDS ?? "4";
const IDLE = Number(process.env.BENCH_IDLE ?? 1000);
const SERVER_CPUS = process.env.BENCH_SERVER_CPUS ?? "0";
const LOAD_CPUS = process.env.BENCH_LOAD_CPUS ?? "1";
const budget = { ms: Number(process.env.BENCH_QUIET_BUDGET ?? 60) * 1000 };
const log = (/** @type {string} */ line) => process.stderr.write(`${line}\n`);

async function startServer() {
  const server = new Child("server", SERVER_CPUS, [process.execPath, `${here}server.js`]);
  const port = Number(await server.waitFor("READY", 20_000));
  return { server, port };
}

/** @returns {Promise<{ rate: number, loadCpu: number }>} */
async function load(/** @type {Record<string, string>} */ env) {
  const client = new Child("load", LOAD_CPUS, [process.execPath, `${here}load.js`], {
    BENCH_SECONDS: SECONDS,
    ...env,
  });
  const result = JSON.parse(await client.waitFor("RESULT", 120_000));
  await client.exited;
  return result;
}

/** @type {Record<string, Record<string, number[]>>} */
const results = {};
const record = (/** @type {string} */ row, /** @type {string} */ mode, /** @type {number} */ value) => {
  const byMode = results[row] ?? {};
  results[row] = byMode;
  const values = byMode[mode] ?? [];
  byMode[mode] = values;
  values.push(value);
};

for (let round = 0; round < ROUNDS; round++) {
  const modes = round % 2 === 0 ? ["h2", "h1"] : ["h1", "h2"];
  for (const mode of modes) {
    await waitForQuiet(cpuList(SERVER_CPUS), cpuList(LOAD_CPUS), budget, log);
    {
      const { server, port } = await startServer();
      const e = await load({ BENCH_PORT: String(port), BENCH_MODE: mode, BENCH_PHASE: "echo" });
      record("echo 32 B, 100 WebSockets x 8 in flight (msg/s)", mode, e.rate);
      record("  load client CPU, echo", mode, e.loadCpu);
      const h = await load({
        BENCH_PORT: String(port),
        BENCH_MODE: mode,
        BENCH_PHASE: "handshake",
        BENCH_CONNS: "100",
      });
      record("handshakes/s, 100 in flight (open, Close, end)", mode, h.rate);
      record("  load client CPU, handshakes", mode, h.loadCpu);
      log(
        `round ${round + 1} ${mode}: echo ${fmt(e.rate)} msg/s (load CPU ${(e.loadCpu * 100).toFixed(0)}%), handshakes ${fmt(h.rate)}/s (load CPU ${(h.loadCpu * 100).toFixed(0)}%)`,
      );
      server.process.stdin?.end();
      await server.exited;
    }
    {
      const { server, port } = await startServer();
      await sleep(1000);
      const before = rssKiB(server.pid);
      const client = new Child("idle", LOAD_CPUS, [process.execPath, `${here}load.js`], {
        BENCH_PORT: String(port),
        BENCH_MODE: mode,
        BENCH_PHASE: "idle",
        BENCH_CONNS: String(IDLE),
      });
      await client.waitFor("OPEN", 120_000);
      await sleep(2000);
      const perSocket = (rssKiB(server.pid) - before) / IDLE;
      record(`server RSS per idle WebSocket, ${IDLE} (KiB)`, mode, perSocket);
      log(`round ${round + 1} ${mode}: ${perSocket.toFixed(2)} KiB per idle WebSocket`);
      client.process.stdin?.end();
      await client.exited;
      server.process.stdin?.end();
      await server.exited;
    }
  }
}

const median = (/** @type {number[]} */ a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(
  `| scenario (median of ${ROUNDS}) | h2, one connection | HTTP/1.1, a TLS connection each | h2 / HTTP/1.1 |`,
);
console.log("|---|---:|---:|---:|");
for (const [row, byMode] of Object.entries(results)) {
  const h2 = median(byMode.h2 ?? []);
  const h1 = median(byMode.h1 ?? []);
  const cpu = row.includes("CPU");
  const f = (/** @type {number} */ x) =>
    cpu ? `${(x * 100).toFixed(0)}%` : row.includes("KiB") ? x.toFixed(2) : fmt(x);
  console.log(`| ${row} | ${f(h2)} | ${f(h1)} | ${cpu ? "" : `${(h2 / h1).toFixed(2)}x`} |`);
}
