// @ts-check
/**
 * Bun.serve (uWebSockets topics): subscribers `ws.subscribe("t")` on open, a publish is
 * `server.publish("t", payload)`. Run with the bun binary: node_modules/.bin/bun bench/pubsub/servers/bun.js
 */
import { ready } from "../../servers/common.js";
import { memoryLine, payloadFor, REQUEST_BYTES, TOPIC } from "./shared.js";

/** @type {any} */
const Bun = /** @type {any} */ (globalThis).Bun;
if (!Bun) throw new Error("bench/pubsub/servers/bun.js runs under bun, not node");

/** @type {any} */
let server;
server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(/** @type {Request} */ req, /** @type {any} */ srv) {
    const path = new URL(req.url).pathname;
    if ((path === "/sub" || path === "/pub") && srv.upgrade(req, { data: { path } })) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    idleTimeout: 0,
    sendPings: false,
    perMessageDeflate: false,
    open(/** @type {any} */ ws) {
      if (ws.data.path === "/sub") ws.subscribe(TOPIC);
    },
    message(/** @type {any} */ ws, /** @type {string | Buffer} */ message) {
      if (ws.data.path === "/pub" && typeof message !== "string" && message.length === REQUEST_BYTES)
        server.publish(TOPIC, payloadFor(message));
    },
  },
});
ready(server.port, (line) => {
  if (line === "COUNT") process.stdout.write(`COUNT ${server.subscriberCount(TOPIC)}\n`);
  else if (line === "MEM") process.stdout.write(memoryLine());
});
