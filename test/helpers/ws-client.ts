import WebSocket from "ws";
import { onCleanup } from "./cleanup.js";
import { within } from "./wait.js";

export interface WsMessage {
  data: Buffer;
  isBinary: boolean;
}

/**
 * A `ws` (third-party) client that records from the very start: messages, pings and the close, so
 * nothing sent right after the handshake is missed. Registered for cleanup.
 */
export class WsClient {
  readonly ws: WebSocket;
  readonly messages: WsMessage[] = [];
  pings = 0;
  /** Resolves on 'open'; rejects on an error before it. */
  readonly opened: Promise<void>;
  /** Resolves with the close code and reason ws reports (1006 when the TCP connection just ended). */
  readonly closed: Promise<{ code: number; reason: string }>;
  private readIndex = 0;
  private notify: (() => void) | undefined;

  constructor(url: string, protocols: string[] = [], options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, protocols, options);
    onCleanup(() => this.ws.terminate());
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.ws.once("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") })),
    );
    this.ws.on("error", () => {}); // reported through `opened` / `closed`
    this.ws.on("ping", () => this.pings++);
    this.ws.on("message", (data: Buffer, isBinary) => {
      this.messages.push({ data, isBinary });
      this.notify?.();
    });
  }

  /** Connects and waits for the handshake to complete. */
  static async open(url: string, protocols: string[] = [], options: WebSocket.ClientOptions = {}) {
    const client = new WsClient(url, protocols, options);
    await within(client.opened, 3000, `ws open of ${url}`);
    return client;
  }

  /** The next message not yet taken. */
  async next(ms = 2000): Promise<WsMessage> {
    if (this.readIndex >= this.messages.length) {
      const arrived = new Promise<void>((resolve) => {
        this.notify = resolve;
      });
      await within(arrived, ms, `message #${this.readIndex + 1}`);
    }
    return this.messages[this.readIndex++]!;
  }

  async nextText(ms = 2000): Promise<string> {
    const message = await this.next(ms);
    if (message.isBinary) throw new Error("expected a text message, got binary");
    return message.data.toString("utf8");
  }

  send(data: string | Buffer, options: { binary?: boolean } = {}): Promise<void> {
    return new Promise((resolve, reject) =>
      this.ws.send(data, { binary: options.binary ?? typeof data !== "string" }, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  }

  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
}

/** Tries to connect and returns the HTTP status the server refused the upgrade with, and its body. */
export function wsRefusal(
  url: string,
  protocols: string[] = [],
  options: WebSocket.ClientOptions = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const ws = new WebSocket(url, protocols, options);
  onCleanup(() => ws.terminate());
  ws.on("error", () => {});
  const refused = new Promise<{
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  }>((resolve, reject) => {
    ws.once("open", () => reject(new Error("the upgrade was accepted")));
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", reject);
    });
  });
  return within(refused, 3000, `refusal of ${url}`);
}
