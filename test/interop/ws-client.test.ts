/**
 * Interop with the `ws` npm client: sockway's echo routes, subprotocols, close codes both ways, pings and
 * keepalive, talking to a real third-party implementation over TCP.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { type ClientOptions, type RawData } from "ws";
import { closeOf, ECHO_PROTOCOL, type EchoServer, patternBytes, startEchoApp, within } from "./echo-app.js";

const LARGE = 5 * 1024 * 1024;

interface Received {
  data: Buffer;
  isBinary: boolean;
}

/** A `ws` client whose messages, pongs, pings and close are queued from the start (nothing is missed). */
class Peer {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly pings: Buffer[] = [];
  private readonly messages: Received[] = [];
  private readonly messageWaiters: Array<(m: Received) => void> = [];
  private readonly pongWaiters: Array<(data: Buffer) => void> = [];

  constructor(url: string, protocols: string[] = [], options: ClientOptions = {}) {
    this.ws = new WebSocket(url, protocols, options);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
    });
    this.ws.on("message", (data: RawData, isBinary: boolean) => {
      const m = { data: toBuffer(data), isBinary };
      const waiter = this.messageWaiters.shift();
      if (waiter) waiter(m);
      else this.messages.push(m);
    });
    this.ws.on("pong", (data: Buffer) => this.pongWaiters.shift()?.(data));
    this.ws.on("ping", (data: Buffer) => this.pings.push(data));
  }

  next(what = "a message"): Promise<Received> {
    const ready = this.messages.shift();
    if (ready) return Promise.resolve(ready);
    return within(new Promise((resolve) => this.messageWaiters.push(resolve)), 10_000, what);
  }

  nextPong(): Promise<Buffer> {
    return within(new Promise((resolve) => this.pongWaiters.push(resolve)), 5000, "a pong");
  }

  async roundTrip(data: string | Buffer): Promise<Received> {
    this.ws.send(data, { binary: typeof data !== "string" });
    return this.next(`the echo of a ${data.length}-byte message`);
  }

  /** Closes (if still open) and waits for the close event. */
  async end(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    else if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    await within(this.closed, 5000, "the client's close event");
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

describe("ws client ↔ sockway echo", () => {
  let server: EchoServer;
  const peers: Peer[] = [];
  const connect = async (path: string, protocols: string[] = [], options: ClientOptions = {}) => {
    const peer = new Peer(`${server.wsBase}${path}`, protocols, options);
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

  it("echoes a text message exactly, multi-byte UTF-8 included", async () => {
    const peer = await connect("/echo");
    const text = "hello, sockway ✓ — ünïcödé 😀 𝄞";
    const echoed = await peer.roundTrip(text);
    expect(echoed.isBinary).toBe(false);
    expect(echoed.data.toString("utf8")).toBe(text);
  });

  it("echoes a binary message exactly, every byte value included", async () => {
    const peer = await connect("/echo");
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const echoed = await peer.roundTrip(bytes);
    expect(echoed.isBinary).toBe(true);
    expect(echoed.data.equals(bytes)).toBe(true);
  });

  it("echoes empty text and empty binary messages with their types", async () => {
    const peer = await connect("/echo");
    const text = await peer.roundTrip("");
    expect(text).toMatchObject({ isBinary: false });
    expect(text.data.length).toBe(0);
    const binary = await peer.roundTrip(Buffer.alloc(0));
    expect(binary).toMatchObject({ isBinary: true });
    expect(binary.data.length).toBe(0);
  });

  it("echoes 5 MB binary and text messages exactly with maxFrameSize raised", async () => {
    const peer = await connect("/echo");
    const bytes = patternBytes(LARGE);
    const echoed = await peer.roundTrip(bytes);
    expect(echoed.isBinary).toBe(true);
    expect(echoed.data.length).toBe(LARGE);
    expect(echoed.data.equals(bytes)).toBe(true);

    const text = "ab✓".repeat(LARGE / 5); // 5 bytes a repeat: exactly 5 MiB
    const echoedText = await peer.roundTrip(text);
    expect(echoedText.isBinary).toBe(false);
    expect(echoedText.data.length).toBe(LARGE);
    expect(echoedText.data.toString("utf8") === text).toBe(true);
  });

  it("keeps the order of many messages sent back to back", async () => {
    const peer = await connect("/echo");
    const sent = Array.from({ length: 200 }, (_, i) => `message ${i}`);
    for (const m of sent) peer.ws.send(m);
    const got: string[] = [];
    for (let i = 0; i < sent.length; i++) got.push((await peer.next()).data.toString("utf8"));
    expect(got).toEqual(sent);
  });

  it("accepts a message of exactly maxFrameSize (8 MiB)", async () => {
    const peer = await connect("/echo");
    const bytes = patternBytes(8 * 1024 * 1024, 1);
    const echoed = await peer.roundTrip(bytes);
    expect(echoed.data.length).toBe(bytes.length);
    expect(echoed.data.equals(bytes)).toBe(true);
  });

  it("closes with 1009 when a message exceeds maxFrameSize", async () => {
    const session = server.nextSession();
    const peer = await connect("/echo");
    peer.ws.send(Buffer.alloc(8 * 1024 * 1024 + 1));
    const closed = await within(peer.closed, 5000, "the client's close event");
    expect(closed.code).toBe(1009);
    expect((await closeOf(await session)).code).toBe(1009);
  });

  it("reassembles fragmented messages, UTF-8 split across fragments and a ping between them", async () => {
    const peer = await connect("/echo");
    peer.ws.send("hel", { fin: false });
    peer.ws.send("lo ", { fin: false });
    peer.ws.send("world", { fin: true });
    expect((await peer.next()).data.toString("utf8")).toBe("hello world");

    // "✓" is E2 9C 93: split after its first byte, in a text message.
    const check = Buffer.from("a✓b", "utf8");
    peer.ws.send(check.subarray(0, 2), { binary: false, fin: false });
    const pong = peer.nextPong();
    peer.ws.ping(Buffer.from("between"));
    peer.ws.send(check.subarray(2), { binary: false, fin: true });
    expect((await pong).toString()).toBe("between");
    const text = await peer.next();
    expect(text.isBinary).toBe(false);
    expect(text.data.toString("utf8")).toBe("a✓b");

    peer.ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
    peer.ws.send(Buffer.from([3]), { binary: true, fin: true });
    const binary = await peer.next();
    expect(binary.isBinary).toBe(true);
    expect([...binary.data]).toEqual([1, 2, 3]);
  });

  it("closes with 1007 on a text message that is not valid UTF-8", async () => {
    const session = server.nextSession();
    const peer = await connect("/echo");
    peer.ws.send(Buffer.from([0x61, 0xff, 0x62]), { binary: false });
    const closed = await within(peer.closed, 5000, "the client's close event");
    expect(closed.code).toBe(1007);
    expect((await closeOf(await session)).code).toBe(1007);
  });

  it("reports 1005 for a client Close frame without a code, and answers with an empty one", async () => {
    const session = server.nextSession();
    const peer = await connect("/echo");
    peer.ws.close();
    expect(await within(closeOf(await session), 5000, "the session's closeReason")).toEqual({
      code: 1005,
      message: "",
    });
    expect(await within(peer.closed, 5000, "the client's close event")).toEqual({ code: 1005, reason: "" });
  });

  it("closes with 1011 'Internal error' when the handler throws, and reports the error", async () => {
    const session = server.nextSession();
    const peer = await connect("/throw");
    peer.ws.send("go");
    expect(await within(peer.closed, 5000, "the client's close event")).toEqual({
      code: 1011,
      reason: "Internal error",
    });
    await within(closeOf(await session), 5000, "the session's closeReason");
    expect(server.errors.map((e) => [e.kind, (e.error as Error).message])).toContainEqual([
      "handler",
      "boom (thrown on purpose by the interop test)",
    ]);
  });

  it("negotiates the route's subprotocol", async () => {
    const session = server.nextSession();
    const peer = await connect("/proto", ["chat.v1", ECHO_PROTOCOL]);
    expect(peer.ws.protocol).toBe(ECHO_PROTOCOL);
    expect((await session).protocol).toBe(ECHO_PROTOCOL);
    expect((await peer.roundTrip("via echo.v2")).data.toString()).toBe("via echo.v2");
  });

  it("refuses with 400 a client that does not offer the route's subprotocol", async () => {
    const ws = new WebSocket(`${server.wsBase}/proto`, ["chat.v1"]);
    ws.on("error", () => {}); // terminate() during the handshake reports an error; expected here
    const status = await within(
      new Promise<number>((resolve, reject) => {
        ws.once("unexpected-response", (_req, res) => {
          resolve(res.statusCode ?? 0);
          res.resume();
          ws.terminate();
        });
        ws.once("open", () => reject(new Error("the handshake succeeded")));
      }),
      5000,
      "the refusal",
    );
    expect(status).toBe(400);
  });

  it("succeeds without permessage-deflate when ws offers it", async () => {
    const session = server.nextSession();
    const peer = await connect("/echo", [], { perMessageDeflate: true });
    const s = await session;
    expect(String(s.call.headers["sec-websocket-extensions"])).toContain("permessage-deflate");
    expect(peer.ws.extensions).toBe("");
    expect(s.extensions).toEqual([]);
    expect((await peer.roundTrip("x".repeat(4096))).data.toString()).toBe("x".repeat(4096));
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
    expect(closed.code).toBe(4000); // the server echoes the code (§5.5.1)
  });

  it("delivers the server's close code and reason (4001 'done') to the client", async () => {
    const session = server.nextSession();
    const peer = await connect("/close-on-text");
    peer.ws.send("close please");
    const closed = await within(peer.closed, 5000, "the client's close event");
    expect(closed).toEqual({ code: 4001, reason: "done" });
    expect((await within(closeOf(await session), 5000, "the session's closeReason")).code).toBe(4001);
  });

  it("answers a client ping with a pong carrying the same payload", async () => {
    const peer = await connect("/echo");
    const pong = peer.nextPong();
    peer.ws.ping(Buffer.from("ping-123 ✓"));
    expect((await pong).toString("utf8")).toBe("ping-123 ✓");
    const empty = peer.nextPong();
    peer.ws.ping();
    expect((await empty).length).toBe(0);
    expect((await peer.roundTrip("after pings")).data.toString()).toBe("after pings");
  });
});

describe("ws client ↔ sockway shutdown", () => {
  it("closes open sessions with 1001 'Server shutting down' on app.stop()", async () => {
    const server = await startEchoApp();
    const session = server.nextSession();
    const peer = new Peer(`${server.wsBase}/echo`);
    try {
      await within(peer.opened, 5000, "the handshake");
      const s = await session;
      const stopped = server.stop();
      expect(await within(peer.closed, 5000, "the client's close event")).toEqual({
        code: 1001,
        reason: "Server shutting down",
      });
      await within(stopped, 5000, "app.stop()");
      expect((await closeOf(s)).code).toBe(1001);
      expect(server.app.sessions.size).toBe(0);
    } finally {
      peer.ws.terminate();
      await server.stop();
    }
  });
});

describe("ws client ↔ sockway keepalive (pingPeriod 50 ms, timeout 300 ms)", () => {
  let server: EchoServer;
  const peers: Peer[] = [];

  beforeAll(async () => {
    server = await startEchoApp({ pingPeriod: 50, timeout: 300 });
  });
  afterAll(async () => {
    await Promise.allSettled(peers.map((p) => p.end()));
    await server.stop();
  });

  it("stays open past several ping periods because ws answers the pings", async () => {
    const session = server.nextSession();
    const peer = new Peer(`${server.wsBase}/echo`);
    peers.push(peer);
    await within(peer.opened, 5000, "the handshake");
    const s = await session;
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(peer.pings.length).toBeGreaterThanOrEqual(4);
    expect(s.isOpen).toBe(true);
    expect(peer.ws.readyState).toBe(WebSocket.OPEN);
    expect((await peer.roundTrip("still here")).data.toString()).toBe("still here");
    peer.ws.close(1000, "done here");
    expect(await within(closeOf(s), 5000, "the session's closeReason")).toEqual({
      code: 1000,
      message: "done here",
    });
  });

  it("closes with 1011 'Ping timeout' a client that does not answer pings (control)", async () => {
    const session = server.nextSession();
    const peer = new Peer(`${server.wsBase}/echo`, [], { autoPong: false });
    peers.push(peer);
    await within(peer.opened, 5000, "the handshake");
    const closed = await within(peer.closed, 5000, "the client's close event");
    expect(closed).toEqual({ code: 1011, reason: "Ping timeout" });
    expect((await within(closeOf(await session), 5000, "the session's closeReason")).code).toBe(1011);
  });
});
