// @ts-check
/**
 * The client side of RFC 6455 that the load generator needs, kept cheap: connecting and the opening
 * handshake, masked client frames built once, and a counter of server frames that only reads headers.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import zlib from "node:zlib";

/** One masking key for every prebuilt frame: the server's unmasking work does not depend on it. */
export const MASK = randomBytes(4);

/** Opcodes. */
export const TEXT = 0x1;
export const BINARY = 0x2;
export const CLOSE = 0x8;

/**
 * A masked client frame. `rsv1` marks a permessage-deflate compressed payload.
 * @param {number} opcode
 * @param {Buffer} payload
 * @param {{ rsv1?: boolean }} [options]
 */
export function clientFrame(opcode, payload, options = {}) {
  const len = payload.length;
  const h = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(h + 4 + len);
  frame[0] = 0x80 | (options.rsv1 ? 0x40 : 0) | opcode;
  if (len < 126) frame[1] = 0x80 | len;
  else if (len < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(len / 0x1_0000_0000), 2);
    frame.writeUInt32BE(len >>> 0, 6);
  }
  MASK.copy(frame, h);
  for (let i = 0; i < len; i++) frame[h + 4 + i] = (payload[i] ?? 0) ^ (MASK[i & 3] ?? 0);
  return frame;
}

/** A masked Close frame with code 1000. */
export const CLOSE_FRAME = clientFrame(CLOSE, Buffer.of(0x03, 0xe8));

/**
 * Compresses one message for permessage-deflate (RFC 7692 §7.2.1) on its own, with an empty window:
 * such a message inflates correctly whatever the server's inflater saw before (it refers to nothing
 * earlier), so one prebuilt frame can be sent again and again under context takeover.
 */
export function deflateMessage(/** @type {Buffer} */ payload) {
  const out = zlib.deflateRawSync(payload, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  if (out.subarray(-4).equals(Buffer.of(0, 0, 0xff, 0xff))) return out.subarray(0, -4);
  throw new Error("deflate output does not end with a sync flush");
}

/**
 * A run of frames laid end to end so that any `k` consecutive frames starting at frame `j` (j below
 * `variants`) are one subarray: `slice(j, k)` writes k messages with a single socket write and no copy.
 */
export class FrameRing {
  /**
   * @param {Buffer[]} frames the distinct frames, sent in turn
   * @param {number} maxRun most frames one slice may hold
   */
  constructor(frames, maxRun) {
    this.variants = frames.length;
    this.maxRun = maxRun;
    const total = frames.length + maxRun;
    /** @type {number[]} */
    this.offsets = [0];
    let bytes = 0;
    for (let i = 0; i < total; i++) {
      bytes += frames[i % frames.length]?.length ?? 0;
      this.offsets.push(bytes);
    }
    this.buffer = Buffer.allocUnsafe(bytes);
    for (let i = 0; i < total; i++) {
      const f = /** @type {Buffer} */ (frames[i % frames.length]);
      f.copy(this.buffer, this.offsets[i] ?? 0);
    }
  }

  /** `k` frames (at most maxRun) starting at variant `j`. */
  slice(/** @type {number} */ j, /** @type {number} */ k) {
    return this.buffer.subarray(this.offsets[j] ?? 0, this.offsets[j + k] ?? 0);
  }
}

/**
 * Counts the whole data messages in a stream of server frames by reading headers only (payloads are
 * skipped, not looked at). Control frames are not counted; a Close frame sets `closed`.
 */
export class FrameCounter {
  constructor() {
    this.skip = 0; // payload bytes of the current frame still to skip
    this.counts = false; // the current frame ends a data message
    /** @type {Buffer | undefined} */
    this.partial = undefined;
    this.closed = false;
    this.compressed = 0; // frames with RSV1 set
  }

  /** Returns the number of data messages completed by this chunk. */
  push(/** @type {Buffer} */ chunk) {
    if (this.partial) {
      chunk = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    const n = chunk.length;
    let i = 0;
    let count = 0;
    for (;;) {
      if (this.skip > 0) {
        const left = n - i;
        if (left < this.skip) {
          this.skip -= left;
          return count;
        }
        i += this.skip;
        this.skip = 0;
        if (this.counts) count++;
      }
      if (i >= n) return count;
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
      if (b1 & 0x80) h += 4; // a masked server frame is a protocol error, but skip it right
      if (n - i < h) break;
      const opcode = b0 & 0x0f;
      if (b0 & 0x40) this.compressed++;
      if (opcode === CLOSE) this.closed = true;
      this.counts = (b0 & 0x80) !== 0 && opcode < 8;
      i += h;
      if (len === 0) {
        if (this.counts) count++;
      } else {
        this.skip = len;
      }
    }
    this.partial = Buffer.from(chunk.subarray(i));
    return count;
  }
}

/**
 * Whole server messages, payloads included, for checking echoes (slow; only the verify step uses it).
 */
export class MessageReader {
  constructor() {
    this.buffer = Buffer.alloc(0);
    /** @type {Buffer[]} */
    this.fragments = [];
    this.opcode = 0;
    this.rsv1 = false;
  }

  /** @returns {{ opcode: number, rsv1: boolean, payload: Buffer }[]} */
  push(/** @type {Buffer} */ chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    const messages = [];
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) break;
      let len = (b[1] ?? 0) & 0x7f;
      let h = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        h = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        h = 10;
      }
      if ((b[1] ?? 0) & 0x80) throw new Error("the server masked a frame");
      if (b.length < h + len) break;
      const b0 = b[0] ?? 0;
      const opcode = b0 & 0x0f;
      const payload = b.subarray(h, h + len);
      this.buffer = b.subarray(h + len);
      if (opcode >= 8) {
        messages.push({ opcode, rsv1: false, payload });
        continue;
      }
      if (opcode !== 0) {
        this.opcode = opcode;
        this.rsv1 = (b0 & 0x40) !== 0;
      }
      this.fragments.push(payload);
      if (b0 & 0x80) {
        messages.push({ opcode: this.opcode, rsv1: this.rsv1, payload: Buffer.concat(this.fragments) });
        this.fragments = [];
      }
    }
    return messages;
  }
}

const KEYS = Array.from({ length: 64 }, () => randomBytes(16).toString("base64"));
let keyIndex = 0;

/** The upgrade request; `deflate` offers plain permessage-deflate, as a browser does minus window bits. */
export function upgradeRequest(/** @type {number} */ port, /** @type {boolean} */ deflate) {
  const key = KEYS[keyIndex++ & 63];
  return (
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    (deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "") +
    "\r\n"
  );
}

/**
 * One read buffer for every socket that counts frames: reads happen one at a time on this thread and
 * nothing keeps a view of it past the callback, so no Buffer is allocated per read.
 */
const SHARED_READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/**
 * Opens a TCP connection and runs the opening handshake. Resolves with the socket, the bytes that came
 * after the response head, and `setReader` to receive what comes next. With `sharedBuffer`, the reader
 * gets views of a buffer that is reused after it returns (copy what must be kept).
 * @param {number} port
 * @param {{ deflate?: boolean, timeoutMs?: number, sharedBuffer?: boolean }} [options]
 * @returns {Promise<{ socket: net.Socket, rest: Buffer, head: string, setReader: (reader: (chunk: Buffer) => void) => void }>}
 */
export function connectWebSocket(port, options = {}) {
  const deflate = options.deflate ?? false;
  return new Promise((resolve, reject) => {
    /** @type {((chunk: Buffer) => void) | undefined} */
    let reader;
    /** @type {Buffer[]} */
    const chunks = [];
    let handshaking = true;
    const onHead = (/** @type {Buffer} */ chunk) => {
      chunks.push(Buffer.from(chunk));
      const all = chunks.length === 1 ? /** @type {Buffer} */ (chunks[0]) : Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) return;
      handshaking = false;
      clearTimeout(timer);
      socket.removeAllListeners("error");
      socket.removeAllListeners("close");
      const head = all.toString("latin1", 0, end);
      if (!head.startsWith("HTTP/1.1 101")) {
        fail(new Error(`handshake refused: ${head.split("\r\n")[0]}`));
        return;
      }
      if (deflate && !/^sec-websocket-extensions:.*permessage-deflate/im.test(head)) {
        fail(new Error("the server did not accept permessage-deflate"));
        return;
      }
      const setReader = (/** @type {(chunk: Buffer) => void} */ r) => {
        reader = r;
      };
      resolve({ socket, rest: all.subarray(end + 4), head, setReader });
    };
    const onData = (/** @type {Buffer} */ chunk) => {
      if (handshaking) onHead(chunk);
      else reader?.(chunk);
    };
    const socket = options.sharedBuffer
      ? net.connect({
          port,
          host: "127.0.0.1",
          noDelay: true,
          onread: {
            buffer: SHARED_READ_BUFFER,
            callback: (n, buffer) => {
              onData(/** @type {Buffer} */ (buffer).subarray(0, n));
              return true;
            },
          },
        })
      : net.connect({ port, host: "127.0.0.1", noDelay: true });
    if (!options.sharedBuffer) socket.on("data", onData);
    const timer = setTimeout(() => fail(new Error("handshake timeout")), options.timeoutMs ?? 20_000);
    const fail = (/** @type {Error} */ error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", fail);
    socket.once("close", () => fail(new Error("closed during the handshake")));
    socket.once("connect", () => socket.write(upgradeRequest(port, deflate)));
  });
}

/** Runs `task(i)` for i in [0, count) with at most `limit` at once; rejects on the first failure. */
export async function pool(
  /** @type {number} */ count,
  /** @type {number} */ limit,
  /** @type {(i: number) => Promise<void>} */ task,
) {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}
