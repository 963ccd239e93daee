// @ts-check
/**
 * The ceiling for a WebSocket server on Node: node:net, a hand-written handshake, then every client
 * frame is echoed back as an unmasked server frame with as little work as possible, in one pass per
 * socket read: small payloads are unmasked into a single output buffer with their new headers, large
 * pieces (>= 1 KiB) are unmasked in place (native bufferutil when installed) and written from the read
 * buffer itself, without a copy; one write (or writev) per read. No UTF-8 validation, no reassembly, no
 * limits, no extensions: not a usable server.
 *   node bench/servers/raw-net.js                          → READY <port>
 *   BENCH_MODE=broadcast: each read's complete data frames are written to every connection.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import net from "node:net";
import { broadcast, ready } from "./common.js";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const HEAD_LIMIT = 8 * 1024;

/** Payload pieces at least this long are unmasked in place and written without a copy. */
const IN_PLACE = 1024;

/** @type {((source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number) => void) | undefined} */
let nativeMask;
/** @type {((buffer: Buffer, mask: Buffer) => void) | undefined} */
let nativeUnmask;
try {
  const bufferutil = createRequire(import.meta.url)("bufferutil");
  nativeMask = bufferutil.mask;
  nativeUnmask = bufferutil.unmask;
} catch {
  nativeMask = undefined;
  nativeUnmask = undefined;
}

/** @type {Set<net.Socket>} */
const members = new Set();

/**
 * Per-connection frame state. `out` receives, for each read, the server frames of the data frames in it.
 */
class Echo {
  constructor(/** @type {net.Socket} */ socket) {
    this.socket = socket;
    /** Bytes of a frame header split across reads. */
    this.partial = /** @type {Buffer | undefined} */ (undefined);
    this.remaining = 0; // payload bytes of the current frame still to come
    this.mask = Buffer.alloc(4);
    this.rotated = Buffer.alloc(4);
    this.maskPos = 0;
    this.opcode = 0;
    /** Payload of a control frame being collected (at most 125 bytes). */
    this.control = /** @type {Buffer[] | undefined} */ (undefined);
    /** Broadcast mode: bytes of a server frame not complete at the end of the previous read. */
    this.carry = /** @type {Buffer | undefined} */ (undefined);
  }

  /** @param {Buffer} chunk */
  onData(chunk) {
    if (this.partial) {
      chunk = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    const n = chunk.length;
    const out = Buffer.allocUnsafe(n + 10);
    let o = 0;
    /** Echo mode: what to write, in order, when large pieces are sent from `chunk` itself. */
    /** @type {Buffer[] | undefined} */
    let pieces;
    let flushed = 0; // out[0..flushed) is already in `pieces`
    let complete = 0; // broadcast: end of the last complete frame in `out`
    let i = 0;
    while (i < n) {
      if (this.remaining === 0 && this.control === undefined) {
        // Frame header: 2 bytes, extended length, 4-byte mask.
        if (n - i < 2) break;
        const b0 = chunk[i] ?? 0;
        const b1 = chunk[i + 1] ?? 0;
        let len = b1 & 0x7f;
        let h = 2;
        if (len === 126) {
          if (n - i < 4) break;
          len = chunk.readUInt16BE(i + 2);
          h = 4;
        } else if (len === 127) {
          if (n - i < 10) break;
          len = chunk.readUInt32BE(i + 2) * 0x1_0000_0000 + chunk.readUInt32BE(i + 6);
          h = 10;
        }
        if (n - i < h + 4) break;
        chunk.copy(this.mask, 0, i + h, i + h + 4);
        i += h + 4;
        this.maskPos = 0;
        this.opcode = b0 & 0x0f;
        this.remaining = len;
        if (this.opcode >= 8) {
          this.control = [];
        } else {
          out[o++] = b0 & 0x8f;
          if (len < 126) out[o++] = len;
          else if (len < 65536) {
            out[o++] = 126;
            out.writeUInt16BE(len, o);
            o += 2;
          } else {
            out[o++] = 127;
            out.writeUInt32BE(Math.floor(len / 0x1_0000_0000), o);
            out.writeUInt32BE(len >>> 0, o + 4);
            o += 8;
          }
        }
      }
      const take = Math.min(this.remaining, n - i);
      if (this.control) {
        const piece = Buffer.from(chunk.subarray(i, i + take));
        unmaskJs(piece, 0, piece, 0, take, this.mask, this.maskPos);
        this.control.push(piece);
      } else if (take >= IN_PLACE && !broadcast) {
        const piece = chunk.subarray(i, i + take);
        unmaskInPlace(piece, this.mask, this.maskPos, this.rotated);
        pieces ??= [];
        if (o > flushed) pieces.push(out.subarray(flushed, o));
        pieces.push(piece);
        flushed = o;
      } else if (take > 0) {
        unmaskInto(chunk, i, out, o, take, this.mask, this.maskPos, this.rotated);
        o += take;
      }
      i += take;
      this.remaining -= take;
      this.maskPos = (this.maskPos + take) & 3;
      if (this.remaining === 0) {
        if (this.control) {
          this.onControl(Buffer.concat(this.control));
          this.control = undefined;
        } else {
          complete = o;
        }
      }
    }
    if (i < n) this.partial = Buffer.from(chunk.subarray(i));
    if (broadcast) this.broadcast(out, o, complete);
    else if (pieces) {
      if (o > flushed) pieces.push(out.subarray(flushed, o));
      this.socket.cork();
      for (const p of pieces) this.socket.write(p);
      this.socket.uncork();
    } else if (o > 0) this.socket.write(out.subarray(0, o));
  }

  /** Broadcast mode: complete frames go to everyone; an incomplete one waits for the next read. */
  broadcast(/** @type {Buffer} */ out, /** @type {number} */ o, /** @type {number} */ complete) {
    let data = out.subarray(0, complete);
    if (this.carry && complete > 0) data = Buffer.concat([this.carry, data]);
    if (complete > 0) {
      this.carry = undefined;
      for (const m of members) m.write(data);
    }
    if (o > complete) {
      const rest = out.subarray(complete, o);
      this.carry = this.carry ? Buffer.concat([this.carry, rest]) : Buffer.from(rest);
    }
  }

  /** Ping → pong; close → close (same payload), then end TCP (the server closes first). */
  onControl(/** @type {Buffer} */ payload) {
    if (this.opcode === 0x9) this.socket.write(Buffer.concat([Buffer.of(0x8a, payload.length), payload]));
    else if (this.opcode === 0x8) {
      this.socket.end(Buffer.concat([Buffer.of(0x88, payload.length), payload]));
    }
  }
}

/**
 * XORs `length` bytes of `src` from `at` with the mask (starting at mask byte `phase`) into `dst` at
 * `to`. Native for longer runs, JS below: a native call costs more than a few dozen bytes of JS.
 */
function unmaskInto(
  /** @type {Buffer} */ src,
  /** @type {number} */ at,
  /** @type {Buffer} */ dst,
  /** @type {number} */ to,
  /** @type {number} */ length,
  /** @type {Buffer} */ mask,
  /** @type {number} */ phase,
  /** @type {Buffer} */ rotated,
) {
  if (nativeMask && length >= 128) {
    for (let k = 0; k < 4; k++) rotated[k] = mask[(phase + k) & 3] ?? 0;
    nativeMask(src.subarray(at, at + length), rotated, dst, to, length);
  } else {
    unmaskJs(src, at, dst, to, length, mask, phase);
  }
}

/** XORs `data` in place with the mask starting at mask byte `phase`. */
function unmaskInPlace(
  /** @type {Buffer} */ data,
  /** @type {Buffer} */ mask,
  /** @type {number} */ phase,
  /** @type {Buffer} */ rotated,
) {
  if (nativeUnmask) {
    for (let k = 0; k < 4; k++) rotated[k] = mask[(phase + k) & 3] ?? 0;
    nativeUnmask(data, rotated);
  } else {
    unmaskJs(data, 0, data, 0, data.length, mask, phase);
  }
}

function unmaskJs(
  /** @type {Buffer} */ src,
  /** @type {number} */ at,
  /** @type {Buffer} */ dst,
  /** @type {number} */ to,
  /** @type {number} */ length,
  /** @type {Buffer} */ mask,
  /** @type {number} */ phase,
) {
  for (let k = 0; k < length; k++) dst[to + k] = (src[at + k] ?? 0) ^ (mask[(phase + k) & 3] ?? 0);
}

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on("error", () => socket.destroy());
  /** @type {Buffer[]} */
  const head = [];
  let headBytes = 0;
  const onHead = (/** @type {Buffer} */ chunk) => {
    head.push(chunk);
    headBytes += chunk.length;
    const all = head.length === 1 ? chunk : Buffer.concat(head);
    const end = all.indexOf("\r\n\r\n");
    if (end < 0) {
      if (headBytes > HEAD_LIMIT) socket.destroy();
      return;
    }
    socket.off("data", onHead);
    const key = /^sec-websocket-key:[ \t]*(\S+)/im.exec(all.toString("latin1", 0, end))?.[1];
    if (!key) {
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      return;
    }
    const accept = createHash("sha1")
      .update(key + GUID)
      .digest("base64");
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const echo = new Echo(socket);
    if (broadcast) {
      members.add(socket);
      socket.on("close", () => members.delete(socket));
    }
    socket.on("data", (/** @type {Buffer} */ data) => echo.onData(data));
    if (all.length > end + 4) echo.onData(all.subarray(end + 4));
  };
  socket.on("data", onHead);
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  ready(typeof address === "object" && address ? address.port : 0);
});
