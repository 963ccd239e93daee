/**
 * A WebSocket client over node:net for the permessage-deflate tests: it sends hand-built masked frames and
 * records every frame the server sends, independently of sockway's own parser and serializer.
 */
import { randomFillSync } from "node:crypto";
import { connect, type Socket } from "node:net";
import { onCleanup, within } from "./deflate-helpers.js";

export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** A masked client frame, built byte by byte (RFC 6455 §5.2), independent of sockway's serializer. */
export function clientFrame(
  opcode: number,
  payload: Buffer | string = Buffer.alloc(0),
  options: { fin?: boolean; rsv1?: boolean } = {},
): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const len = data.length;
  const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.alloc(headLen + 4 + len);
  out[0] = ((options.fin ?? true) ? 0x80 : 0) | (options.rsv1 ? 0x40 : 0) | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  const mask = randomFillSync(Buffer.alloc(4));
  mask.copy(out, headLen);
  for (let i = 0; i < len; i++) out[headLen + 4 + i] = data[i]! ^ mask[i & 3]!;
  return out;
}

export interface ServerFrame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  masked: boolean;
  opcode: number;
  payload: Buffer;
}

/** The close code of a Close frame payload (1005 when empty). */
export const closeCodeOf = (frame: ServerFrame): number =>
  frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;

/**
 * A WebSocket client over node:net that sends hand-built frames and records every frame the server sends
 * (it answers nothing by itself).
 */
export class RawClient {
  readonly frames: ServerFrame[] = [];
  readonly closed: Promise<void>;
  private buffered = Buffer.alloc(0);
  private readIndex = 0;
  private waiters: Array<() => void> = [];

  private constructor(
    readonly socket: Socket,
    readonly status: number,
    /** Response headers, names in lower case. */
    readonly headers: Record<string, string>,
    rest: Buffer,
  ) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("close", () => this.wake());
    if (rest.length > 0) this.receive(rest);
  }

  /** Opens `path` on 127.0.0.1:port with the given Sec-WebSocket-Extensions offer (none when undefined). */
  static connect(port: number, path: string, extensions?: string): Promise<RawClient> {
    const socket = connect({ host: "127.0.0.1", port });
    onCleanup(() => socket.destroy());
    let head =
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    if (extensions !== undefined) head += `Sec-WebSocket-Extensions: ${extensions}\r\n`;
    const handshake = new Promise<RawClient>((resolve, reject) => {
      let got = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        const end = got.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onData);
        socket.off("error", reject);
        const [statusLine = "", ...lines] = got.subarray(0, end).toString("latin1").split("\r\n");
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(":");
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0);
        resolve(new RawClient(socket, status, headers, got.subarray(end + 4)));
      };
      socket.on("data", onData);
      socket.once("error", reject);
      socket.once("connect", () => socket.write(`${head}\r\n`));
    });
    return within(handshake, 3000, "the opening handshake");
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next frame not taken yet. */
  async next(ms = 3000): Promise<ServerFrame> {
    const deadline = Date.now() + ms;
    while (this.frames.length <= this.readIndex) {
      if (this.socket.destroyed && this.frames.length <= this.readIndex)
        throw new Error(`socket closed while waiting for frame #${this.readIndex + 1}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for frame #${this.readIndex + 1}`);
      await within(
        new Promise<void>((resolve) => this.waiters.push(resolve)),
        left,
        `frame #${this.readIndex + 1}`,
      );
    }
    return this.frames[this.readIndex++]!;
  }

  /** Skips to the server's Close frame and returns its code. */
  async nextCloseCode(ms = 3000): Promise<number> {
    for (;;) {
      const frame = await this.next(ms);
      if (frame.opcode === OP.close) return closeCodeOf(frame);
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
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
      this.frames.push({
        fin: (b[0]! & 0x80) !== 0,
        rsv1: (b[0]! & 0x40) !== 0,
        rsv2: (b[0]! & 0x20) !== 0,
        rsv3: (b[0]! & 0x10) !== 0,
        masked,
        opcode: b[0]! & 0x0f,
        payload: Buffer.from(b.subarray(offset, offset + len)),
      });
      this.buffered = b.subarray(offset + len);
    }
    this.wake();
  }
}
