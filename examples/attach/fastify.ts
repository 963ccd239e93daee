/**
 * sockway's WebSocket routes beside a Fastify app, on `fastify.server`.
 *   npm run build && node dist/examples/attach/fastify.js
 */
import Fastify, { type FastifyInstance } from "fastify";
import { createWebSocketApp } from "./sockway-routes.js";

export async function startFastify(
  port = 0,
): Promise<{ fastify: FastifyInstance; stop: () => Promise<void> }> {
  const fastify = Fastify();
  fastify.get("/hello", async () => ({ from: "fastify" }));
  await fastify.listen({ port, host: "127.0.0.1" });
  const sockets = createWebSocketApp().attach(fastify.server);
  return { fastify, stop: () => sockets.stop({ grace: 1000 }) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await startFastify(8083);
  console.log("http://127.0.0.1:8083/hello and ws://127.0.0.1:8083/ws/{room}");
}
