// @ts-check
/**
 * The server side of the memory-bound tests (test/robustness/memory-bounds.test.ts), in its own process
 * (started with `node --expose-gc`) so that its heap is measured alone, after a forced GC.
 *
 *   SOCKWAY_DIST     directory of the compiled sockway to load (the one holding index.js)
 *   FLOOD_OPTIONS    JSON: the WebSockets plugin options (sizes), plus `deflate: true` for permessageDeflate()
 *
 * Routes:
 *   /echo         for await (m of incoming) await send(m)
 *   /room/skip    every message to every member of the room, not awaited, skipping members whose
 *                 bufferedAmount is over outgoingHighWaterMark (what a chat room should do)
 *   /room/all     the same without the skip: only SEND_BUFFER_FULL stops it
 *   /slow         200 ms per message, one at a time (until the session is no longer open)
 *   /hold         takes every message and drops it
 *
 * IPC: {type:"ready", port} once listening. {type:"measure"} is answered with the memory after a forced
 * GC and what each running session buffers; {type:"prime"} fills the room members' sockets (see
 * `prime`); {type:"terminate"} destroys every session's socket (a peer
 * that left is not noticed while reads are paused) and is answered once no handler is running.
 */
import { pathToFileURL } from "node:url";

const dist = process.env.SOCKWAY_DIST;
if (!dist) throw new Error("SOCKWAY_DIST is not set");
const { createApp, WebSockets, permessageDeflate } = await import(pathToFileURL(`${dist}/index.js`).href);
const { deflate, ...options } = JSON.parse(process.env.FLOOD_OPTIONS ?? "{}");
const highWaterMark = options.outgoingHighWaterMark;

/** Sessions whose handler is running, in order of arrival. */
const sessions = new Set();
/** @type {Record<string, Set<any>>} */
const rooms = { skip: new Set(), all: new Set() };
const counts = { sendFull: 0, errors: 0, firstError: "" };
/** @param {unknown} error */
const rejected = (error) => {
  if (/** @type {{ code?: string }} */ (error)?.code === "SEND_BUFFER_FULL") counts.sendFull++;
};
/** @param {(s: any) => Promise<void>} handler */
const tracked = (handler) => async (/** @type {any} */ s) => {
  sessions.add(s);
  try {
    await handler(s);
  } finally {
    sessions.delete(s);
  }
};
const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));

const app = createApp().install(WebSockets, {
  pingPeriod: 0,
  timeout: 2000,
  ...options,
  ...(deflate ? { extensions: [permessageDeflate()] } : {}),
});
app.onError((/** @type {unknown} */ error, /** @type {string} */ kind) => {
  if (kind === "handler" && /SESSION_CLOSED|closing or closed/.test(String(error))) return; // a peer that left
  counts.errors++;
  counts.firstError ||= `${kind}: ${String(error)}`;
});
app.routing((/** @type {any} */ r) => {
  r.webSocket(
    "/echo",
    tracked(async (s) => {
      for await (const m of s.incoming) await s.send(m);
    }),
  );
  for (const name of ["skip", "all"]) {
    const room = /** @type {Set<any>} */ (rooms[name]);
    r.webSocket(
      `/room/${name}`,
      tracked(async (s) => {
        room.add(s);
        try {
          for await (const m of s.incoming) {
            for (const member of room) {
              if (name === "skip" && member.bufferedAmount > highWaterMark) continue;
              member.send(m.data).catch(rejected);
            }
          }
        } finally {
          room.delete(s);
        }
      }),
    );
  }
  r.webSocket(
    "/slow",
    tracked(async (s) => {
      for await (const _ of s.incoming) {
        await sleep(200);
        if (!s.isOpen) break; // the peer left: drop the rest
      }
    }),
  );
  r.webSocket(
    "/hold",
    tracked(async (s) => {
      for await (const _ of s.incoming) {
        // dropped
      }
    }),
  );
});
const { port } = await app.listen({ host: "127.0.0.1", port: 0 });

async function measure() {
  // A few rounds let finalizers and the ArrayBuffer sweeper catch up; the last GC is read at once, before
  // a flood still being read allocates anything more.
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await sleep(10);
  }
  globalThis.gc?.();
  const memory = process.memoryUsage();
  return {
    type: "measure",
    gc: typeof globalThis.gc === "function",
    heapUsed: memory.heapUsed,
    arrayBuffers: memory.arrayBuffers,
    rss: memory.rss,
    sessions: sessions.size,
    ...counts,
    perSession: [...sessions].map((s) => ({
      bufferedAmount: s.bufferedAmount,
      incomingCost: s.incoming?.cost,
    })),
  };
}

/**
 * Fills the sockets (kernel buffers included) of every room member but the first (the sender, which
 * reads) with 16 KiB messages, sent only while the member's bufferedAmount is at or below the high-water
 * mark, until every one has stayed over it for 50 ms (its peer is not reading). At most 3 s.
 */
async function prime() {
  const members = Object.values(rooms).flatMap((room) => [...room].slice(1));
  const started = performance.now();
  let overSince = 0;
  while (performance.now() - started < 3000) {
    let all = true;
    for (const m of members) {
      while (m.bufferedAmount <= highWaterMark) {
        all = false;
        m.send(Buffer.alloc(16 * 1024, 0x5a)).catch(() => {}); // its own memory, as distinct messages have
      }
    }
    if (!all) overSince = 0;
    else if (overSince === 0) overSince = performance.now();
    else if (performance.now() - overSince >= 50) return true;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return false;
}

process.on("message", async (/** @type {{ type: string }} */ message) => {
  if (message.type === "measure") process.send?.(await measure());
  else if (message.type === "prime") process.send?.({ type: "primed", primed: await prime() });
  else if (message.type === "terminate") {
    for (const s of sessions) s.terminate();
    while (sessions.size > 0) await sleep(10);
    process.send?.({ type: "terminated" });
  }
});
process.send?.({ type: "ready", port });
