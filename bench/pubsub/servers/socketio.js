// @ts-check
/**
 * socket.io under test: websocket transport only, no compression. Subscribers (`?role=sub`) join the
 * room "t"; the publisher's "pub" events (the 16-byte request) become `io.to("t").emit("m", payload)`.
 *   node bench/pubsub/servers/socketio.js                  → READY <port>
 *   BENCH_REDIS_PORT=<port>: @socket.io/redis-adapter on that redis-server (node-redis clients)
 */
import { createServer } from "node:http";
import { Server } from "socket.io";
import { ready } from "../../servers/common.js";
import { memoryLine, payloadFor, REQUEST_BYTES, redisPort, TOPIC } from "./shared.js";

const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 2 * 1024 * 1024,
});

if (redisPort !== undefined) {
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const pub = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (/** @type {unknown} */ e) => console.error("redis:", e));
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

io.on("connection", (socket) => {
  const role = socket.handshake.query.role;
  if (role === "sub") socket.join(TOPIC);
  else if (role === "pub") {
    socket.on("pub", (/** @type {Buffer} */ request) => {
      if (request?.length === REQUEST_BYTES) io.to(TOPIC).emit("m", payloadFor(request));
    });
  }
});

http.listen(0, "127.0.0.1", () => {
  const address = http.address();
  ready(typeof address === "object" && address ? address.port : 0, (line) => {
    if (line === "COUNT") process.stdout.write(`COUNT ${io.sockets.adapter.rooms.get(TOPIC)?.size ?? 0}\n`);
    else if (line === "MEM") process.stdout.write(memoryLine());
  });
});
