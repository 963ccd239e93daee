/**
 * permessage-deflate in real sessions over loopback TCP: negotiation in the handshake, round trips with the
 * `ws` client, ordering of compressed and uncompressed messages, and hand-built frames from a raw client for
 * fragmentation, RSV1 misuse, inflate bombs, invalid UTF-8 and corrupt data. Raw routes (webSocketRaw) are
 * in deflate-raw-session.test.ts.
 */

import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { type PerMessageDeflateOptions, type RawData } from "ws";
import { ProtocolError } from "../../src/index.js";
import {
  type DeflateApp,
  deflateMessage,
  delay,
  hex,
  MessageInflater,
  noisyBytes,
  onCleanup,
  type RecordedSession,
  runCleanup,
  startDeflateApp,
  until,
  within,
  zeroBomb,
} from "./deflate-helpers.js";
import { clientFrame, closeCodeOf, OP, RawClient } from "./deflate-raw-client.js";

afterEach(runCleanup);

const MiB = 1024 * 1024;

interface Message {
  data: Buffer;
  isBinary: boolean;
}

/** A `ws` client whose messages are queued from the start. */
class Peer {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** The server's Sec-WebSocket-Extensions response header (undefined when absent). */
  responseExtensions: string | undefined;
  private readonly queue: Message[] = [];
  private readonly waiters: Array<(m: Message) => void> = [];

  constructor(url: string, perMessageDeflate: boolean | PerMessageDeflateOptions) {
    this.ws = new WebSocket(url, { perMessageDeflate });
    onCleanup(() => this.ws.terminate());
    this.ws.on("upgrade", (res) => {
      const value = res.headers["sec-websocket-extensions"];
      this.responseExtensions = Array.isArray(value) ? value.join(", ") : value;
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    this.ws.on("message", (data: RawData, isBinary: boolean) => {
      const m = { data: toBuffer(data), isBinary };
      const waiter = this.waiters.shift();
      if (waiter) waiter(m);
      else this.queue.push(m);
    });
  }

  static async open(
    url: string,
    perMessageDeflate: boolean | PerMessageDeflateOptions = true,
  ): Promise<Peer> {
    const peer = new Peer(url, perMessageDeflate);
    await within(peer.opened, 3000, "the ws handshake");
    return peer;
  }

  next(): Promise<Message> {
    const ready = this.queue.shift();
    if (ready) return Promise.resolve(ready);
    return within(new Promise((resolve) => this.waiters.push(resolve)), 10_000, "a message");
  }

  async roundTrip(data: string | Buffer): Promise<Message> {
    this.ws.send(data, { binary: typeof data !== "string" });
    return this.next();
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** The code of the session's close reason. */
async function closeCodeOfSession(recorded: RecordedSession): Promise<number> {
  return (await within(recorded.session.closeReason, 5000, "the session's end")).code;
}

function protocolErrors(app: DeflateApp): Array<{ code: string; closeCode: number }> {
  return app.errors.map(({ error }) => {
    expect(error).toBeInstanceOf(ProtocolError);
    const e = error as ProtocolError;
    return { code: e.code, closeCode: e.closeCode };
  });
}

describe("permessage-deflate in the handshake", () => {
  it("shows the negotiated parameters in session.extensions and the response header", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const peer = await Peer.open(`${app.wsUrl}/echo`, {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 11,
    });
    const { session } = await app.session(0);
    expect(session.extensions).toEqual([
      {
        name: "permessage-deflate",
        params: [
          ["server_no_context_takeover", true],
          ["client_no_context_takeover", true],
          ["server_max_window_bits", "10"],
          ["client_max_window_bits", "11"],
        ],
      },
    ]);
    expect(peer.responseExtensions).toBe(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
    );
    expect(peer.ws.extensions).toBe("permessage-deflate");
    // Both sides reset their context after every message: repeated messages still round-trip.
    const text = "no context taken over ".repeat(200);
    for (let i = 0; i < 3; i++) expect((await peer.roundTrip(text)).data.toString()).toBe(text);
  });

  it("answers ws's default offer (client_max_window_bits without a value) with the bare name", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const peer = await Peer.open(`${app.wsUrl}/echo`, true);
    expect(peer.responseExtensions).toBe("permessage-deflate");
    expect((await app.session(0)).session.extensions).toEqual([{ name: "permessage-deflate", params: [] }]);
  });

  it("limits the client's window to 8 bits when configured, and the 9-bit-window data inflates", async () => {
    const app = await startDeflateApp({ threshold: 0, clientMaxWindowBits: 8 });
    const peer = await Peer.open(`${app.wsUrl}/echo`, true);
    expect(peer.responseExtensions).toBe("permessage-deflate; client_max_window_bits=8");
    // Matches at distances of 300 bytes: beyond a 256-byte window, inside zlib's 512-byte minimum.
    const text = noisyBytes(300, 21).toString("hex").slice(0, 300).repeat(100);
    expect((await peer.roundTrip(text)).data.toString()).toBe(text);
  });

  it("negotiates nothing for a client that offers nothing", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const peer = await Peer.open(`${app.wsUrl}/echo`, false);
    expect(peer.responseExtensions).toBeUndefined();
    expect((await app.session(0)).session.extensions).toEqual([]);
    expect((await peer.roundTrip("plain")).data.toString()).toBe("plain");
  });

  it("negotiates nothing when every offer is declined, and the connection still opens", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate; server_max_window_bits=8");
    expect(client.status).toBe(101);
    expect(client.headers["sec-websocket-extensions"]).toBeUndefined();
    expect((await app.session(0)).session.extensions).toEqual([]);
  });

  it("fails with 1002 when a client that negotiated nothing sets RSV1", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo");
    expect(client.headers["sec-websocket-extensions"]).toBeUndefined();
    client.write(clientFrame(OP.text, deflateMessage("Hello"), { rsv1: true }));
    expect(await client.nextCloseCode()).toBe(1002);
    expect(protocolErrors(app)).toEqual([{ code: "RESERVED_BITS_SET", closeCode: 1002 }]);
  });
});

describe("permessage-deflate round trips with ws", () => {
  it("round-trips text, binary and empty messages, compressed both ways", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const peer = await Peer.open(`${app.wsUrl}/echo`, { threshold: 0 });
    const text = "hello, sockway ✓ — ünïcödé 😀 𝄞";
    expect(await peer.roundTrip(text)).toEqual({ data: Buffer.from(text), isBinary: false });
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    expect(await peer.roundTrip(bytes)).toEqual({ data: bytes, isBinary: true });
    expect(await peer.roundTrip("")).toEqual({ data: Buffer.alloc(0), isBinary: false });
    expect(await peer.roundTrip(Buffer.alloc(0))).toEqual({ data: Buffer.alloc(0), isBinary: true });
    const { received } = await app.session(0);
    expect(received.map((m) => [m.type, m.data.length])).toEqual([
      ["text", Buffer.byteLength(text)],
      ["binary", 256],
      ["text", 0],
      ["binary", 0],
    ]);
    expect(app.codecCalls).toEqual({ decode: 4, encode: 4 });
  });

  it("round-trips 5 MiB text and binary messages (compressible and not)", async () => {
    const app = await startDeflateApp({ threshold: 0 }, { maxFrameSize: 8 * MiB });
    const peer = await Peer.open(`${app.wsUrl}/echo`);
    const noise = noisyBytes(5 * MiB, 31);
    const echoedNoise = await peer.roundTrip(noise);
    expect(echoedNoise.isBinary).toBe(true);
    expect(echoedNoise.data.equals(noise)).toBe(true);
    const text = "ab✓ compressible ".repeat(Math.floor((5 * MiB) / 19));
    const echoedText = await peer.roundTrip(text);
    expect(echoedText.isBinary).toBe(false);
    expect(echoedText.data.toString() === text).toBe(true);
    expect(app.codecCalls).toEqual({ decode: 2, encode: 2 });
  });

  it("keeps the order when small (uncompressed) and large (compressed) messages alternate", async () => {
    const app = await startDeflateApp({ threshold: 1024 });
    // ws applies its 1024-byte threshold only without context takeover: then it too sends both kinds.
    const peer = await Peer.open(`${app.wsUrl}/echo`, { clientNoContextTakeover: true });
    const sent = Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0 ? `#${i}` : `#${i} ${"large and compressible ".repeat(200)}`,
    );
    for (const m of sent) peer.ws.send(m);
    const got: string[] = [];
    for (let i = 0; i < sent.length; i++) got.push((await peer.next()).data.toString());
    expect(got.map((m) => m.slice(0, 5))).toEqual(sent.map((m) => m.slice(0, 5)));
    expect(got).toEqual(sent);
    const { received } = await app.session(0);
    expect(received.map((m) => m.data.toString())).toEqual(sent);
    // Both sides compressed only the 100 large ones: the small ones went as they are, in between.
    expect(app.codecCalls).toEqual({ decode: 100, encode: 100 });
  });
});

describe("permessage-deflate on the wire", () => {
  it("compresses 'Hello' to the RFC 7692 §7.2.3.1 and §7.2.3.2 bytes, with RSV1 set", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    expect(client.headers["sec-websocket-extensions"]).toBe("permessage-deflate");
    client.write(clientFrame(OP.text, "Hello")); // uncompressed from the client: allowed
    const first = await client.next();
    expect(first).toMatchObject({ fin: true, rsv1: true, opcode: OP.text, masked: false });
    expect(first.payload).toEqual(hex("f2 48 cd c9 c9 07 00"));
    client.write(clientFrame(OP.text, hex("f2 48 cd c9 c9 07 00"), { rsv1: true }));
    const second = await client.next();
    expect(second).toMatchObject({ rsv1: true, opcode: OP.text });
    expect(second.payload).toEqual(hex("f2 00 11 00 00"));
    expect((await app.session(0)).received.map((m) => m.data.toString())).toEqual(["Hello", "Hello"]);
  });

  it("sends messages queued without awaiting in order, compressing only those over the threshold", async () => {
    const messages = Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0 ? `small ${i}` : `large ${i} ${"abcdefgh".repeat(200)}`,
    );
    const app = await startDeflateApp({ threshold: 1024 }, {}, messages);
    const client = await RawClient.connect(app.port, "/push", "permessage-deflate");
    const inflater = new MessageInflater();
    onCleanup(() => inflater.close());
    const got: string[] = [];
    const compressed: boolean[] = [];
    for (let i = 0; i < messages.length; i++) {
      const frame = await client.next();
      expect(frame.opcode).toBe(OP.text);
      compressed.push(frame.rsv1);
      got.push((frame.rsv1 ? await inflater.inflate(frame.payload) : frame.payload).toString());
    }
    expect(got).toEqual(messages);
    expect(compressed).toEqual(messages.map((_, i) => i % 2 === 1));
  });

  it("reassembles a compressed message sent in 3 fragments and answers a ping between them", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    const text = `fragmented ✓ ${"0123456789".repeat(300)}`;
    const payload = deflateMessage(text);
    const a = Math.floor(payload.length / 3);
    const b = Math.floor((2 * payload.length) / 3);
    client.write(clientFrame(OP.text, payload.subarray(0, a), { fin: false, rsv1: true }));
    client.write(clientFrame(OP.ping, "mid-message"));
    const pong = await client.next();
    expect(pong.opcode).toBe(OP.pong);
    expect(pong.payload.toString()).toBe("mid-message");
    expect((await app.session(0)).received).toEqual([]); // not delivered before its last fragment
    client.write(clientFrame(OP.continuation, payload.subarray(a, b), { fin: false }));
    client.write(clientFrame(OP.continuation, payload.subarray(b), { fin: true }));
    const echo = await client.next();
    expect(echo).toMatchObject({ fin: true, rsv1: true, opcode: OP.text });
    const inflater = new MessageInflater();
    onCleanup(() => inflater.close());
    expect((await inflater.inflate(echo.payload)).toString()).toBe(text);
    const { received } = await app.session(0);
    expect(received).toEqual([{ type: "text", data: Buffer.from(text) }]);
  });

  it("fails with 1002 when RSV1 is set on a continuation frame", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    const payload = deflateMessage("Hello, fragments");
    client.write(clientFrame(OP.text, payload.subarray(0, 4), { fin: false, rsv1: true }));
    client.write(clientFrame(OP.continuation, payload.subarray(4), { fin: true, rsv1: true }));
    expect(await client.nextCloseCode()).toBe(1002);
    const recorded = await app.session(0);
    expect(await closeCodeOfSession(recorded)).toBe(1002);
    expect(recorded.received).toEqual([]);
    expect(protocolErrors(app)).toEqual([{ code: "RESERVED_BITS_SET", closeCode: 1002 }]);
  });

  it("fails with 1009 on an inflate bomb (50 MiB of zeros, maxFrameSize 1 MiB) in bounded memory", async () => {
    const bomb = await zeroBomb(50);
    expect(bomb.length).toBeLessThan(MiB); // it passes the size check on the wire
    const app = await startDeflateApp({ threshold: 0 }, { maxFrameSize: MiB });
    const client = await RawClient.connect(app.port, "/sink", "permessage-deflate");
    const rssBefore = process.memoryUsage().rss;
    client.write(clientFrame(OP.binary, bomb, { rsv1: true }));
    expect(await client.nextCloseCode()).toBe(1009);
    const recorded = await app.session(0);
    expect(await closeCodeOfSession(recorded)).toBe(1009);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * MiB);
    expect(recorded.received).toEqual([]);
    expect(protocolErrors(app)).toEqual([{ code: "MESSAGE_TOO_BIG", closeCode: 1009 }]);
  });

  it("delivers a message that inflates to exactly maxFrameSize and fails one byte larger with 1009", async () => {
    const limit = 64 * 1024;
    const app = await startDeflateApp({ threshold: 0 }, { maxFrameSize: limit });
    const exact = await RawClient.connect(app.port, "/sink", "permessage-deflate");
    exact.write(clientFrame(OP.binary, deflateMessage(Buffer.alloc(limit, 7)), { rsv1: true }));
    const first = await app.session(0);
    await until(() => first.received.length === 1, "the message");
    expect(first.received.map((m) => m.data.length)).toEqual([limit]);
    exact.write(clientFrame(OP.close, Buffer.from([0x03, 0xe8])));
    expect(await exact.nextCloseCode()).toBe(1000);

    const over = await RawClient.connect(app.port, "/sink", "permessage-deflate");
    over.write(clientFrame(OP.binary, deflateMessage(Buffer.alloc(limit + 1, 7)), { rsv1: true }));
    expect(await over.nextCloseCode()).toBe(1009);
    expect((await app.session(1)).received).toEqual([]);
  });

  it("fails with 1007 on a compressed text message that is not valid UTF-8", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    // "κόσμε" followed by an encoded surrogate (ED A0 80), which UTF-8 forbids.
    const bytes = Buffer.concat([Buffer.from("κόσμε"), Buffer.from([0xed, 0xa0, 0x80])]);
    client.write(clientFrame(OP.text, deflateMessage(bytes), { rsv1: true }));
    expect(await client.nextCloseCode()).toBe(1007);
    const recorded = await app.session(0);
    expect(await closeCodeOfSession(recorded)).toBe(1007);
    expect(recorded.received).toEqual([]);
    expect(protocolErrors(app)).toEqual([{ code: "INVALID_UTF8", closeCode: 1007 }]);
  });

  it("accepts the same bytes as a compressed binary message", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    const bytes = Buffer.from([0xed, 0xa0, 0x80, 0xff]);
    client.write(clientFrame(OP.binary, deflateMessage(bytes), { rsv1: true }));
    const echo = await client.next();
    expect(echo.opcode).toBe(OP.binary);
    const inflater = new MessageInflater();
    onCleanup(() => inflater.close());
    expect((await inflater.inflate(echo.payload)).equals(bytes)).toBe(true);
  });

  it("fails with 1007 on corrupt deflate data", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const client = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    client.write(clientFrame(OP.binary, hex("ff ff ff ff"), { rsv1: true }));
    const close = await client.next();
    expect(close.opcode).toBe(OP.close);
    expect(closeCodeOf(close)).toBe(1007);
    const recorded = await app.session(0);
    expect(await closeCodeOfSession(recorded)).toBe(1007);
    expect(protocolErrors(app)).toEqual([{ code: "EXTENSION_FAILED", closeCode: 1007 }]);
  });

  it("keeps the other sessions working when one fails", async () => {
    const app = await startDeflateApp({ threshold: 0 });
    const good = await Peer.open(`${app.wsUrl}/echo`);
    const bad = await RawClient.connect(app.port, "/echo", "permessage-deflate");
    bad.write(clientFrame(OP.binary, hex("ff ff ff ff"), { rsv1: true }));
    expect(await bad.nextCloseCode()).toBe(1007);
    expect((await good.roundTrip("still fine ".repeat(100))).data.toString()).toBe("still fine ".repeat(100));
  });

  // A compressed message followed at once by the client's Close frame (ws: `send(big); close()`): the
  // message must reach the handler whole. (With the code of commit 4bce980 it arrived truncated, because
  // the close handshake finished and the codec was closed while the message was still being inflated; the
  // close reply now waits for the inbound pipeline.)
  it("delivers a compressed message whole when ws closes right after sending it", async () => {
    const app = await startDeflateApp({ threshold: 0 }, { maxFrameSize: 16 * MiB });
    for (let i = 0; i < 3; i++) {
      const message = noisyBytes(MiB, 50 + i);
      const peer = await Peer.open(`${app.wsUrl}/sink`);
      peer.ws.send(message);
      peer.ws.close(1000);
      expect((await within(peer.closed, 5000, "the client's close")).code).toBe(1000);
      const recorded = await app.session(i);
      await within(recorded.incomingEnded, 5000, "the end of incoming");
      expect(recorded.received.map((m) => m.data.length)).toEqual([message.length]);
      expect(recorded.received[0]!.data.equals(message)).toBe(true);
    }
  });

  it("delivers a compressed message whole when the Close frame arrives in the same packet", async () => {
    const app = await startDeflateApp({ threshold: 0 }, { maxFrameSize: 16 * MiB });
    const message = noisyBytes(100_000, 61);
    const client = await RawClient.connect(app.port, "/sink", "permessage-deflate");
    client.write(
      Buffer.concat([
        clientFrame(OP.binary, deflateMessage(message), { rsv1: true }),
        clientFrame(OP.close, Buffer.from([0x03, 0xe8])),
      ]),
    );
    expect(await client.nextCloseCode()).toBe(1000);
    const recorded = await app.session(0);
    await within(recorded.incomingEnded, 5000, "the end of incoming");
    expect(recorded.received.map((m) => m.data.length)).toEqual([message.length]);
  });

  // The codec is closed only after messages already received are decoded, so none is cut short.
  it("never delivers a compressed message truncated when the peer ends TCP right after it", async () => {
    const app = await startDeflateApp({ threshold: 0 }, { maxFrameSize: 16 * MiB });
    const message = noisyBytes(8 * MiB, 41);
    const payload = deflateMessage(message);
    for (let i = 0; i < 3; i++) {
      const client = await RawClient.connect(app.port, "/sink", "permessage-deflate");
      client.socket.end(clientFrame(OP.binary, payload, { rsv1: true }));
      const recorded = await app.session(i);
      await within(recorded.incomingEnded, 5000, "the end of incoming");
      for (const m of recorded.received) expect(m.data.length).toBe(message.length);
    }
  });
});

describe("permessage-deflate and keepalive", () => {
  it("frees idle zlib streams on the ping rhythm without context takeover, and keeps working", async () => {
    const app = await startDeflateApp(
      { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
      { pingPeriod: 40, timeout: 1000 },
    );
    const peer = await Peer.open(`${app.wsUrl}/echo`);
    const { session } = await app.session(0);
    const codec = app.codecs[0] as unknown as { inflater: unknown; deflater: unknown };
    expect((await peer.roundTrip("x".repeat(2000))).data.toString()).toBe("x".repeat(2000));
    expect(codec.inflater).toBeDefined();
    expect(codec.deflater).toBeDefined();
    // Two ping periods without messages: the first marks the streams idle, the second frees them.
    const deadline = Date.now() + 2000;
    while ((codec.inflater !== undefined || codec.deflater !== undefined) && Date.now() < deadline)
      await delay(10);
    expect(codec.inflater).toBeUndefined();
    expect(codec.deflater).toBeUndefined();
    expect((await peer.roundTrip("y".repeat(2000))).data.toString()).toBe("y".repeat(2000));
    expect(session.isOpen).toBe(true);
  });
});
