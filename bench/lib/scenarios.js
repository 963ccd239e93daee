// @ts-check
/**
 * What is measured. Each scenario names the server that stands in each column of the table (the
 * deflate scenarios put the deflate variants there) and the load generator's settings.
 */

/**
 * @typedef {{ runtime: "node" | "bun", script: string, env?: Record<string, string> }} ServerSpec
 * @typedef {"sockway" | "ws" | "raw-net" | "bun"} Column
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
 * }} Scenario
 */

/** @type {Record<string, ServerSpec>} */
export const SERVERS = {
  sockway: { runtime: "node", script: "sockway.js" },
  ws: { runtime: "node", script: "ws.js" },
  "raw-net": { runtime: "node", script: "raw-net.js" },
  bun: { runtime: "bun", script: "bun.js" },
  "sockway-deflate": { runtime: "node", script: "sockway-deflate.js" },
  "ws-deflate": { runtime: "node", script: "ws-deflate.js" },
  "bun-deflate": { runtime: "bun", script: "bun-deflate.js" },
};

/** @type {Column[]} */
export const COLUMNS = ["sockway", "ws", "raw-net", "bun"];

const PLAIN = { sockway: "sockway", ws: "ws", "raw-net": "raw-net", bun: "bun" };
const DEFLATE = { sockway: "sockway-deflate", ws: "ws-deflate", bun: "bun-deflate" };
const MiB = 1024 * 1024;

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
      columns: PLAIN,
      load: { mode: "echo", conns: 100, inflight: 8, size: 32, kind: "binary" },
      value: (r) => r.perSecond,
      splittable: "conns",
    },
    {
      id: "pingpong-32B",
      short: "ping-pong 32 B",
      title: "ping-pong 32 B, 1 conn x 1 in flight",
      unit: "round trips/s",
      better: "higher",
      type: "load",
      columns: PLAIN,
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
    {
      id: "idle-10k",
      short: "idle connections, memory",
      title: `memory, ${quick ? "1,000" : "10,000"} idle connections`,
      unit: "KiB/conn",
      better: "lower",
      type: "memory",
      columns: PLAIN,
      load: { mode: "hold", conns: quick ? 1000 : 10_000 },
      value: (r) => r.kibPerConnection,
    },
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
