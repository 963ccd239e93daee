// @ts-check
/**
 * Pub/sub load client: holds subscriber connections and, in the lead process, the publisher. Started by
 * bench/pubsub/run.js (pinned with taskset) with its settings as JSON in argv[2]. The lead sends 16-byte
 * publish requests ([u32 seq][u64 hrtime ns][u32 size]) on its /pub connection; the server publishes a
 * `size`-byte payload that starts with seq and stamp to every subscriber. At most `window` publishes are
 * in flight: the next request goes when one has reached every subscriber in every client process
 * (window 1: one publish at a time). The latency of a publish is
 * the time of its last delivery (the latest over the client processes) minus the stamp: the same
 * monotonic clock (CLOCK_MONOTONIC, process.hrtime) in every client process on this machine. It
 * includes the request's one hop to the server.
 *
 *   stdout  CONTROL <port>    (lead) where the other client processes report
 *           CONNECTED <n>     subscribers open (and, for the lead, every other process reporting)
 *           START / END <size> <window>   (lead) the measured window of each phase
 *           RESULT <json>
 *           ERROR <text>
 *   stdin   GO, STOP (non-lead: report and exit), EOF (exit)
 *
 * Settings: kind "raw" (our own RFC 6455 client, payload prefix read from frame bytes) or "socketio"
 * (socket.io-client, websocket transport only); ports (subscribers spread round-robin over them, the
 * publisher on the first); subs; lead; procs; controlPort (non-lead); phases; warmup and seconds.
 */
import net from "node:net";
import { performance } from "node:perf_hooks";
import { harnessCommands } from "../lib/proc.js";
import { BINARY, clientFrame, pool } from "../load/client.js";

/**
 * @typedef {{
 *   kind: "raw" | "socketio", ports: number[], subs: number, lead: boolean, procs: number,
 *   controlPort?: number, phases: { size: number, window: number }[], warmup: number, seconds: number,
 * }} Settings
 */
/** @type {Settings} */
const settings = JSON.parse(process.argv[2] ?? "{}");
const say = (/** @type {string} */ line) => process.stdout.write(`${line}\n`);
const fail = (/** @type {unknown} */ e) => {
  say(`ERROR ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
};
process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);

// ---- harness commands ------------------------------------------------------------------------------

const harness = harnessCommands();
const command = (/** @type {string} */ word) => harness.wait(word);

// ---- deliveries --------------------------------------------------------------------------------------

/** Per publish seq: how many of this process's subscribers have it. */
/** @type {Map<number, number>} */
const counts = new Map();
let deliveries = 0;
let closed = 0;
/** Called when every subscriber of this process has publish `seq`, with the time of the last one. */
let onLocalDone = (/** @type {number} */ _seq, /** @type {bigint} */ _t) => {};

/**
 * One delivery of publish `seq` to a subscriber whose previous one was `last` (-1: none yet). Each
 * subscriber must get every publish, in order: a gap or a repeat fails the run.
 */
function delivered(/** @type {number} */ seq, /** @type {number} */ last) {
  if (last >= 0 && seq !== last + 1) fail(new Error(`a subscriber got publication ${seq} after ${last}`));
  deliveries++;
  const c = (counts.get(seq) ?? 0) + 1;
  if (c === settings.subs) {
    counts.delete(seq);
    onLocalDone(seq, process.hrtime.bigint());
  } else counts.set(seq, c);
}

/**
 * Server frames to data messages, reading only each payload's first 4 bytes (the seq). Frames are not
 * fragmented by any server here for these sizes; a fragmented message would count once per frame with
 * FIN set, which is what ends the message.
 */
class SeqReader {
  constructor() {
    this.header = Buffer.alloc(14);
    this.headerLength = 0;
    this.remaining = 0;
    this.inPayload = false;
    this.isData = false;
    this.seqBytes = Buffer.alloc(4);
    this.seqNeeded = 0;
    this.last = -1;
  }

  push(/** @type {Buffer} */ chunk) {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.inPayload) {
        if (this.seqNeeded > 0) {
          const take = Math.min(this.seqNeeded, n - i);
          chunk.copy(this.seqBytes, 4 - this.seqNeeded, i, i + take);
          this.seqNeeded -= take;
          this.remaining -= take;
          i += take;
        }
        const skip = Math.min(this.remaining, n - i);
        this.remaining -= skip;
        i += skip;
        if (this.remaining === 0) this.endFrame();
        continue;
      }
      this.header[this.headerLength++] = chunk[i++] ?? 0;
      if (this.headerLength < 2) continue;
      const b1 = this.header[1] ?? 0;
      const l7 = b1 & 0x7f;
      const need = (l7 === 126 ? 4 : l7 === 127 ? 10 : 2) + (b1 & 0x80 ? 4 : 0);
      if (this.headerLength < need) continue;
      const len =
        l7 === 126
          ? this.header.readUInt16BE(2)
          : l7 === 127
            ? this.header.readUInt32BE(2) * 2 ** 32 + this.header.readUInt32BE(6)
            : l7;
      const b0 = this.header[0] ?? 0;
      const opcode = b0 & 0x0f;
      this.isData = (b0 & 0x80) !== 0 && (opcode === 1 || opcode === 2);
      if (opcode === 8) closed++;
      this.headerLength = 0;
      this.remaining = len;
      this.seqNeeded = this.isData ? Math.min(4, len) : 0;
      this.inPayload = true;
      if (len === 0) this.endFrame();
    }
  }

  endFrame() {
    this.inPayload = false;
    if (this.isData) {
      const seq = this.seqBytes.readUInt32LE(0);
      delivered(seq, this.last);
      this.last = seq;
    }
  }
}

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/**
 * A raw WebSocket connection to `path`. Resolves once upgraded; `onFrame` gets what follows (views of a
 * shared read buffer).
 * @param {number} port
 * @param {string} path
 * @param {(chunk: Buffer) => void} onData
 * @returns {Promise<net.Socket>}
 */
function rawConnect(port, path, onData) {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    const socket = net.connect({
      port,
      host: "127.0.0.1",
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (nread, buf) => {
          const chunk = /** @type {Buffer} */ (buf).subarray(0, nread);
          if (upgraded) {
            onData(chunk);
            return true;
          }
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf("\r\n\r\n");
          if (end < 0) return true;
          if (!head.subarray(0, 13).toString("latin1").startsWith("HTTP/1.1 101")) {
            socket.destroy();
            reject(new Error(`handshake refused: ${head.toString("latin1").split("\r\n")[0]}`));
            return true;
          }
          upgraded = true;
          socket.removeAllListeners("close");
          socket.on("close", () => closed++);
          resolve(socket);
          if (head.length > end + 4) onData(Buffer.from(head.subarray(end + 4)));
          return true;
        },
      },
    });
    socket.on("error", (e) => {
      if (!upgraded) reject(e);
    });
    socket.once("close", () => reject(new Error("closed during the handshake")));
    socket.on("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
  });
}

/** @type {any} */
let ioClient;
async function socketioConnect(/** @type {number} */ port, /** @type {string} */ role) {
  ioClient ??= (await import("socket.io-client")).io;
  const socket = ioClient(`http://127.0.0.1:${port}`, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    query: { role },
    timeout: 60_000,
  });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  socket.on("disconnect", () => closed++);
  return socket;
}

/** @param {Buffer | ArrayBuffer | Uint8Array} data */
const seqOf = (data) =>
  data instanceof ArrayBuffer
    ? new DataView(data).getUint32(0, true)
    : Buffer.from(data.buffer, data.byteOffset, 4).readUInt32LE(0);

// ---- connecting ----------------------------------------------------------------------------------------

/** (lead) Where the other processes report; opened first, so that they can connect while we do. */
/** @type {Map<number, { done: number, last: bigint }>} */
const progress = new Map();
/** @type {(seq: number, t: bigint) => void} */
let onProcessDone = () => {};
let reporters = 0;
if (settings.lead) {
  const server = net.createServer((s) => {
    reporters++;
    s.setNoDelay(true);
    s.setEncoding("latin1");
    let buf = "";
    s.on("data", (/** @type {string} */ d) => {
      buf += d;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const [seq, t] = buf.slice(0, nl).split(" ");
        buf = buf.slice(nl + 1);
        onProcessDone(Number(seq), BigInt(t ?? "0"));
        nl = buf.indexOf("\n");
      }
    });
    s.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  say(`CONTROL ${typeof address === "object" && address ? address.port : 0}`);
}

const ports = settings.ports;
/** @type {any[]} */
const subscribers = [];
await pool(settings.subs, 64, async (i) => {
  const port = /** @type {number} */ (ports[i % ports.length]);
  if (settings.kind === "socketio") {
    const s = await socketioConnect(port, "sub");
    let last = -1;
    s.on("m", (/** @type {Buffer} */ data) => {
      const seq = seqOf(data);
      delivered(seq, last);
      last = seq;
    });
    subscribers.push(s);
  } else {
    const reader = new SeqReader();
    subscribers.push(await rawConnect(port, "/sub", (chunk) => reader.push(chunk)));
  }
});

if (!settings.lead) {
  const control = net.connect({ port: /** @type {number} */ (settings.controlPort), host: "127.0.0.1" });
  control.setNoDelay(true);
  await new Promise((resolve, reject) => {
    control.once("connect", resolve);
    control.once("error", reject);
  });
  onLocalDone = (seq, t) => control.write(`${seq} ${t}\n`);
  say(`CONNECTED ${subscribers.length}`);
  await command("GO");
  const cpu = process.cpuUsage();
  const elu = performance.eventLoopUtilization();
  await command("STOP");
  const c = process.cpuUsage(cpu);
  say(
    `RESULT ${JSON.stringify({ deliveries, closed, elu: performance.eventLoopUtilization(elu).utilization, cpuSeconds: (c.user + c.system) / 1e6 })}`,
  );
  process.exit(0);
}

// ---- the lead: publishing ------------------------------------------------------------------------------

/** @type {(request: Buffer) => void} */
let sendRequest = () => {};
/** @type {(requests: Buffer) => void} */
let sendRequests = () => {};
const pubPort = /** @type {number} */ (ports[0]);
if (settings.kind === "socketio") {
  const pub = await socketioConnect(pubPort, "pub");
  sendRequest = (request) => pub.emit("pub", request);
} else {
  const pub = await rawConnect(pubPort, "/pub", () => {});
  // Several requests in one write: the server reads them together, as from a publisher in a hurry.
  sendRequests = (requests) => {
    const frames = [];
    for (let j = 0; j < requests.length; j += 16)
      frames.push(clientFrame(BINARY, requests.subarray(j, j + 16)));
    pub.write(frames.length === 1 ? frames[0] : Buffer.concat(frames));
  };
}
const deadline = Date.now() + 120_000;
while (reporters < settings.procs - 1) {
  if (Date.now() > deadline) fail(new Error("the other client processes did not report in"));
  await new Promise((r) => setTimeout(r, 20));
}
say(`CONNECTED ${subscribers.length}`);
await command("GO");

let seq = 0;
let size = 32;
let window = 1;
let inflight = 0;
/** @type {Map<number, bigint>} publish stamps of the publications in flight */
const stamps = new Map();
let measuring = false;
let published = 0;
/** @type {number[]} latencies in µs of the publishes completed in the measured window */
let latencies = [];
/** @type {() => void} */
let stopped = () => {};
let running = false;
let lastProgress = Date.now();

/** Sends publish requests until `window` are in flight (in one write when several go at once). */
function publish() {
  const k = window - inflight;
  if (k <= 0) return;
  const requests = Buffer.alloc(16 * k);
  for (let j = 0; j < k; j++) {
    seq++;
    const stamp = process.hrtime.bigint();
    stamps.set(seq, stamp);
    requests.writeUInt32LE(seq, 16 * j);
    requests.writeBigUInt64LE(stamp, 16 * j + 4);
    requests.writeUInt32LE(size, 16 * j + 12);
  }
  inflight += k;
  if (settings.kind === "socketio")
    for (let j = 0; j < k; j++) sendRequest(requests.subarray(16 * j, 16 * j + 16));
  else sendRequests(requests);
}

/** A process (this one or another) has every delivery of `s`. */
function processDone(/** @type {number} */ s, /** @type {bigint} */ t) {
  let p = progress.get(s);
  if (p === undefined) {
    p = { done: 0, last: 0n };
    progress.set(s, p);
  }
  p.done++;
  if (t > p.last) p.last = t;
  if (p.done < settings.procs) return;
  progress.delete(s);
  const stamp = stamps.get(s);
  if (stamp === undefined) fail(new Error(`publication ${s} completed twice`));
  stamps.delete(s);
  inflight--;
  lastProgress = Date.now();
  if (measuring) {
    published++;
    latencies.push(Number(p.last - /** @type {bigint} */ (stamp)) / 1000);
  }
  if (completed()) running = false;
  if (running) publish();
  else if (inflight === 0) stopped();
}
onLocalDone = processDone;
onProcessDone = processDone;
const watchdog = setInterval(() => {
  if (running && Date.now() - lastProgress > 10_000)
    fail(new Error(`publication ${seq - inflight + 1} not delivered everywhere within 10 s`));
}, 1000);

const percentile = (/** @type {number[]} */ xs, /** @type {number} */ q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN);
};
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The measured window of a phase starts and ends at completions of publishes (so that no publish is
 * counted in part): it opens at the first completion after the warm-up and closes at the first one
 * after `seconds` once at least max(10, 2 x window) publishes are in it, or after 6 x `seconds` (at
 * least 20 s) whatever the count.
 */
let windowStart = 0;
let phaseLabel = "";
/** @type {() => void} */
let windowClosed = () => {};
let cpuAtStart = process.cpuUsage();
let eluAtStart = performance.eventLoopUtilization();
let deliveriesAtStart = 0;
/** @type {Record<string, unknown>} */
let windowStats = {};
let opening = false;

function completed() {
  const now = performance.now();
  if (opening) {
    opening = false;
    measuring = true;
    windowStart = now;
    published = 0;
    latencies = [];
    cpuAtStart = process.cpuUsage();
    eluAtStart = performance.eventLoopUtilization();
    deliveriesAtStart = deliveries;
    say(`START ${phaseLabel}`);
    return false;
  }
  if (!measuring) return false;
  const elapsed = now - windowStart;
  const enough = published >= Math.max(10, 2 * window);
  if (
    (elapsed >= settings.seconds * 1000 && enough) ||
    elapsed >= Math.max(20_000, 6_000 * settings.seconds)
  ) {
    measuring = false;
    const c = process.cpuUsage(cpuAtStart);
    windowStats = {
      seconds: elapsed / 1000,
      leadElu: performance.eventLoopUtilization(eluAtStart).utilization,
      leadCpuSeconds: (c.user + c.system) / 1e6,
      deliveriesHere: deliveries - deliveriesAtStart,
      complete: enough,
    };
    say(`END ${phaseLabel}`);
    windowClosed();
    return true;
  }
  return false;
}

/** @type {Record<string, unknown>[]} */
const results = [];
for (const phase of settings.phases) {
  size = phase.size;
  window = phase.window;
  phaseLabel = `${phase.size} ${phase.window}`;
  running = true;
  lastProgress = Date.now();
  const closedWindow = new Promise((r) => {
    windowClosed = () => r(undefined);
  });
  publish();
  await sleep(settings.warmup * 1000);
  opening = true;
  await closedWindow;
  const done = new Promise((r) => {
    stopped = () => r(undefined);
  });
  running = false;
  if (inflight > 0) await done;
  const seconds = /** @type {number} */ (windowStats.seconds);
  results.push({
    ...phase,
    ...windowStats,
    publishes: published,
    publishesPerSecond: published / seconds,
    latencyP50us: percentile(latencies, 0.5),
    latencyP99us: percentile(latencies, 0.99),
    latencyMaxUs: percentile(latencies, 1),
  });
}
clearInterval(watchdog);
say(`RESULT ${JSON.stringify({ closed, results })}`);
process.exit(0);
