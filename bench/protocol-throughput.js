// @ts-check
/**
 * Throughput of the sans-I/O protocol core (src/protocol), without sockets or an event loop.
 *
 *   npm run bench:protocol                                   build dist/, then run this file
 *   taskset -c 0 node bench/protocol-throughput.js           pinned to one CPU (after `npm run build`)
 *   BENCH_SECONDS=1 BENCH_FILTER=parse node bench/protocol-throughput.js
 *
 * Env: BENCH_SECONDS (measured seconds per round, default 2; warm-up is half of it), BENCH_ROUNDS
 * (default 3), BENCH_FILTER (substring of the case name). MB = 10^6 payload bytes: headers and
 * masking keys are not counted.
 *
 *  - parse: a server Connection receives masked client frames in 64 KiB socket-sized chunks (many small
 *    frames per chunk, their headers sometimes split; big frames span chunks) and takeEvents() follows
 *    every chunk. The server unmasks in place, so a ~16 MiB pool of stream copies is refreshed from a
 *    pristine master before each batch (not timed). Only receiveData + takeEvents are timed; every
 *    event is checked between chunks (type, payload equal to the original) and each batch's count.
 *  - serialize: sendBinary + takeOutput, server (unmasked) and client (masked, keys from
 *    crypto.randomFillSync). Unmasked frames over 4 KiB are not copied (header + payload view), so
 *    their MB/s mostly shows the per-message cost.
 *
 * Each case: warm-up (discarded), then BENCH_ROUNDS rounds; the table shows the median round and the
 * min..max MB/s spread. Results go to bench/results/protocol-throughput-<ISO date>.json.
 */
import { randomFillSync } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { Connection, encodeFrame, headerSize, isValidUtf8, Opcode } from "../dist/src/protocol/index.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const FILTER = process.env.BENCH_FILTER ?? "";
const CHUNK = 64 * 1024;
const STREAM_BYTES = 1024 * 1024; // one copy of the frame stream holds about this many bytes
const POOL_BYTES = 16 * 1024 * 1024; // fresh (still masked) input per timed parse batch
const MASK = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d);
const SIZES = [32, 1024, 64 * 1024, 1024 * 1024];
/** @param {Uint8Array} target */
const randomFill = (target) => void randomFillSync(target);

/** @typedef {{ ns: number, msgs: number, bytes: number }} Batch */

/** @param {number} n */
function sizeLabel(n) {
  return n >= 1 << 20 ? `${n / (1 << 20)} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`;
}

/** @param {number} size */
function binaryPayload(size) {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
}

/** Exactly `size` bytes of valid UTF-8: `sample` repeated, cut at a character boundary, space-padded. */
function textPayload(/** @type {number} */ size, /** @type {string} */ sample) {
  const long = Buffer.from(sample.repeat(Math.ceil(size / sample.length) + 1), "utf8");
  let end = size;
  while (((long[end] ?? 0) & 0xc0) === 0x80) end--;
  const out = Buffer.alloc(size, 0x20);
  long.copy(out, 0, 0, end);
  if (!isValidUtf8(out)) throw new Error("bad text payload");
  return out;
}
const ASCII = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. ";
const MIXED = "Grüße, naïve café — Ελληνικά, русский, 日本語のテキスト, 한국어 😀🚀 and ASCII. ";

/** Parsing masked client frames of `payload` on a server Connection. */
function parseCase(/** @type {number} */ opcode, /** @type {Buffer} */ payload) {
  const frame = encodeFrame(opcode, payload, { mask: MASK })[0];
  if (!frame) throw new Error("no frame");
  const perStream = Math.max(1, Math.floor(STREAM_BYTES / frame.length));
  const stream = Buffer.allocUnsafeSlow(frame.length * perStream);
  for (let i = 0; i < perStream; i++) frame.copy(stream, i * frame.length);
  // Each copy is its own ArrayBuffer and chunks start at 64 KiB multiples, like socket reads.
  const pool = Array.from({ length: Math.max(1, Math.round(POOL_BYTES / stream.length)) }, () => {
    const buf = Buffer.allocUnsafeSlow(stream.length);
    const chunks = [];
    for (let o = 0; o < buf.length; o += CHUNK) chunks.push(buf.subarray(o, Math.min(o + CHUNK, buf.length)));
    return { buf, chunks };
  });
  const expected = perStream * pool.length;
  const type = opcode === Opcode.Text ? "text" : "binary";
  const conn = new Connection({ side: "server", maxMessageSize: payload.length });
  return () => {
    for (const p of pool) p.buf.set(stream);
    let ns = 0;
    let msgs = 0;
    let bytes = 0;
    for (const p of pool) {
      for (const chunk of p.chunks) {
        // Timed per chunk, so checking the events in between is not counted and no backlog of events
        // is kept alive (holding a whole batch of them would make GC, not parsing, dominate).
        const t0 = process.hrtime.bigint();
        conn.receiveData(chunk);
        const events = conn.takeEvents();
        ns += Number(process.hrtime.bigint() - t0);
        for (const e of events) {
          if (e.type !== type || !e.data.equals(payload)) throw new Error(`parse ${type}: wrong event`);
          msgs++;
          bytes += e.data.length;
        }
      }
    }
    if (conn.failure) throw conn.failure;
    if (msgs !== expected || bytes !== expected * payload.length) {
      throw new Error(`parse ${type}: ${msgs} messages / ${bytes} bytes, expected ${expected}`);
    }
    return { ns, msgs, bytes };
  };
}

/** sendBinary + takeOutput on one side; the first frame is checked by a peer Connection. */
function serializeCase(/** @type {"server" | "client"} */ side, /** @type {Buffer} */ payload) {
  const conn = new Connection(side === "server" ? { side } : { side, randomFill });
  const peer = new Connection(side === "server" ? { side: "client", randomFill } : { side: "server" });
  peer.maxMessageSize = payload.length;
  conn.sendBinary(payload);
  for (const b of conn.takeOutput()) peer.receiveData(Buffer.from(b));
  const [event] = peer.takeEvents();
  if (event?.type !== "binary" || !event.data.equals(payload))
    throw new Error(`serialize ${side}: bad frame`);
  const frameLength = headerSize(payload.length, side === "client") + payload.length;
  let n = 16;
  return () => {
    const count = n;
    let out = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      conn.sendBinary(payload);
      for (const b of conn.takeOutput()) out += b.length;
    }
    const ns = Number(process.hrtime.bigint() - t0);
    if (out !== frameLength * count) throw new Error(`serialize ${side}: ${out} bytes out`);
    if (ns < 20e6 && n < 1 << 24) n *= 2; // grow batches to >= 20 ms so timer reads don't count
    return { ns, msgs: count, bytes: count * payload.length };
  };
}

/** Runs batches until `seconds` of timed work have accumulated. */
function run(/** @type {() => Batch} */ batch, /** @type {number} */ seconds) {
  let ns = 0;
  let msgs = 0;
  let bytes = 0;
  while (ns < seconds * 1e9) {
    const r = batch();
    ns += r.ns;
    msgs += r.msgs;
    bytes += r.bytes;
  }
  return { mbps: (bytes / ns) * 1e3, msgsps: (msgs / ns) * 1e9 };
}

/** @type {{ name: string, size: number, make: () => () => Batch }[]} */
const cases = [];
for (const size of SIZES) {
  cases.push({ name: "parse binary", size, make: () => parseCase(Opcode.Binary, binaryPayload(size)) });
}
for (const size of [1024, 64 * 1024]) {
  cases.push({
    name: "parse text ascii",
    size,
    make: () => parseCase(Opcode.Text, textPayload(size, ASCII)),
  });
  cases.push({
    name: "parse text mixed",
    size,
    make: () => parseCase(Opcode.Text, textPayload(size, MIXED)),
  });
}
for (const side of /** @type {const} */ (["server", "client"])) {
  const name = side === "server" ? "serialize server" : "serialize client (masked)";
  for (const size of SIZES) cases.push({ name, size, make: () => serializeCase(side, binaryPayload(size)) });
}

const selected = cases.filter((c) => c.name.includes(FILTER));
const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
const fmt = (/** @type {number} */ x, /** @type {number} */ digits) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const columns = ["case", "size", "MB/s", "msgs/s", "spread MB/s"];
const widths = [26, 8, 10, 13, 21];
const row = (/** @type {string[]} */ cells) =>
  cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");

let affinity = "";
try {
  affinity = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "";
} catch {}
const cpu = os.cpus()[0]?.model ?? "unknown";
const load = () => os.loadavg().map((x) => x.toFixed(2));
const loadBefore = load();
console.log(
  `node ${process.version}, ${cpu}, cpus allowed: ${affinity || "?"}, load ${loadBefore.join(" ")}`,
);
console.log(`${SECONDS} s x ${ROUNDS} rounds per case after ${SECONDS / 2} s warm-up; MB = 10^6 bytes\n`);
console.log(row(columns));
console.log(row(widths.map((w) => "-".repeat(w))));

const results = [];
for (const c of selected) {
  const batch = c.make();
  run(batch, SECONDS / 2);
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(run(batch, SECONDS));
  const mbps = median(rounds.map((r) => r.mbps));
  const msgsps = median(rounds.map((r) => r.msgsps));
  const all = rounds.map((r) => r.mbps);
  const spread = `${fmt(Math.min(...all), 0)}..${fmt(Math.max(...all), 0)}`;
  console.log(row([c.name, sizeLabel(c.size), fmt(mbps, 1), fmt(msgsps, 0), spread]));
  results.push({ case: c.name, size: c.size, mbPerSec: mbps, msgsPerSec: msgsps, rounds });
}

const date = new Date().toISOString();
const dir = new URL("./results/", import.meta.url);
mkdirSync(dir, { recursive: true });
const file = new URL(`protocol-throughput-${date.slice(0, 19).replaceAll(":", "-")}Z.json`, dir);
const meta = { date, node: process.version, v8: process.versions.v8, cpu, cpusAllowed: affinity };
const loadavg = { before: loadBefore, after: load() }; // other work on the machine skews results
const settings = { seconds: SECONDS, warmupSeconds: SECONDS / 2, rounds: ROUNDS, chunkBytes: CHUNK };
writeFileSync(
  file,
  `${JSON.stringify({ ...meta, platform: `${os.platform()} ${os.arch()}`, settings, loadavg, results }, null, 2)}\n`,
);
console.log(`\nwrote ${file.pathname}`);
