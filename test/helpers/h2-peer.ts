import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
  type OutgoingHttpHeaders,
} from "node:http2";
import { type FrameHeader, FrameParser, Opcode, type ProtocolError } from "../../src/protocol/index.js";
import type { ParsedFrame } from "../protocol/helpers.js";
import { onCleanup } from "./cleanup.js";
import { clientFrame, type SendOptions } from "./raw-client.js";
import { within } from "./wait.js";

/**
 * A WebSocket peer over HTTP/2 written by hand on node:http2: extended CONNECT (RFC 8441) streams whose
 * frames it writes and parses itself, so that a test controls every byte and sees every frame.
 */
export class H2Peer {
  private constructor(readonly session: ClientHttp2Session) {}

  /** Connects to an https:// URL (self-signed certificates accepted); closed by the test's cleanup. */
  static async connect(url: string, options: { waitForSettings?: boolean } = {}): Promise<H2Peer> {
    const session = connect(url, { rejectUnauthorized: false });
    onCleanup(() => session.destroy());
    session.on("error", () => {});
    await within(
      new Promise<void>((resolve, reject) => {
        session.once("connect", () => resolve());
        session.once("error", reject);
      }),
      5000,
      "h2 connect",
    );
    if (options.waitForSettings !== false && !session.remoteSettings.enableConnectProtocol)
      await within(
        new Promise((resolve) => session.once("remoteSettings", resolve)),
        5000,
        "the server's SETTINGS",
      );
    return new H2Peer(session);
  }

  /** Whether the server's SETTINGS allow extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL). */
  get connectProtocol(): boolean {
    return this.session.remoteSettings.enableConnectProtocol === true;
  }

  /** Opens an extended CONNECT stream; resolves once the response headers came. */
  async open(path: string, headers: OutgoingHttpHeaders = {}): Promise<H2WebSocket> {
    const stream = this.session.request({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "https",
      ":path": path,
      "sec-websocket-version": "13",
      ...headers,
    });
    const ws = new H2WebSocket(stream);
    await within(ws.response, 5000, `the response to CONNECT ${path}`);
    return ws;
  }

  /** A plain request; resolves with its status, headers and body. */
  async get(
    path: string,
    headers: OutgoingHttpHeaders = {},
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
    const stream = this.session.request({ ":method": "GET", ":path": path, ...headers });
    const chunks: Buffer[] = [];
    const response = new Promise<IncomingHttpHeaders>((resolve) => stream.once("response", resolve));
    stream.on("data", (c: Buffer) => chunks.push(c));
    await within(new Promise((resolve) => stream.once("close", resolve)), 5000, `GET ${path}`);
    const h = await response;
    return { status: Number(h[":status"]), headers: h, body: Buffer.concat(chunks).toString() };
  }
}

/** One WebSocket on an h2 stream: sends masked frames, parses the server's. */
export class H2WebSocket {
  readonly frames: ParsedFrame[] = [];
  readonly errors: ProtocolError[] = [];
  readonly response: Promise<IncomingHttpHeaders & IncomingHttpStatusHeader>;
  /** Bytes of the response body (a refusal's text). */
  body = "";
  /** The server ended its side of the stream (END_STREAM). */
  readonly ended: Promise<void>;
  /** The stream closed; resolves with its RST_STREAM code (0 for a clean close). */
  readonly closed: Promise<number>;
  status = 0;
  private readonly parser: FrameParser;
  private waiter: (() => void) | undefined;
  private read = 0;

  constructor(readonly stream: ClientHttp2Stream) {
    stream.on("error", () => {});
    this.response = new Promise((resolve) =>
      stream.once("response", (h) => {
        this.status = Number(h[":status"]);
        resolve(h);
      }),
    );
    this.ended = new Promise((resolve) => stream.once("end", () => resolve()));
    this.closed = new Promise((resolve) => stream.once("close", () => resolve(stream.rstCode ?? 0)));
    let pending: ParsedFrame | undefined;
    let pieces: Buffer[] = [];
    this.parser = new FrameParser({
      onHeader: (h: FrameHeader) => {
        pending = {
          fin: h.fin,
          rsv1: h.rsv1,
          rsv2: h.rsv2,
          rsv3: h.rsv3,
          opcode: h.opcode,
          masked: h.masked,
          length: h.length,
          maskKey: undefined,
          payload: Buffer.alloc(0),
        };
        return true;
      },
      onPayload: (piece: Buffer) => {
        pieces.push(Buffer.from(piece));
        return true;
      },
      onFrameEnd: () => {
        pending!.payload = Buffer.concat(pieces);
        pieces = [];
        this.frames.push(pending!);
        this.waiter?.();
        return true;
      },
      onHeaderError: (error: ProtocolError) => {
        this.errors.push(error);
      },
    });
    stream.on("data", (chunk: Buffer) => {
      if (this.status === 200) this.parser.push(Buffer.from(chunk));
      else this.body += chunk.toString();
    });
  }

  send(opcode: number, payload: Uint8Array | string, options?: SendOptions): void {
    this.stream.write(clientFrame(opcode, payload, options));
  }

  sendText(text: string): void {
    this.send(Opcode.Text, text);
  }

  /** The next frame not yet returned by `next`, waiting for it. */
  async next(timeout = 5000): Promise<ParsedFrame> {
    const index = this.read++;
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (this.frames.length > index) {
            this.waiter = undefined;
            resolve();
          }
        };
        this.waiter = check;
        check();
      }),
      timeout,
      `frame #${index + 1}`,
    );
    return this.frames[index]!;
  }
}
