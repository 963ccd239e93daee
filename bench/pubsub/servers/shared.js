// @ts-check
/**
 * What the pub/sub benchmark servers share. Every server has two kinds of connection:
 *
 *   /sub   a subscriber of the topic "t" (from the moment it is open)
 *   /pub   the publisher: each message it sends is a publish request, 16 bytes,
 *          [u32 LE seq][u64 LE client timestamp][u32 LE size]; the server builds a binary payload of
 *          `size` bytes that starts with the request's first 12 bytes and publishes it to "t" once
 *   /      (sockway only) a session that subscribes to nothing until the harness sends "SUB <k>"
 *
 * Commands on stdin (besides gc and EOF, see ../../servers/common.js):
 *   COUNT      → "COUNT <n>": subscribers of "t" on this server
 *   SUB <k>    → (sockway) every / session subscribes to t0 .. t<k-1>; answers "SUBBED <sessions>"
 *   MEM        → collects garbage, answers "MEM {heapUsed, rss}" in bytes
 */

export const TOPIC = "t";
export const REQUEST_BYTES = 16;

/** Bytes after the 12-byte prefix: the same every time (what they are does not matter). */
const FILLER = Buffer.alloc(1024 * 1024, 0x61);

/** The publication for one request (a fresh buffer: the previous one may still be queued). */
export function payloadFor(/** @type {Uint8Array} */ request) {
  const r = Buffer.from(request.buffer, request.byteOffset, request.byteLength);
  const size = Math.max(12, r.readUInt32LE(12));
  const p = Buffer.allocUnsafe(size);
  r.copy(p, 0, 0, 12);
  FILLER.copy(p, 12, 0, size - 12);
  return p;
}

/** Answers MEM: heap and RSS after two full collections. */
export function memoryLine() {
  /** @type {any} */
  const g = globalThis;
  if (g.Bun) g.Bun.gc(true);
  else if (typeof g.gc === "function") {
    g.gc();
    g.gc();
  }
  const m = process.memoryUsage();
  return `MEM ${JSON.stringify({ heapUsed: m.heapUsed, rss: m.rss })}\n`;
}

/** The redis-server to use across processes (`BENCH_REDIS_PORT`), or undefined in one process. */
export const redisPort = process.env.BENCH_REDIS_PORT ? Number(process.env.BENCH_REDIS_PORT) : undefined;
