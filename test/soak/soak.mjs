// @ts-check
/**
 * Bounded soak test (127.0.0.1 only): in each of three rounds, CONNECTIONS concurrent WebSocket clients
 * exchange messages with an echo server for SECONDS, then close. Asserts that every message came back
 * intact, that the server released every session, socket and timer, that its heap returned near its
 * baseline after every round, and that its RSS does not keep growing from round to round.
 *   npm run build && node test/soak/soak.mjs        (CONNECTIONS=5000 SECONDS=15 by default)
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 5000);
const SECONDS = Number(process.env.SECONDS ?? 15);
const MIB = 1024 * 1024;
/** JS heap and ArrayBuffer memory the server may keep after everything closed (JIT, lazily built state). */
const HEAP_SLACK = 16 * MIB;
/** RSS growth allowed between identical rounds (the smaller of the two growths over three rounds). */
const RSS_DRIFT = 24 * MIB;

const server = fork(fileURLToPath(new URL("./soak-server.mjs", import.meta.url)), [], {
  execArgv: ["--expose-gc"],
  stdio: ["ignore", "inherit", "inherit", "ipc"],
});
/** @type {string[]} */
const serverErrors = [];
/** @type {((message: any) => void)[]} */
const waiting = [];
server.on("message", (/** @type {any} */ message) => {
  if (message.type === "error") serverErrors.push(`${message.kind}: ${message.message}`);
  else waiting.shift()?.(message);
});
/** @returns {Promise<any>} */
const nextMessage = () => new Promise((resolve) => waiting.push(resolve));
/** @returns {Promise<{ rss: number, heapUsed: number, arrayBuffers: number, sessions: number, sockets: number, timers: number }>} */
const stats = () => {
  const reply = nextMessage();
  server.send({ type: "stats" });
  return reply;
};

const results = { passed: 0, failed: 0 };
/** @param {string} name @param {boolean} ok @param {string} detail */
function check(name, ok, detail) {
  results[ok ? "passed" : "failed"]++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${detail}`);
}

const { port } = await nextMessage();
const baseline = await stats();
console.log(
  `server baseline: rss ${(baseline.rss / MIB).toFixed(1)} MiB, ${baseline.sockets} sockets, ${baseline.timers} timers`,
);

/** One round: open every connection, exchange messages until the time is up, close, wait for release. */
async function round(/** @type {number} */ n) {
  // Open every connection (a few hundred at a time, so the accept queue never overflows).
  const started = performance.now();
  /** @type {WebSocket[]} */
  const clients = [];
  for (let i = 0; i < CONNECTIONS; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(i + 250, CONNECTIONS); j++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/soak/${j}`, { perMessageDeflate: false });
      clients.push(ws);
      batch.push(new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)));
    }
    await Promise.all(batch);
  }
  const opened = await stats();
  check(
    `round ${n}: all connections open`,
    opened.sessions === CONNECTIONS,
    `${opened.sessions} sessions after ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  // Each client: one message in flight, checked on return, until the time is up.
  let sent = 0;
  let echoed = 0;
  let corrupt = 0;
  const deadline = performance.now() + SECONDS * 1000;
  await Promise.all(
    clients.map(
      (ws, id) =>
        new Promise((resolve) => {
          let seq = 0;
          const sendNext = () => {
            if (performance.now() >= deadline) return resolve(undefined);
            const text = `client ${id} message ${seq++} ${"x".repeat(id % 64)}`;
            ws.once("message", (data, isBinary) => {
              if (isBinary || String(data) !== text) corrupt++;
              else echoed++;
              sendNext();
            });
            sent++;
            ws.send(text);
          };
          sendNext();
        }),
    ),
  );
  const loaded = await stats();
  check(
    `round ${n}: every message echoed intact`,
    echoed === sent && corrupt === 0,
    `${sent} sent, ${echoed} echoed, ${corrupt} corrupt (${Math.round(sent / SECONDS)} msg/s)`,
  );
  console.log(
    `     under load: rss ${(loaded.rss / MIB).toFixed(1)} MiB, ${loaded.sessions} sessions, ${loaded.sockets} sockets, ${loaded.timers} timers`,
  );

  // Close everything with 1000 and wait for every close handshake to finish.
  const closes = clients.map((ws) => new Promise((resolve) => ws.once("close", (code) => resolve(code))));
  for (const ws of clients) ws.close(1000);
  const codes = await Promise.all(closes);
  check(
    `round ${n}: every close handshake completes with 1000`,
    codes.every((c) => c === 1000),
    `${codes.filter((c) => c === 1000).length}/${codes.length}`,
  );

  // The server may take a moment to see every FIN; poll briefly.
  let after = await stats();
  for (let i = 0; i < 20 && (after.sessions > 0 || after.sockets > baseline.sockets); i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    after = await stats();
  }
  check(`round ${n}: every session released`, after.sessions === 0, `${after.sessions} left`);
  check(
    `round ${n}: every socket released`,
    after.sockets <= baseline.sockets,
    `${after.sockets} sockets (baseline ${baseline.sockets})`,
  );
  check(
    `round ${n}: every timer released`,
    after.timers <= baseline.timers,
    `${after.timers} timers (baseline ${baseline.timers})`,
  );
  const heapGrown = after.heapUsed + after.arrayBuffers - (baseline.heapUsed + baseline.arrayBuffers);
  check(
    `round ${n}: JS heap and buffers back near their baseline`,
    heapGrown < HEAP_SLACK,
    `${(heapGrown / MIB).toFixed(1)} MiB over baseline (rss ${(after.rss / MIB).toFixed(1)} MiB, peak ${(loaded.rss / MIB).toFixed(1)} MiB)`,
  );
  return after;
}

const after = [await round(1), await round(2), await round(3)];
// The allocator keeps pages it once needed, so RSS does not fall back to the baseline; and it may take
// one more step up in a later round (malloc arenas, V8's page pool: 30 MiB once in CI, with the JS heap
// back at its baseline). A leak grows RSS in every round, so the smaller of the two round-to-round
// growths is what must stay under the bound. The JS heap itself is checked per round above.
const mib = (bytes) => `${(bytes / MIB).toFixed(1)} MiB`;
const drifts = [after[1].rss - after[0].rss, after[2].rss - after[1].rss];
check(
  "rss does not keep growing from one round to the next",
  Math.min(...drifts) < RSS_DRIFT,
  `growth ${drifts.map(mib).join(" then ")} (rss after each round ${after.map((a) => mib(a.rss)).join(", ")}; heapTotal ${after.map((a) => mib(a.heapTotal)).join(", ")})`,
);
check(
  "no errors reported by the server",
  serverErrors.length === 0,
  serverErrors.slice(0, 3).join("; ") || "none",
);

server.send({ type: "stop" });
await new Promise((resolve) => server.once("exit", resolve));
console.log(`${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed === 0 ? 0 : 1);
