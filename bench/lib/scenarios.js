// @ts-check
/**
 * What is measured. Each scenario names the server that stands in each column of the table (the
 * deflate scenarios put the deflate variants there) and the load generator's settings.
 */

/**
 * @typedef {{ runtime: "node" | "bun", script: string, env?: Record<string, string>, handshakeOnly?: boolean }} ServerSpec
 * @typedef {"sockway" | "ws" | "raw-net" | "bun" | "floor"} Column
 * @typedef {{
 *   id: string,
 *   title: string,
 *   short: string,
 *   unit: string,
 *   better: "higher" | "lower",
 *   type: "load" | "memory",
 *   columns: Partial<Record<Column, string>>,
 *   env?: Record<string, string>,
 *   load: Record<string, unknown>,
 *   value: (r: Record<string, any>) => number,
 *   derived?: {
 *     id: string, title: string, short: string, unit: string,
 *     value: (m: Record<string, any>) => number | undefined,
 *   },
 *   splittable?: "conns" | "concurrency",
 *   slopeFrom?: string,
 * }} Scenario
 */

/** @type {Record<string, ServerSpec>} */
export const SERVERS = {
  sockway: { runtime: "node", script: "sockway.js" },
  ws: { runtime: "node", script: "ws.js" },
  "raw-net": { runtime: "node", script: "raw-net.js" },
  bun: { runtime: "bun", script: "bun.js" },
  // Answers the upgrade and nothing else: only its handshake is checked before it is measured.
  floor: { runtime: "node", script: "floor.js", handshakeOnly: true },
  "sockway-deflate": { runtime: "node", script: "sockway-deflate.js" },
  "ws-deflate": { runtime: "node", script: "ws-deflate.js" },
  "bun-deflate": { runtime: "bun", script: "bun-deflate.js" },
};

/** @type {Column[]} */
export const COLUMNS = ["sockway", "ws", "raw-net", "bun", "floor"];

const PLAIN = { sockway: "sockway", ws: "ws", "raw-net": "raw-net", bun: "bun" };
/**
 * Idle memory and the small echoes also have the floor: node:net sockets that got a fixed 101 and then
 * have every read written straight back, with no WebSocket work at all.
 */
const FLOOR = { ...PLAIN, floor: "floor" };
const DEFLATE = { sockway: "sockway-deflate", ws: "ws-deflate", bun: "bun-deflate" };
const MiB = 1024 * 1024;

/**
 * `conns` connections opened and held idle; server RSS before and after, per connection. Load
 * generators hold at most HOLD_PER_LOAD connections each (the 20,000 open files of a process).
 * @param {string} id
 * @param {number} conns
 * @param {string} shown
 * @returns {Scenario}
 */
function idle(id, conns, shown) {
  return {
    id,
    short: `idle ${shown}, memory`,
    title: `memory, ${shown} idle connections`,
    unit: "KiB/conn",
    better: "lower",
    type: "memory",
    columns: FLOOR,
    load: { mode: "hold", conns },
    value: (r) => r.kibPerConnection,
    derived: {
      id: `${id}-settled`,
      title: "  the same once V8 has shrunk its young generation",
      short: "",
      unit: "KiB/conn",
      value: (m) => m.settledKiBPerConnection,
    },
  };
}

/** Most connections one load generator holds: its sockets count against its own 20,000 open files. */
export const HOLD_PER_LOAD = 10_000;

/** @param {boolean} quick smaller counts for a smoke run */
export function scenarios(quick) {
  /** @type {Scenario[]} */
  const list = [
    {
      id: "echo-32B",
      short: "echo 32 B",
      title: "echo 32 B binary, 100 conns x 8 in flight",
      unit: "msgs/s",
      better: "higher",
      type: "load",
      columns: FLOOR,
      load: { mode: "echo", conns: 100, inflight: 8, size: 32, kind: "binary" },
      value: (r) => r.perSecond,
      splittable: "conns",
    },
    // The same echo as the work grows (cost per message should stay flat): 1,000 and 10,000 connections.
    ...(quick
      ? []
      : [1000, 10_000].map((conns) => ({
          id: `echo-32B-${conns / 1000}k`,
          short: `echo 32 B, ${conns / 1000}k conns`,
          title: `echo 32 B binary, ${conns.toLocaleString("en")} conns x 8 in flight`,
          unit: "msgs/s",
          better: /** @type {const} */ ("higher"),
          type: /** @type {const} */ ("load"),
          columns: FLOOR,
          load: {
            mode: /** @type {const} */ ("echo"),
            conns,
            inflight: 8,
            size: 32,
            kind: /** @type {const} */ ("binary"),
          },
          value: (/** @type {any} */ r) => r.perSecond,
          splittable: /** @type {const} */ ("conns"),
        }))),
    {
      id: "pingpong-32B-100",
      short: "ping-pong 32 B, 100 conns",
      title: "ping-pong 32 B, 100 conns x 1 in flight",
      unit: "round trips/s",
      better: "higher",
      type: "load",
      columns: FLOOR,
      load: { mode: "echo", conns: 100, inflight: 1, size: 32, kind: "binary" },
      value: (r) => r.perSecond,
    },
    {
      id: "pingpong-32B",
      short: "ping-pong 32 B",
      title: "ping-pong 32 B, 1 conn x 1 in flight",
      unit: "round trips/s",
      better: "higher",
      type: "load",
      columns: FLOOR,
      load: { mode: "echo", conns: 1, inflight: 1, size: 32, kind: "binary" },
      value: (r) => r.perSecond,
      derived: {
        id: "pingpong-32B-rtt",
        title: "  ping-pong round trip",
        short: "",
        unit: "µs",
        value: (m) => (m.perSecond ? 1e6 / m.perSecond : undefined),
      },
    },
    {
      id: "echo-64KiB",
      short: "echo 64 KiB",
      title: "echo 64 KiB binary, 16 conns x 4 in flight",
      unit: "MiB/s",
      better: "higher",
      type: "load",
      columns: PLAIN,
      load: { mode: "echo", conns: 16, inflight: 4, size: 64 * 1024, kind: "binary" },
      value: (r) => (r.perSecond * 64 * 1024) / MiB,
      splittable: "conns",
    },
    {
      id: "echo-1MiB",
      short: "echo 1 MiB",
      title: "echo 1 MiB binary, 4 conns x 2 in flight",
      unit: "MiB/s",
      better: "higher",
      type: "load",
      columns: PLAIN,
      load: { mode: "echo", conns: 4, inflight: 2, size: MiB, kind: "binary" },
      value: (r) => r.perSecond,
      splittable: "conns",
    },
    // Idle memory at three sizes (growth rows), each in its own server process. A quick run keeps only
    // the middle one, with 1,000 connections.
    ...(quick ? [] : [idle("idle-1k", 1000, "1,000")]),
    idle("idle-10k", quick ? 1000 : 10_000, quick ? "1,000" : "10,000"),
    ...(quick ? [] : [{ ...idle("idle-19k", 19_000, "19,000"), slopeFrom: "idle-10k" }]),
    {
      id: "handshakes",
      short: "handshakes",
      title: "handshakes (connect, upgrade, close), 32 at once",
      unit: "handshakes/s",
      better: "higher",
      type: "load",
      columns: PLAIN,
      load: { mode: "handshakes", concurrency: 32 },
      value: (r) => r.perSecond,
      splittable: "concurrency",
    },
    {
      id: "handshakes-drop",
      short: "handshakes, drop",
      title: "handshakes (connect, upgrade, then the client drops TCP), 32 at once",
      unit: "handshakes/s",
      better: "higher",
      type: "load",
      columns: PLAIN,
      load: { mode: "handshakes", concurrency: 32, drop: true },
      value: (r) => r.perSecond,
      splittable: "concurrency",
    },
    {
      id: "broadcast-1000",
      short: "broadcast",
      title: `broadcast 32 B to ${quick ? 200 : "1,000"} conns, 16 undelivered at most`,
      unit: "deliveries/s",
      better: "higher",
      type: "load",
      columns: PLAIN,
      env: { BENCH_MODE: "broadcast" },
      load: { mode: "broadcast", receivers: quick ? 200 : 1000, window: 16, size: 32, kind: "binary" },
      value: (r) => r.perSecond,
    },
    {
      id: "deflate-echo-1KiB",
      short: "deflate echo 1 KiB",
      title: "permessage-deflate echo 1 KiB text, 50 conns x 4 in flight",
      unit: "msgs/s",
      better: "higher",
      type: "load",
      columns: DEFLATE,
      load: { mode: "echo", conns: 50, inflight: 4, size: 1024, kind: "text", deflate: true },
      value: (r) => r.perSecond,
      splittable: "conns",
      derived: {
        id: "deflate-echo-rss",
        title: "  server RSS growth under that load, per conn",
        short: "deflate, RSS under load",
        unit: "KiB/conn",
        value: (m) => (m.rssEndKiB - m.rssReadyKiB) / 50,
      },
    },
    {
      id: "deflate-memory",
      short: "deflate, memory",
      title: `memory with deflate, ${quick ? 200 : "1,000"} conns after 1 msg each`,
      unit: "KiB/conn",
      better: "lower",
      type: "memory",
      columns: DEFLATE,
      load: {
        mode: "hold",
        conns: quick ? 200 : 1000,
        deflate: true,
        message: true,
        size: 1024,
        kind: "text",
      },
      value: (r) => r.kibPerConnection,
    },
  ];
  return list;
}
