/**
 * The client over HTTP/2 (RFC 8441, the `http2` option) against an independent peer: a node:http2
 * server that answers the extended CONNECT itself and echoes WebSocket frames with a decoder written
 * here (not sockway's), over TLS (h2) and cleartext (h2c).
 */
import {
  type ClientHttp2Session,
  constants,
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  connect as http2Connect,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { Duplex } from "node:stream";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { pooledHttp2Connections } from "../../src/client/http2.js";
import {
  AppError,
  type ClientSession,
  CloseReason,
  connect,
  createApp,
  HandshakeError,
  WebSockets,
} from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { selfSignedCert } from "../helpers/tls.js";
import { deferred, delay, until, within } from "../helpers/wait.js";

afterEach(cleanup);

let key: Buffer;
let cert: Buffer;

beforeAll(() => {
  ({ key, cert } = selfSignedCert("DNS:localhost,IP:127.0.0.1"));
});

// ---- a WebSocket peer on node:http2, with its own frame codec --------------------------------------

interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** One complete frame at the start of `buf` (with its size), or undefined. */
function decodeFrame(buf: Buffer): (Frame & { size: number }) | undefined {
  if (buf.length < 2) return undefined;
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  let length = b1 & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buf.length < 4) return undefined;
    length = buf.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buf.length < 10) return undefined;
    length = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  const maskAt = offset;
  if (masked) offset += 4;
  if (buf.length < offset + length) return undefined;
  const payload = Buffer.from(buf.subarray(offset, offset + length));
  if (masked) for (let i = 0; i < length; i++) payload[i]! ^= buf[maskAt + (i & 3)]!;
  return {
    fin: (b0 & 0x80) !== 0,
    rsv1: (b0 & 0x40) !== 0,
    opcode: b0 & 0x0f,
    masked,
    payload,
    size: offset + length,
  };
}

/** An unmasked (server) frame. */
function encodeFrame(f: { fin?: boolean; rsv1?: boolean; opcode: number; payload: Buffer }): Buffer {
  const n = f.payload.length;
  const head = Buffer.alloc(n < 126 ? 2 : n < 65536 ? 4 : 10);
  head[0] = ((f.fin ?? true) ? 0x80 : 0) | (f.rsv1 ? 0x40 : 0) | f.opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, f.payload]);
}

interface SeenStream {
  headers: IncomingHttpHeaders;
  stream: ServerHttp2Stream;
  /** Frames the client sent, unmasked. */
  frames: Frame[];
  /** The client ended its side (END_STREAM). */
  ended: boolean;
  /** The stream was reset (RST_STREAM) rather than ended. */
  aborted: boolean;
  /** Resolves with the stream's RST code (0: closed normally) when it closes. */
  closed: Promise<number>;
}

interface Peer {
  port: number;
  /** wss://127.0.0.1:port (ws:// for h2c) */
  url: string;
  sessions: ServerHttp2Session[];
  streams: SeenStream[];
  /** Resolves when the n-th (1-based) h2 session the server accepted closes. */
  sessionClosed: (n: number) => Promise<void>;
}

/**
 * A node:http2 server speaking RFC 8441 by hand. Paths: `/echo` (200, then echoes every frame back
 * unmasked; `?deflate` accepts permessage-deflate, `?protocol=x` picks x, `?twice=name` sends that
 * field a second time, empty), `/refuse?status=&size=`
 * (that status with a body of `size` bytes), `/hang` (no answer), `/reset` (200, echoes, then
 * RST_STREAM after the first frame), `/refuse-stream` (RST_STREAM REFUSED_STREAM, no answer), `/kill` (200, then drops the TCP connection under the h2 session
 * after the first frame, without a GOAWAY), `/goaway` (200, echoes, then a graceful GOAWAY after the first frame).
 */
async function h2Peer(
  options: { secure?: boolean; connectProtocol?: boolean; maxConcurrentStreams?: number } = {},
): Promise<Peer> {
  const secure = options.secure ?? true;
  const settings = {
    enableConnectProtocol: options.connectProtocol ?? true,
    ...(options.maxConcurrentStreams === undefined
      ? {}
      : { maxConcurrentStreams: options.maxConcurrentStreams }),
  };
  const server: Http2Server | Http2SecureServer = secure
    ? createSecureServer({ key, cert, settings })
    : createServer({ settings });
  const sessions: ServerHttp2Session[] = [];
  const closedSessions = new Map<ServerHttp2Session, Promise<void>>();
  const streams: SeenStream[] = [];
  // The TCP (or TLS) connections under the h2 sessions, to drop them without a GOAWAY.
  const sockets: Duplex[] = [];
  server.on(secure ? "secureConnection" : "connection", (socket: Duplex) => sockets.push(socket));
  server.on("session", (session: ServerHttp2Session) => {
    sessions.push(session);
    closedSessions.set(session, new Promise((resolve) => session.once("close", () => resolve())));
    session.on("error", () => {});
  });
  server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const closed = new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode)));
    const seen: SeenStream = { headers, stream, frames: [], ended: false, aborted: false, closed };
    streams.push(seen);
    stream.on("error", () => {});
    stream.on("end", () => {
      seen.ended = true;
    });
    stream.on("aborted", () => {
      seen.aborted = true;
    });
    const url = new URL(String(headers[":path"]), "http://x");
    if (headers[":method"] !== "CONNECT" || headers[":protocol"] !== "websocket") {
      stream.respond({ ":status": 400 });
      stream.end();
      return;
    }
    switch (url.pathname) {
      case "/hang":
        return;
      case "/refuse-stream":
        stream.close(constants.NGHTTP2_REFUSED_STREAM);
        return;
      case "/refuse": {
        const size = Number(url.searchParams.get("size") ?? 0);
        const status = Number(url.searchParams.get("status"));
        stream.respond({
          ":status": status,
          "x-why": "refused",
          ...(status < 400 ? { location: "/echo" } : {}),
        });
        stream.end(Buffer.alloc(size, "r"));
        return;
      }
    }
    const response: Record<string, string | number | string[]> = { ":status": 200 };
    if (url.searchParams.has("deflate")) response["sec-websocket-extensions"] = "permessage-deflate";
    const protocol = url.searchParams.get("protocol");
    if (protocol !== null) response["sec-websocket-protocol"] = protocol;
    const twice = url.searchParams.get("twice");
    if (twice !== null) response[twice] = [String(response[twice] ?? ""), ""];
    stream.respond(response);
    let pending: Buffer = Buffer.alloc(0);
    stream.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (;;) {
        const frame = decodeFrame(pending);
        if (frame === undefined) break;
        pending = pending.subarray(frame.size);
        seen.frames.push(frame);
        if (!stream.writable) continue;
        stream.write(encodeFrame(frame));
        if (frame.opcode === 8)
          stream.end(); // the server ends first after the closing handshake
        else if (url.pathname === "/reset") stream.close(constants.NGHTTP2_INTERNAL_ERROR);
        else if (url.pathname === "/kill")
          for (const socket of sockets) socket.destroy(); // no GOAWAY
        else if (url.pathname === "/goaway") stream.session?.close();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `${secure ? "wss" : "ws"}://127.0.0.1:${port}`,
    sessions,
    streams,
    sessionClosed: (n) => within(closedSessions.get(sessions[n - 1]!)!, 5000, `h2 session ${n} to close`),
  };
}

const tls = () => ({ ca: cert });

async function open(url: string, options: Parameters<typeof connect>[1] = {}): Promise<ClientSession> {
  const session = await within(
    connect(url, { http2: true, tls: tls(), pingPeriod: 0, ...options }),
    5000,
    url,
  );
  onCleanup(() => session.terminate());
  return session;
}

const iterators = new WeakMap<ClientSession, AsyncIterator<{ type: string; data: Buffer }>>();

async function next(session: ClientSession): Promise<{ type: string; data: Buffer }> {
  let it = iterators.get(session);
  if (it === undefined) {
    it = session.incoming[Symbol.asyncIterator]();
    iterators.set(session, it);
  }
  const r = await within(it.next(), 5000, "a message");
  if (r.done) throw new Error("incoming ended");
  return { type: r.value.type, data: r.value.data };
}

const rejection = async (promise: Promise<unknown>): Promise<HandshakeError> => {
  const error = await within(
    promise.then(
      () => {
        throw new Error("expected a rejection");
      },
      (e: unknown) => e,
    ),
    5000,
    "a rejection",
  );
  return error as HandshakeError;
};

// ---- tests ------------------------------------------------------------------------------------------

describe("connect over HTTP/2 (RFC 8441)", () => {
  it("sends the extended CONNECT with the WebSocket headers (no key), echoes text, binary and 1 MiB, closes with END_STREAM", async () => {
    const peer = await h2Peer();
    const s = await open(`${peer.url}/echo?room=1`, {
      headers: { "X-Token": "abc" },
      origin: "https://app.test",
      protocols: ["chat"],
      requireProtocol: false,
    });
    const h = peer.streams[0]!.headers;
    expect(h[":method"]).toBe("CONNECT");
    expect(h[":protocol"]).toBe("websocket");
    expect(h[":scheme"]).toBe("https");
    expect(h[":path"]).toBe("/echo?room=1");
    expect(h[":authority"]).toBe(`127.0.0.1:${peer.port}`);
    expect(h["sec-websocket-version"]).toBe("13");
    expect(h["sec-websocket-protocol"]).toBe("chat");
    expect(h["sec-websocket-extensions"]).toBeUndefined();
    expect(h["sec-websocket-key"]).toBeUndefined();
    expect(h.upgrade).toBeUndefined();
    expect(h.connection).toBeUndefined();
    expect(h.origin).toBe("https://app.test");
    expect(h["x-token"]).toBe("abc");

    expect(s.call.httpVersion).toBe("2.0");
    expect(s.call.url.href).toBe(`${peer.url}/echo?room=1`);
    expect(s.call.headers[":status" as "date"]).toBeUndefined();
    expect(s.call.headers.date).toBeDefined();
    expect(s.protocol).toBeUndefined();

    await s.send("héllo");
    expect(await next(s)).toEqual({ type: "text", data: Buffer.from("héllo") });
    await s.send(new Uint8Array([1, 2, 3]));
    expect(await next(s)).toEqual({ type: "binary", data: Buffer.from([1, 2, 3]) });
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    await s.send(big);
    const echoed = await next(s);
    expect(echoed.data.equals(big)).toBe(true);
    expect(peer.streams[0]!.frames.every((f) => f.masked)).toBe(true);

    await s.close(1000, "bye");
    expect(await within(s.closeReason, 5000, "close")).toEqual(new CloseReason(1000, "bye"));
    const seen = peer.streams[0]!;
    expect(await within(seen.closed, 5000, "stream close")).toBe(0);
    expect(seen.ended).toBe(true); // our end() was END_STREAM, not a reset
    expect(seen.aborted).toBe(false);
    expect(seen.frames.at(-1)!.opcode).toBe(8);
  });

  it("with permessage-deflate: offers it like HTTP/1.1, sends compressed frames, inflates the echo", async () => {
    const peer = await h2Peer();
    const s = await open(`${peer.url}/echo?deflate`, { permessageDeflate: true });
    expect(peer.streams[0]!.headers["sec-websocket-extensions"]).toBe(
      "permessage-deflate; client_max_window_bits",
    );
    expect(s.extensions.map((e) => e.name)).toEqual(["permessage-deflate"]);
    const text = "compress me ".repeat(87_000); // about 1 MB, under the default maxFrameSize (1 MiB)
    await s.send(text);
    const got = await next(s);
    expect(got.data.toString()).toBe(text);
    const frame = peer.streams[0]!.frames[0]!;
    expect(frame.rsv1).toBe(true);
    expect(frame.payload.length).toBeLessThan(text.length / 50);
    await s.send("small");
    expect((await next(s)).data.toString()).toBe("small");
  });

  it("without permessageDeflate, a server that accepts it anyway fails EXTENSION_MISMATCH", async () => {
    const peer = await h2Peer();
    const error = await rejection(connect(`${peer.url}/echo?deflate`, { http2: true, tls: tls() }));
    expect([error.code, error.status]).toEqual(["EXTENSION_MISMATCH", 200]);
  });

  it("a field RFC 6455 §11.3 allows once, repeated in the 200, fails HEADER_SYNTAX (node:http2 joins it)", async () => {
    const peer = await h2Peer();
    // Joined, "permessage-deflate, " would pass as an acceptance of the offer.
    const extensions = await rejection(
      connect(`${peer.url}/echo?deflate&twice=sec-websocket-extensions`, {
        http2: true,
        tls: tls(),
        permessageDeflate: true,
      }),
    );
    expect([extensions.code, extensions.status]).toEqual(["HEADER_SYNTAX", 200]);
    expect(extensions.message).toMatch(/Sec-WebSocket-Extensions appears more than once/);
    const protocol = await rejection(
      connect(`${peer.url}/echo?protocol=chat&twice=sec-websocket-protocol`, {
        http2: true,
        tls: tls(),
        protocols: ["chat"],
      }),
    );
    expect(protocol.code).toBe("HEADER_SYNTAX");
  });

  it("subprotocols are checked as over HTTP/1.1", async () => {
    const peer = await h2Peer();
    const s = await open(`${peer.url}/echo?protocol=chat`, { protocols: ["x", "chat"] });
    expect(s.protocol).toBe("chat");
    const unoffered = await rejection(
      connect(`${peer.url}/echo?protocol=other`, { http2: true, tls: tls(), protocols: ["chat"] }),
    );
    expect(unoffered.code).toBe("PROTOCOL_MISMATCH");
    const none = await rejection(
      connect(`${peer.url}/echo`, { http2: true, tls: tls(), protocols: ["chat"] }),
    );
    expect(none.code).toBe("PROTOCOL_MISMATCH");
  });

  it("backpressure both ways maps onto h2 flow control: a server that stops reading holds send(); a client that stops reading holds the server", async () => {
    const peer = await h2Peer();
    const s = await open(`${peer.url}/echo`, { incomingBufferLimit: 256 * 1024 });
    const server = peer.streams[0]!.stream;
    server.pause();
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 1);
    const sends = Array.from({ length: 48 }, () => s.send(chunk).then(() => sent++));
    await delay(200);
    expect(sent).toBeLessThan(48); // 3 MiB against a 1 MiB high-water mark and a 64 KiB stream window
    expect(s.bufferedAmount).toBeGreaterThan(1024 * 1024);
    server.resume();
    await within(Promise.all(sends), 5000, "the sends to drain");
    // The echo comes back while nothing reads incoming: past its limit the session stops reading the
    // stream, the window closes, and the server's writes queue on its side.
    await until(() => server.writableLength > 512 * 1024, 5000, "the server's writes to back up");
    await delay(200);
    expect(server.writableLength).toBeGreaterThan(512 * 1024); // and they stay there
    let got = 0;
    for await (const m of s.incoming) {
      got += m.data.length;
      if (got === 48 * chunk.length) break;
    }
    expect(server.writableLength).toBe(0);
  });

  it("100 sessions share one h2 connection; it closes when the last one ends", async () => {
    const peer = await h2Peer();
    const sessions = await Promise.all(
      Array.from({ length: 100 }, (_, i) => open(`${peer.url}/echo?n=${i}`)),
    );
    expect(peer.sessions).toHaveLength(1);
    expect(peer.streams).toHaveLength(100);
    expect(pooledHttp2Connections()).toBe(1);
    await Promise.all(
      sessions.map(async (s, i) => {
        await s.send(`message ${i}`);
        expect((await next(s)).data.toString()).toBe(`message ${i}`);
      }),
    );
    await Promise.all(sessions.slice(1).map((s) => s.close()));
    await Promise.all(sessions.slice(1).map((s) => within(s.closeReason, 5000, "close")));
    // One WebSocket left: the connection stays, and a new connect joins it.
    expect(pooledHttp2Connections()).toBe(1);
    const late = await open(`${peer.url}/echo`);
    expect(peer.sessions).toHaveLength(1);
    await late.close();
    await sessions[0]!.close();
    await within(Promise.all([late.closeReason, sessions[0]!.closeReason]), 5000, "the last closes");
    expect(pooledHttp2Connections()).toBe(0);
    await peer.sessionClosed(1);
    // The next connect opens a new connection.
    const again = await open(`${peer.url}/echo`);
    expect(peer.sessions).toHaveLength(2);
    expect(pooledHttp2Connections()).toBe(1);
    await again.close();
  });

  it("connections are pooled per origin and TLS options", async () => {
    const a = await h2Peer();
    const b = await h2Peer();
    await open(`${a.url}/echo`);
    await open(`${a.url}/echo`, { tls: { ca: Buffer.from(cert) } }); // equal by content: shared
    await open(`wss://localhost:${a.port}/echo`); // another origin (host): its own
    await open(`${a.url}/echo`, { tls: { ca: cert, rejectUnauthorized: true } }); // other options: its own
    await open(`${b.url}/echo`);
    expect(a.sessions).toHaveLength(3);
    expect(b.sessions).toHaveLength(1);
    expect(pooledHttp2Connections()).toBe(4);
  });

  it("a refusal rejects UNEXPECTED_STATUS with status, headers and body (capped)", async () => {
    const peer = await h2Peer();
    const forbidden = await rejection(
      connect(`${peer.url}/refuse?status=403&size=5`, { http2: true, tls: tls() }),
    );
    expect(forbidden).toBeInstanceOf(HandshakeError);
    expect([forbidden.code, forbidden.status]).toEqual(["UNEXPECTED_STATUS", 403]);
    expect(forbidden.headers["x-why"]).toBe("refused");
    expect(forbidden.headers[":status"]).toBeUndefined();
    expect(forbidden.body.toString()).toBe("rrrrr");
    expect(forbidden.bodyTruncated).toBe(false);
    const big = await rejection(
      connect(`${peer.url}/refuse?status=404&size=100000`, { http2: true, tls: tls() }),
    );
    expect([big.code, big.status]).toEqual(["UNEXPECTED_STATUS", 404]);
    expect(big.body.length).toBe(16 * 1024);
    expect(big.bodyTruncated).toBe(true);
    // Redirects are refusals too over HTTP/2.
    const moved = await rejection(
      connect(`${peer.url}/refuse?status=301`, { http2: true, tls: tls(), followRedirects: true }),
    );
    expect([moved.code, moved.status]).toEqual(["UNEXPECTED_STATUS", 301]);
    expect(moved.headers.location).toBe("/echo");
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("a stream reset before the answer fails CONNECT_FAILED (retryable), naming the code", async () => {
    const peer = await h2Peer();
    const error = await rejection(connect(`${peer.url}/refuse-stream`, { http2: true, tls: tls() }));
    expect(error.code).toBe("CONNECT_FAILED");
    expect(error.message).toContain("REFUSED_STREAM");
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("a server without SETTINGS_ENABLE_CONNECT_PROTOCOL fails H2_CONNECT_UNSUPPORTED, before any stream", async () => {
    const peer = await h2Peer({ connectProtocol: false });
    const error = await rejection(connect(`${peer.url}/echo`, { http2: true, tls: tls() }));
    expect(error).toBeInstanceOf(HandshakeError);
    expect([error.code, error.status]).toEqual(["H2_CONNECT_UNSUPPORTED", 0]);
    expect(peer.streams).toHaveLength(0);
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("a stream reset by the server ends the session with 1006; the connection's other sessions go on", async () => {
    const peer = await h2Peer();
    const other = await open(`${peer.url}/echo`);
    const s = await open(`${peer.url}/reset`);
    await s.send("x");
    expect((await within(s.closeReason, 5000, "close")).code).toBe(1006);
    await other.send("still here");
    expect((await next(other)).data.toString()).toBe("still here");
    expect(peer.sessions).toHaveLength(1);
  });

  it("the h2 connection dying ends every session on it with 1006 and leaves the pool", async () => {
    const peer = await h2Peer();
    const other = await open(`${peer.url}/echo`);
    const s = await open(`${peer.url}/kill`);
    expect(pooledHttp2Connections()).toBe(1);
    await s.send("x");
    expect((await within(s.closeReason, 5000, "close")).code).toBe(1006);
    expect((await within(other.closeReason, 5000, "close")).code).toBe(1006);
    expect(pooledHttp2Connections()).toBe(0);
  });

  it("after a GOAWAY, open sessions finish on the old connection and new connects open a new one", async () => {
    const peer = await h2Peer();
    const s = await open(`${peer.url}/goaway`);
    await s.send("first");
    expect((await next(s)).data.toString()).toBe("first");
    await until(() => pooledHttp2Connections() === 0, 5000, "the connection to leave the pool");
    await s.send("second");
    expect((await next(s)).data.toString()).toBe("second");
    const fresh = await open(`${peer.url}/echo`);
    expect(peer.sessions).toHaveLength(2);
    await fresh.send("new");
    expect((await next(fresh)).data.toString()).toBe("new");
    await s.close();
    expect((await within(s.closeReason, 5000, "close")).code).toBe(1000);
    await peer.sessionClosed(1);
  });

  it("handshakeTimeout: no answer rejects HANDSHAKE_TIMEOUT and resets the stream (CANCEL)", async () => {
    const peer = await h2Peer();
    const error = await rejection(
      connect(`${peer.url}/hang`, { http2: true, tls: tls(), handshakeTimeout: 200 }),
    );
    expect(error.code).toBe("HANDSHAKE_TIMEOUT");
    expect(await within(peer.streams[0]!.closed, 5000, "the stream's reset")).toBe(constants.NGHTTP2_CANCEL);
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("signal: aborting rejects ABORTED and resets the stream (CANCEL)", async () => {
    const peer = await h2Peer();
    const controller = new AbortController();
    const pending = connect(`${peer.url}/hang`, { http2: true, tls: tls(), signal: controller.signal });
    await until(() => peer.streams.length === 1, 5000, "the CONNECT");
    controller.abort(new Error("changed my mind"));
    const error = await rejection(pending);
    expect(error.code).toBe("ABORTED");
    expect((error.cause as Error).message).toBe("changed my mind");
    expect(await within(peer.streams[0]!.closed, 5000, "the stream's reset")).toBe(constants.NGHTTP2_CANCEL);
  });

  it("terminate() resets the stream instead of ending it", async () => {
    const peer = await h2Peer();
    const s = await open(`${peer.url}/echo`);
    s.terminate();
    expect((await s.closeReason).code).toBe(1006);
    // RFC 8441 §5: a TCP reset's equivalent is RST_STREAM with CANCEL.
    expect(await within(peer.streams[0]!.closed, 5000, "the stream to close")).toBe(constants.NGHTTP2_CANCEL);
    expect(peer.streams[0]!.aborted).toBe(true);
  });

  it("beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS, a connect waits for a stream to end (no second connection)", async () => {
    const peer = await h2Peer({ maxConcurrentStreams: 2 });
    const a = await open(`${peer.url}/echo`);
    await open(`${peer.url}/echo`);
    const third = connect(`${peer.url}/echo`, { http2: true, tls: tls(), pingPeriod: 0 });
    let opened = false;
    third.then(
      () => (opened = true),
      () => {},
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(opened).toBe(false);
    expect(peer.streams).toHaveLength(2);
    await a.close();
    const c = await within(third, 5000, "the third");
    onCleanup(() => c.terminate());
    expect(peer.sessions).toHaveLength(1);
    expect(peer.streams).toHaveLength(3);
  });

  it("h2c (ws:// with http2): prior knowledge over cleartext", async () => {
    const peer = await h2Peer({ secure: false });
    const s = await open(`${peer.url}/echo`);
    expect(peer.streams[0]!.headers[":scheme"]).toBe("http");
    await s.send("plain");
    expect((await next(s)).data.toString()).toBe("plain");
  });

  it("on the caller's ClientHttp2Session (already connected): sessions share it, and it stays open", async () => {
    const peer = await h2Peer();
    const h2: ClientHttp2Session = http2Connect(`https://127.0.0.1:${peer.port}`, { ca: cert });
    onCleanup(() => h2.destroy());
    // Its SETTINGS came before connect is called: connect must still learn them.
    await within(new Promise((resolve) => h2.once("remoteSettings", resolve)), 5000, "settings");
    await new Promise((resolve) => setTimeout(resolve, 20));
    const a = await open(`${peer.url}/echo`, { http2: h2 });
    const b = await open(`${peer.url}/echo`, { http2: h2 });
    expect(peer.sessions).toHaveLength(1);
    expect(pooledHttp2Connections()).toBe(0);
    await a.send("a");
    await b.send("b");
    expect((await next(a)).data.toString()).toBe("a");
    expect((await next(b)).data.toString()).toBe("b");
    await Promise.all([a.close(), b.close()]);
    await within(Promise.all([a.closeReason, b.closeReason]), 5000, "both closed");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(h2.closed || h2.destroyed).toBe(false);
  });

  it("on the caller's session to a server without the extended CONNECT: H2_CONNECT_UNSUPPORTED", async () => {
    const peer = await h2Peer({ connectProtocol: false });
    const h2 = http2Connect(`https://127.0.0.1:${peer.port}`, { ca: cert });
    onCleanup(() => h2.destroy());
    const fresh = await rejection(connect(`${peer.url}/echo`, { http2: h2 })); // still connecting
    expect(fresh.code).toBe("H2_CONNECT_UNSUPPORTED");
    const later = await rejection(connect(`${peer.url}/echo`, { http2: h2 })); // long connected
    expect(later.code).toBe("H2_CONNECT_UNSUPPORTED");
    h2.destroy();
    const closed = await rejection(connect(`${peer.url}/echo`, { http2: h2 }));
    expect(closed.code).toBe("CONNECT_FAILED");
  });

  it("a connection that cannot be made fails CONNECT_FAILED with the cause", async () => {
    const peer = await h2Peer();
    const untrusted = await rejection(connect(`${peer.url}/echo`, { http2: true }));
    expect(untrusted.code).toBe("CONNECT_FAILED");
    expect((untrusted.cause as NodeJS.ErrnoException).code).toBe("DEPTH_ZERO_SELF_SIGNED_CERT");
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("a TLS server that does not offer h2 by ALPN (sockway's HTTP/1.1 listener) fails CONNECT_FAILED, without falling back", async () => {
    const app = createApp().install(WebSockets, { pingPeriod: 0 });
    app.routing((r) => r.webSocket("/echo", async () => {}));
    const { port } = await app.listen({ host: "127.0.0.1", port: 0, tls: { key, cert } });
    onCleanup(() => app.stop({ grace: 0 }));
    const error = await rejection(connect(`wss://127.0.0.1:${port}/echo`, { http2: true, tls: tls() }));
    expect(error.code).toBe("CONNECT_FAILED");
    expect((error.cause as NodeJS.ErrnoException).code).toBe("ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("refuses headers HTTP/2 forbids, an agent, and an http2 value that is not a session", async () => {
    for (const name of [
      "Connection",
      "Upgrade",
      "Host",
      "Sec-WebSocket-Key",
      "Transfer-Encoding",
      "Keep-Alive",
    ]) {
      const error = await connect("wss://127.0.0.1:1/", { http2: true, headers: { [name]: "x" } }).catch(
        (e: unknown) => e,
      );
      expect(error, name).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe("INVALID_OPTION");
    }
    const agent = await connect("wss://127.0.0.1:1/", { http2: true, agent: {} as never }).catch(
      (e: unknown) => e,
    );
    expect((agent as AppError).code).toBe("INVALID_OPTION");
    const bad = await connect("wss://127.0.0.1:1/", { http2: {} as never }).catch((e: unknown) => e);
    expect((bad as AppError).code).toBe("INVALID_OPTION");
    // Host stays allowed over HTTP/1.1.
    const h1 = deferred<unknown>();
    connect("ws://127.0.0.1:1/", { headers: { Host: "x" }, handshakeTimeout: 1000 }).catch(h1.resolve);
    expect(((await h1.promise) as HandshakeError).code).toBe("CONNECT_FAILED");
  });
});
