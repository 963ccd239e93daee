/**
 * A raw-socket WebSocket test client for wire-level tests (RFC 6455).
 *
 * It talks node:net to 127.0.0.1, performs the opening handshake by hand (or sends any handshake bytes),
 * then writes arbitrary bytes: any framing, masks, length forms and chunking, with pauses between
 * chunks. Everything the server sends back is recorded: the HTTP response head, every frame (parsed by
 * the small independent parser below, not by sockway's), and when the server closed TCP.
 *
 * Deliberately shares no code with `src/protocol/`: a bug in sockway's parser must not hide itself here.
 */
import { createHash, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { createApp, WebSockets, type WebSocketsOptions } from "../../src/index.js";

export { sleep };

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export const OP = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

// ---- building frames ------------------------------------------------------------------------------

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | Uint8Array | string;
  /** Default true. */
  fin?: boolean;
  /** RSV bits as a 3-bit number: 4 = RSV1, 2 = RSV2, 1 = RSV3. */
  rsv?: number;
  /** A 4-byte key, `true` for a random key (default), or `false` for an unmasked frame. */
  mask?: Buffer | boolean;
  /** Force the length encoding (default: the minimal one). */
  lengthForm?: 7 | 16 | 64;
  /** Announce this payload length instead of the real one (for header-only or lying frames). */
  length?: number | bigint;
}

/** Bytes of one client frame. */
export function frame(spec: FrameSpec): Buffer {
  const payload = toBytes(spec.payload ?? Buffer.alloc(0));
  const length = BigInt(spec.length ?? payload.length);
  const form = spec.lengthForm ?? (length < 126n ? 7 : length < 65536n ? 16 : 64);
  const fin = spec.fin ?? true;
  const rsv = spec.rsv ?? 0;
  const key = spec.mask === false ? undefined : Buffer.isBuffer(spec.mask) ? spec.mask : randomBytes(4);
  const head: number[] = [(fin ? 0x80 : 0) | ((rsv & 7) << 4) | (spec.opcode & 0x0f)];
  const maskBit = key ? 0x80 : 0;
  if (form === 7) {
    head.push(maskBit | Number(length));
  } else if (form === 16) {
    head.push(maskBit | 126, Number((length >> 8n) & 0xffn), Number(length & 0xffn));
  } else {
    head.push(maskBit | 127);
    for (let shift = 56n; shift >= 0n; shift -= 8n) head.push(Number((length >> shift) & 0xffn));
  }
  const body = Buffer.from(payload);
  if (key) {
    head.push(...key);
    for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i & 3]!;
  }
  return Buffer.concat([Buffer.from(head), body]);
}

/** A close payload: 2-byte code then the reason (string or raw bytes). */
export function closePayload(code: number, reason: string | Buffer = ""): Buffer {
  const r = typeof reason === "string" ? Buffer.from(reason, "utf8") : reason;
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

export const text = (s: string | Buffer, extra: Omit<FrameSpec, "opcode" | "payload"> = {}) =>
  frame({ opcode: OP.text, payload: s, ...extra });
export const binary = (b: Buffer | Uint8Array, extra: Omit<FrameSpec, "opcode" | "payload"> = {}) =>
  frame({ opcode: OP.binary, payload: b, ...extra });
export const ping = (p: Buffer | string = "") => frame({ opcode: OP.ping, payload: p });
export const pong = (p: Buffer | string = "") => frame({ opcode: OP.pong, payload: p });
export const close = (code?: number, reason: string | Buffer = "") =>
  frame({ opcode: OP.close, payload: code === undefined ? Buffer.alloc(0) : closePayload(code, reason) });

function toBytes(data: Buffer | Uint8Array | string): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// ---- parsing what the server sends ---------------------------------------------------------------

export interface ServerFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  /** How the length was encoded: 7-bit, 16-bit or 64-bit form. */
  lengthForm: 7 | 16 | 64;
  /** The length form is the minimal one for the payload (§5.2). */
  minimalLength: boolean;
  payload: Buffer;
  /** The frame's bytes exactly as received. */
  raw: Buffer;
  /** performance.now() when the frame was complete. */
  at: number;
}

/** A minimal, independent RFC 6455 §5.2 frame parser for server frames. */
class ServerFrameParser {
  private buffer: Buffer = Buffer.alloc(0);
  error: string | undefined;

  push(chunk: Buffer, at: number): ServerFrame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const out: ServerFrame[] = [];
    while (!this.error && this.buffer.length >= 2) {
      const b = this.buffer;
      const b0 = b[0]!;
      const b1 = b[1]!;
      const masked = (b1 & 0x80) !== 0;
      const len7 = b1 & 0x7f;
      const lengthForm = len7 < 126 ? 7 : len7 === 126 ? 16 : 64;
      const headerSize = (lengthForm === 7 ? 2 : lengthForm === 16 ? 4 : 10) + (masked ? 4 : 0);
      if (b.length < headerSize) break;
      let length: number;
      if (lengthForm === 7) length = len7;
      else if (lengthForm === 16) length = b.readUInt16BE(2);
      else {
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.error = `server frame length ${big} is absurd`;
          break;
        }
        length = Number(big);
      }
      if (b.length < headerSize + length) break;
      const payload = Buffer.from(b.subarray(headerSize, headerSize + length));
      if (masked) {
        const key = b.subarray(headerSize - 4, headerSize);
        for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
      }
      const minimalLength = lengthForm === 7 ? true : lengthForm === 16 ? length >= 126 : length >= 65536;
      out.push({
        fin: (b0 & 0x80) !== 0,
        rsv: (b0 >> 4) & 7,
        opcode: b0 & 0x0f,
        masked,
        lengthForm,
        minimalLength,
        payload,
        raw: Buffer.from(b.subarray(0, headerSize + length)),
        at,
      });
      this.buffer = b.subarray(headerSize + length);
    }
    return out;
  }
}

// ---- HTTP response head --------------------------------------------------------------------------

export interface HttpResponse {
  status: number;
  statusText: string;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The body, per Content-Length (empty for 101; raw chunks when chunked). */
  body: string;
  raw: string;
}

function parseHead(head: string): Omit<HttpResponse, "body" | "raw"> {
  const [statusLine = "", ...lines] = head.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(statusLine);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(m[1]), statusText: m[2] ?? "", headers };
}

/** A request head for the opening handshake (§4.1), with overridable headers (`undefined` drops one). */
export function handshakeRequest(
  options: {
    path?: string;
    method?: string;
    key?: string;
    headers?: Record<string, string | undefined>;
  } = {},
): string {
  const headers: Record<string, string | undefined> = {
    Host: "127.0.0.1",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": options.key ?? randomBytes(16).toString("base64"),
    "Sec-WebSocket-Version": "13",
    ...options.headers,
  };
  let head = `${options.method ?? "GET"} ${options.path ?? "/echo"} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}

export function acceptFor(key: string): string {
  return createHash("sha1")
    .update(key + GUID)
    .digest("base64");
}

// ---- the client ----------------------------------------------------------------------------------

export interface CloseResult {
  /** A Close frame arrived. */
  closeFrame: boolean;
  /** Its status code; undefined for an empty Close frame (or none). */
  code: number | undefined;
  reason: string;
  /** Its payload bytes (code + reason). */
  payload: Buffer;
  /** The server closed TCP cleanly: a FIN arrived ('end'), not just a reset. */
  tcpClosed: boolean;
  /** When the Close frame arrived, and when TCP was closed (performance.now()). */
  closeFrameAt: number | undefined;
  tcpClosedAt: number | undefined;
  /** Every frame received before the Close frame (not consumed by nextFrame). */
  before: ServerFrame[];
  /** Frames received after the Close frame (there must be none). */
  after: ServerFrame[];
}

/**
 * How long a test waits for something the server should do at once (an echo, a Close frame, its FIN).
 * Each wait ends as soon as the event happens; the margin only absorbs a loaded machine.
 */
export const PROMPT_MS = 1500;

export interface ClientOptions {
  /** Keep our side open after the server's FIN (a peer that never closes TCP). Default false. */
  allowHalfOpen?: boolean;
  /** Answer server pings with pongs at once, like a browser; such pings are left out of `frames`. */
  autoPong?: boolean;
}

const liveClients = new Set<RawClient>();

/** Destroys every client still open (call from afterEach). */
export function destroyAllClients(): void {
  for (const c of liveClients) c.destroy();
  liveClients.clear();
}

export class RawClient {
  /** Every frame received, in order. */
  readonly frames: ServerFrame[] = [];
  private readonly receivedChunks: Buffer[] = [];
  response: HttpResponse | undefined;
  readonly errors: Error[] = [];
  endAt: number | undefined;
  closeAt: number | undefined;
  /** performance.now() of each write that reached the socket. */
  readonly writeTimes: number[] = [];
  /** Writes skipped because the socket was no longer writable. */
  skippedWrites = 0;
  readonly connectedAt: number;

  private headBuffer: Buffer | undefined = Buffer.alloc(0);
  private readonly parser = new ServerFrameParser();
  private consumed = 0;
  private waiters: Array<() => void> = [];

  /** Pings answered automatically (autoPong clients only; those pings are not in `frames`). */
  pingsAnswered = 0;

  private constructor(
    readonly socket: Socket,
    private readonly autoPong: boolean,
  ) {
    this.connectedAt = performance.now();
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => {
      this.endAt ??= performance.now();
      this.wake();
    });
    socket.on("close", () => {
      this.closeAt ??= performance.now();
      liveClients.delete(this);
      this.wake();
    });
    socket.on("error", (error) => {
      this.errors.push(error);
      this.wake();
    });
  }

  /** Opens a TCP connection to 127.0.0.1:port (no handshake yet). */
  static connect(port: number, options: ClientOptions = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: options.allowHalfOpen ?? false });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        const client = new RawClient(socket, options.autoPong ?? false);
        liveClients.add(client);
        resolve(client);
      });
    });
  }

  /** Connects and completes the opening handshake on `path`; throws unless the answer is a valid 101. */
  static async open(port: number, path = "/echo", options: ClientOptions = {}): Promise<RawClient> {
    const client = await RawClient.connect(port, options);
    await client.handshake({ path });
    return client;
  }

  /** Sends a handshake request and checks the 101 answer (status, Upgrade, Connection, Accept). */
  async handshake(
    options: { path?: string; headers?: Record<string, string | undefined> } = {},
  ): Promise<HttpResponse> {
    const key = randomBytes(16).toString("base64");
    const res = await this.request(handshakeRequest({ ...options, key }));
    if (res.status !== 101) throw new Error(`handshake refused: ${res.status} ${res.body}`);
    if (res.headers.upgrade?.toLowerCase() !== "websocket") throw new Error("101 without Upgrade: websocket");
    if (!/\bupgrade\b/i.test(res.headers.connection ?? ""))
      throw new Error("101 without Connection: Upgrade");
    if (res.headers["sec-websocket-accept"] !== acceptFor(key)) throw new Error("wrong Sec-WebSocket-Accept");
    return res;
  }

  /** Writes raw request bytes and resolves with the parsed HTTP response (head and Content-Length body). */
  async request(bytes: string | Buffer, timeoutMs = 2000): Promise<HttpResponse> {
    await this.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
    return this.readResponse(timeoutMs);
  }

  /** Waits for the HTTP response (after bytes sent some other way, e.g. chunked). */
  async readResponse(timeoutMs = 2000): Promise<HttpResponse> {
    const ok = await this.until(() => this.response !== undefined && this.bodyComplete(), timeoutMs);
    if (!ok || !this.response) {
      throw new Error(
        `no complete HTTP response within ${timeoutMs} ms (got ${JSON.stringify(this.headBuffer?.toString("latin1"))})`,
      );
    }
    return this.response;
  }

  /** Writes bytes; resolves once handed to the kernel. Skips (and counts) writes on a closed socket. */
  write(bytes: Buffer): Promise<void> {
    if (!this.socket.writable || this.socket.destroyed) {
      this.skippedWrites++;
      return Promise.resolve();
    }
    this.writeTimes.push(performance.now());
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** Writes the chunks one by one with `delayMs` between them. */
  async writeChunks(chunks: readonly Buffer[], delayMs: number): Promise<void> {
    for (let i = 0; i < chunks.length; i++) {
      if (i > 0 && delayMs > 0) await sleep(delayMs);
      await this.write(chunks[i]!);
    }
  }

  /** Writes `bytes` split into pieces of `size` bytes, `delayMs` apart. */
  trickle(bytes: Buffer, size: number, delayMs: number): Promise<void> {
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
    return this.writeChunks(chunks, delayMs);
  }

  send(spec: FrameSpec): Promise<void> {
    return this.write(frame(spec));
  }

  /** The next frame not yet taken (by nextFrame or waitForClose); rejects after `timeoutMs`. */
  async nextFrame(timeoutMs = PROMPT_MS): Promise<ServerFrame> {
    const ok = await this.until(() => this.frames.length > this.consumed, timeoutMs);
    if (!ok) {
      throw new Error(
        `no frame within ${timeoutMs} ms (tcp ${this.tcpClosed ? "closed" : "open"}, ${this.frames.length} frames)`,
      );
    }
    return this.frames[this.consumed++]!;
  }

  /** All bytes received after the HTTP response head, as sent by the server. */
  get received(): Buffer {
    return Buffer.concat(this.receivedChunks);
  }

  /** Frames not yet taken. */
  get pending(): ServerFrame[] {
    return this.frames.slice(this.consumed);
  }

  /** Resolves true if no new frame arrives within `ms` (for "must be ignored" checks). */
  async quietFor(ms: number): Promise<boolean> {
    const before = this.frames.length;
    await sleep(ms);
    return this.frames.length === before;
  }

  /** The server sent FIN (or the socket is gone). */
  get tcpClosed(): boolean {
    return this.endAt !== undefined || this.closeAt !== undefined;
  }

  /**
   * Waits for the server's Close frame, then for the server to close TCP, both within `timeoutMs`
   * from now. With `reply`, a Close frame from the server is answered with one carrying the same code
   * (needed when the server starts the closing handshake). Never rejects: the result says what happened.
   */
  async waitForClose(timeoutMs = PROMPT_MS, options: { reply?: boolean } = {}): Promise<CloseResult> {
    const deadline = performance.now() + timeoutMs;
    const closeIndex = () => this.frames.findIndex((f, i) => i >= this.consumed && f.opcode === OP.close);
    await this.until(() => closeIndex() >= 0 || this.closeAt !== undefined, timeoutMs);
    const received = closeIndex() >= 0 ? this.frames[closeIndex()] : undefined;
    if (options.reply && received && !this.tcpClosed) {
      // Answer a server-initiated close as a well-behaved client does (§5.5.1): echo the status code.
      const code = received.payload.length >= 2 ? received.payload.readUInt16BE(0) : undefined;
      await this.write(close(code));
    }
    await this.until(
      () => this.endAt !== undefined || this.closeAt !== undefined,
      deadline - performance.now(),
    );
    // Let anything that arrived with the FIN be parsed.
    await sleep(0);
    const idx = closeIndex();
    const cf = idx >= 0 ? this.frames[idx] : undefined;
    const payload = cf?.payload ?? Buffer.alloc(0);
    const before = this.frames.slice(this.consumed, idx >= 0 ? idx : this.frames.length);
    const after = idx >= 0 ? this.frames.slice(idx + 1) : [];
    this.consumed = this.frames.length;
    return {
      closeFrame: cf !== undefined,
      code: payload.length >= 2 ? payload.readUInt16BE(0) : undefined,
      reason: payload.subarray(2).toString("utf8"),
      payload,
      tcpClosed: this.endAt !== undefined,
      closeFrameAt: cf?.at,
      tcpClosedAt: this.endAt ?? this.closeAt,
      before,
      after,
    };
  }

  /** Resolves true once TCP is closed by the server (FIN or full close), false after `timeoutMs`. */
  waitForTcpClose(timeoutMs = PROMPT_MS): Promise<boolean> {
    return this.until(() => this.tcpClosed, timeoutMs);
  }

  /** Sends our FIN. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
    liveClients.delete(this);
  }

  /** Closes with a TCP RST (abortive close). */
  reset(): void {
    this.socket.resetAndDestroy();
    liveClients.delete(this);
  }

  // ---- internals -----------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    const at = performance.now();
    if (this.headBuffer !== undefined) {
      this.headBuffer = Buffer.concat([this.headBuffer, chunk]);
      if (this.response === undefined) {
        const end = this.headBuffer.indexOf("\r\n\r\n");
        if (end < 0) return this.wake();
        const head = this.headBuffer.subarray(0, end).toString("latin1");
        this.response = { ...parseHead(head), body: "", raw: head };
        this.headBuffer = this.headBuffer.subarray(end + 4);
      }
      if (this.response.status !== 101) {
        this.response.body = this.headBuffer.toString("utf8");
        return this.wake();
      }
      chunk = this.headBuffer;
      this.headBuffer = undefined;
      if (chunk.length === 0) return this.wake();
    }
    this.receivedChunks.push(chunk);
    for (const f of this.parser.push(chunk, at)) {
      if (this.autoPong && f.opcode === OP.ping) {
        this.pingsAnswered++;
        void this.write(pong(f.payload));
      } else {
        this.frames.push(f);
      }
    }
    if (this.parser.error) this.errors.push(new Error(this.parser.error));
    this.wake();
  }

  private bodyComplete(): boolean {
    const res = this.response;
    if (!res || res.status === 101) return true;
    if (/chunked/i.test(res.headers["transfer-encoding"] ?? "")) return /(^|\r\n)0\r\n\r\n$/.test(res.body);
    const length = Number(res.headers["content-length"] ?? Number.NaN);
    if (Number.isFinite(length)) return Buffer.byteLength(res.body) >= length || this.tcpClosed;
    return this.tcpClosed;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves true as soon as `check()` holds, false after `timeoutMs`. */
  private until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return Promise.resolve(true);
    if (timeoutMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onWake);
        resolve(check());
      }, timeoutMs);
      const onWake = () => {
        if (check()) {
          clearTimeout(timer);
          resolve(true);
        } else {
          this.waiters.push(onWake);
        }
      };
      this.waiters.push(onWake);
    });
  }
}

// ---- the server under test -----------------------------------------------------------------------

export interface EchoServer {
  port: number;
  app: ReturnType<typeof createApp>;
  /** Errors given to the app's error hook, with their kind. */
  errors: Array<{ error: unknown; kind: string }>;
  stop(): Promise<void>;
}

/** Starts sockway in-process with an echo route on /echo, on 127.0.0.1 and a free port. */
export async function startEchoServer(options: WebSocketsOptions = {}): Promise<EchoServer> {
  const errors: EchoServer["errors"] = [];
  const app = createApp()
    .install(WebSockets, { pingPeriod: 0, ...options })
    .onError((error, kind) => errors.push({ error, kind }))
    .routing((r) =>
      r.webSocket("/echo", async (s) => {
        for await (const f of s.incoming) await s.send(f);
      }),
    );
  const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
  return { port, app, errors, stop: () => app.stop({ grace: 200 }) };
}

// ---- assertions ----------------------------------------------------------------------------------

const hexHead = (b: Buffer) =>
  `${b.subarray(0, 24).toString("hex")}${b.length > 24 ? "..." : ""} (${b.length} bytes)`;

/** Asserts that two byte strings are identical (with a short hex diff on failure). */
export function expectBytes(actual: Buffer, expected: Buffer, what = "bytes"): void {
  if (!actual.equals(expected)) {
    let i = 0;
    while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
    expect.fail(`${what} differ at offset ${i}: got ${hexHead(actual)}, expected ${hexHead(expected)}`);
  }
}

/**
 * Asserts a whole, unfragmented, unmasked server frame with RSV 0 and the minimal length encoding,
 * byte for byte.
 */
export function expectServerFrame(f: ServerFrame, opcode: number, payload: Buffer | string): void {
  const p = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  expect({
    opcode: f.opcode,
    fin: f.fin,
    rsv: f.rsv,
    masked: f.masked,
    minimalLength: f.minimalLength,
    length: f.payload.length,
  }).toEqual({ opcode, fin: true, rsv: 0, masked: false, minimalLength: true, length: p.length });
  expectBytes(f.payload, p, "payload");
  expectBytes(f.raw, frame({ opcode, payload: p, mask: false }), "frame");
}

/** The next frame is the echo of (opcode, payload). */
export async function expectEcho(
  client: RawClient,
  opcode: number,
  payload: Buffer | string,
  timeoutMs = PROMPT_MS,
): Promise<ServerFrame> {
  const f = await client.nextFrame(timeoutMs);
  expectServerFrame(f, opcode, payload);
  return f;
}

/**
 * The server sends a Close frame with `code` (undefined: empty Close) and nothing else first or after,
 * then closes TCP cleanly, all within `timeoutMs`.
 */
export async function expectClose(
  client: RawClient,
  code: number | undefined,
  options: { timeoutMs?: number; reply?: boolean } = {},
): Promise<CloseResult> {
  const r = await client.waitForClose(options.timeoutMs ?? PROMPT_MS, { reply: options.reply ?? false });
  expect(r.closeFrame, "the server sent a Close frame").toBe(true);
  expect(r.code, "close code").toBe(code);
  const cf = client.frames.find((f) => f.opcode === OP.close)!;
  expect({ fin: cf.fin, rsv: cf.rsv, masked: cf.masked }).toEqual({ fin: true, rsv: 0, masked: false });
  expect(
    r.before.map((f) => f.opcode),
    "no other frames before the Close",
  ).toEqual([]);
  expect(
    r.after.map((f) => f.opcode),
    "nothing after the Close",
  ).toEqual([]);
  expect(r.tcpClosed, "the server closed TCP (FIN)").toBe(true);
  return r;
}

/** Client-initiated normal closure: Close 1000 is echoed and the server closes TCP. */
export async function expectNormalClosure(client: RawClient): Promise<CloseResult> {
  await client.write(close(1000));
  return expectClose(client, 1000);
}

// ---- robustness: process health, memory ---------------------------------------------------------

export interface ProcessWatch {
  /** Reasons of unhandled promise rejections seen while installed. */
  readonly unhandled: unknown[];
  /** Uncaught exceptions seen while installed (observed only; vitest still reports them). */
  readonly uncaught: unknown[];
  dispose(): void;
}

/** Records unhandled rejections and uncaught exceptions in this process (call in beforeAll). */
export function watchProcess(): ProcessWatch {
  const unhandled: unknown[] = [];
  const uncaught: unknown[] = [];
  const onRejection = (reason: unknown) => unhandled.push(reason);
  const onException = (error: unknown) => uncaught.push(error);
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtExceptionMonitor", onException);
  return {
    unhandled,
    uncaught,
    dispose: () => {
      process.off("unhandledRejection", onRejection);
      process.off("uncaughtExceptionMonitor", onException);
    },
  };
}

/**
 * After an attack: the process is alive and saw no unhandled rejection or uncaught exception, the
 * healthy connection kept open during the attack still echoes, and a new connection can be opened.
 */
export async function expectStillHealthy(
  port: number,
  healthy: RawClient,
  watch: ProcessWatch,
): Promise<void> {
  const probe = `still alive ${Math.random()}`;
  await healthy.write(text(probe));
  await expectEcho(healthy, OP.text, probe);
  expect(healthy.tcpClosed, "the healthy connection is still open").toBe(false);
  const fresh = await RawClient.open(port);
  await fresh.write(text("fresh"));
  await expectEcho(fresh, OP.text, "fresh");
  await expectNormalClosure(fresh);
  expect(process.kill(process.pid, 0), "the process is alive").toBe(true);
  await sleep(10); // let a pending rejection surface
  expect(watch.unhandled, "unhandled rejections").toEqual([]);
  expect(watch.uncaught, "uncaught exceptions").toEqual([]);
}

let gcFunction: (() => void) | undefined | null = null;

/** Runs a full GC: `global.gc` with --expose-gc, or one obtained by enabling the flag at run time. */
export function collectGarbage(): void {
  if (gcFunction === null) {
    gcFunction = (globalThis as { gc?: () => void }).gc;
    if (!gcFunction) {
      try {
        setFlagsFromString("--expose-gc");
        gcFunction = runInNewContext("gc") as () => void;
      } catch {
        gcFunction = undefined;
      }
    }
  }
  gcFunction?.();
}

/** Resident set size in MiB after a GC. */
export function rssMiB(): number {
  collectGarbage();
  return process.memoryUsage().rss / (1 << 20);
}

/**
 * Starts an echo server for the tests of one file (vitest hooks) and destroys every raw client after each
 * test. Returns how to reach it: `open()` a handshaken client, or the `port()`.
 */
export function useEchoServer(options: WebSocketsOptions = {}): {
  open: () => Promise<RawClient>;
  port: () => number;
} {
  let server: EchoServer | undefined;
  beforeAll(async () => {
    server = await startEchoServer(options);
  });
  afterEach(() => destroyAllClients());
  afterAll(async () => {
    destroyAllClients();
    await server?.stop();
  });
  const port = () => {
    if (!server) throw new Error("the echo server is not running yet");
    return server.port;
  };
  return { open: () => RawClient.open(port()), port };
}
