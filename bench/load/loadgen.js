// @ts-check
/**
 * Load generator: one process (pinned by the harness with `taskset -c 1`) that drives one server over
 * raw TCP sockets. Started by bench/run.js with its settings as JSON in argv[2]; talks by lines:
 *
 *   stdout  CONNECTED <n>   connections are open and handshaken; waiting for GO
 *           HELD <n>        (hold) connections are open; waiting for STOP or EOF
 *           RESULT <json>   the measurement
 *           ERROR <text>    it could not run
 *   stdin   GO              start the load: warm-up, then the measured window
 *           STOP            (hold) report and exit
 *           EOF             exit (the harness is gone)
 *
 * Modes:
 *   echo        closed loop: each connection keeps `inflight` messages outstanding and sends one more
 *               for each echo received (counted from frame headers only, written in one batch per read)
 *   handshakes  `concurrency` loops of connect, opening handshake, Close frame, wait for TCP close
 *               (with `drop`, the client closes TCP right after the 101 instead, sending no Close)
 *   broadcast   `receivers` connections, then one control connection that sends messages the server
 *               broadcasts; the control keeps at most `window` broadcasts undelivered (counted at the
 *               receivers), so the rate is what is delivered end to end, not what is queued
 *   hold        opens `conns` connections (optionally one message each) and holds them idle
 *   verify      checks that echoes (and broadcasts) come back byte for byte, inflating if compressed
 *               (with `handshakeOnly`, only that the upgrade is answered with a 101)
 */

import net from "node:net";
import { performance } from "node:perf_hooks";
import zlib from "node:zlib";
import { harnessCommands } from "../lib/proc.js";
import {
  BINARY,
  CLOSE_FRAME,
  clientFrame,
  connectWebSocket,
  deflateMessage,
  FrameCounter,
  FrameRing,
  MessageReader,
  pool,
  TEXT,
  upgradeRequest,
} from "./client.js";

/**
 * @typedef {{
 *   mode: "echo" | "handshakes" | "broadcast" | "hold" | "verify",
 *   port: number,
 *   conns?: number, inflight?: number, size?: number, kind?: "binary" | "text",
 *   deflate?: boolean, concurrency?: number, receivers?: number, window?: number,
 *   message?: boolean, broadcast?: boolean, warmup?: number, seconds?: number,
 *   handshakeOnly?: boolean,
 *   drop?: boolean,
 * }} Settings
 */

/** @type {Settings} */
const settings = JSON.parse(process.argv[2] ?? "{}");
const CONNECT_CONCURRENCY = 128;

/** @param {string} line */
const say = (line) => process.stdout.write(`${line}\n`);

const commands = harnessCommands();

// ---- payloads ---------------------------------------------------------------------------------------

/** Deterministic pseudo-random numbers, so every run sends the same bytes. */
function prng(/** @type {number} */ seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function binaryPayload(/** @type {number} */ size, /** @type {number} */ seed) {
  const rnd = prng(seed);
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];

/** About `size` bytes of JSON-like chat text (ASCII, compresses roughly 3-4x), exactly `size` bytes. */
function textPayload(/** @type {number} */ size, /** @type {number} */ seed) {
  const rnd = prng(seed);
  const pick = () => WORDS[Math.floor(rnd() * WORDS.length)];
  let s = "[";
  while (s.length < size) {
    const id = Math.floor(rnd() * 1e6);
    s += `{"id":${id},"user":"${pick()}${Math.floor(rnd() * 100)}","room":"${pick()}",`;
    s += `"text":"${pick()} ${pick()} ${pick()} ${pick()}","ts":${1_700_000_000_000 + id}},`;
  }
  return Buffer.from(s.slice(0, size), "latin1");
}

/** The messages a connection sends in turn (several variants for text, so compression has work). */
function payloads() {
  const size = settings.size ?? 32;
  if (settings.kind === "text") return Array.from({ length: 16 }, (_, i) => textPayload(size, i + 1));
  return [binaryPayload(size, 1)];
}

function framesFor(/** @type {Buffer[]} */ messages) {
  const opcode = settings.kind === "text" ? TEXT : BINARY;
  return messages.map((p) =>
    settings.deflate ? clientFrame(opcode, deflateMessage(p), { rsv1: true }) : clientFrame(opcode, p),
  );
}

// ---- measurement ------------------------------------------------------------------------------------

function snapshot(/** @type {() => number} */ count) {
  return {
    t: performance.now(),
    n: count(),
    cpu: process.cpuUsage(),
    elu: performance.eventLoopUtilization(),
  };
}

/**
 * Waits for GO, starts the load, and reports the count over the window after the warm-up.
 * @param {() => void} start
 * @param {() => number} count
 * @param {() => Record<string, unknown>} [extra]
 */
async function measure(start, count, extra = () => ({})) {
  const warmup = (settings.warmup ?? 1) * 1000;
  const seconds = (settings.seconds ?? 5) * 1000;
  await commands.wait("GO");
  start();
  await sleep(warmup);
  const a = snapshot(count);
  await sleep(seconds);
  const b = snapshot(count);
  const wall = (b.t - a.t) / 1000;
  const cpu = (b.cpu.user - a.cpu.user + b.cpu.system - a.cpu.system) / 1e6;
  say(
    `RESULT ${JSON.stringify({
      count: b.n - a.n,
      seconds: wall,
      perSecond: (b.n - a.n) / wall,
      clientCpu: cpu / wall,
      clientElu: performance.eventLoopUtilization(b.elu, a.elu).utilization,
      ...extra(),
    })}`,
  );
}

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- modes ------------------------------------------------------------------------------------------

async function echo() {
  const conns = settings.conns ?? 1;
  const inflight = settings.inflight ?? 1;
  const ring = new FrameRing(framesFor(payloads()), Math.max(inflight, 64));
  let received = 0;
  let closed = 0;
  let running = false;
  /** @type {{ socket: net.Socket, send: (k: number) => void }[]} */
  const connections = [];
  await pool(conns, CONNECT_CONCURRENCY, async () => {
    const { socket, rest, setReader } = await connectWebSocket(settings.port, {
      deflate: settings.deflate ?? false,
      sharedBuffer: true,
    });
    if (rest.length > 0) throw new Error("unexpected data after the handshake");
    let pos = 0;
    const send = (/** @type {number} */ k) => {
      while (k > 0) {
        const run = Math.min(k, ring.maxRun);
        socket.write(ring.slice(pos, run));
        pos = (pos + run) % ring.variants;
        k -= run;
      }
    };
    const counter = new FrameCounter();
    setReader((chunk) => {
      const k = counter.push(chunk);
      received += k;
      if (running && k > 0) send(k);
    });
    socket.on("error", () => {});
    socket.on("close", () => closed++);
    connections.push({ socket, send });
  });
  say(`CONNECTED ${connections.length}`);
  await measure(
    () => {
      running = true;
      for (const c of connections) c.send(inflight);
    },
    () => received,
    () => ({ closedConnections: closed }),
  );
  running = false;
  for (const c of connections) c.socket.destroy();
}

async function handshakes() {
  const concurrency = settings.concurrency ?? 16;
  const port = settings.port;
  // Per attempt as little as possible, so that the generator is not what limits the rate: requests
  // built once, one read buffer for every socket, listeners shared through a state object, and one
  // timer that sweeps attempts older than 5 s instead of a timer per attempt.
  const requests = Array.from({ length: 64 }, () => Buffer.from(upgradeRequest(port, false), "latin1"));
  const OK = Buffer.from("HTTP/1.1 101 ");
  const readBuffer = Buffer.allocUnsafe(64 * 1024);
  let done = 0;
  let errors = 0;
  let attempt = 0;
  let running = true;
  /** @type {string | undefined} */
  let firstError;
  /** @typedef {{ socket: net.Socket, started: number, head: Buffer | undefined, upgraded: boolean, failed: boolean }} Attempt */
  /** @type {Set<Attempt>} */
  const live = new Set();
  const fail = (/** @type {Attempt} */ a, /** @type {string} */ why) => {
    if (a.failed) return;
    a.failed = true;
    errors++;
    firstError ??= why;
    a.socket.destroy();
  };
  const loop = () => {
    if (!running) return;
    /** @type {Attempt} */
    const a = {
      socket: /** @type {any} */ (undefined),
      started: performance.now(),
      head: undefined,
      upgraded: false,
      failed: false,
    };
    a.socket = net.connect({
      port,
      host: "127.0.0.1",
      noDelay: true,
      onread: {
        buffer: readBuffer,
        callback: (n, buffer) => {
          if (a.upgraded || a.failed) return true; // the server's Close frame
          const chunk = /** @type {Buffer} */ (buffer).subarray(0, n);
          const bytes = a.head ? Buffer.concat([a.head, chunk]) : chunk;
          if (bytes.indexOf("\r\n\r\n") < 0) {
            a.head = Buffer.from(bytes); // a copy: the read buffer is reused
            return true;
          }
          if (bytes.compare(OK, 0, OK.length, 0, OK.length) !== 0)
            fail(a, bytes.toString("latin1").split("\r\n")[0] ?? "bad response");
          else {
            a.upgraded = true;
            // "drop": leave at once, as a crawler, a health check or a reconnect storm does.
            if (settings.drop) a.socket.destroy();
            else a.socket.write(CLOSE_FRAME);
          }
          return true;
        },
      },
    });
    live.add(a);
    a.socket.on("connect", () => a.socket.write(requests[attempt++ & 63]));
    a.socket.on("error", (error) => fail(a, error.message));
    a.socket.on("close", () => {
      live.delete(a);
      if (a.upgraded && !a.failed) done++;
      else if (!a.failed) fail(a, "closed before the handshake finished");
      setImmediate(loop);
    });
  };
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const a of live) if (now - a.started > 5000) fail(a, "timeout");
  }, 1000);
  say("CONNECTED 0");
  await measure(
    () => {
      for (let i = 0; i < concurrency; i++) loop();
    },
    () => done,
    () => ({ errors, firstError }),
  );
  running = false;
  clearInterval(sweep);
}

async function broadcast() {
  const receivers = settings.receivers ?? 1000;
  const window = settings.window ?? 16;
  const ring = new FrameRing(framesFor(payloads()), 64);
  let delivered = 0;
  let sent = 0;
  let closed = 0;
  let running = false;
  /** @type {net.Socket[]} */
  const sockets = [];
  const pump = () => {
    if (!running) return;
    const free = window * receivers - (sent * receivers - delivered);
    let n = Math.floor(free / receivers);
    while (n > 0) {
      const run = Math.min(n, ring.maxRun);
      control.write(ring.slice(0, run));
      sent += run;
      n -= run;
    }
  };
  await pool(receivers, CONNECT_CONCURRENCY, async () => {
    const { socket, setReader } = await connectWebSocket(settings.port, { sharedBuffer: true });
    const counter = new FrameCounter();
    setReader((chunk) => {
      delivered += counter.push(chunk);
      pump();
    });
    socket.on("error", () => {});
    socket.on("close", () => closed++);
    sockets.push(socket);
  });
  // The control connection comes last, so servers that keep connections in order send to it last.
  const opened = await connectWebSocket(settings.port, { sharedBuffer: true });
  const control = opened.socket;
  const controlCounter = new FrameCounter();
  let controlReceived = 0;
  opened.setReader((chunk) => {
    controlReceived += controlCounter.push(chunk);
  });
  control.on("error", () => {});
  say(`CONNECTED ${sockets.length + 1}`);
  await measure(
    () => {
      running = true;
      pump();
    },
    () => delivered,
    () => ({ broadcastsSent: sent, controlReceived, closedConnections: closed }),
  );
  running = false;
  for (const s of sockets) s.destroy();
  control.destroy();
}

async function hold() {
  const conns = settings.conns ?? 1000;
  const frames = settings.message ? framesFor(payloads()) : [];
  let closed = 0;
  /** @type {net.Socket[]} */
  const sockets = [];
  await pool(conns, CONNECT_CONCURRENCY, async (i) => {
    const { socket, setReader } = await connectWebSocket(settings.port, {
      deflate: settings.deflate ?? false,
      sharedBuffer: true,
    });
    socket.on("error", () => {});
    if (frames.length > 0) {
      // One message each way, so per-connection state that is made on first use (zlib) exists.
      const counter = new FrameCounter();
      await new Promise((resolve, reject) => {
        setReader((chunk) => {
          if (counter.push(chunk) > 0) resolve(undefined);
        });
        socket.once("close", () => reject(new Error("closed before the echo")));
        socket.write(/** @type {Buffer} */ (frames[i % frames.length]));
      });
      socket.removeAllListeners("close");
      setReader(() => {});
    }
    socket.on("close", () => closed++);
    sockets.push(socket);
  });
  say(`HELD ${sockets.length}`);
  await commands.wait("STOP");
  say(`RESULT ${JSON.stringify({ held: sockets.length, closedDuringHold: closed })}`);
  for (const s of sockets) s.destroy();
}

/** Checks the echoes (or broadcasts) byte for byte. */
async function verify() {
  const deflate = settings.deflate ?? false;
  /** @type {string[]} */
  const checked = [];
  const open = async () => {
    const { socket, rest, setReader } = await connectWebSocket(settings.port, { deflate });
    const reader = new MessageReader();
    const inflate = deflate ? inflater() : undefined;
    /** @type {{ opcode: number, rsv1: boolean, payload: Buffer }[]} */
    const inbox = [];
    /** @type {(() => void) | undefined} */
    let wake;
    const onData = (/** @type {Buffer} */ chunk) => {
      inbox.push(...reader.push(chunk));
      wake?.();
    };
    setReader(onData);
    if (rest.length > 0) onData(rest);
    const next = async () => {
      const deadline = Date.now() + 10_000;
      while (inbox.length === 0) {
        if (Date.now() > deadline || socket.destroyed) throw new Error("no message from the server");
        await new Promise((resolve) => {
          wake = () => resolve(undefined);
          setTimeout(resolve, 100);
        });
      }
      const m = /** @type {{ opcode: number, rsv1: boolean, payload: Buffer }} */ (inbox.shift());
      if (m.rsv1) {
        if (!inflate) throw new Error("compressed message without permessage-deflate");
        return { ...m, payload: await inflate(m.payload) };
      }
      // threshold 0: a deflate server must compress every message
      if (inflate && m.opcode < 8) throw new Error("the server sent a message uncompressed");
      return m;
    };
    return { socket, next };
  };
  /** @type {[number, Buffer][]} */
  const messages = deflate
    ? [1, 2, 3].map((seed) => [TEXT, textPayload(1024, seed)])
    : [
        [BINARY, binaryPayload(32, 1)],
        [TEXT, textPayload(1024, 1)],
        [BINARY, binaryPayload(64 * 1024, 2)],
        [BINARY, binaryPayload(1024 * 1024, 3)],
      ];
  const frameOf = (/** @type {number} */ opcode, /** @type {Buffer} */ p) =>
    deflate ? clientFrame(opcode, deflateMessage(p), { rsv1: true }) : clientFrame(opcode, p);
  if (settings.handshakeOnly) {
    // A server that only answers the upgrade (the memory floor): its 101, nothing more.
    const c = await open();
    c.socket.destroy();
    say(`RESULT ${JSON.stringify({ ok: true, checked: ["101 to the upgrade"] })}`);
    return;
  }
  const same = (
    /** @type {{ opcode: number, payload: Buffer }} */ m,
    /** @type {number} */ opcode,
    /** @type {Buffer} */ p,
  ) => m.opcode === opcode && m.payload.equals(p);
  if (!settings.broadcast) {
    const c = await open();
    for (const [opcode, p] of messages) {
      c.socket.write(frameOf(opcode, p));
      const m = await c.next();
      if (!same(m, opcode, p)) throw new Error(`echo of ${p.length} bytes differs (opcode ${m.opcode})`);
      checked.push(`echo ${opcode === TEXT ? "text" : "binary"} ${p.length} B`);
    }
    c.socket.end(CLOSE_FRAME);
  } else {
    const receivers = await Promise.all([1, 2, 3].map(() => open()));
    const control = await open();
    for (const [opcode, p] of messages.slice(0, 2)) {
      control.socket.write(frameOf(opcode, p));
      for (const r of [...receivers, control]) {
        const m = await r.next();
        if (!same(m, opcode, p)) throw new Error(`broadcast of ${p.length} bytes differs`);
      }
      checked.push(`broadcast ${p.length} B to 4 connections`);
    }
    for (const r of [...receivers, control]) r.socket.end(CLOSE_FRAME);
  }
  say(`RESULT ${JSON.stringify({ ok: true, checked })}`);
}

/** A permessage-deflate inflater with context takeover (RFC 7692 §7.2.2). */
function inflater() {
  const inflate = zlib.createInflateRaw();
  /** @type {Buffer[]} */
  const out = [];
  inflate.on("data", (/** @type {Buffer} */ b) => out.push(b));
  return (/** @type {Buffer} */ data) =>
    /** @type {Promise<Buffer>} */ (
      new Promise((resolve, reject) => {
        inflate.once("error", reject);
        inflate.write(Buffer.concat([data, Buffer.of(0, 0, 0xff, 0xff)]));
        inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          inflate.off("error", reject);
          resolve(Buffer.concat(out.splice(0)));
        });
      })
    );
}

const modes = { echo, handshakes, broadcast, hold, verify };
try {
  await modes[settings.mode]();
  process.exit(0);
} catch (error) {
  say(`ERROR ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
