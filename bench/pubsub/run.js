// @ts-check
/**
 * Pub/sub benchmarks (see bench/README.md, "Pub/sub benchmarks"). Servers on CPU 0, client processes
 * on CPU 1, everything on 127.0.0.1; every process exits by itself when this one goes.
 *
 *   node bench/pubsub/run.js                 all pub/sub scenarios (npm run bench runs them after the rest)
 *   BENCH_ONLY=fanout,growth,sub-memory,redis    some of them
 *   BENCH_SERVERS=sockway,ws,bun,socketio,raw-net    fan-out columns
 *   BENCH_ROUNDS (3), BENCH_SECONDS (2 per phase), BENCH_WARMUP (0.5), BENCH_RETRIES (1), BENCH_QUICK=1,
 *   BENCH_PROFILE=1 (sockway servers with --cpu-prof into bench/results/tmp/), BENCH_SOCKWAY_DIST,
 *   BENCH_SERVER_CPUS / BENCH_LOAD_CPUS (0 / 1), BENCH_QUIET_BUDGET (seconds, 120).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";
import {
  busyFraction,
  Child,
  cpuList,
  cpuSeconds,
  cpuTimes,
  killAll,
  sleep,
  waitForQuiet,
} from "../lib/proc.js";
import { fmt } from "../lib/report.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const quick = process.env.BENCH_QUICK === "1";
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (quick ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (quick ? 1 : 2));
const WARMUP = Number(process.env.BENCH_WARMUP ?? 0.5);
const SERVER_CPUS = process.env.BENCH_SERVER_CPUS ?? "0";
const LOAD_CPUS = process.env.BENCH_LOAD_CPUS ?? "1";
const PROFILE = process.env.BENCH_PROFILE === "1";
const IDS = ["fanout", "growth", "sub-memory", "redis"];
const ONLY = (process.env.BENCH_ONLY ?? "").split(",").filter((id) => IDS.includes(id));
const selected = (/** @type {string} */ id) =>
  ONLY.length > 0 ? ONLY.includes(id) : process.env.BENCH_ONLY === undefined || process.env.BENCH_ONLY === "";
const ALL_SERVERS = ["sockway", "ws", "bun", "socketio", "raw-net"];
const servers = process.env.BENCH_SERVERS
  ? ALL_SERVERS.filter((s) => process.env.BENCH_SERVERS?.split(",").includes(s))
  : ALL_SERVERS;
/** Milliseconds the whole run may still spend waiting for quiet cores. */
const quietBudget = { ms: Number(process.env.BENCH_QUIET_BUDGET ?? 120) * 1000 };
const CONTENDED = 0.15;
/** A contended measurement is repeated at most this many times. */
const RETRIES = Number(process.env.BENCH_RETRIES ?? 1);
/** Subscriber sockets per client process (each also holds a few fds of its own; the limit is 20,000). */
const PER_CLIENT = 10_000;
const BUN = `${root}node_modules/.bin/bun`;
const serverCores = cpuList(SERVER_CPUS);
const loadCores = cpuList(LOAD_CPUS);

const FANOUT_N = quick ? [1000] : [1000, 10_000];
const SIZES = [32, 1024];
/** Publishes in flight: 1 (each publish alone: its latency, and the kernel's cost of one write per
 * subscriber) and 16 (a publisher in a hurry: what the server does with several per socket). */
const WINDOWS = [1, 16];
const PHASES = SIZES.flatMap((size) => WINDOWS.map((window) => ({ size, window })));
/**
 * Subscribers of one sockway process for the growth figures. 50,000 cannot be held: one server process
 * may have at most 20,000 open files here (`ulimit -Hn`, not raisable in this container), and each
 * subscriber is a socket. 19,000 leaves room for the listener, the publisher and node's own fds.
 */
const GROWTH_N = quick ? [1000, 5000] : [1000, 10_000, 19_000];
const MEMORY_N = quick ? 2000 : 10_000;
const REDIS_PER_NODE = quick ? 200 : 1000;
/** Columns of the Redis scenario (BENCH_REDIS_SERVERS=socketio checks the harness without sockway's adapter). */
const REDIS_SERVERS = (process.env.BENCH_REDIS_SERVERS ?? "sockway,socketio").split(",").filter(Boolean);

const log = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);
const median = (/** @type {number[]} */ xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};
const pct = (/** @type {number} */ x) => `${(x * 100).toFixed(0)}%`;
const started = performance.now();
const elapsed = () => {
  const s = Math.round((performance.now() - started) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

if (!existsSync(`${root}dist/src/index.js`)) {
  log("dist/src/index.js is missing: run `npm run build` (npm run bench does it)");
  process.exit(1);
}
// Started by bench/run.js: exit when it goes (it holds our stdin).
if (process.env.BENCH_PARENT === "1") {
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(1));
}

function bunVersion() {
  try {
    return execFileSync(BUN, ["--version"], { encoding: "utf8", timeout: 10_000 }).trim();
  } catch {
    return undefined;
  }
}
const bun = bunVersion();
const fanoutServers = servers.filter((s) => s !== "bun" || bun !== undefined);

/** Does this sockway build have the Redis adapter? (the `redis` branch may not be merged yet) */
async function sockwayHasRedisAdapter() {
  const dist = process.env.BENCH_SOCKWAY_DIST ?? `${root}dist/src`;
  try {
    const m = await import(`${dist}/index.js`);
    return typeof m.redisAdapter === "function";
  } catch {
    return false;
  }
}

// ---- processes -------------------------------------------------------------------------------------

const SCRIPTS = {
  sockway: { runtime: "node", script: "sockway.js" },
  ws: { runtime: "node", script: "ws.js" },
  bun: { runtime: "bun", script: "bun.js" },
  socketio: { runtime: "node", script: "socketio.js" },
  "raw-net": { runtime: "node", script: "raw-net.js" },
};

/**
 * @param {string} name
 * @param {Record<string, string>} [env]
 * @param {string} [tag] a label for the profile file
 */
async function startServer(name, env = {}, tag = name) {
  const spec = /** @type {{ runtime: string, script: string }} */ (SCRIPTS[/** @type {"ws"} */ (name)]);
  const script = `${root}bench/pubsub/servers/${spec.script}`;
  const profile =
    PROFILE && name === "sockway"
      ? [
          "--cpu-prof",
          `--cpu-prof-dir=${root}bench/results/tmp`,
          `--cpu-prof-name=pubsub-${tag}-${Date.now()}.cpuprofile`,
        ]
      : [];
  const command =
    spec.runtime === "bun" ? [BUN, script] : [process.execPath, "--expose-gc", ...profile, script];
  const child = new Child(name, SERVER_CPUS, command, env);
  try {
    const port = Number(await child.waitFor("READY", 20_000));
    return { child, port };
  } catch (error) {
    await child.kill();
    throw error;
  }
}

/** Profiled servers exit by themselves so that node writes the profile; others are killed. */
const stopServer = (/** @type {Child} */ c) => (PROFILE ? c.end(15_000) : c.kill());

/** A redis-server on a free loopback port, pinned with the servers; dies with us (pdeathsig). */
async function startRedis() {
  const port = await new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
  const child = new Child("redis-server", SERVER_CPUS, [
    "setpriv",
    "--pdeathsig",
    "KILL",
    "redis-server",
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "yes",
    "--loglevel",
    "warning",
  ]);
  // Ready when it accepts a PING.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ port: /** @type {number} */ (port), host: "127.0.0.1" });
      s.once("error", () => resolve(false));
      s.once("connect", () => s.write("PING\r\n"));
      s.once("data", (d) => {
        s.destroy();
        resolve(d.toString().startsWith("+PONG"));
      });
    });
    if (ok) break;
    if (Date.now() > deadline) {
      await child.kill();
      throw new Error(`redis-server did not answer on ${port}${child.tail()}`);
    }
    await sleep(100);
  }
  return { child, port: /** @type {number} */ (port) };
}

/** Asks a server a question on stdin, returns the answer line's rest. */
async function ask(/** @type {Child} */ c, /** @type {string} */ question, /** @type {string} */ answer) {
  c.send(question);
  return c.waitFor(answer, 30_000);
}

/** Waits until the servers together count `n` subscribers of the topic. */
async function waitForSubscribers(/** @type {Child[]} */ ss, /** @type {number} */ n) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    let total = 0;
    for (const s of ss) total += Number(await ask(s, "COUNT", "COUNT"));
    if (total === n) return;
    if (Date.now() > deadline) throw new Error(`${total} of ${n} subscribers after 60 s`);
    await sleep(100);
  }
}

// ---- one fan-out measurement ------------------------------------------------------------------------

/**
 * Starts `servers` (one, or two with Redis), connects `n` subscribers spread over them from client
 * processes of at most PER_CLIENT sockets each, and measures one publish at a time for each size.
 * @param {{ server: string, n: number, phases: { size: number, window: number }[], nodes?: number, redisPort?: number, tag?: string }} o
 */
async function measureFanout(o) {
  const busyBefore = await waitForQuiet(serverCores, loadCores, quietBudget, log);
  const nodes = o.nodes ?? 1;
  const env = o.redisPort !== undefined ? { BENCH_REDIS_PORT: String(o.redisPort) } : {};
  /** @type {{ child: Child, port: number }[]} */
  const ss = [];
  /** @type {Child[]} */
  const clients = [];
  try {
    for (let i = 0; i < nodes; i++) ss.push(await startServer(o.server, env, o.tag));
    const procs = Math.ceil(o.n / PER_CLIENT);
    const kind = o.server === "socketio" ? "socketio" : "raw";
    const ports = ss.map((s) => s.port);
    const base = { kind, ports, procs, phases: o.phases, warmup: WARMUP, seconds: SECONDS };
    const share = (/** @type {number} */ i) => Math.floor(o.n / procs) + (i < o.n % procs ? 1 : 0);
    const lead = new Child("pubsub client 0", LOAD_CPUS, [
      process.execPath,
      `${root}bench/pubsub/client.js`,
      JSON.stringify({ ...base, subs: share(0), lead: true }),
    ]);
    clients.push(lead);
    const controlPort = Number(await lead.waitFor("CONTROL", 20_000));
    for (let i = 1; i < procs; i++)
      clients.push(
        new Child(`pubsub client ${i}`, LOAD_CPUS, [
          process.execPath,
          `${root}bench/pubsub/client.js`,
          JSON.stringify({ ...base, subs: share(i), lead: false, controlPort }),
        ]),
      );
    await Promise.all(clients.map((c) => c.waitFor("CONNECTED", 240_000)));
    await waitForSubscribers(
      ss.map((s) => s.child),
      o.n,
    );
    const ours = () => [...ss.map((s) => s.child.pid), ...(o.redisPort !== undefined ? [redisPid] : [])];
    for (const c of clients) c.send("GO");
    /** @type {Record<string, any>[]} */
    const windows = [];
    for (const _phase of o.phases) {
      await lead.waitFor("START", 60_000);
      const sc0 = ours().map(cpuSeconds);
      const cc0 = clients.map((c) => cpuSeconds(c.pid));
      const core0 = [cpuTimes(serverCores), cpuTimes(loadCores)];
      const t0 = performance.now();
      await lead.waitFor("END", 60_000);
      const wall = (performance.now() - t0) / 1000;
      const serverCpu = ours().reduce((a, pid, i) => a + cpuSeconds(pid) - (sc0[i] ?? 0), 0) / wall;
      const clientCpu = clients.reduce((a, c, i) => a + cpuSeconds(c.pid) - (cc0[i] ?? 0), 0) / wall;
      const serverCoreBusy = busyFraction(
        /** @type {any} */ (core0[0]),
        cpuTimes(serverCores),
        serverCores.length,
      );
      const loadCoreBusy = busyFraction(/** @type {any} */ (core0[1]), cpuTimes(loadCores), loadCores.length);
      windows.push({ serverCpu, clientCpu, serverCoreBusy, loadCoreBusy });
    }
    const lr = JSON.parse(await lead.waitFor("RESULT", 60_000));
    for (const c of clients.slice(1)) c.send("STOP");
    const others = await Promise.all(
      clients.slice(1).map(async (c) => JSON.parse(await c.waitFor("RESULT", 30_000))),
    );
    const closedConnections = lr.closed + others.reduce((a, r) => a + r.closed, 0);
    if (closedConnections > 0) throw new Error(`${closedConnections} connections closed`);
    let stats;
    if (o.server === "sockway")
      stats = JSON.parse(await ask(/** @type {any} */ (ss[0]).child, "STATS", "STATS"));
    return o.phases.map((_, i) => {
      const r = lr.results[i];
      const w = windows[i] ?? {};
      const deliveriesPerSecond = r.publishesPerSecond * o.n;
      const otherOnServerCore = Math.max(0, w.serverCoreBusy - w.serverCpu);
      const otherOnLoadCore = Math.max(0, w.loadCoreBusy - w.clientCpu);
      return {
        ...r,
        ...w,
        n: o.n,
        clientProcesses: procs,
        deliveriesPerSecond,
        serverNsPerDelivery: (w.serverCpu / deliveriesPerSecond) * 1e9,
        otherOnServerCore,
        otherOnLoadCore,
        busyBefore,
        contended: otherOnServerCore > CONTENDED || otherOnLoadCore > CONTENDED,
        othersElu: others.map((x) => x.elu),
        stats,
      };
    });
  } finally {
    await Promise.all(clients.map((c) => c.kill()));
    await Promise.all(ss.map((s) => stopServer(s.child)));
  }
}

/** Memory of `n` sockway sessions subscribed to 0, 1 and 10 topics (one server process). */
async function measureMemory(/** @type {number} */ n) {
  const { child: server, port } = await startServer("sockway");
  /** @type {Child | undefined} */
  let load;
  try {
    const mem = async () => JSON.parse(await ask(server, "MEM", "MEM"));
    const empty = await mem();
    load = new Child("hold", LOAD_CPUS, [
      process.execPath,
      `${root}bench/load/loadgen.js`,
      JSON.stringify({ mode: "hold", conns: n, port }),
    ]);
    await load.waitFor("HELD", 180_000);
    await sleep(500);
    const m0 = await mem();
    const subbed1 = Number(await ask(server, "SUB 1", "SUBBED"));
    const m1 = await mem();
    const subbed10 = Number(await ask(server, "SUB 10", "SUBBED"));
    const m10 = await mem();
    if (subbed1 !== n || subbed10 !== n) throw new Error(`${subbed1}/${subbed10} of ${n} sessions`);
    load.send("STOP");
    const r = JSON.parse(await load.waitFor("RESULT", 30_000));
    if (r.closedDuringHold > 0) throw new Error(`${r.closedDuringHold} connections closed`);
    const per = (
      /** @type {any} */ a,
      /** @type {any} */ b,
      /** @type {number} */ k,
      /** @type {string} */ f,
    ) => (b[f] - a[f]) / (n * k);
    return {
      n,
      empty,
      idle: m0,
      one: m1,
      ten: m10,
      sessionHeapBytes: per(empty, m0, 1, "heapUsed"),
      firstSubscriptionHeapBytes: per(m0, m1, 1, "heapUsed"),
      furtherSubscriptionHeapBytes: per(m1, m10, 9, "heapUsed"),
      firstSubscriptionRssBytes: per(m0, m1, 1, "rss"),
      furtherSubscriptionRssBytes: per(m1, m10, 9, "rss"),
    };
  } finally {
    await load?.kill();
    await server.kill();
  }
}

// ---- the run -----------------------------------------------------------------------------------------

/** @type {any[]} */
const measurements = [];
/** @type {string[]} */
const skipped = [];
let redisPid = 0;

function rotate(/** @type {string[]} */ xs, /** @type {number} */ k) {
  const s = xs.length === 0 ? 0 : k % xs.length;
  return [...xs.slice(s), ...xs.slice(0, s)];
}

async function record(
  /** @type {string} */ scenario,
  /** @type {string} */ server,
  /** @type {number} */ round,
  /** @type {() => Promise<any>} */ run,
) {
  const t = performance.now();
  try {
    let r = await run();
    // Other work took a pinned core during it: measured again (both kept; medians use the clean ones).
    for (let retry = 0; retry < RETRIES && [r].flat().some((m) => m.contended); retry++) {
      for (const m of [r].flat()) measurements.push({ scenario, server, round, ...m, retried: true });
      log(`  contended (others on the pinned cores): measuring ${scenario} ${server} again`);
      r = await run();
    }
    const list = Array.isArray(r) ? r : [r];
    for (const m of list) measurements.push({ scenario, server, round, ...m });
    for (const m of list) {
      const line =
        m.deliveriesPerSecond !== undefined
          ? `${m.n} subs ${m.size} B window ${m.window}: ${fmt(m.deliveriesPerSecond)} deliveries/s, last delivery p50 ${fmt(m.latencyP50us)} µs p99 ${fmt(m.latencyP99us)} µs, ` +
            `server CPU ${pct(m.serverCpu)} (${fmt(m.serverNsPerDelivery)} ns/delivery), clients ${pct(m.clientCpu)}; others ${pct(m.otherOnServerCore)}/${pct(m.otherOnLoadCore)}`
          : `${m.n} sessions: heap ${fmt(m.sessionHeapBytes)} B/session, first subscription ${fmt(m.firstSubscriptionHeapBytes)} B heap ` +
            `(${fmt(m.firstSubscriptionRssBytes)} RSS), further ${fmt(m.furtherSubscriptionHeapBytes)} B heap (${fmt(m.furtherSubscriptionRssBytes)} RSS)`;
      log(`[${elapsed()}] round ${round + 1}/${ROUNDS} ${scenario} ${server}: ${line}`);
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    measurements.push({ scenario, server, round, error: message });
    log(`[${elapsed()}] round ${round + 1}/${ROUNDS} ${scenario} ${server}: FAILED ${message}`);
  }
  log(`  (${((performance.now() - t) / 1000).toFixed(1)} s)`);
}

async function main() {
  const redisReady =
    selected("redis") && (!REDIS_SERVERS.includes("sockway") || (await sockwayHasRedisAdapter()));
  if (selected("redis") && !redisReady) {
    const why =
      "redis: SKIPPED, this sockway build has no redisAdapter (src/pubsub/redis.ts is on the `redis` branch, not merged yet)";
    skipped.push(why);
    log(why);
  }
  /** @type {{ child: Child, port: number } | undefined} */
  let redis;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      if (selected("fanout"))
        for (const [i, n] of FANOUT_N.entries())
          for (const server of rotate(fanoutServers, round + i))
            await record("fanout", server, round, () => measureFanout({ server, n, phases: PHASES }));
      if (selected("growth"))
        for (const n of rotate(GROWTH_N.map(String), round).map(Number))
          await record("growth", "sockway", round, () =>
            measureFanout({
              server: "sockway",
              n,
              phases: WINDOWS.map((window) => ({ size: 32, window })),
              tag: `${n}`,
            }),
          );
      if (selected("sub-memory")) await record("sub-memory", "sockway", round, () => measureMemory(MEMORY_N));
      if (redisReady) {
        redis ??= await startRedis();
        redisPid = redis.child.pid;
        for (const server of rotate(REDIS_SERVERS, round))
          await record("redis", server, round, () =>
            measureFanout({
              server,
              n: 2 * REDIS_PER_NODE,
              phases: PHASES,
              nodes: 2,
              redisPort: redis?.port,
              tag: "redis",
            }),
          );
      }
    }
  } finally {
    await redis?.child.kill();
  }
}

/** Median over the clean measurements of a cell (all of them, marked ~, when none is clean). */
function cell(/** @type {(m: any) => boolean} */ where, /** @type {string} */ field) {
  const all = measurements.filter((m) => m.error === undefined && where(m));
  const clean = all.filter((m) => !m.contended);
  const ms = clean.length > 0 ? clean : all;
  const v = median(ms.map((m) => m[field]));
  const saturated = median(ms.map((m) => m.clientCpu ?? 0)) >= 0.95;
  const failed = measurements.some((m) => m.error !== undefined && where(m));
  return {
    v,
    mark: `${saturated ? "†" : ""}${clean.length === 0 && all.length > 0 ? "~" : ""}${failed ? "!" : ""}`,
    values: ms.map((m) => m[field]),
  };
}

const ratio = (/** @type {number} */ a, /** @type {number} */ b) =>
  Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : "—";

function grid(/** @type {string[]} */ head, /** @type {string[][]} */ body) {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (/** @type {string[]} */ c) =>
    c.map((x, i) => (i === 0 ? x.padEnd(widths[i] ?? 0) : x.padStart(widths[i] ?? 0))).join("  ");
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

function report() {
  const out = [];
  /** @type {Record<string, any>} */
  const summary = {};
  if (selected("fanout")) {
    const cols = fanoutServers;
    const peers = cols.filter((c) => c !== "sockway");
    const rows = [];
    for (const n of FANOUT_N)
      for (const { size, window } of PHASES)
        for (const [field, unit] of /** @type {const} */ ([
          ["deliveriesPerSecond", "deliveries/s ↑"],
          ["latencyP50us", "last delivery p50 µs ↓"],
          ["latencyP99us", "last delivery p99 µs ↓"],
        ])) {
          const cells = Object.fromEntries(
            cols.map((c) => [
              c,
              cell(
                (m) =>
                  m.scenario === "fanout" &&
                  m.server === c &&
                  m.n === n &&
                  m.size === size &&
                  m.window === window,
                field,
              ),
            ]),
          );
          summary[`fanout ${n} ${size} w${window} ${field}`] = Object.fromEntries(
            cols.map((c) => [c, cells[c]]),
          );
          const s = cells.sockway?.v ?? Number.NaN;
          rows.push([
            `${n.toLocaleString("en-US")} subs, ${size} B, ${window} in flight`,
            unit,
            ...cols.map((c) => `${fmt(cells[c]?.v)}${cells[c]?.mark ?? ""}`),
            ...peers.map((p) => ratio(s, cells[p]?.v ?? Number.NaN)),
          ]);
        }
    out.push(
      "Fan-out in one process (one publish at a time, or 16 in flight), medians",
      grid(["scenario", "unit", ...cols, ...peers.map((p) => `sockway/${p}`)], rows),
    );
  }
  if (selected("growth")) {
    const rows = GROWTH_N.flatMap((n) =>
      WINDOWS.map((window) => {
        const where = (/** @type {any} */ m) => m.scenario === "growth" && m.n === n && m.window === window;
        const d = cell(where, "deliveriesPerSecond");
        const ns = cell(where, "serverNsPerDelivery");
        const p99 = cell(where, "latencyP99us");
        summary[`growth ${n} w${window}`] = {
          deliveriesPerSecond: d,
          serverNsPerDelivery: ns,
          latencyP99us: p99,
        };
        return [
          `${n.toLocaleString("en-US")}, ${window} in flight`,
          `${fmt(d.v)}${d.mark}`,
          fmt(1e9 / d.v),
          `${fmt(ns.v)}${ns.mark}`,
          fmt(p99.v),
        ];
      }),
    );
    out.push(
      "\nCost as the work grows (sockway, 32 B)",
      grid(["subscribers", "deliveries/s", "ns/delivery (wall)", "server CPU ns/delivery", "p99 µs"], rows),
    );
  }
  if (selected("sub-memory")) {
    const where = (/** @type {any} */ m) => m.scenario === "sub-memory";
    const f = (/** @type {string} */ k) => cell(where, k);
    const m = Object.fromEntries(
      [
        "sessionHeapBytes",
        "firstSubscriptionHeapBytes",
        "furtherSubscriptionHeapBytes",
        "firstSubscriptionRssBytes",
        "furtherSubscriptionRssBytes",
      ].map((k) => [k, f(k)]),
    );
    summary.memory = m;
    out.push(
      `\nMemory per subscription (sockway, ${MEMORY_N.toLocaleString("en-US")} sessions, after gc), medians`,
      grid(
        ["what", "heap B", "RSS B"],
        [
          ["idle session (no topic)", fmt(m.sessionHeapBytes?.v), "—"],
          [
            "first subscription of a session",
            fmt(m.firstSubscriptionHeapBytes?.v),
            fmt(m.firstSubscriptionRssBytes?.v),
          ],
          [
            "each further one (1 → 10 topics)",
            fmt(m.furtherSubscriptionHeapBytes?.v),
            fmt(m.furtherSubscriptionRssBytes?.v),
          ],
        ],
      ),
    );
  }
  if (selected("redis")) {
    if (skipped.some((s) => s.startsWith("redis")))
      out.push(`\n${skipped.find((s) => s.startsWith("redis"))}`);
    else {
      const rows = [];
      for (const { size, window } of PHASES)
        for (const [field, unit] of /** @type {const} */ ([
          ["deliveriesPerSecond", "deliveries/s ↑"],
          ["latencyP50us", "last delivery p50 µs ↓"],
          ["latencyP99us", "last delivery p99 µs ↓"],
        ])) {
          const c = Object.fromEntries(
            ["sockway", "socketio"].map((s) => [
              s,
              cell(
                (m) => m.scenario === "redis" && m.server === s && m.size === size && m.window === window,
                field,
              ),
            ]),
          );
          summary[`redis ${size} w${window} ${field}`] = c;
          rows.push([
            `2 x ${REDIS_PER_NODE.toLocaleString("en-US")} subs, ${size} B, ${window} in flight`,
            unit,
            `${fmt(c.sockway?.v)}${c.sockway?.mark}`,
            `${fmt(c.socketio?.v)}${c.socketio?.mark}`,
            ratio(c.sockway?.v ?? Number.NaN, c.socketio?.v ?? Number.NaN),
          ]);
        }
      out.push(
        "\nAcross two processes through one redis-server, medians",
        grid(["scenario", "unit", "sockway", "socketio", "sockway/socketio"], rows),
      );
    }
  }
  return { text: out.join("\n"), summary };
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  log(
    `pub/sub benchmark aborted: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  exitCode = 1;
} finally {
  killAll();
}
const { text, summary } = report();
const date = new Date().toISOString();
console.log(
  `\nsockway pub/sub benchmark, ${date}: ${os.cpus()[0]?.model}, node ${process.version}, bun ${bun ?? "n/a"}; ` +
    `${ROUNDS} round(s), ${WARMUP} s warm-up + ${SECONDS} s per payload size\n`,
);
console.log(text);
const contended = measurements.filter((m) => m.contended).length;
console.log(
  `\n† the client core was saturated (the server may be faster than shown). ~ every measurement of the cell had ` +
    `other work on a pinned core (${contended} of ${measurements.length} here). ! a measurement failed.`,
);
const partial =
  quick ||
  ONLY.length > 0 ||
  !!process.env.BENCH_SERVERS ||
  !!process.env.BENCH_SOCKWAY_DIST ||
  ROUNDS < 3 ||
  PROFILE;
const dir = `${root}bench/results/${partial ? "tmp/" : ""}`;
mkdirSync(dir, { recursive: true });
const path = `${dir}pubsub-${date.slice(0, 19).replaceAll(":", "-")}Z.json`;
writeFileSync(
  path,
  `${JSON.stringify(
    {
      machine: {
        date,
        cpu: os.cpus()[0]?.model,
        cores: os.cpus().length,
        node: process.version,
        bun,
        loadavg: os.loadavg(),
        commit: (() => {
          try {
            return execFileSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
          } catch {
            return undefined;
          }
        })(),
      },
      settings: {
        rounds: ROUNDS,
        seconds: SECONDS,
        warmup: WARMUP,
        quick,
        servers: fanoutServers,
        only: ONLY,
      },
      skipped,
      summary,
      table: text,
      measurements,
    },
    null,
    2,
  )}\n`,
);
console.log(`\nwrote ${path.slice(root.length)} (${elapsed()} in all)`);
process.exit(exitCode || (measurements.some((m) => m.error) ? 2 : 0));
