// @ts-check
/**
 * Bun's native WebSocket server (Bun.serve, uWebSockets inside), as a reference point from another
 * runtime. Run with bun, not node:
 *   node_modules/.bin/bun bench/servers/bun.js            → READY <port>
 *   BENCH_DEFLATE=1 (bun-deflate.js): permessage-deflate with a dedicated compressor per connection
 *   (context takeover, as sockway and ws do) and every message compressed.
 *   BENCH_MODE=broadcast: every connection subscribes to one topic; server.publish sends to all.
 */
import { broadcast, deflate, MAX_PAYLOAD, ready } from "./common.js";

/** @type {any} */
const Bun = /** @type {any} */ (globalThis).Bun;
if (!Bun) throw new Error("bench/servers/bun.js runs under bun, not node");

/** @type {any} */
let server;
server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(/** @type {Request} */ req, /** @type {any} */ srv) {
    if (new URL(req.url).pathname === "/" && srv.upgrade(req)) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    maxPayloadLength: MAX_PAYLOAD,
    idleTimeout: 0,
    sendPings: false,
    perMessageDeflate: deflate ? { compress: "dedicated", decompress: "dedicated" } : false,
    open(/** @type {any} */ ws) {
      if (broadcast) ws.subscribe("all");
    },
    message: broadcast
      ? (/** @type {any} */ _ws, /** @type {string | Buffer} */ message) =>
          server.publish("all", message, deflate)
      : (/** @type {any} */ ws, /** @type {string | Buffer} */ message) => ws.send(message, deflate),
  },
});
ready(server.port);
