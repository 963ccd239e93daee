// @ts-check
/**
 * The cost of sockway's own per-message path, without the kernel: 100 default sessions over stub
 * sockets run the README's echo handler (`for await (const f of s.incoming) await s.send(f)`); each
 * round feeds every session one read of 8 masked 32 B binary frames, then lets the handlers and the
 * shared flush run. Reported: ns per echoed message (median of 5 timed passes), and a check that every
 * message came back as one 34-byte frame.
 *
 *   npm run bench:session                       build dist/, then run this file
 *   taskset -c 0 node bench/session-echo.js     pinned (after `npm run build`)
 *
 * Env: BENCH_ROUNDS (rounds per timed pass, default 3000), BENCH_PER_READ (frames per read, default 8; 1
 * shows the cost of a read and its write, as in ping-pong), BENCH_SOCKWAY_DIST (another build, as in run.js).
 * A CPU profile of this (`node --cpu-prof bench/session-echo.js`) shows where the time goes.
 */
import { EventEmitter } from "node:events";

const dist = process.env.BENCH_SOCKWAY_DIST ?? new URL("../dist/src", import.meta.url).pathname;
const { Connection, encodeFrame } = await import(`${dist}/protocol/index.js`);
const { DefaultWebSocketSession, resolveSessionOptions } = await import(`${dist}/session/index.js`);

/** Just enough of a net.Socket for a session: counts what is written, never pushes back. */
class StubSocket extends EventEmitter {
  destroyed = false;
  writable = true;
  writableLength = 0;
  writableNeedDrain = false;
  writableEnded = false;
  bytes = 0;
  /** @param {Buffer} chunk @param {() => void} [done] */
  write(chunk, done) {
    this.bytes += chunk.length;
    if (done) queueMicrotask(done);
    return true;
  }
  cork() {}
  uncork() {}
  setNoDelay() {}
  pause() {}
  resume() {}
  end() {}
  destroy() {
    this.destroyed = true;
  }
}

const SESSIONS = 100;
const PER_READ = Number(process.env.BENCH_PER_READ ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3000);
const frame = encodeFrame(2, Buffer.alloc(32, 7), { fin: true, mask: Buffer.of(1, 2, 3, 4) })[0];
const read = Buffer.concat(Array.from({ length: PER_READ }, () => frame));

const sockets = Array.from({ length: SESSIONS }, () => {
  const socket = new StubSocket();
  const connection = new Connection({ side: "server", mode: "messages", deferCloseReply: true });
  const session = new DefaultWebSocketSession(
    socket,
    connection,
    resolveSessionOptions({ pingPeriod: 0 }),
    {},
  );
  (async () => {
    for await (const f of session.incoming) await session.send(f);
  })();
  return socket;
});

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** @param {number} rounds */
async function pass(rounds) {
  const start = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    // The session unmasks in place, as with a real socket's chunk: each read is a fresh copy.
    for (const s of sockets) s.emit("data", Buffer.from(read));
    await turn();
    await turn();
  }
  return Number(process.hrtime.bigint() - start) / (rounds * SESSIONS * PER_READ);
}

await pass(Math.ceil(ROUNDS / 6)); // warm-up
const times = [];
for (let i = 0; i < 5; i++) times.push(await pass(ROUNDS));
times.sort((a, b) => a - b);
const sent = Math.ceil(ROUNDS / 6) + 5 * ROUNDS;
const expected = sent * SESSIONS * PER_READ;
const bytes = sockets.reduce((n, s) => n + s.bytes, 0);
// Each echo is a 34-byte frame; several may share one write.
const frames = bytes / 34;
console.log(
  `session echo, 32 B, ${SESSIONS} sessions x ${PER_READ} frames per read: ${times[2]?.toFixed(0)} ns per message ` +
    `(5 passes ${times[0]?.toFixed(0)}..${times[4]?.toFixed(0)}); ${frames} of ${expected} echoes written, ` +
    `${(bytes / frames).toFixed(1)} bytes each`,
);
if (frames !== expected || bytes !== expected * 34) {
  console.error("echoes missing or malformed");
  process.exit(1);
}
process.exit(0);
