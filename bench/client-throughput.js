// @ts-check
/**
 * Client throughput: sockway's client (`connect`) against the ws client, both echoing through the same
 * sockway echo server (bench/servers/sockway.js). Server pinned to BENCH_SERVER_CPUS (0), clients to
 * BENCH_LOAD_CPUS (1); the two clients alternate, BENCH_ROUNDS rounds (3), medians.
 * Each client process opens 8 connections and keeps 16 messages in flight on each for BENCH_SECONDS (3)
 * after 0.5 s of warm-up; a message is counted when its echo comes back.
 *   npm run build && node bench/client-throughput.js
 */
import { spawn } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const CONNECTIONS = 8;
const IN_FLIGHT = 16;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const WARMUP = 0.5;

if (process.argv[2] === "client")
  await runClient(process.argv[3] ?? "", Number(process.argv[4]), Number(process.argv[5]));
else await runHarness();

/** One client process: echoes for the window, prints the messages per second. */
async function runClient(/** @type {string} */ kind, /** @type {number} */ port, /** @type {number} */ size) {
  const url = `ws://127.0.0.1:${port}/`;
  const payload = Buffer.alloc(size, 0x61);
  let counting = false;
  let received = 0;
  /** @type {Array<() => void>} */
  const closers = [];
  if (kind === "sockway") {
    const dist = process.env.BENCH_SOCKWAY_DIST ?? `${here}../dist/src`;
    const { connect } = await import(pathToFileURL(`${dist}/index.js`).href);
    for (let c = 0; c < CONNECTIONS; c++) {
      const session = await connect(url, { pingPeriod: 0, maxFrameSize: 64 * 1024 * 1024 });
      closers.push(() => session.terminate());
      for (let i = 0; i < IN_FLIGHT; i++) session.send(payload).catch(() => {});
      void (async () => {
        for await (const _ of session.incoming) {
          if (counting) received++;
          session.send(payload).catch(() => {});
        }
      })();
    }
  } else {
    const { default: WebSocket } = await import("ws");
    for (let c = 0; c < CONNECTIONS; c++) {
      const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      ws.on("error", () => {});
      closers.push(() => ws.terminate());
      ws.on("message", () => {
        if (counting) received++;
        ws.send(payload);
      });
      for (let i = 0; i < IN_FLIGHT; i++) ws.send(payload);
    }
  }
  await new Promise((resolve) => setTimeout(resolve, WARMUP * 1000));
  counting = true;
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  const rate = received / ((performance.now() - start) / 1000);
  counting = false;
  process.stdout.write(`RATE ${rate}\n`);
  for (const close of closers) close();
  process.exit(0);
}

async function runHarness() {
  const serverCpus = process.env.BENCH_SERVER_CPUS ?? "0";
  const loadCpus = process.env.BENCH_LOAD_CPUS ?? "1";
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const server = spawn("taskset", ["-c", serverCpus, process.execPath, `${here}servers/sockway.js`], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const port = await new Promise((resolve) => {
    server.stdout.on("data", (d) => {
      const m = /READY (\d+)/.exec(String(d));
      if (m) resolve(Number(m[1]));
    });
  });
  /** @type {Record<string, number[]>} */
  const results = {};
  for (let round = 0; round < rounds; round++)
    for (const size of [32, 64 * 1024])
      for (const kind of round % 2 ? ["ws", "sockway"] : ["sockway", "ws"]) {
        const rate = await new Promise((resolve, reject) => {
          const child = spawn(
            "taskset",
            [
              "-c",
              loadCpus,
              process.execPath,
              fileURLToPath(import.meta.url),
              "client",
              kind,
              String(port),
              String(size),
            ],
            { stdio: ["ignore", "pipe", "inherit"] },
          );
          let out = "";
          child.stdout.on("data", (d) => {
            out += d;
          });
          child.on("exit", (code) => {
            const m = /RATE ([\d.]+)/.exec(out);
            if (m) resolve(Number(m[1]));
            else reject(new Error(`${kind} client exited with ${code}`));
          });
        });
        const key = `${size} ${kind}`;
        results[key] = [...(results[key] ?? []), /** @type {number} */ (rate)];
        process.stderr.write(
          `round ${round + 1}/${rounds} ${size} B ${kind}: ${Math.round(/** @type {number} */ (rate)).toLocaleString("en-US")} msgs/s\n`,
        );
      }
  server.stdin.end();
  const median = (/** @type {number[]} */ a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
  for (const size of [32, 64 * 1024]) {
    const s = median(results[`${size} sockway`] ?? []);
    const w = median(results[`${size} ws`] ?? []);
    console.log(
      `${size} B, ${CONNECTIONS} conns x ${IN_FLIGHT} in flight: sockway client ${Math.round(s).toLocaleString("en-US")} msgs/s, ws client ${Math.round(w).toLocaleString("en-US")} msgs/s, ratio ${(s / w).toFixed(2)}x`,
    );
  }
}
