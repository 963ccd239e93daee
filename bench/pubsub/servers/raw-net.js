// @ts-check
/**
 * The floor of a fan-out on Node sockets: ws accepts the handshakes, then a publish builds one binary
 * frame and writes that same buffer to every subscriber's net.Socket, one `socket.write` each (no
 * WebSocket library on the send path). Nothing written this way can be cheaper per delivery unless it
 * needs fewer kernel writes. See shared.js.
 *   node bench/pubsub/servers/raw-net.js                   → READY <port>
 */
import { WebSocketServer } from "ws";
import { ready } from "../../servers/common.js";
import { memoryLine, payloadFor, REQUEST_BYTES } from "./shared.js";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
/** @type {Set<import("node:net").Socket>} */
const sockets = new Set();

/** A server frame (unmasked, FIN, binary) around `payload`, in one buffer. */
function frame(/** @type {Buffer} */ payload) {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = 0x82;
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  payload.copy(out, head);
  return out;
}

wss.on("connection", (ws, req) => {
  ws.on("error", (error) => console.error("ws error:", error.message));
  if (req.url === "/sub") {
    const socket = /** @type {import("node:net").Socket} */ (/** @type {any} */ (ws)._socket);
    sockets.add(socket);
    ws.on("close", () => sockets.delete(socket));
  } else if (req.url === "/pub") {
    ws.on("message", (/** @type {Buffer} */ d) => {
      if (d.length !== REQUEST_BYTES) return;
      const f = frame(payloadFor(d));
      for (const s of sockets) s.write(f);
    });
  }
});

wss.on("listening", () => {
  const address = wss.address();
  ready(typeof address === "object" && address ? address.port : 0, (line) => {
    if (line === "COUNT") process.stdout.write(`COUNT ${sockets.size}\n`);
    else if (line === "MEM") process.stdout.write(memoryLine());
  });
});
