// @ts-check
// The server side of the soak test, in its own process so its memory is measured alone.
// Answers IPC requests for statistics; echoes every message on /soak/{id}.
// Count live timers (armed, neither fired nor cleared), unref'd ones included, which Node's own resource
// list leaves out. Installed before sockway loads so that every timer it arms is seen.
/** @type {Set<unknown>} */
const liveTimers = new Set();
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
// @ts-expect-error: a counting wrapper with the same behaviour
globalThis.setTimeout = (
  /** @type {(...a: unknown[]) => void} */ fn,
  /** @type {number} */ ms,
  /** @type {unknown[]} */ ...args
) => {
  const timer = realSetTimeout(() => {
    liveTimers.delete(timer);
    fn(...args);
  }, ms);
  liveTimers.add(timer);
  return timer;
};
// @ts-expect-error: see above
globalThis.clearTimeout = (/** @type {any} */ timer) => {
  liveTimers.delete(timer);
  realClearTimeout(timer);
};
const { createApp, WebSockets } = await import("../../dist/src/index.js");

const app = createApp().install(WebSockets, { pingPeriod: 5_000, timeout: 5_000 });
app.onError((error, kind) => process.send?.({ type: "error", kind, message: String(error) }));
app.routing((r) => {
  r.webSocket("/soak/{id}", async (session) => {
    for await (const frame of session.incoming) await session.send(frame);
  });
});
const { port } = await app.listen({ host: "127.0.0.1", port: 0 });

/** @param {string} type */
const count = (type) => process.getActiveResourcesInfo().filter((t) => t === type).length;

process.on("message", async (/** @type {{ type: string }} */ message) => {
  if (message.type === "stats") {
    for (let i = 0; i < 3; i++) {
      globalThis.gc?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const memory = process.memoryUsage();
    process.send?.({
      type: "stats",
      rss: memory.rss,
      heapTotal: memory.heapTotal,
      heapUsed: memory.heapUsed,
      arrayBuffers: memory.arrayBuffers,
      sessions: app.sessions.size,
      sockets: count("TCPSocketWrap"),
      timers: liveTimers.size,
    });
  } else if (message.type === "stop") {
    await app.stop({ grace: 1000 });
    process.exit(0);
  }
});
process.send?.({ type: "ready", port });
