/**
 * sockway's WebSocket routes on a plain node:http server that keeps its own request handler.
 *   npm run build && node dist/examples/attach/node-http.js
 */
import { createServer, type Server } from "node:http";
import { createWebSocketApp } from "./sockway-routes.js";

export function createNodeServer(): { server: Server; stop: () => Promise<void> } {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" }).end("hello from node:http\n");
  });
  const sockets = createWebSocketApp().attach(server);
  return { server, stop: () => sockets.stop({ grace: 1000 }) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  createNodeServer().server.listen(8081, "127.0.0.1", () =>
    console.log("http://127.0.0.1:8081/ and ws://127.0.0.1:8081/ws/{room}"),
  );
}
