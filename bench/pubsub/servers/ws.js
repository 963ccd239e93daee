// @ts-check
/**
 * ws under test: no topics of its own, so a publish is the usual loop over `wss.clients` with
 * `client.send(payload)` (the publisher and idle connections skipped). See shared.js.
 *   node bench/pubsub/servers/ws.js                        → READY <port>
 */
import { WebSocketServer } from "ws";
import { ready } from "../../servers/common.js";
import { memoryLine, payloadFor, REQUEST_BYTES } from "./shared.js";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
/** @type {WeakSet<import("ws").WebSocket>} */
const subscribers = new WeakSet();
let count = 0;

wss.on("connection", (ws, req) => {
  ws.on("error", (error) => console.error("ws error:", error.message));
  if (req.url === "/sub") {
    subscribers.add(ws);
    count++;
    ws.on("close", () => count--);
  } else if (req.url === "/pub") {
    ws.on("message", (/** @type {Buffer} */ d) => {
      if (d.length !== REQUEST_BYTES) return;
      const p = payloadFor(d);
      for (const c of wss.clients) if (subscribers.has(c)) c.send(p);
    });
  }
});

wss.on("listening", () => {
  const address = wss.address();
  ready(typeof address === "object" && address ? address.port : 0, (line) => {
    if (line === "COUNT") process.stdout.write(`COUNT ${count}\n`);
    else if (line === "MEM") process.stdout.write(memoryLine());
  });
});
