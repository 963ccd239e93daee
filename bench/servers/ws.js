// @ts-check
/**
 * ws under test (with bufferutil and utf-8-validate when they are installed: ws loads them by itself).
 *   node bench/servers/ws.js                              → READY <port>
 *   BENCH_DEFLATE=1 (ws-deflate.js), BENCH_MODE=broadcast: see common.js
 */
import { createRequire } from "node:module";
import { WebSocketServer } from "ws";
import { broadcast, deflate, MAX_PAYLOAD, ready } from "./common.js";

const require = createRequire(import.meta.url);
const native = ["bufferutil", "utf-8-validate"].map((name) => {
  try {
    require.resolve(name);
    return `${name}=yes`;
  } catch {
    return `${name}=no`;
  }
});
console.error(`ws: ${native.join(" ")}`);

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  path: "/",
  maxPayload: MAX_PAYLOAD,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});

wss.on("connection", (ws) => {
  ws.on("error", (error) => console.error("ws error:", error.message));
  if (broadcast) {
    ws.on("message", (d, isBinary) => {
      for (const c of wss.clients) c.send(d, { binary: isBinary });
    });
  } else {
    ws.on("message", (d, isBinary) => ws.send(d, { binary: isBinary }));
  }
});

wss.on("listening", () => {
  const address = wss.address();
  ready(typeof address === "object" && address ? address.port : 0);
});
