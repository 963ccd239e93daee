// @ts-check
/**
 * The load client of the HTTP/2 benchmark: WebSockets over one HTTP/2 connection (extended CONNECT,
 * RFC 8441) or over one TLS connection each (HTTP/1.1 upgrade), with the same hand-written framing on
 * both (masked client frames with a zero key, so the client spends nothing on masking), so the two
 * columns differ only in the transport.
 *   BENCH_PORT, BENCH_MODE h2|h1, BENCH_PHASE echo|handshake|idle, BENCH_CONNS (100), BENCH_IN_FLIGHT (8),
 *   BENCH_SECONDS (4), BENCH_WARMUP (1), BENCH_STREAMS_PER_CONNECTION (idle, h2: 250)
 * Prints `RESULT <json>`; the `idle` phase prints `OPEN <count>` and holds until stdin closes.
 */
import http2 from "node:http2";
import tls from "node:tls";

const PORT = Number(process.env.BENCH_PORT);
const MODE = process.env.BENCH_MODE ?? "h2";
const PHASE = process.env.BENCH_PHASE ?? "echo";
const CONNS = Number(process.env.BENCH_CONNS ?? 100);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const PER_H2 = Number(process.env.BENCH_STREAMS_PER_CONNECTION ?? 250);

/** A masked client frame with a zero masking key: the payload goes as it is. */
function frame(/** @type {number} */ opcode, /** @type {Buffer} */ payload) {
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}
const MESSAGE = frame(1, Buffer.alloc(32, 97));
const CLOSE = frame(8, Buffer.from([0x03, 0xe8]));

/** Counts the server's frames (unmasked, payloads under 126 bytes) in a byte stream. */
function frameCounter(/** @type {(opcode: number) => void} */ onFrame) {
  /** @type {Buffer | undefined} */
  let rest;
  return (/** @type {Buffer} */ chunk) => {
    const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
    let at = 0;
    while (buf.length - at >= 2) {
      const len = buf[at + 1] & 0x7f;
      if (buf.length - at < 2 + len) break;
      onFrame(buf[at] & 0x0f);
      at += 2 + len;
    }
    rest = at < buf.length ? buf.subarray(at) : undefined;
  };
}

function h2connect() {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://127.0.0.1:${PORT}`, { rejectUnauthorized: false });
    s.on("error", reject);
    s.once("remoteSettings", () => resolve(s));
  });
}

/** Opens one WebSocket; resolves with { write, end, onData(fn) } once accepted. */
async function open(/** @type {http2.ClientHttp2Session | undefined} */ session) {
  if (MODE === "h2") {
    const stream = /** @type {http2.ClientHttp2Session} */ (session).request({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "https",
      ":path": "/echo",
      "sec-websocket-version": "13",
    });
    stream.on("error", () => {});
    await new Promise((resolve, reject) => {
      stream.once("response", (h) =>
        h[":status"] === 200 ? resolve(undefined) : reject(new Error(`status ${h[":status"]}`)),
      );
      stream.once("close", () => reject(new Error("stream closed")));
    });
    return stream;
  }
  const socket = tls.connect({
    host: "127.0.0.1",
    port: PORT,
    rejectUnauthorized: false,
    ALPNProtocols: ["http/1.1"],
  });
  socket.setNoDelay(true);
  socket.on("error", () => {});
  socket.write(
    "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  await new Promise((resolve, reject) => {
    let head = "";
    const onData = (/** @type {Buffer} */ d) => {
      head += d.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(head.split("\r\n")[0]));
      if (head.length > end + 4) socket.unshift(Buffer.from(head.slice(end + 4), "latin1"));
      resolve(undefined);
    };
    socket.on("data", onData);
    socket.once("close", () => reject(new Error("socket closed")));
  });
  return socket;
}

async function echo() {
  const session = MODE === "h2" ? await h2connect() : undefined;
  const sockets = await Promise.all(Array.from({ length: CONNS }, () => open(session)));
  let count = 0;
  for (const s of sockets) {
    s.on(
      "data",
      frameCounter(() => {
        count++;
        s.write(MESSAGE);
      }),
    );
    for (let i = 0; i < IN_FLIGHT; i++) s.write(MESSAGE);
  }
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  const c0 = count;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { rate: (count - c0) / seconds, loadCpu: (cpu.user + cpu.system) / 1e6 / seconds };
}

/** One WebSocket opened, closed with 1000 (waiting for the server's Close) and its transport ended. */
async function handshakeOnce(/** @type {http2.ClientHttp2Session | undefined} */ session) {
  const s = await open(session);
  await new Promise((resolve) => {
    s.on(
      "data",
      frameCounter((op) => {
        if (op === 8) resolve(undefined);
      }),
    );
    s.once("close", resolve);
    s.write(CLOSE);
  });
  s.end();
  if (MODE === "h1") /** @type {tls.TLSSocket} */ (s).destroy();
}

async function handshakes() {
  const session = MODE === "h2" ? await h2connect() : undefined;
  let count = 0;
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      await handshakeOnce(session);
      if (measuring) count++;
    }
  };
  const workers = Array.from({ length: CONNS }, worker);
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  measuring = true;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const rate = count / seconds;
  stop = true;
  await Promise.allSettled(workers);
  return { rate, loadCpu: (cpu.user + cpu.system) / 1e6 / seconds };
}

async function idle() {
  const sockets = [];
  if (MODE === "h2") {
    for (let done = 0; done < CONNS; ) {
      const session = await h2connect();
      const n = Math.min(PER_H2, CONNS - done);
      sockets.push(...(await Promise.all(Array.from({ length: n }, () => open(session)))));
      done += n;
    }
  } else {
    for (let i = 0; i < CONNS; i += 100)
      sockets.push(
        ...(await Promise.all(Array.from({ length: Math.min(100, CONNS - i) }, () => open(undefined)))),
      );
  }
  console.log(`OPEN ${sockets.length}`);
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  return { open: sockets.length };
}

try {
  const result = PHASE === "echo" ? await echo() : PHASE === "handshake" ? await handshakes() : await idle();
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
} catch (error) {
  console.log(`ERROR ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
