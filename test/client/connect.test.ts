/**
 * The client (`connect`) against sockway's own server: both forms of connect, messages both ways,
 * backpressure, closing both ways, subprotocols, headers, refusals, deflate, and the handshake's
 * failures that need no scripted server (timeout, abort, refused connection, bad URL and options).
 */
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  AppError,
  type ApplicationCall,
  CloseReason,
  connect,
  type DefaultWebSocketSession,
  HandshakeError,
  permessageDeflate,
} from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { deferred, within } from "../helpers/wait.js";

afterEach(cleanup);

type ServerSession = DefaultWebSocketSession<ApplicationCall, unknown>;

/** An echo app whose sessions are handed to the test in order. */
async function echoApp(options: Parameters<typeof startApp>[1] = {}) {
  const sessions: ServerSession[] = [];
  const started = await startApp(
    (r) => {
      r.webSocket("/echo", async (s) => {
        sessions.push(s);
        for await (const m of s.incoming) await s.send(m);
      });
      r.webSocket("/chat", { protocol: "chat.v2" }, async (s) => {
        sessions.push(s);
        for await (const m of s.incoming) await s.send(m);
      });
      r.webSocket("/headers", async (s) => {
        sessions.push(s);
        await s.send(JSON.stringify({ origin: s.call.headers.origin, token: s.call.headers["x-token"] }));
        for await (const _ of s.incoming);
      });
      r.webSocket("/close-4002", async (s) => {
        sessions.push(s);
        await s.close(4002, "server says bye");
      });
    },
    { pingPeriod: 0, ...options },
  );
  return { ...started, sessions };
}

describe("connect against sockway's server", () => {
  it("with a handler: echoes text and binary, resolves with the handler's value after the closing handshake (1000)", async () => {
    const { wsUrl, sessions } = await echoApp();
    const result = await within(
      connect(`${wsUrl}/echo`, {}, async (session) => {
        expect(session.isOpen).toBe(true);
        expect(session.protocol).toBeUndefined();
        expect(session.extensions).toEqual([]);
        expect(session.call.url.href).toBe(`${wsUrl}/echo`);
        await session.send("héllo");
        await session.send(new Uint8Array([1, 2, 3]));
        const got: Array<[string, string]> = [];
        for await (const m of session.incoming) {
          got.push([m.type, m.type === "text" ? m.text : m.data.toString("hex")]);
          if (got.length === 2) break;
        }
        return got;
      }),
      5000,
      "connect with a handler",
    );
    expect(result).toEqual([
      ["text", "héllo"],
      ["binary", "010203"],
    ]);
    expect(await within(sessions[0]!.closeReason, 2000, "server close")).toEqual(new CloseReason(1000, ""));
  });

  it("a handler that throws closes with 1011 and the call rejects with its error", async () => {
    const { wsUrl, sessions } = await echoApp();
    const boom = new Error("boom");
    await expect(
      within(
        connect(`${wsUrl}/echo`, {}, () => {
          throw boom;
        }),
        5000,
        "connect",
      ),
    ).rejects.toBe(boom);
    expect((await sessions[0]!.closeReason).code).toBe(1011);
  });

  it("without a handler: the caller sends, reads and closes (4000 'bye' reaches the server); closeReason is the echo", async () => {
    const { wsUrl, sessions } = await echoApp();
    const session = await connect(`${wsUrl}/echo`);
    onCleanup(() => session.terminate());
    await session.send("one");
    const it = session.incoming[Symbol.asyncIterator]();
    const first = await within(it.next(), 2000, "echo");
    expect(first.value?.text).toBe("one");
    await session.close(4000, "bye");
    // What the client receives is the server's echo: sockway echoes the code without the reason.
    expect(await within(session.closeReason, 3000, "client closeReason")).toEqual(new CloseReason(4000, ""));
    expect(await sessions[0]!.closeReason).toEqual(new CloseReason(4000, "bye"));
    expect(session.state).toBe("closed");
    expect(session.signal.aborted).toBe(true);
  });

  it("a Close from the server ends incoming; closeReason is the server's code and reason", async () => {
    const { wsUrl } = await echoApp();
    const session = await connect(`${wsUrl}/close-4002`);
    const items = [];
    for await (const m of session.incoming) items.push(m);
    expect(items).toEqual([]);
    expect(await within(session.closeReason, 3000, "closeReason")).toEqual(
      new CloseReason(4002, "server says bye"),
    );
  });

  it("sends large messages with backpressure, through outgoing too, and flush resolves", async () => {
    const { wsUrl } = await echoApp({ maxFrameSize: 8 * 1024 * 1024 });
    const big = Buffer.alloc(4 * 1024 * 1024, 7);
    const session = await connect(`${wsUrl}/echo`, {
      maxFrameSize: 8 * 1024 * 1024,
      outgoingHighWaterMark: 64 * 1024,
    });
    onCleanup(() => session.terminate());
    expect(session.maxFrameSize).toBe(8 * 1024 * 1024);
    const writer = session.outgoing.getWriter();
    await writer.write(big);
    writer.releaseLock();
    await session.send("after");
    expect(session.bufferedAmount).toBeGreaterThan(0); // the 4 MiB frame is not all in the kernel yet
    await within(session.flush(), 5000, "flush");
    const it = session.incoming[Symbol.asyncIterator]();
    const a = (await within(it.next(), 5000, "big echo")).value!;
    expect(a.data.length).toBe(big.length);
    expect(a.data.equals(big)).toBe(true);
    expect((await within(it.next(), 5000, "text echo")).value!.text).toBe("after");
    await session.close();
  });

  it("offers subprotocols; the route's is chosen; a route that needs one not offered refuses with 400", async () => {
    const { wsUrl } = await echoApp();
    const session = await connect(`${wsUrl}/chat`, { protocols: ["chat.v1", "chat.v2"] });
    expect(session.protocol).toBe("chat.v2");
    await session.close();
    const refused = await connect(`${wsUrl}/chat`, { protocols: ["chat.v1"] }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(HandshakeError);
    expect((refused as HandshakeError).status).toBe(400);
    expect((refused as HandshakeError).body.toString()).toContain("Unsupported subprotocol");
  });

  it("sends headers and Origin", async () => {
    const { wsUrl } = await echoApp();
    const text = await connect(
      `${wsUrl}/headers`,
      { headers: { "X-Token": "t1" }, origin: "https://example.test" },
      async (s) => {
        for await (const m of s.incoming) return m.type === "text" ? m.text : "";
        return "";
      },
    );
    expect(JSON.parse(text)).toEqual({ origin: "https://example.test", token: "t1" });
  });

  it.each([
    [401, "who are you?", { "WWW-Authenticate": 'Bearer realm="x"' }],
    [403, "not you", {}],
    [426, "upgrade to something else", { "Sec-WebSocket-Version": "13" }],
    [503, "come back later", { "Retry-After": "7" }],
  ])(
    "a refused handshake (%i) rejects with HandshakeError carrying status, headers and body",
    async (status, body, headers) => {
      const { wsUrl } = await startApp((r) => {
        r.webSocket(
          "/guarded",
          { beforeUpgrade: (call) => call.reject(status, body, headers) },
          async () => {},
        );
      });
      const error = await connect(`${wsUrl}/guarded`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HandshakeError);
      const e = error as HandshakeError;
      expect([e.code, e.status, e.body.toString(), e.bodyTruncated]).toEqual([
        "UNEXPECTED_STATUS",
        status,
        body,
        false,
      ]);
      for (const [name, value] of Object.entries(headers)) expect(e.headers[name.toLowerCase()]).toBe(value);
      expect(e.message).toContain(String(status));
    },
  );

  it("negotiates permessage-deflate with sockway's server: compressed both ways, context takeover as agreed", async () => {
    const { wsUrl, sessions } = await echoApp({ extensions: [permessageDeflate({ threshold: 0 })] });
    const session = await connect(`${wsUrl}/echo`, {
      permessageDeflate: { threshold: 0, serverNoContextTakeover: true, serverMaxWindowBits: 10 },
    });
    onCleanup(() => session.terminate());
    expect(session.extensions).toEqual([
      {
        name: "permessage-deflate",
        params: [
          ["server_no_context_takeover", true],
          ["server_max_window_bits", "10"],
        ],
      },
    ]);
    expect(sessions[0]!.extensions).toEqual(session.extensions);
    const text = "compress me ".repeat(5000);
    const it = session.incoming[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) {
      await session.send(text);
      expect((await within(it.next(), 3000, "echo")).value!.text).toBe(text);
    }
    await session.close();
  });

  it("keepalive: pings the server every pingPeriod and closes 1011 'Ping timeout' when no pong comes", async () => {
    // A TCP server that answers the handshake and then reads nothing: no pong will come.
    const { scriptedServer, switching } = await import("./helpers.js");
    const server = await scriptedServer((req) => req.socket.write(switching(req)));
    const session = await connect(server.url, { pingPeriod: 30, timeout: 100 });
    expect(session.pingPeriod).toBe(30);
    expect(session.timeout).toBe(100);
    expect(await within(session.closeReason, 3000, "ping timeout")).toEqual(
      new CloseReason(1011, "Ping timeout"),
    );
  });
});

describe("connect failures before a session", () => {
  it("handshakeTimeout: a server that never answers", async () => {
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onCleanup(() => new Promise((r) => server.close(r)));
    const sockets: Array<{ destroy(): void }> = [];
    server.on("connection", (s) => sockets.push(s));
    onCleanup(() => {
      for (const s of sockets) s.destroy();
    });
    const port = (server.address() as { port: number }).port;
    const started = Date.now();
    const error = await connect(`ws://127.0.0.1:${port}/`, { handshakeTimeout: 150 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HandshakeError);
    expect([(error as HandshakeError).code, (error as HandshakeError).status]).toEqual([
      "HANDSHAKE_TIMEOUT",
      0,
    ]);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("signal: aborting rejects ABORTED with the signal's reason as cause; an aborted signal fails at once", async () => {
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onCleanup(() => new Promise((r) => server.close(r)));
    const sockets: Array<{ destroy(): void }> = [];
    server.on("connection", (s) => sockets.push(s));
    onCleanup(() => {
      for (const s of sockets) s.destroy();
    });
    const port = (server.address() as { port: number }).port;
    const controller = new AbortController();
    const connected = deferred();
    server.once("connection", () => connected.resolve());
    const pending = connect(`ws://127.0.0.1:${port}/`, { signal: controller.signal }).catch(
      (e: unknown) => e,
    );
    await within(connected.promise, 2000, "the TCP connection");
    const reason = new Error("stop");
    controller.abort(reason);
    const error = (await within(pending, 2000, "abort")) as HandshakeError;
    expect([error.code, error.cause]).toEqual(["ABORTED", reason]);
    const again = (await connect(`ws://127.0.0.1:${port}/`, { signal: controller.signal }).catch(
      (e: unknown) => e,
    )) as HandshakeError;
    expect(again.code).toBe("ABORTED");
  });

  it("a refused TCP connection rejects CONNECT_FAILED with the system error as cause", async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    await new Promise((r) => server.close(r));
    const error = (await connect(`ws://127.0.0.1:${port}/`).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error.code).toBe("CONNECT_FAILED");
    expect((error.cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  it.each([["ftp://127.0.0.1/"], ["not a url"], ["ws://127.0.0.1/#fragment"]])(
    "rejects INVALID_URL for %s",
    async (url) => {
      const error = (await connect(url).catch((e: unknown) => e)) as HandshakeError;
      expect([error.name, error.code]).toEqual(["HandshakeError", "INVALID_URL"]);
    },
  );

  it.each([
    [{ handshakeTimeout: -1 }],
    [{ pingPeriod: 1.5 }],
    [{ maxFrameSize: 10 }],
    [{ protocols: ["a b"] }],
    [{ protocols: ["a", "a"] }],
    [{ headers: { "Sec-WebSocket-Key": "x" } }],
    [{ headers: { "X-A": "a\r\nb" } }],
    [{ permessageDeflate: { clientMaxWindowBits: 8 } }],
    [{ permessageDeflate: { level: 10 } }],
    [{ followRedirects: true, maxRedirects: -1 }],
    [{ onError: "log" }],
  ])("rejects invalid options with AppError INVALID_OPTION: %j", async (options) => {
    const error = await connect("ws://127.0.0.1:1/", options as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("INVALID_OPTION");
  });
});
