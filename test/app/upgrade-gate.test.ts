/**
 * The upgrade gate of `listen`: a whole, plain upgrade request in the first read is answered by
 * sockway's own reader; every other connection reaches node:http with all of its bytes.
 */
import type { IncomingMessage, Server } from "node:http";
import type { Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DirectRequest, HeadBytes } from "../../src/app/upgrade-gate.js";
import { AppError, type Application, createApp, WebSockets } from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { openSocket, parseResponse, rawRequest } from "../helpers/http.js";
import { clientFrame, RawClient } from "../helpers/raw-client.js";
import { deferred, delay, until, within } from "../helpers/wait.js";

afterEach(() => {
  vi.restoreAllMocks();
  return cleanup();
});

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const upgradeHead = (port: number, path = "/echo", extra = "") =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** A raw TCP connection that records everything the server sends; `received()` is it so far. */
async function recordingSocket(port: number) {
  const socket = await openSocket(port);
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  return { socket, received: () => Buffer.concat(chunks) };
}

/** Everything the server sends on a new connection after `send`, until it closes the connection. */
async function answerTo(port: number, send: (socket: Socket) => void, ms: number): Promise<string> {
  const { socket, received } = await recordingSocket(port);
  const closed = new Promise((resolve) => socket.once("close", resolve));
  send(socket);
  await within(closed, ms, "the server closing the connection");
  return received().toString("latin1");
}

/** The server's open connections, as node:http counts them (the application's server is private). */
function openConnections(app: Application): Promise<number> {
  const server = (app as unknown as { server: Server }).server;
  return new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
}

/** The server-side socket of the next connection `app` accepts (call before connecting). */
function nextAccepted(app: Application): Promise<Socket> {
  const server = (app as unknown as { server: Server }).server;
  return within(new Promise((resolve) => server.once("connection", resolve)), 2000, "the server accepting");
}

/** Waits until the server's socket has read `bytes` bytes in all: what was written reached the server. */
function serverRead(socket: Socket, bytes: number): Promise<void> {
  return until(() => socket.bytesRead >= bytes, 2000, `the server reading ${bytes} bytes`);
}

/**
 * An echo route whose beforeUpgrade records call.request, and an HTTP route that echoes bodies.
 * `errors` is what reached the error hook.
 */
async function gateApp(listen: { upgradeReader?: "sockway" | "node" } = {}, handshakeTimeout = 500) {
  const seen: IncomingMessage[] = [];
  const errors: unknown[] = [];
  const app = createApp()
    .install(WebSockets, { handshakeTimeout })
    .onError((error) => errors.push(error));
  app.routing((r) => {
    r.webSocket(
      "/echo",
      {
        beforeUpgrade: (call) => {
          seen.push(call.request as IncomingMessage);
        },
      },
      async (s) => {
        for await (const m of s.incoming) await s.send(m);
      },
    );
    r.post("/body", async (call) => {
      const chunks: Buffer[] = [];
      for await (const c of call.request) chunks.push(c as Buffer);
      call.respondText(`got ${Buffer.concat(chunks).toString()}`);
    });
    r.get("/hello", (call) => call.respondText("hello"));
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0, ...listen });
  onCleanup(() => app.stop({ grace: 0 }));
  return { app, port, seen, errors };
}

describe("upgrade requests read by sockway", () => {
  it("a whole upgrade head is read by the gate; call.request is still a complete IncomingMessage", async () => {
    const direct = vi.spyOn(DirectRequest.prototype, "toIncomingMessage");
    const { port, seen } = await gateApp();
    const client = await RawClient.connect(port, "/echo?x=1", { headers: { "X-Custom": "  Value  " } });
    expect(client.response.status).toBe(101);
    expect(direct).toHaveBeenCalledTimes(1);
    const req = seen[0]!;
    expect(req.method).toBe("GET");
    expect(req.url).toBe("/echo?x=1");
    expect(req.httpVersion).toBe("1.1");
    expect(req.headers["x-custom"]).toBe("Value");
    expect(req.headers.upgrade).toBe("websocket");
    expect(req.rawHeaders).toContain("X-Custom");
    expect(req.rawHeaders[req.rawHeaders.indexOf("X-Custom") + 1]).toBe("Value");
    expect(req.rawHeaders.length % 2).toBe(0);
    expect(req.complete).toBe(true);
    expect(req.socket.remotePort).toBe(client.socket.localPort);
    client.sendText("hi");
    expect((await client.nextData()).payload.toString()).toBe("hi");
  });

  it("call.headers in the session, after the request is released, are the head's (kept as its text)", async () => {
    const inHandler: Array<Record<string, unknown>> = [];
    const app = createApp()
      .install(WebSockets)
      .routing((r) => {
        r.webSocket("/plain", async (s) => {
          inHandler.push({ ...s.call.headers });
          inHandler.push(s.call.headers); // read twice: the same object once parsed
          expect(() => s.call.request).toThrow(AppError);
          await s.close();
        });
        r.webSocket(
          "/changed",
          {
            beforeUpgrade: (call) => {
              (call.headers as Record<string, string>)["x-added"] = "by the hook";
            },
          },
          async (s) => {
            inHandler.push(s.call.headers);
            await s.close();
          },
        );
      });
    const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
    onCleanup(() => app.stop({ grace: 0 }));
    const plain = await RawClient.connect(port, "/plain", { headers: { "X-Custom": "  Value  " } });
    expect(plain.response.status).toBe(101);
    await until(() => inHandler.length === 2, 2000, "the handler to read the headers");
    expect(inHandler[0]).toMatchObject({ "x-custom": "Value", upgrade: "websocket", connection: "Upgrade" });
    expect(inHandler[0]?.["sec-websocket-key"]).toMatch(/==$/);
    expect(inHandler[1]).toEqual(inHandler[0]);
    // A hook that changed the headers object: that object is what the session sees.
    const changed = await RawClient.connect(port, "/changed");
    expect(changed.response.status).toBe(101);
    await until(() => inHandler.length === 3, 2000, "the second handler");
    expect(inHandler[2]?.["x-added"]).toBe("by the hook");
  });

  it("frames sent in the same write as the head reach the session", async () => {
    const { port } = await gateApp();
    const frames = Buffer.concat([clientFrame(1, "one"), clientFrame(2, "two")]);
    const client = await RawClient.connect(port, "/echo", { after: frames });
    expect((await client.nextData()).payload.toString()).toBe("one");
    expect((await client.nextData()).payload.toString()).toBe("two");
  });

  it("frames sent while an async beforeUpgrade runs are not lost", async () => {
    const early = clientFrame(1, "early");
    const hookStarted = deferred();
    let sent = 0; // bytes written before the hook ends: the head, then the early frame
    const app = createApp()
      .install(WebSockets)
      .onError(() => {});
    app.routing((r) =>
      r.webSocket(
        "/slow",
        {
          // The hook holds the handshake until the server's socket has read the early frame as well.
          beforeUpgrade: async (call) => {
            hookStarted.resolve();
            await serverRead(call.request.socket as Socket, sent + early.length);
          },
        },
        async (s) => {
          for await (const m of s.incoming) await s.send(m);
        },
      ),
    );
    const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
    onCleanup(() => app.stop({ grace: 0 }));
    const { socket, received } = await recordingSocket(port);
    const head = upgradeHead(port, "/slow");
    sent = Buffer.byteLength(head);
    socket.write(head);
    await within(hookStarted.promise, 2000, "beforeUpgrade to start"); // the head has been read
    socket.write(early);
    await until(() => received().includes("early"), 2000, "the early frame's echo");
    expect(parseResponse(received()).status).toBe(101);
  });

  it("upgradeReader 'node' leaves every request to node:http", async () => {
    const direct = vi.spyOn(DirectRequest.prototype, "toIncomingMessage");
    const { port, seen } = await gateApp({ upgradeReader: "node" });
    const client = await RawClient.connect(port, "/echo");
    expect(client.response.status).toBe(101);
    expect(seen).toHaveLength(1);
    expect(direct).not.toHaveBeenCalled();
  });

  it("an unknown upgradeReader is an INVALID_OPTION AppError", async () => {
    const app = createApp().install(WebSockets);
    const attempt = app.listen({ port: 0, upgradeReader: "fast" as "node" });
    await expect(attempt).rejects.toBeInstanceOf(AppError);
    await expect(attempt).rejects.toMatchObject({ code: "INVALID_OPTION" });
  });
});

describe("a head gathered over many reads", () => {
  it("8,000 one-byte reads are kept in one buffer of at most twice their size, in order", () => {
    const sent = Buffer.from(Array.from({ length: 8000 }, (_, i) => i % 251));
    const head = new HeadBytes(sent.subarray(0, 1));
    let all: Buffer = Buffer.alloc(0);
    const capacities = new Set<number>();
    for (let i = 1; i < sent.length; i++) {
      all = head.append(sent.subarray(i, i + 1));
      capacities.add(head.capacity);
    }
    expect(all.equals(sent)).toBe(true);
    expect(head.length).toBe(8000);
    expect(head.capacity).toBeLessThanOrEqual(16_384);
    // Doubling: a handful of reallocations, not one per read.
    expect(capacities.size).toBeLessThanOrEqual(7);
  });

  it("a read larger than the room left is taken whole", () => {
    const head = new HeadBytes(Buffer.from("GET "));
    const big = Buffer.alloc(5000, 0x61);
    expect(head.append(big).length).toBe(5004);
    expect(head.append(Buffer.from("\r\n")).subarray(5004).toString()).toBe("\r\n");
  });
});

describe("a bug on the upgrade path", () => {
  it.each(["sockway", "node"] as const)(
    "costs one connection (500, reported as 'http'), not the process (upgradeReader %s)",
    async (upgradeReader) => {
      const errors: unknown[] = [];
      const app = createApp()
        .install(WebSockets)
        .onError((error) => errors.push(error));
      app.routing((r) => r.webSocket("/", async () => {}));
      const { port } = await app.listen({ host: "127.0.0.1", port: 0, upgradeReader });
      onCleanup(() => app.stop({ grace: 0 }));
      const match = vi.spyOn(app.host.tree, "match").mockImplementation(() => {
        throw new Error("a bug");
      });
      const res = await rawRequest(port, upgradeHead(port, "/"));
      expect(res.status).toBe(500);
      expect(errors).toHaveLength(1);
      match.mockRestore();
      expect((await RawClient.connect(port, "/")).response.status).toBe(101);
    },
  );
});

describe("everything else reaches node:http unchanged", () => {
  it("a head split over three writes is gathered and read by the gate", async () => {
    const direct = vi.spyOn(DirectRequest.prototype, "toIncomingMessage");
    const { app, port, seen } = await gateApp();
    const accepted = nextAccepted(app);
    const { socket, received } = await recordingSocket(port);
    const server = await accepted;
    const head = upgradeHead(port);
    // Split inside the final CRLF CRLF too; each part is read by the server before the next is sent.
    let sent = 0;
    for (const part of [head.slice(0, 40), head.slice(40, -2), head.slice(-2)]) {
      socket.write(part);
      sent += part.length;
      await serverRead(server, sent);
    }
    await until(() => received().includes("\r\n\r\n"), 2000, "the 101");
    expect(parseResponse(received()).status).toBe(101);
    expect(seen).toHaveLength(1);
    expect(direct).toHaveBeenCalledTimes(1);
  });

  it("a POST whose head and body come in separate writes reaches node:http whole", async () => {
    const { app, port } = await gateApp();
    const accepted = nextAccepted(app);
    const { socket, received } = await recordingSocket(port);
    const server = await accepted;
    // Each part is read by the server before the next is sent.
    let sent = 0;
    for (const part of [
      "POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\n",
      "Content-Length: 5\r\nConnection: close\r\n\r\nab",
    ]) {
      socket.write(part);
      sent += part.length;
      await serverRead(server, sent);
    }
    socket.write("cde");
    await within(new Promise((resolve) => socket.once("close", resolve)), 2000, "the response");
    expect(parseResponse(received()).body).toBe("got abcde");
  });

  it("a head trickled one byte at a time is answered 408 handshakeTimeout (500 ms) after the connection opened", async () => {
    const { port } = await gateApp();
    const { socket, received } = await recordingSocket(port);
    const opened = Date.now();
    let closed = false;
    socket.once("close", () => {
      closed = true;
    });
    const head = upgradeHead(port);
    // The pace is what is under test, not a synchronisation: at one byte per 50 ms the head would take
    // about 8 s, far beyond the timeout.
    for (let i = 0; i < head.length && !closed && Date.now() - opened < 3000; i++) {
      socket.write(head[i]!);
      await delay(50);
    }
    expect(closed).toBe(true);
    // The sweep runs every half timeout: 500 ms + up to 250 ms + slack.
    expect(Date.now() - opened).toBeLessThan(1100);
    expect(parseResponse(received()).status).toBe(408);
  });

  it("a repeated Sec-WebSocket-Key goes to node:http, which joins the values: 400", async () => {
    const { port } = await gateApp();
    const res = await rawRequest(port, upgradeHead(port, "/echo", `Sec-WebSocket-Key: ${KEY}\r\n`));
    expect(res.status).toBe(400);
  });

  it("a POST with its body in the first read, and a keep-alive GET after it on the same connection", async () => {
    const { port } = await gateApp();
    const { socket, received } = await recordingSocket(port);
    socket.write(
      `POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\nhello world` +
        `GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
    );
    await until(() => received().includes("\r\n\r\nhello"), 2000, "two responses");
    const text = received().toString();
    expect(text).toContain("got hello world");
    expect(text.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    // The same connection, once more, after the first read was handed over.
    socket.write(`GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    await until(
      () =>
        received()
          .toString()
          .match(/HTTP\/1\.1 200/g)?.length === 3,
      2000,
      "a third response",
    );
  });

  it("a plain request, then an upgrade on the same keep-alive connection (node:http's 'upgrade' path)", async () => {
    const { port, seen } = await gateApp();
    const { socket, received } = await recordingSocket(port);
    socket.write(`GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await until(() => received().includes("hello"), 2000, "the first response");
    socket.write(upgradeHead(port));
    await until(() => received().includes("101 Switching"), 2000, "the 101");
    expect(seen).toHaveLength(1);
  });

  it("a head over maxHeaderSize in one read is answered 431 by node:http", async () => {
    const { port } = await gateApp();
    const res = await rawRequest(port, upgradeHead(port, "/echo", `X-Big: ${"a".repeat(9000)}\r\n`));
    expect(res.status).toBe(431);
  });
});

// These use a 5 s handshakeTimeout and wait at most 1 s: an answer from the gate's 408 sweep cannot pass.
describe("heads with a bare LF line end", () => {
  it.each([
    ["LF LF", "GET /hello HTTP/1.1\nHost: x\n\n"],
    ["CRLF LF", "GET /hello HTTP/1.1\r\nHost: x\r\n\n"],
    ["LF CRLF", "GET /hello HTTP/1.1\r\nHost: x\n\r\n"],
    ["an upgrade head with LF line ends", upgradeHead(1).replaceAll("\r\n", "\n")],
    ["a request line ending in LF, the rest not sent yet", "GET /echo HTTP/1.1\n"],
  ])("a head with a bare LF (%s) gets node:http's answer without waiting", async (_what, head) => {
    const sockway = await gateApp({}, 5000);
    const node = await gateApp({ upgradeReader: "node" }, 5000);
    const theirs = await answerTo(node.port, (s) => s.write(head), 1000);
    expect(parseResponse(Buffer.from(theirs, "latin1")).status).toBe(400);
    expect(await answerTo(sockway.port, (s) => s.write(head), 1000)).toBe(theirs);
  });
});

describe("a client that half-closes before a whole head", () => {
  it.each([
    ["no bytes", ""],
    ["part of a head", "GET /echo HTTP/1.1\r\nHost: x\r\n"],
  ])("after %s is answered as node:http answers it and released at once", async (_what, part) => {
    const sockway = await gateApp({}, 5000);
    const node = await gateApp({ upgradeReader: "node" }, 5000);
    const halfClose = (s: Socket) => {
      if (part) s.write(part);
      s.end();
    };
    const theirs = await answerTo(node.port, halfClose, 1000);
    expect(await answerTo(sockway.port, halfClose, 1000)).toBe(theirs);
    await until(async () => (await openConnections(sockway.app)) === 0, 1000, "no open connections");
  });
});

describe("connections that send nothing", () => {
  it("are answered 408 and closed after handshakeTimeout (500 ms)", async () => {
    const { port } = await gateApp();
    const { socket, received } = await recordingSocket(port);
    const opened = Date.now();
    await within(new Promise((resolve) => socket.once("close", resolve)), 2500, "the server closing");
    expect(Date.now() - opened).toBeGreaterThanOrEqual(450);
    expect(parseResponse(received()).status).toBe(408);
  });

  it("a reset before any byte is not an error and leaves the server serving", async () => {
    const { app, port, errors } = await gateApp();
    const server = (app as unknown as { server: Server }).server;
    let accepted = 0;
    server.on("connection", () => accepted++);
    for (let i = 0; i < 20; i++) (await openSocket(port)).resetAndDestroy();
    // The server has accepted every one of them and seen each go.
    await until(async () => accepted === 20 && (await openConnections(app)) === 0, 2000, "20 resets handled");
    expect(errors).toEqual([]);
    expect((await RawClient.connect(port, "/echo")).response.status).toBe(101);
    expect((await rawRequest(port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).body).toBe(
      "hello",
    );
  });

  it("app.stop() closes them at once", async () => {
    const app = createApp()
      .install(WebSockets)
      .onError(() => {});
    app.routing((r) => r.webSocket("/", async () => {}));
    const { port } = await app.listen({ host: "127.0.0.1", port: 0 });
    const sockets = await Promise.all([openSocket(port), openSocket(port)]);
    await until(async () => (await openConnections(app)) === 2, 2000, "both connections accepted");
    const closed = sockets.map((s) => new Promise((resolve) => s.once("close", resolve)));
    await within(app.stop({ grace: 0 }), 1000, "stop()");
    await within(Promise.all(closed), 1000, "the waiting connections closing");
  });
});
