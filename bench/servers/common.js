// @ts-check
/**
 * What every benchmark server shares, under Node and under Bun: the settings read from the environment,
 * the "READY <port>" line, and a line protocol on stdin for the harness:
 *
 *   gc    → collects garbage (node --expose-gc, or Bun.gc) and answers "GC <json>": the process's
 *           memoryUsage() and, under node, the committed size of V8's young generation (new space)
 *   EOF   → the harness is gone: exit (so no server outlives it, even after a SIGKILL of the harness)
 */

/** Largest message every server accepts (the 1 MiB echo needs more than the libraries' defaults). */
export const MAX_PAYLOAD = 64 * 1024 * 1024;

/** `BENCH_MODE=broadcast`: every message received is sent to every connection (the sender included). */
export const broadcast = process.env.BENCH_MODE === "broadcast";

/** `BENCH_DEFLATE=1`: permessage-deflate on, every message compressed (threshold 0). */
export const deflate = process.env.BENCH_DEFLATE === "1";

/**
 * Tells the harness the port, and starts listening for its commands. Lines other than "gc" go to
 * `onCommand` (the pub/sub servers answer COUNT and SUB).
 * @param {number} port
 * @param {(line: string) => void} [onCommand]
 */
export function ready(port, onCommand) {
  process.stdout.write(`READY ${port}\n`);
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (/** @type {string} */ chunk) => {
    pending += chunk;
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === "gc") {
        collectGarbage();
        process.stdout.write(`GC ${JSON.stringify(heapFigures())}\n`);
      } else if (line !== "") onCommand?.(line);
      nl = pending.indexOf("\n");
    }
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
}

/** What the heap holds after a collection, in KiB: live objects, and what V8 keeps committed. */
function heapFigures() {
  const m = process.memoryUsage();
  const kib = (/** @type {number} */ b) => Math.round(b / 1024);
  /** @type {Record<string, number>} */
  const figures = {
    heapUsedKiB: kib(m.heapUsed),
    heapTotalKiB: kib(m.heapTotal),
    externalKiB: kib(m.external),
    arrayBuffersKiB: kib(m.arrayBuffers),
  };
  if (v8 !== undefined) {
    for (const space of v8.getHeapSpaceStatistics()) {
      if (space.space_name === "new_space") figures.newSpaceKiB = kib(space.space_size);
    }
  }
  return figures;
}

/** node:v8 under node (for the new space's size); Bun has no such statistics. */
const v8 = /** @type {any} */ (globalThis).Bun ? undefined : await import("node:v8");

function collectGarbage() {
  /** @type {any} */
  const g = globalThis;
  if (g.Bun) {
    g.Bun.gc(true);
  } else if (typeof g.gc === "function") {
    // Twice: the first full collection can leave finalizers that free more on the second.
    g.gc();
    g.gc();
  }
}

export const noop = () => {};
