// @ts-check
/**
 * Comparative benchmark: sockway against ws, a raw node:net echo (the ceiling on Node) and Bun.serve,
 * each server alone on CPU 0 and the load generator on CPU 1. See bench/README.md.
 *
 *   npm run bench                      build, then a full run (about 10 minutes)
 *   BENCH_QUICK=1 node bench/run.js    smoke run (about 1 minute; needs a build)
 *
 * Env: BENCH_ROUNDS (default 3), BENCH_SECONDS measured per measurement (default 4), BENCH_WARMUP
 * seconds discarded before it (default 1.5), BENCH_QUICK=1 (1 round of 1 s, fewer connections),
 * BENCH_ONLY=id,id (scenarios), BENCH_SERVERS=sockway,ws,... (columns), BENCH_LOAD_WORKERS (load
 * generator processes, default 1), BENCH_SERVER_CPUS (default 0), BENCH_LOAD_CPUS (default 1),
 * BENCH_PROFILE=1 (node servers run with --cpu-prof; profiles go to bench/results/tmp/), BENCH_NODE_FLAGS
 * (extra node flags for every node server, space-separated),
 * BENCH_SETTLE seconds an idle-memory measurement may wait for V8 to shrink its young generation for a
 * second reading (default 16; 0: no second reading),
 * BENCH_QUIET_BUDGET seconds the whole run may spend waiting for other work on the machine to leave the
 * pinned cores alone before load measurements (default 180; 0 turns the wait off),
 * BENCH_HANDSHAKE_GEN=node (the handshake rows with loadgen.js instead of bench/load/handshake-gen.c).
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { fileURLToPath } from "node:url";
import {
  busyFraction,
  Child,
  cpuList,
  cpuSeconds,
  cpuTimes,
  killAll,
  rssKiB,
  sleep,
  waitForQuiet,
} from "./lib/proc.js";
import { svgChart, table } from "./lib/report.js";
import { COLUMNS, HOLD_PER_LOAD, SERVERS, scenarios } from "./lib/scenarios.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const quick = process.env.BENCH_QUICK === "1";
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (quick ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (quick ? 1 : 4));
const WARMUP = Number(process.env.BENCH_WARMUP ?? (quick ? 0.5 : 1.5));
const WORKERS = Math.max(1, Number(process.env.BENCH_LOAD_WORKERS ?? 1));
const SERVER_CPUS = process.env.BENCH_SERVER_CPUS ?? "0";
const LOAD_CPUS = process.env.BENCH_LOAD_CPUS ?? "1";
const ONLY = (process.env.BENCH_ONLY ?? "").split(",").filter(Boolean);
const PROFILE = process.env.BENCH_PROFILE === "1";
/** Extra flags for every node server (e.g. "--max-semi-space-size=1"), to test what a figure depends on. */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean);
/** Milliseconds the whole run may still spend waiting for quiet cores. */
const quietBudget = { ms: Number(process.env.BENCH_QUIET_BUDGET ?? 180) * 1000 };
/** Other work may take at most this share of a pinned core for a measurement to count as clean. */
const CONTENDED = 0.15;
/** Idle memory: how long to wait at most for V8 to shrink its young generation (BENCH_SETTLE, seconds). */
const SETTLE_MS = Number(process.env.BENCH_SETTLE ?? 16) * 1000;
const BUN = `${root}node_modules/.bin/bun`;
const serverCores = cpuList(SERVER_CPUS);
const loadCores = cpuList(LOAD_CPUS);

const log = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);
const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? (s[m] ?? Number.NaN)
      : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

// ---- what is there --------------------------------------------------------------------------------

if (!existsSync(`${root}dist/src/index.js`)) {
  log("dist/src/index.js is missing: run `npm run build` (npm run bench does it)");
  process.exit(1);
}

function bunVersion() {
  try {
    return execFileSync(BUN, ["--version"], { encoding: "utf8", timeout: 10_000 }).trim();
  } catch {
    return undefined;
  }
}

function packageVersion(/** @type {string} */ name) {
  try {
    const require = createRequire(import.meta.url);
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
  } catch {
    return undefined;
  }
}

function git(/** @type {string[]} */ args) {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8", timeout: 10_000 }).trim();
  } catch {
    return undefined;
  }
}

const bun = bunVersion();
let columns = COLUMNS.filter((c) => c !== "bun" || bun !== undefined);
if (process.env.BENCH_SERVERS) {
  const wanted = process.env.BENCH_SERVERS.split(",");
  columns = columns.filter((c) => wanted.includes(c));
}
const allScenarios = scenarios(quick).filter((s) => ONLY.length === 0 || ONLY.includes(s.id));

// The pub/sub scenarios have their own runner (bench/pubsub/run.js): it runs after these, or alone when
// BENCH_ONLY names only pub/sub scenarios. Same environment (rounds, seconds, servers, pinning).
const PUBSUB_IDS = ["fanout", "growth", "sub-memory", "redis"];
const pubsubWanted = ONLY.length === 0 || ONLY.some((id) => PUBSUB_IDS.includes(id));
const classicWanted = ONLY.length === 0 || ONLY.some((id) => !PUBSUB_IDS.includes(id));

/** Runs the pub/sub benchmarks; resolves with their exit code. */
function runPubSub() {
  return /** @type {Promise<number>} */ (
    new Promise((resolve) => {
      const child = spawn(process.execPath, [`${root}bench/pubsub/run.js`], {
        env: { ...process.env, BENCH_PARENT: "1" },
        stdio: ["pipe", "inherit", "inherit"],
      });
      child.on("exit", (code) => resolve(code ?? 1));
      child.on("error", () => resolve(1));
    })
  );
}

if (!classicWanted) process.exit(await runPubSub());

const machine = {
  date: new Date().toISOString(),
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  kernel: os.release(),
  platform: `${os.platform()} ${os.arch()}`,
  node: process.version,
  bun: bun ?? "not available",
  ws: packageVersion("ws"),
  bufferutil: packageVersion("bufferutil") ?? "not installed",
  utf8Validate: packageVersion("utf-8-validate") ?? "not installed",
  commit: git(["rev-parse", "HEAD"]),
  dirty: (git(["status", "--porcelain", "--", "src"]) ?? "") !== "",
  loadavgBefore: os.loadavg(),
};
const settings = {
  rounds: ROUNDS,
  seconds: SECONDS,
  warmup: WARMUP,
  quick,
  loadWorkers: WORKERS,
  serverCpus: SERVER_CPUS,
  loadCpus: LOAD_CPUS,
};

log(
  `${machine.cpu}, ${machine.cores} cores, node ${machine.node}, bun ${machine.bun}, ws ${machine.ws} ` +
    `(bufferutil ${machine.bufferutil}, utf-8-validate ${machine.utf8Validate})`,
);
log(
  `servers on CPU ${SERVER_CPUS}, load on CPU ${LOAD_CPUS}; ${ROUNDS} rounds, ${WARMUP} s warm-up + ` +
    `${SECONDS} s per measurement; load average ${machine.loadavgBefore.map((x) => x.toFixed(2)).join(" ")}`,
);

// ---- processes ----------------------------------------------------------------------------------

/** Starts a server and waits for "READY <port>". */
async function startServer(/** @type {string} */ name, /** @type {Record<string, string>} */ env = {}) {
  const spec = SERVERS[name];
  if (!spec) throw new Error(`unknown server ${name}`);
  const script = `${root}bench/servers/${spec.script}`;
  const profile = PROFILE
    ? [
        "--cpu-prof",
        `--cpu-prof-dir=${root}bench/results/tmp`,
        `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`,
      ]
    : [];
  const command =
    spec.runtime === "bun"
      ? [BUN, script]
      : [process.execPath, "--expose-gc", ...NODE_FLAGS, ...profile, script];
  const child = new Child(name, SERVER_CPUS, command, { ...spec.env, ...env });
  try {
    const port = Number(await child.waitFor("READY", 20_000));
    return { child, port };
  } catch (error) {
    await child.kill();
    throw error;
  }
}

/**
 * Which program drives the handshake rows: bench/load/handshake-gen.c, compiled on first use into
 * .cache/ (again when the source is newer), or loadgen.js when that cannot be (no gcc, a failed build,
 * BENCH_HANDSHAKE_GEN=node). loadgen.js's net.connect costs ~66 µs of client CPU per attempt, more than
 * the servers spend, so under it those rows measured the load generator.
 * @type {{ kind: "c" | "node", binary?: string, why?: string } | undefined}
 */
let handshakeGen;
function handshakeGenerator() {
  if (handshakeGen) return handshakeGen;
  const source = `${root}bench/load/handshake-gen.c`;
  const binary = `${root}.cache/bench/handshake-gen`;
  if (process.env.BENCH_HANDSHAKE_GEN === "node") {
    handshakeGen = { kind: "node", why: "BENCH_HANDSHAKE_GEN=node" };
  } else {
    try {
      if (!existsSync(binary) || statSync(source).mtimeMs > statSync(binary).mtimeMs) {
        mkdirSync(`${root}.cache/bench`, { recursive: true });
        // Built beside and renamed, so that a failed build never leaves a binary newer than the source.
        const tmp = `${binary}.${process.pid}`;
        execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-o", tmp, source], {
          stdio: ["ignore", "ignore", "pipe"],
          timeout: 60_000,
        });
        renameSync(tmp, binary);
        log(`compiled ${binary.slice(root.length)} from bench/load/handshake-gen.c`);
      }
      handshakeGen = { kind: "c", binary };
    } catch (error) {
      const e = /** @type {{ stderr?: Buffer, code?: string }} */ (error);
      const why =
        e.code === "ENOENT"
          ? "gcc is not on the PATH"
          : e.stderr?.toString().trim().split("\n").slice(0, 3).join(" | ") ||
            (error instanceof Error ? error.message : String(error));
      handshakeGen = { kind: "node", why: `gcc could not build bench/load/handshake-gen.c: ${why}` };
    }
  }
  if (handshakeGen.kind === "node")
    log(
      `handshake rows: falling back to loadgen.js (node), which may saturate its core (${handshakeGen.why})`,
    );
  return handshakeGen;
}

/** The kind of load generator that runs `load`: "c" for the handshake rows when it could be built. */
const generatorKind = (/** @type {Record<string, unknown>} */ load) =>
  load.mode === "handshakes" ? handshakeGenerator().kind : "node";

function startLoad(/** @type {Record<string, unknown>} */ load, /** @type {number} */ index) {
  const gen = load.mode === "handshakes" ? handshakeGenerator() : undefined;
  const command =
    gen?.kind === "c" && gen.binary
      ? [gen.binary, JSON.stringify(load)]
      : [process.execPath, `${root}bench/load/loadgen.js`, JSON.stringify(load)];
  return new Child(`load generator ${index}`, LOAD_CPUS, command);
}

/** Profiled servers exit by themselves so that node writes the profile; others are killed. */
const stopServer = (/** @type {Child} */ server) => (PROFILE ? server.end(10_000) : server.kill());

/** Asks the server to collect garbage, then reads its RSS; also what the server says of its heap. */
async function settledRss(/** @type {Child} */ server) {
  server.send("gc");
  const line = await server.waitFor("GC", 20_000);
  await sleep(300);
  /** @type {Record<string, number>} */
  let heap = {};
  try {
    heap = line ? JSON.parse(line) : {};
  } catch {}
  return { rss: rssKiB(server.pid), heap };
}

// ---- one measurement ----------------------------------------------------------------------------

/**
 * @param {import("./lib/scenarios.js").Scenario} scenario
 * @param {string} serverName
 */
async function measureLoad(scenario, serverName) {
  const loadGenerator = generatorKind(scenario.load); // a first build happens here, before the server
  const busyBefore = await waitForQuiet(serverCores, loadCores, quietBudget, log);
  const { child: server, port } = await startServer(serverName, scenario.env);
  /** @type {Child[]} */
  const loads = [];
  try {
    const rssReadyKiB = rssKiB(server.pid);
    const split = scenario.splittable ? Math.min(WORKERS, Number(scenario.load[scenario.splittable])) : 1;
    for (let i = 0; i < split; i++) {
      /** @type {Record<string, unknown>} */
      const load = { ...scenario.load, port, warmup: WARMUP, seconds: SECONDS };
      if (scenario.splittable) {
        const total = Number(scenario.load[scenario.splittable]);
        load[scenario.splittable] = Math.floor(total / split) + (i < total % split ? 1 : 0);
      }
      loads.push(startLoad(load, i));
    }
    await Promise.all(loads.map((l) => l.waitFor("CONNECTED", 120_000)));
    for (const l of loads) l.send("GO");
    await sleep(WARMUP * 1000);
    const cpu0 = cpuSeconds(server.pid);
    const serverCore0 = cpuTimes(serverCores);
    const loadCore0 = cpuTimes(loadCores);
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const cpu1 = cpuSeconds(server.pid);
    const serverCore1 = cpuTimes(serverCores);
    const loadCore1 = cpuTimes(loadCores);
    const t1 = performance.now();
    const rssEndKiB = rssKiB(server.pid);
    const results = await Promise.all(loads.map(async (l) => JSON.parse(await l.waitFor("RESULT", 30_000))));
    const sum = (/** @type {string} */ k) => results.reduce((a, r) => a + (Number(r[k]) || 0), 0);
    /** @type {Record<string, any>} */
    const merged = {
      count: sum("count"),
      perSecond: sum("perSecond"),
      clientCpu: sum("clientCpu"),
      // loadgen.js's event-loop utilization; the C generator reports its CPU fraction here
      clientElu: Math.max(...results.map((r) => r.clientElu)),
      loadGenerator,
      serverCpu: (cpu1 - cpu0) / ((t1 - t0) / 1000),
      // How busy the pinned cores were, all processes included: what is not ours is other work on the
      // machine taking CPU from the server or from the load generator.
      serverCoreBusy: busyFraction(serverCore0, serverCore1, serverCores.length),
      loadCoreBusy: busyFraction(loadCore0, loadCore1, loadCores.length),
      rssReadyKiB,
      rssEndKiB,
      busyBefore,
      errors: sum("errors"),
      closedConnections: sum("closedConnections"),
      workers: results,
    };
    merged.otherOnServerCore = Math.max(0, merged.serverCoreBusy - merged.serverCpu);
    merged.otherOnLoadCore = Math.max(0, merged.loadCoreBusy - merged.clientCpu);
    merged.contended = merged.otherOnServerCore > CONTENDED || merged.otherOnLoadCore > CONTENDED;
    if (merged.closedConnections > 0) throw new Error(`${merged.closedConnections} connections closed`);
    if (merged.count === 0) throw new Error("nothing was measured");
    return merged;
  } finally {
    await Promise.all(loads.map((l) => l.kill()));
    await stopServer(server);
  }
}

/**
 * @param {import("./lib/scenarios.js").Scenario} scenario
 * @param {string} serverName
 */
async function measureMemory(scenario, serverName) {
  const { child: server, port } = await startServer(serverName, scenario.env);
  /** @type {Child[]} */
  const loads = [];
  try {
    const { rss: before, heap: heapBefore } = await settledRss(server);
    // The connections are spread over load generators holding at most HOLD_PER_LOAD each, opened one
    // generator after the other (so the server sees the same stream of handshakes however many there are).
    const total = Number(scenario.load.conns);
    const split = Math.ceil(total / HOLD_PER_LOAD);
    let held = 0;
    for (let i = 0; i < split; i++) {
      const conns = Math.floor(total / split) + (i < total % split ? 1 : 0);
      const load = startLoad({ ...scenario.load, conns, port }, i);
      loads.push(load);
      held += Number(await load.waitFor("HELD", 180_000));
    }
    await sleep(1000);
    const { rss: after, heap: heapAfter } = await settledRss(server);
    // Then, under node, again once V8 has given back its young generation (its memory reducer does a
    // few seconds after the allocations stop; our gc() alone does not): what the connections hold
    // without the nursery that their handshakes grew. At most SETTLE_MS.
    let settled;
    if (heapAfter.newSpaceKiB !== undefined && SETTLE_MS > 0) {
      const until = performance.now() + SETTLE_MS;
      const small = Math.max(heapBefore.newSpaceKiB ?? 0, 2048);
      do {
        await sleep(2000);
        settled = await settledRss(server);
      } while ((settled.heap.newSpaceKiB ?? 0) > small && performance.now() < until);
    }
    for (const l of loads) l.send("STOP");
    const results = await Promise.all(loads.map(async (l) => JSON.parse(await l.waitFor("RESULT", 30_000))));
    const closed = results.reduce((a, r) => a + r.closedDuringHold, 0);
    if (closed > 0) throw new Error(`${closed} connections closed`);
    /** @type {Record<string, any>} */
    const r = {
      rssBeforeKiB: before,
      rssAfterKiB: after,
      held,
      loadProcesses: split,
      kibPerConnection: (after - before) / held,
      heapBefore,
      heapAfter,
    };
    // Under node: live heap per connection, and how much of the RSS growth is V8's young generation
    // having grown (it is not given back after the collection).
    if (heapBefore.heapUsedKiB !== undefined && heapAfter.heapUsedKiB !== undefined)
      r.heapKiBPerConnection = (heapAfter.heapUsedKiB - heapBefore.heapUsedKiB) / held;
    if (heapBefore.newSpaceKiB !== undefined && heapAfter.newSpaceKiB !== undefined)
      r.newSpaceGrowthKiB = heapAfter.newSpaceKiB - heapBefore.newSpaceKiB;
    if (settled) {
      r.rssSettledKiB = settled.rss;
      r.heapSettled = settled.heap;
      r.settledKiBPerConnection = (settled.rss - before) / held;
    }
    return r;
  } finally {
    await Promise.all(loads.map((l) => l.kill()));
    await stopServer(server);
  }
}

/** Checks that a server echoes (or broadcasts) byte for byte before it is measured. */
async function verify(/** @type {string} */ serverName, /** @type {boolean} */ broadcast) {
  const env = broadcast ? { BENCH_MODE: "broadcast" } : {};
  const { child: server, port } = await startServer(serverName, env);
  const deflate = serverName.endsWith("-deflate");
  const handshakeOnly = SERVERS[serverName]?.handshakeOnly ?? false;
  const load = startLoad({ mode: "verify", port, deflate, broadcast, handshakeOnly }, 0);
  try {
    return JSON.parse(await load.waitFor("RESULT", 60_000));
  } finally {
    await load.kill();
    await server.kill();
  }
}

// ---- the run --------------------------------------------------------------------------------------

/** @type {Record<string, string>} */
const failures = {};
/** @type {any[]} */
const measurements = [];
const started = performance.now();

async function main() {
  // Verify every server once, in each mode that is used.
  const needed = new Map();
  for (const s of allScenarios) {
    for (const c of columns) {
      const name = s.columns[c];
      if (name) needed.set(`${name}${s.env?.BENCH_MODE ? " broadcast" : ""}`, { name, broadcast: !!s.env });
    }
  }
  for (const [key, { name, broadcast }] of needed) {
    try {
      const r = await verify(name, broadcast);
      log(`verified ${key}: ${r.checked.join(", ")}`);
    } catch (error) {
      failures[key] = `verify: ${error instanceof Error ? error.message : String(error)}`;
      log(`FAILED to verify ${key}: ${failures[key]}`);
    }
  }

  for (let round = 0; round < ROUNDS; round++) {
    for (const [si, scenario] of allScenarios.entries()) {
      const present = columns.filter((c) => scenario.columns[c] !== undefined);
      // Rotating order: each server goes first, second, ... in turn across rounds and scenarios.
      const shift = (round + si) % present.length;
      const order = [...present.slice(shift), ...present.slice(0, shift)];
      for (const column of order) {
        const serverName = /** @type {string} */ (scenario.columns[column]);
        const key = `${serverName}${scenario.env?.BENCH_MODE ? " broadcast" : ""}`;
        if (failures[key]) continue;
        const t = performance.now();
        try {
          const r =
            scenario.type === "memory"
              ? await measureMemory(scenario, serverName)
              : await measureLoad(scenario, serverName);
          const value = scenario.value(r);
          measurements.push({ scenario: scenario.id, column, server: serverName, round, value, ...r });
          const extra =
            scenario.type === "load"
              ? ` (server CPU ${pct(r.serverCpu)}, client ${r.loadGenerator === "c" ? "CPU" : "ELU"} ` +
                `${pct(r.clientElu)}; others on the ` +
                `server core ${pct(r.otherOnServerCore)}, on the load core ${pct(r.otherOnLoadCore)})`
              : ` (RSS ${r.rssBeforeKiB} → ${r.rssAfterKiB} KiB` +
                (r.heapKiBPerConnection !== undefined
                  ? `; heap ${r.heapKiBPerConnection.toFixed(2)} KiB/conn, new space +${r.newSpaceGrowthKiB} KiB`
                  : "") +
                (r.settledKiBPerConnection !== undefined
                  ? `; settled ${r.settledKiBPerConnection.toFixed(2)} KiB/conn`
                  : "") +
                ")";
          log(
            `[${elapsed()}] round ${round + 1}/${ROUNDS} ${scenario.id} ${serverName}: ` +
              `${value.toFixed(1)} ${scenario.unit}${extra} in ${((performance.now() - t) / 1000).toFixed(1)} s`,
          );
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          measurements.push({ scenario: scenario.id, column, server: serverName, round, error: message });
          log(`[${elapsed()}] round ${round + 1}/${ROUNDS} ${scenario.id} ${serverName}: FAILED ${message}`);
        }
      }
    }
  }
}

const pct = (/** @type {number} */ x) => `${(x * 100).toFixed(0)}%`;

const elapsed = () => {
  const s = Math.round((performance.now() - started) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

/** Medians per scenario and column, and the ratios. */
function summarize() {
  /** @type {import("./lib/report.js").Row[]} */
  const rows = [];
  for (const s of allScenarios) {
    const variants = [
      {
        id: s.id,
        title: s.title,
        short: s.short,
        unit: s.unit,
        better: s.better,
        of: (/** @type {any} */ m) => m.value,
      },
    ];
    if (s.derived) {
      const d = s.derived;
      variants.push({
        id: d.id,
        title: d.title,
        short: d.short,
        unit: d.unit,
        better: "lower",
        of: (m) => d.value(m),
      });
    }
    for (const v of variants) {
      /** @type {Record<string, number | undefined>} */
      const medians = {};
      /** @type {Record<string, string>} */
      const spreads = {};
      /** @type {Record<string, string>} */
      const flags = {};
      /** @type {Record<string, string>} */
      const samples = {};
      for (const c of columns) {
        const all = measurements.filter(
          (m) => m.scenario === s.id && m.column === c && m.error === undefined,
        );
        // Measurements during which other work took a share of a pinned core measured that work too:
        // the median is of the clean ones, or of all of them (marked ~) when none is clean.
        const clean = all.filter((m) => !m.contended);
        const ms = clean.length > 0 ? clean : all;
        const values = ms.map(v.of).filter((x) => typeof x === "number" && Number.isFinite(x));
        const failed = measurements.some((m) => m.scenario === s.id && m.column === c && m.error);
        const name = s.columns[c];
        const key = name && `${name}${s.env?.BENCH_MODE ? " broadcast" : ""}`;
        if (values.length > 0) {
          medians[c] = median(values);
          spreads[c] = `${Math.min(...values).toFixed(1)}..${Math.max(...values).toFixed(1)}`;
          // The load generator's core was saturated: the server might have gone faster.
          if (s.type === "load" && median(ms.map((m) => m.clientElu)) >= 0.95) flags[c] = "†";
          if (clean.length === 0 && all.length > 0) flags[c] = `${flags[c] ?? ""}~`;
          samples[c] = `${ms.length}/${all.length}`;
        }
        if (failed || (key && failures[key])) flags[c] = `${flags[c] ?? ""}!`;
      }
      const r = (/** @type {string} */ a, /** @type {string} */ b) => {
        const x = medians[a];
        const y = medians[b];
        return x !== undefined && y !== undefined && y !== 0 ? x / y : undefined;
      };
      rows.push({
        id: v.id,
        title: v.title,
        short: v.short,
        unit: v.unit,
        better: /** @type {"higher" | "lower"} */ (v.better),
        medians,
        spreads,
        samples,
        flags,
        ratios: {
          ws: r("sockway", "ws"),
          rawNet: r("sockway", "raw-net"),
          bunToWs: r("bun", "ws"),
          rawNetToWs: r("raw-net", "ws"),
          floor: r("sockway", "floor"),
        },
      });
    }
    if (s.slopeFrom) rows.push(slopeRow(s, s.slopeFrom));
  }
  return rows;
}

/**
 * Memory per connection added between two idle sizes, from the medians of RSS growth (after - before)
 * of each: what one more connection costs once whatever does not grow with the count (V8's young
 * generation, which stops growing at its maximum size) is out of the figure.
 * @param {import("./lib/scenarios.js").Scenario} s the larger size
 * @param {string} fromId the smaller size
 * @returns {import("./lib/report.js").Row}
 */
function slopeRow(s, fromId) {
  const from = allScenarios.find((x) => x.id === fromId);
  /** @type {Record<string, number | undefined>} */
  const medians = {};
  /** @type {Record<string, string>} */
  const samples = {};
  const growth = (/** @type {string} */ id, /** @type {string} */ c) =>
    measurements
      .filter((m) => m.scenario === id && m.column === c && m.error === undefined)
      .map((m) => ({ kib: m.rssAfterKiB - m.rssBeforeKiB, held: m.held }));
  for (const c of columns) {
    const a = growth(fromId, c);
    const b = growth(s.id, c);
    if (!from || a.length === 0 || b.length === 0) continue;
    const heldA = median(a.map((m) => m.held));
    const heldB = median(b.map((m) => m.held));
    medians[c] = (median(b.map((m) => m.kib)) - median(a.map((m) => m.kib))) / (heldB - heldA);
    samples[c] = `${b.length}/${a.length}`;
  }
  const r = (/** @type {string} */ x, /** @type {string} */ y) => {
    const p = medians[x];
    const q = medians[y];
    return p !== undefined && q !== undefined && q !== 0 ? p / q : undefined;
  };
  return {
    id: `${s.id}-slope`,
    title: `  slope from ${from?.load.conns ?? "?"} to ${s.load.conns} connections, per added conn`,
    short: "",
    unit: "KiB/conn",
    better: "lower",
    medians,
    spreads: {},
    samples,
    flags: {},
    ratios: {
      ws: r("sockway", "ws"),
      rawNet: r("sockway", "raw-net"),
      bunToWs: r("bun", "ws"),
      rawNetToWs: r("raw-net", "ws"),
      floor: r("sockway", "floor"),
    },
  };
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  log(`benchmark aborted: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  exitCode = 1;
} finally {
  killAll();
}

const rows = summarize();
const countLoad = () => measurements.filter((m) => m.contended !== undefined).length;
const countContended = () => measurements.filter((m) => m.contended).length;
/** Which generator measured the handshake rows, as a footnote (it is the limit when it is node). */
const handshakeNote = (() => {
  if (!allScenarios.some((s) => s.load.mode === "handshakes") || !handshakeGen) return "";
  return handshakeGen.kind === "c"
    ? "Handshake rows: measured with bench/load/handshake-gen.c (C, epoll, one thread); clientElu is its CPU fraction."
    : `Handshake rows: measured with loadgen.js (node), not the C generator (${handshakeGen.why}).`;
})();
const tableText = `${table(rows, columns)}${handshakeNote ? `\n${handshakeNote}` : ""}`;
console.log(
  `\nsockway comparative benchmark, ${machine.date}: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, ` +
    `bun ${machine.bun}, ws ${machine.ws}${machine.bufferutil !== "not installed" ? " + bufferutil/utf-8-validate" : ""}`,
);
console.log(`medians of ${ROUNDS} round(s), ${SECONDS} s each after ${WARMUP} s warm-up\n`);
console.log(tableText);
console.log(
  "\n↑ higher is better, ↓ lower is better. Deflate rows: the sockway/ws/bun columns are sockway-deflate, " +
    "ws-deflate, bun-deflate.\nLoad medians leave out measurements during which other work took more than " +
    `${CONTENDED * 100}% of a pinned core (${countContended()} of ${countLoad()} here); ~ all of that cell's were.\n` +
    "† the load generator's core was saturated (the server may be faster than shown). " +
    "! a measurement failed (see the JSON).",
);

machine.loadavgBefore = machine.loadavgBefore.map((x) => Number(x.toFixed(2)));
// A partial run (some scenarios or columns, another sockway build, a quick run) is kept out of the
// committed results: its JSON goes to bench/results/tmp/ and it leaves latest.svg alone.
const partial =
  quick ||
  ONLY.length > 0 ||
  NODE_FLAGS.length > 0 ||
  !!process.env.BENCH_SERVERS ||
  !!process.env.BENCH_SOCKWAY_DIST ||
  ROUNDS < 3;
const resultsDir = `${root}bench/results/${partial ? "tmp/" : ""}`;
mkdirSync(resultsDir, { recursive: true });
const stamp = machine.date.slice(0, 19).replaceAll(":", "-");
const jsonPath = `${resultsDir}${stamp}Z.json`;
const svgPath = `${root}bench/results/latest.svg`;
writeFileSync(
  jsonPath,
  `${JSON.stringify(
    {
      machine: { ...machine, loadavgAfter: os.loadavg().map((x) => Number(x.toFixed(2))) },
      settings: {
        ...settings,
        handshakeGenerator: handshakeGen?.kind,
        handshakeGeneratorNote: handshakeGen?.why,
      },
      durationSeconds: Math.round((performance.now() - started) / 1000),
      columns,
      scenarios: allScenarios.map((s) => ({
        id: s.id,
        title: s.title,
        unit: s.unit,
        better: s.better,
        servers: s.columns,
        load: s.load,
      })),
      failures,
      summary: rows,
      table: tableText,
      measurements,
    },
    null,
    2,
  )}\n`,
);
if (!partial)
  writeFileSync(
    svgPath,
    svgChart(
      rows,
      `${machine.date.slice(0, 10)}, ${machine.cpu}, node ${machine.node}, bun ${machine.bun}, ws ${machine.ws}; medians of ${ROUNDS} rounds`,
    ),
  );
console.log(
  `\nwrote ${jsonPath.slice(root.length)}${partial ? " (a partial run: latest.svg unchanged)" : ` and ${svgPath.slice(root.length)}`} (${elapsed()} in all)`,
);
exitCode ||= Object.keys(failures).length > 0 || measurements.some((m) => m.error) ? 2 : 0;
if (pubsubWanted) exitCode = Math.max(exitCode, await runPubSub());
process.exit(exitCode);
