/**
 * A scripted WebSocket peer over node:net for model-based lifecycle tests. It shares no code with
 * `src/`: handshake, masking, framing and the parsing of what the server sends are written out here.
 *
 * What it does by itself is fixed by its options, so that a test's model can predict it: answer pings
 * (`autoPong`), and answer the server's Close with a Close carrying the same code and the reason "ack"
 * (`echoClose`), but only if it has not sent a Close, ended or reset first. Everything else is a test's
 * explicit step: frames (written together in one `write`), FIN, RST.
 */
import { createHash, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { constants, deflateRawSync } from "node:zlib";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export const OPCODE = { text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The reason this peer puts in the Close it sends to answer the server's. */
export const ECHO_REASON = "ack";

export interface PeerOptions {
  /** Offer permessage-deflate (the plain offer: both sides keep their compression context). */
  deflate: boolean;
  /** Keep our side of TCP open when the server ends its side. */
  allowHalfOpen: boolean;
  autoPong: boolean;
  echoClose: boolean;
}

/** A frame from the server, in arrival order. */
export interface PeerFrame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  masked: boolean;
  opcode: number;
  payload: Buffer;
}

export interface CloseInfo {
  /** 1005 when the Close frame had no payload. */
  code: number;
  reason: string;
}

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  /** RSV bits: 4 = RSV1, 2 = RSV2, 1 = RSV3. */
  rsv?: number;
  /** false: send unmasked (a protocol violation for a client). */
  mask?: boolean;
}

/** Bytes of one client frame (masked with a random key unless `mask` is false). */
export function peerFrame(spec: FrameSpec): Buffer {
  const payload =
    typeof spec.payload === "string" ? Buffer.from(spec.payload, "utf8") : (spec.payload ?? Buffer.alloc(0));
  const len = payload.length;
  const masked = spec.mask !== false;
  const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.alloc(headLen + (masked ? 4 : 0) + len);
  out[0] = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f);
  const maskBit = masked ? 0x80 : 0;
  if (len < 126) out[1] = maskBit | len;
  else if (len < 65536) {
    out[1] = maskBit | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = maskBit | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!masked) {
    payload.copy(out, headLen);
    return out;
  }
  const key = randomBytes(4);
  key.copy(out, headLen);
  for (let i = 0; i < len; i++) out[headLen + 4 + i] = payload[i]! ^ key[i & 3]!;
  return out;
}

/** A Close payload: the code (none when undefined) and a UTF-8 reason. */
export function closePayload(code: number | undefined, reason = ""): Buffer {
  if (code === undefined) return Buffer.alloc(0);
  const out = Buffer.alloc(2 + Buffer.byteLength(reason, "utf8"));
  out.writeUInt16BE(code, 0);
  out.write(reason, 2, "utf8");
  return out;
}

/** One message compressed with a fresh raw-deflate stream, sync-flushed, tail removed (RFC 7692 §7.2.1). */
export function deflateMessage(data: Buffer | string): Buffer {
  const out = deflateRawSync(data, { finishFlush: constants.Z_SYNC_FLUSH });
  if (!out.subarray(out.length - 4).equals(TAIL))
    throw new Error("a sync flush did not end with 00 00 ff ff");
  return out.subarray(0, out.length - 4);
}

export function closeInfoOf(frame: PeerFrame): CloseInfo {
  if (frame.payload.length < 2) return { code: 1005, reason: "" };
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString("utf8") };
}

export class ScriptedPeer {
  /** Every frame the server sent, in order. */
  readonly frames: PeerFrame[] = [];
  /** The first Close frame the server sent, its index in `frames`, and when it came (Date.now()). */
  closeReceived: (CloseInfo & { index: number; at: number }) | undefined;
  /** The Close frame we sent, if any: as an explicit step, or to answer the server's. */
  closeSent: (CloseInfo & { how: "explicit" | "echo" }) | undefined;
  finSent = false;
  rstSent = false;
  /** The server ended its side of TCP. */
  gotFin = false;
  isClosed = false;
  /** Something the server sent that is not a well-formed server frame. */
  parseError: string | undefined;
  readonly closed: Promise<void>;
  private buffered: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  private constructor(
    readonly socket: Socket,
    readonly options: PeerOptions,
    /** Whether the server accepted permessage-deflate. */
    readonly deflateAccepted: boolean,
    rest: Buffer,
  ) {
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
    socket.on("end", () => {
      this.gotFin = true;
      this.wake();
    });
    socket.on("error", () => {}); // a reset from the server: 'close' follows
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    if (rest.length > 0) this.receive(rest);
  }

  static connect(port: number, path: string, options: PeerOptions, ms = 3000): Promise<ScriptedPeer> {
    const key = randomBytes(16).toString("base64");
    let head =
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
    if (options.deflate) head += "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: options.allowHalfOpen });
    return new Promise<ScriptedPeer>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`timed out after ${ms} ms waiting for the opening handshake`));
      }, ms);
      let got = Buffer.alloc(0);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const onClose = () => fail(new Error("connection closed during the handshake"));
      const onData = (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        const end = got.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onData);
        socket.off("error", fail);
        socket.off("close", onClose);
        clearTimeout(timer);
        const [statusLine = "", ...lines] = got.subarray(0, end).toString("latin1").split("\r\n");
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(":");
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        if (!/^HTTP\/1\.1 101 /.test(statusLine)) return fail(new Error(`expected 101, got ${statusLine}`));
        const accept = createHash("sha1")
          .update(key + GUID)
          .digest("base64");
        if (headers["sec-websocket-accept"] !== accept) return fail(new Error("wrong Sec-WebSocket-Accept"));
        const extensions = headers["sec-websocket-extensions"] ?? "";
        const accepted = /^permessage-deflate\b/.test(extensions);
        if (accepted && !options.deflate) return fail(new Error(`extension not offered: ${extensions}`));
        resolve(new ScriptedPeer(socket, options, accepted, got.subarray(end + 4)));
      };
      socket.on("data", onData);
      socket.once("error", fail);
      socket.once("close", onClose);
      socket.once("connect", () => socket.write(`${head}\r\n`));
    });
  }

  /** Whether we may still write frames: no Close sent, no FIN, no RST, socket open. */
  get canSend(): boolean {
    return !this.closeSent && !this.finSent && !this.rstSent && !this.socket.destroyed;
  }

  /** Writes bytes in one `write` (several frames reach the server in one read, usually). */
  write(bytes: Buffer): void {
    if (bytes.length > 0 && !this.socket.destroyed) this.socket.write(bytes);
  }

  /** Records that a Close frame is among what is about to be written. */
  noteCloseSent(code: number | undefined, reason: string): void {
    this.closeSent = { code: code ?? 1005, reason, how: "explicit" };
  }

  /** FIN: ends our side of TCP without a Close frame. */
  fin(): void {
    this.finSent = true;
    this.socket.end();
  }

  /** RST: resets the connection. */
  reset(): void {
    this.rstSent = true;
    if (typeof this.socket.resetAndDestroy === "function") this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves when `condition` holds after something arrived (or at once); rejects after `ms`. */
  waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what} (peer got ${this.describe()})`));
      }, ms);
      this.waiters.push(check);
    });
  }

  describe(): string {
    const names = this.frames.map((f) =>
      f.opcode === OPCODE.close
        ? `close(${closeInfoOf(f).code})`
        : `op${f.opcode}${f.rsv1 ? "z" : ""}(${f.payload.length})`,
    );
    const flags = [this.gotFin ? "FIN" : "", this.isClosed ? "closed" : ""].filter(Boolean).join(", ");
    return `[${names.join(", ")}]${flags ? ` ${flags}` : ""}`;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    for (;;) {
      const b = this.buffered;
      if (b.length < 2) break;
      let len = b[1]! & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      const masked = (b[1]! & 0x80) !== 0;
      if (masked) offset += 4;
      if (b.length < offset + len) break;
      let payload = Buffer.from(b.subarray(offset, offset + len));
      if (masked) {
        this.parseError ??= "the server sent a masked frame";
        const key = b.subarray(offset - 4, offset);
        payload = Buffer.from(payload.map((x, i) => x ^ key[i & 3]!));
      }
      const frame: PeerFrame = {
        fin: (b[0]! & 0x80) !== 0,
        rsv1: (b[0]! & 0x40) !== 0,
        rsv2: (b[0]! & 0x20) !== 0,
        rsv3: (b[0]! & 0x10) !== 0,
        masked,
        opcode: b[0]! & 0x0f,
        payload,
      };
      this.buffered = b.subarray(offset + len);
      this.frames.push(frame);
      this.react(frame);
    }
    this.wake();
  }

  private react(frame: PeerFrame): void {
    if (frame.opcode === OPCODE.ping && this.options.autoPong && this.canSend) {
      this.socket.write(peerFrame({ opcode: OPCODE.pong, payload: frame.payload }));
    }
    if (frame.opcode !== OPCODE.close || this.closeReceived) return;
    const info = closeInfoOf(frame);
    this.closeReceived = { ...info, index: this.frames.length - 1, at: Date.now() };
    if (this.options.echoClose && this.canSend) {
      const code = frame.payload.length < 2 ? undefined : info.code;
      this.socket.write(peerFrame({ opcode: OPCODE.close, payload: closePayload(code, ECHO_REASON) }));
      this.closeSent = { code: code ?? 1005, reason: code === undefined ? "" : ECHO_REASON, how: "echo" };
    }
  }
}
