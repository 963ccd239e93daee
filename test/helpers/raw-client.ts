import { randomFillSync } from "node:crypto";
import { connect, type Socket } from "node:net";
import {
  computeAccept,
  encodeFrame,
  type FrameHeader,
  FrameParser,
  type FrameSink,
  Opcode,
  type ProtocolError,
} from "../../src/protocol/index.js";
import { onCleanup } from "./cleanup.js";
import { parseResponse, type RawResponse } from "./http.js";
import { within } from "./wait.js";

/** A frame as the server put it on the wire (payload unmasked if it was masked). */
export interface ReceivedFrame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

export interface SendOptions {
  fin?: boolean;
  rsv1?: boolean;
  /** A 4-byte masking key (default: random), or false to send the frame unmasked (a protocol violation). */
  mask?: Uint8Array | false;
}

export interface RawClientOptions {
  /** Extra or replaced handshake headers (e.g. Origin, Sec-WebSocket-Protocol). */
  headers?: Readonly<Record<string, string>>;
  /** Bytes written right after the request head, in the same write (they reach the server as `head`). */
  after?: Buffer;
  /** Keep our side of TCP open when the server ends its side (a peer that never closes). */
  allowHalfOpen?: boolean;
}

/** Decodes the close payload of a frame: code 1005 when it is empty. */
export function closeInfo(frame: ReceivedFrame): { code: number; reason: string } {
  if (frame.payload.length < 2) return { code: 1005, reason: "" };
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString("utf8") };
}

/** A close payload: 2-byte code and UTF-8 reason. */
export function closePayload(code: number, reason = ""): Buffer {
  const out = Buffer.alloc(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code, 0);
  out.write(reason, 2);
  return out;
}

/** The bytes of one client frame, masked with `mask` (random by default) unless `mask` is false. */
export function clientFrame(opcode: number, payload: Uint8Array | string, options: SendOptions = {}): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const mask = options.mask === false ? undefined : (options.mask ?? randomFillSync(new Uint8Array(4)));
  return Buffer.concat(
    encodeFrame(opcode, data, { fin: options.fin ?? true, rsv1: options.rsv1 ?? false, mask }),
  );
}

/**
 * A WebSocket client with full control over bytes and timing: it performs the opening handshake over
 * node:net, then sends whatever frames (or bytes) a test asks for, and records every frame the server
 * sends without answering anything by itself (no pongs, no close echo) unless told to.
 */
export class RawClient implements FrameSink {
  /** Every frame received from the server, in order. */
  readonly frames: ReceivedFrame[] = [];
  /** Resolves when the server ends its side of TCP (FIN). */
  readonly ended: Promise<void>;
  /** Resolves when the socket is fully closed; `closedAt` holds the time. */
  readonly closed: Promise<void>;
  closedAt = 0;
  /** Bytes received after the handshake, frames included. */
  bytesReceived = 0;
  parseError: ProtocolError | undefined;

  private readonly parser = new FrameParser(this);
  private current: ReceivedFrame | undefined;
  private pieces: Buffer[] = [];
  private readIndex = 0;
  private listeners: Array<() => void> = [];

  private constructor(
    readonly socket: Socket,
    /** The server's 101 response. */
    readonly response: RawResponse,
    rest: Buffer,
  ) {
    this.ended = new Promise((resolve) => socket.once("end", resolve));
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.closedAt = Date.now();
        resolve();
      }),
    );
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    if (rest.length > 0) this.receive(rest);
  }

  /** Connects to 127.0.0.1:port, sends the opening handshake for `path`, and checks the 101 answer. */
  static connect(port: number, path: string, options: RawClientOptions = {}): Promise<RawClient> {
    const key = randomFillSync(Buffer.alloc(16)).toString("base64");
    const headers: Record<string, string> = {
      Host: `127.0.0.1:${port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": key,
      "Sec-WebSocket-Version": "13",
      ...options.headers,
    };
    let head = `GET ${path} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    const request = Buffer.concat([Buffer.from(`${head}\r\n`, "latin1"), options.after ?? Buffer.alloc(0)]);

    const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: options.allowHalfOpen ?? false });
    onCleanup(() => socket.destroy());
    const handshake = new Promise<RawClient>((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onData);
        socket.off("error", reject);
        socket.off("close", onClose);
        const response = parseResponse(buffered.subarray(0, end + 4));
        if (response.status !== 101) {
          reject(new Error(`expected 101, got ${response.status}: ${buffered.subarray(end + 4).toString()}`));
          return;
        }
        if (response.headers["sec-websocket-accept"] !== computeAccept(key)) {
          reject(new Error("wrong Sec-WebSocket-Accept"));
          return;
        }
        resolve(new RawClient(socket, response, buffered.subarray(end + 4)));
      };
      const onClose = () => reject(new Error("connection closed during the handshake"));
      socket.on("data", onData);
      socket.once("error", reject);
      socket.once("close", onClose);
      socket.once("connect", () => socket.write(request));
    });
    return within(handshake, 3000, "the opening handshake");
  }

  // ---- sending ----------------------------------------------------------------------------------

  /** Writes one frame; returns what `socket.write` returned (false: the socket's buffer is full). */
  send(opcode: number, payload: Uint8Array | string = "", options: SendOptions = {}): boolean {
    return this.socket.write(clientFrame(opcode, payload, options));
  }

  sendText(text: string, options: SendOptions = {}): boolean {
    return this.send(Opcode.Text, text, options);
  }

  sendBinary(data: Uint8Array, options: SendOptions = {}): boolean {
    return this.send(Opcode.Binary, data, options);
  }

  sendClose(code?: number, reason = ""): boolean {
    return this.send(Opcode.Close, code === undefined ? Buffer.alloc(0) : closePayload(code, reason));
  }

  /** Writes raw bytes. */
  write(bytes: Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---- receiving --------------------------------------------------------------------------------

  /** The next frame not yet taken with `next`/`nextData`, waiting for it if needed. */
  async next(ms = 2000): Promise<ReceivedFrame> {
    await within(
      this.waitUntil(() => this.frames.length > this.readIndex),
      ms,
      `frame #${this.readIndex + 1} from the server (got ${this.describe()})`,
    );
    return this.frames[this.readIndex++]!;
  }

  /** The next frame that is not a ping or pong. */
  async nextData(ms = 2000): Promise<ReceivedFrame> {
    for (;;) {
      const frame = await this.next(ms);
      if (frame.opcode !== Opcode.Ping && frame.opcode !== Opcode.Pong) return frame;
    }
  }

  /** Waits for the server's Close frame (skipping anything before it) and decodes it. */
  async nextClose(ms = 2000): Promise<{ code: number; reason: string }> {
    for (;;) {
      const frame = await this.next(ms);
      if (frame.opcode === Opcode.Close) return closeInfo(frame);
    }
  }

  /** Resolves once `condition` holds after some received frame (or at once if it already holds). */
  waitUntil(condition: () => boolean): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      this.listeners.push(check);
    });
  }

  private describe(): string {
    const names = this.frames.map((f) => `op${f.opcode}${f.fin ? "" : "+"}(${f.payload.length})`);
    return `[${names.join(", ")}]${this.socket.destroyed ? ", socket closed" : ""}`;
  }

  private receive(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    this.parser.push(chunk);
  }

  onHeader(h: FrameHeader): boolean {
    this.current = { fin: h.fin, rsv1: h.rsv1, opcode: h.opcode, masked: h.masked, payload: Buffer.alloc(0) };
    this.pieces = [];
    return true;
  }

  onPayload(piece: Buffer): boolean {
    this.pieces.push(Buffer.from(piece));
    return true;
  }

  onFrameEnd(): boolean {
    const frame = this.current!;
    frame.payload = Buffer.concat(this.pieces);
    this.pieces = [];
    this.frames.push(frame);
    for (const listener of [...this.listeners]) listener();
    return true;
  }

  onHeaderError(error: ProtocolError): void {
    this.parseError = error;
  }
}
