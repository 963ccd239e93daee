/**
 * sockway's WebSocket routes beside an Express app, on the server `app.listen` returns.
 *   npm run build && node dist/examples/attach/express.js
 */
import type { Server } from "node:http";
import express from "express";
import { createWebSocketApp } from "./sockway-routes.js";

export function startExpress(port = 0): Promise<{ server: Server; stop: () => Promise<void> }> {
  const web = express();
  web.get("/hello", (_req, res) => {
    res.type("text/plain").send("hello from express");
  });
  return new Promise((resolve) => {
    const server = web.listen(port, "127.0.0.1", () => {
      const sockets = createWebSocketApp().attach(server);
      resolve({ server, stop: () => sockets.stop({ grace: 1000 }) });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await startExpress(8082);
  console.log("http://127.0.0.1:8082/hello and ws://127.0.0.1:8082/ws/{room}");
}
