import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { onCleanup } from "./cleanup.js";
import { within } from "./wait.js";

/** HTTP/2 frame types (RFC 9113 §6). */
export const H2Frame = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
} as const;

const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, first = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A header block of literal fields without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
export function hpackLiterals(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(Buffer.from([0x00, ...hpackInt(n.length, 7)]), n, Buffer.from(hpackInt(v.length, 7)), v);
  }
  return Buffer.concat(parts);
}

/**
 * An HTTP/2 client written frame by frame over TLS (ALPN h2), for what node:http2's client refuses to
 * do: more streams than the server allows, resets right after HEADERS, forbidden headers, streams after
 * GOAWAY, never granting flow-control window. It ACKs the server's SETTINGS and nothing else.
 */
export class RawH2 {
  readonly frames: RawFrame[] = [];
  readonly closed: Promise<void>;
  private buffered = Buffer.alloc(0);
  private waiters = new Set<() => void>();
  private nextId = 1;

  private constructor(readonly socket: TLSSocket) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 9) {
        const length = this.buffered.readUIntBE(0, 3);
        if (this.buffered.length < 9 + length) break;
        const frame: RawFrame = {
          type: this.buffered[3]!,
          flags: this.buffered[4]!,
          stream: this.buffered.readUInt32BE(5) & 0x7fffffff,
          payload: this.buffered.subarray(9, 9 + length),
        };
        this.buffered = this.buffered.subarray(9 + length);
        if (frame.type === H2Frame.SETTINGS && !(frame.flags & ACK)) this.frame(H2Frame.SETTINGS, ACK, 0);
        this.frames.push(frame);
      }
      for (const w of this.waiters) w();
    });
  }

  /**
   * Connects, sends the preface and SETTINGS (`settings`: id → value, e.g. 0x4 INITIAL_WINDOW_SIZE),
   * and waits for the server's SETTINGS.
   */
  static async connect(port: number, settings: Record<number, number> = {}): Promise<RawH2> {
    const socket = tlsConnect({ host: "127.0.0.1", port, ALPNProtocols: ["h2"], rejectUnauthorized: false });
    onCleanup(() => socket.destroy());
    await within(
      new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", () => resolve());
        socket.once("error", reject);
      }),
      5000,
      "TLS",
    );
    const peer = new RawH2(socket);
    const entries = Object.entries(settings);
    const body = Buffer.alloc(entries.length * 6);
    entries.forEach(([id, value], i) => {
      body.writeUInt16BE(Number(id), i * 6);
      body.writeUInt32BE(value, i * 6 + 2);
    });
    socket.write(PREFACE);
    peer.frame(H2Frame.SETTINGS, 0, 0, body);
    await peer.waitFor((f) => f.type === H2Frame.SETTINGS && !(f.flags & ACK), "the server's SETTINGS");
    return peer;
  }

  frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): void {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    this.socket.write(Buffer.concat([head, payload]));
  }

  /** Opens a stream with these fields (one HEADERS frame); returns its id. */
  headers(fields: ReadonlyArray<readonly [string, string]>, options: { endStream?: boolean } = {}): number {
    const id = this.nextId;
    this.nextId += 2;
    this.frame(
      H2Frame.HEADERS,
      END_HEADERS | (options.endStream ? END_STREAM : 0),
      id,
      hpackLiterals(fields),
    );
    return id;
  }

  /** An extended CONNECT for a WebSocket on `path` (RFC 8441), with extra fields. */
  connectWebSocket(path: string, extra: ReadonlyArray<readonly [string, string]> = []): number {
    return this.headers([
      [":method", "CONNECT"],
      [":protocol", "websocket"],
      [":scheme", "https"],
      [":path", path],
      [":authority", "127.0.0.1"],
      ["sec-websocket-version", "13"],
      ...extra,
    ]);
  }

  data(stream: number, payload: Buffer, endStream = false): void {
    this.frame(H2Frame.DATA, endStream ? END_STREAM : 0, stream, payload);
  }

  reset(stream: number, code = 0x8 /* CANCEL */): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(code);
    this.frame(H2Frame.RST_STREAM, 0, stream, payload);
  }

  windowUpdate(stream: number, increment: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(increment);
    this.frame(H2Frame.WINDOW_UPDATE, 0, stream, payload);
  }

  /** Frames received on a stream. */
  on(stream: number): RawFrame[] {
    return this.frames.filter((f) => f.stream === stream);
  }

  /**
   * The :status of a stream's response HEADERS when the server encoded it as an indexed field of the
   * static table (200, 204, 206, 304, 400, 404, 500); undefined otherwise or before it came.
   */
  status(stream: number): number | undefined {
    const headers = this.frames.find((f) => f.stream === stream && f.type === H2Frame.HEADERS);
    if (!headers) return undefined;
    const indexed: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };
    const first = headers.payload[0]!;
    return first & 0x80 ? indexed[first & 0x7f] : undefined;
  }

  /** The RST_STREAM code the server sent on a stream, if any. */
  resetCode(stream: number): number | undefined {
    const rst = this.frames.find((f) => f.stream === stream && f.type === H2Frame.RST_STREAM);
    return rst?.payload.readUInt32BE(0);
  }

  /** The server's GOAWAY (error code and last stream id), if any. */
  get goaway(): { code: number; lastStream: number } | undefined {
    const g = this.frames.find((f) => f.type === H2Frame.GOAWAY);
    return g && { lastStream: g.payload.readUInt32BE(0) & 0x7fffffff, code: g.payload.readUInt32BE(4) };
  }

  async waitFor(predicate: (frame: RawFrame) => boolean, what: string, ms = 5000): Promise<RawFrame> {
    let found: RawFrame | undefined;
    let check: () => void = () => {};
    try {
      await within(
        new Promise<void>((resolve) => {
          check = () => {
            found = this.frames.find(predicate);
            if (found) resolve();
          };
          this.waiters.add(check);
          check();
        }),
        ms,
        what,
      );
    } finally {
      this.waiters.delete(check);
    }
    return found!;
  }
}
