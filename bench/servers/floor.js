// @ts-check
/**
 * The floor of a connection on Node: node:net, and on the first read a fixed "101 Switching Protocols"
 * (the same bytes for every connection: the load generator does not check Sec-WebSocket-Accept), then
 * every later read written straight back as it came, still masked (the load generator's frame counter
 * skips a mask). No per-connection object or closure is made: the socket's listeners are shared, the
 * response is one Buffer for all. What an idle connection costs here is node:net's own (the Socket and
 * its stream states, the TCP handle, libuv) plus V8's heap around it; what an echo costs is one read
 * and one write of the same buffer. A WebSocket server's memory and small-message throughput can be
 * read against it. Not a WebSocket server: it never parses a frame.
 *   node bench/servers/floor.js                            → READY <port>
 */
import net from "node:net";
import { ready } from "./common.js";

const SWITCHING = Buffer.from(
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
  "latin1",
);

/** The first read is the request head (the load generator sends it in one write); later reads go back. */
/** @this {net.Socket} @param {Buffer} chunk */
function onData(chunk) {
  this.write(this.bytesWritten === 0 ? SWITCHING : chunk);
}
/** @this {net.Socket} */
function onError() {
  this.destroy();
}

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on("error", onError);
  socket.on("data", onData);
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  ready(typeof address === "object" && address ? address.port : 0);
});
