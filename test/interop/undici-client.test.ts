/**
 * Interop with undici's WHATWG WebSocket client (v7): echo of text, binary (ArrayBuffer), empty and large
 * messages, subprotocol negotiation, close codes and reasons both ways.
 */
import { WebSocket } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeOf, ECHO_PROTOCOL, type EchoServer, patternBytes, startEchoApp, within } from "./echo-app.js";

const LARGE = 5 * 1024 * 1024;

type Message = string | ArrayBuffer;

/** An undici WebSocket whose messages and close are queued from the start. */
class Peer {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string; wasClean: boolean }>;
  private readonly messages: Message[] = [];
  private readonly waiters: Array<(m: Message) => void> = [];

  constructor(url: string, protocols: string[] = []) {
    this.ws = new WebSocket(url, protocols);
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve(), { once: true });
      this.ws.addEventListener("error", () => reject(new Error("WebSocket error before open")), {
        once: true,
      });
    });
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener(
        "close",
        (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean }),
        {
          once: true,
        },
      );
    });
    this.ws.addEventListener("message", (e) => {
      const data = e.data as Message;
      const waiter = this.waiters.shift();
      if (waiter) waiter(data);
      else this.messages.push(data);
    });
  }

  next(what = "a message"): Promise<Message> {
    const ready = this.messages.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return within(new Promise((resolve) => this.waiters.push(resolve)), 10_000, what);
  }

  async roundTrip(data: string | ArrayBuffer | Uint8Array): Promise<Message> {
    this.ws.send(data);
    return this.next("the echo");
  }

  async end(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING)
      this.ws.close(1000);
    await within(this.closed, 5000, "the client's close event");
  }
}

function arrayBufferOf(bytes: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(copy).set(bytes);
  return copy;
}

describe("undici WebSocket ↔ sockway echo", () => {
  let server: EchoServer;
  const peers: Peer[] = [];
  const connect = async (path: string, protocols: string[] = []) => {
    const peer = new Peer(`${server.wsBase}${path}`, protocols);
    peers.push(peer);
    await within(peer.opened, 5000, `the handshake on ${path}`);
    return peer;
  };

  beforeAll(async () => {
    server = await startEchoApp({ maxFrameSize: 8 * 1024 * 1024 });
  });
  afterAll(async () => {
    await Promise.allSettled(peers.map((p) => p.end()));
    await server.stop();
  });

  it("echoes a text message exactly", async () => {
    const peer = await connect("/echo");
    const text = "undici ✓ — ünïcödé 😀 𝄞";
    expect(await peer.roundTrip(text)).toBe(text);
  });

  it("echoes a binary message as an ArrayBuffer, every byte value included", async () => {
    const peer = await connect("/echo");
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const echoed = await peer.roundTrip(arrayBufferOf(bytes));
    expect(echoed).toBeInstanceOf(ArrayBuffer);
    expect(Buffer.from(echoed as ArrayBuffer).equals(Buffer.from(bytes))).toBe(true);
  });

  it("echoes empty text and empty binary messages with their types", async () => {
    const peer = await connect("/echo");
    expect(await peer.roundTrip("")).toBe("");
    const empty = await peer.roundTrip(new ArrayBuffer(0));
    expect(empty).toBeInstanceOf(ArrayBuffer);
    expect((empty as ArrayBuffer).byteLength).toBe(0);
  });

  it("echoes 5 MB binary and text messages exactly with maxFrameSize raised", async () => {
    const peer = await connect("/echo");
    const bytes = patternBytes(LARGE, 11);
    const echoed = await peer.roundTrip(bytes);
    expect(echoed).toBeInstanceOf(ArrayBuffer);
    expect((echoed as ArrayBuffer).byteLength).toBe(LARGE);
    expect(Buffer.from(echoed as ArrayBuffer).equals(bytes)).toBe(true);

    const text = "✓ab".repeat(LARGE / 5);
    const echoedText = await peer.roundTrip(text);
    expect(typeof echoedText).toBe("string");
    expect((echoedText as string).length).toBe(text.length);
    expect(echoedText === text).toBe(true);
  });

  it("negotiates the route's subprotocol and reports no extensions although undici offers deflate", async () => {
    const session = server.nextSession();
    const peer = await connect("/proto", ["chat.v1", ECHO_PROTOCOL]);
    expect(peer.ws.protocol).toBe(ECHO_PROTOCOL);
    const s = await session;
    expect(s.protocol).toBe(ECHO_PROTOCOL);
    expect(String(s.call.headers["sec-websocket-extensions"])).toContain("permessage-deflate");
    expect(peer.ws.extensions).toBe("");
    expect(await peer.roundTrip("via echo.v2")).toBe("via echo.v2");
  });

  it("fails the handshake when the route's subprotocol is not offered", async () => {
    const peer = new Peer(`${server.wsBase}/proto`, ["chat.v1"]);
    peers.push(peer);
    const opened = await peer.opened.then(
      () => true,
      () => false,
    );
    expect(opened).toBe(false);
    const closed = await within(peer.closed, 5000, "the close event");
    expect(closed.code).toBe(1006);
  });

  it("reports the client's close code and reason (4000 'bye') as the session's closeReason", async () => {
    const session = server.nextSession();
    const peer = await connect("/echo");
    const s = await session;
    peer.ws.close(4000, "bye");
    expect(await within(closeOf(s), 5000, "the session's closeReason")).toEqual({
      code: 4000,
      message: "bye",
    });
    const closed = await within(peer.closed, 5000, "the client's close event");
    expect(closed.code).toBe(4000);
    expect(closed.wasClean).toBe(true);
  });

  it("delivers the server's close code and reason (4001 'done') to the client", async () => {
    const session = server.nextSession();
    const peer = await connect("/close-on-text");
    peer.ws.send("close please");
    const closed = await within(peer.closed, 5000, "the client's close event");
    expect(closed).toEqual({ code: 4001, reason: "done", wasClean: true });
    expect((await within(closeOf(await session), 5000, "the session's closeReason")).code).toBe(4001);
  });
});
