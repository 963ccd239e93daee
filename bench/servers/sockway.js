// @ts-check
/**
 * sockway under test: the echo handler of the README, on "/".
 *   node bench/servers/sockway.js                        → READY <port>
 *   BENCH_DEFLATE=1 (sockway-deflate.js), BENCH_MODE=broadcast: see common.js
 */
import { broadcast, deflate, MAX_PAYLOAD, noop, ready } from "./common.js";

// BENCH_SOCKWAY_DIST points at another build (a copy of dist/src) to compare two versions of sockway.
const { createApp, permessageDeflate, WebSockets } = await import(
  process.env.BENCH_SOCKWAY_DIST ? `${process.env.BENCH_SOCKWAY_DIST}/index.js` : "../../dist/src/index.js"
);

// BENCH_PING_PERIOD (ms, default 0): keepalive pings on, as sockway's default (30,000) has them, to see
// what keepalive costs an idle session.
const app = createApp().install(WebSockets, {
  pingPeriod: Number(process.env.BENCH_PING_PERIOD ?? 0),
  maxFrameSize: MAX_PAYLOAD,
  extensions: deflate ? [permessageDeflate({ threshold: 0 })] : [],
});
app.onError((error, kind) => console.error(`sockway ${kind} error:`, error));

/** @type {Set<import("../../dist/src/index.js").DefaultWebSocketSession>} */
const members = new Set();

app.routing((r) => {
  if (!broadcast) {
    r.webSocket("/", async (s) => {
      for await (const f of s.incoming) await s.send(f);
    });
    return;
  }
  // Broadcast: the same frame (and so the same payload buffer) goes to every session, without waiting.
  r.webSocket("/", async (s) => {
    members.add(s);
    try {
      for await (const f of s.incoming) {
        for (const m of members) m.send(f).catch(noop);
      }
    } finally {
      members.delete(s);
    }
  });
});

const { port } = await app.listen({ port: 0, host: "127.0.0.1" });
ready(port);
