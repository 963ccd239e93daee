/**
 * Client conformance against ws's WebSocketServer (a third-party server): echo with and without
 * permessage-deflate, fragmented messages reassembled, pings between fragments answered, keepalive,
 * close codes both ways, a server that never answers our Close, and a server that sends a masked frame.
 */
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import {
  type ClientDeflateOptions,
  type ClientOptions,
  CloseReason,
  connect,
  type ProtocolError,
} from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { deferred, until, within } from "../helpers/wait.js";

afterEach(cleanup);

const block = randomBytes(2048);

interface WsServer {
  url: string;
  /** The server side of the next connection. */
  next(): Promise<WebSocket>;
}

async function wsServer(options: ConstructorParameters<typeof WebSocketServer>[0] = {}): Promise<WsServer> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, ...options });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  const waiting: Array<(ws: WebSocket) => void> = [];
  const arrived: WebSocket[] = [];
  wss.on("connection", (ws) => {
    ws.on("error", () => {});
    const w = waiting.shift();
    if (w) w(ws);
    else arrived.push(ws);
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    next: () => {
      const ready = arrived.shift();
      if (ready) return Promise.resolve(ready);
      return within(
        new Promise<WebSocket>((resolve) => waiting.push(resolve)),
        3000,
        "the server connection",
      );
    },
  };
}

/** An echo server: what arrives goes back with the same type. */
function echo(ws: WebSocket): void {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
}

async function connected(server: WsServer, options: ClientOptions = {}) {
  const [session, peer] = await Promise.all([connect(server.url, options), server.next()]);
  onCleanup(() => session.terminate());
  return { session, peer };
}

describe("the client against ws's server", () => {
  it.each([
    ["without deflate", {}, false],
    ["with deflate (ws's defaults, threshold 0)", { perMessageDeflate: { threshold: 0 } }, true],
    [
      "with deflate, no context takeover both ways and windows of 10",
      {
        perMessageDeflate: {
          threshold: 0,
          serverNoContextTakeover: true,
          clientNoContextTakeover: true,
          serverMaxWindowBits: 10,
          clientMaxWindowBits: 10,
        },
      },
      true,
    ],
    [
      "with deflate, the client offering all four parameters",
      { perMessageDeflate: { threshold: 0 } },
      {
        threshold: 0,
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 11,
        clientMaxWindowBits: 12,
      },
    ],
  ] as Array<[string, object, boolean | ClientDeflateOptions]>)(
    "echoes text and binary %s",
    async (_name, serverOptions, deflate) => {
      const server = await wsServer(serverOptions);
      const { session, peer } = await connected(server, {
        permessageDeflate: deflate === true ? { threshold: 0 } : deflate,
      });
      echo(peer);
      expect(session.extensions.map((e) => e.name)).toEqual(deflate ? ["permessage-deflate"] : []);
      if (typeof deflate === "object")
        expect(session.extensions[0]!.params).toEqual([
          ["client_no_context_takeover", true],
          ["server_no_context_takeover", true],
          ["server_max_window_bits", "11"],
          ["client_max_window_bits", "12"],
        ]);
      const it = session.incoming[Symbol.asyncIterator]();
      const messages: Array<string | Buffer> = [
        "hello",
        "",
        "ü".repeat(70_000),
        Buffer.from([0, 1, 2, 255]),
        Buffer.alloc(200_000, 9),
        "hello again",
        // The same message twice: with context takeover the second is a reference to the first.
        "repeat me please ".repeat(20),
        "repeat me please ".repeat(20),
        // Matches 2 KiB back: beyond a window of 10 bits, valid only if we keep to the window we were given.
        Buffer.concat([block, block, block]),
      ];
      for (const m of messages) {
        await session.send(m);
        const got = (await within(it.next(), 3000, "an echo")).value!;
        if (typeof m === "string") expect(got.type === "text" && got.text).toBe(m);
        else expect([got.type, got.data.equals(m)]).toEqual(["binary", true]);
      }
      await session.close();
      expect(await within(session.closeReason, 3000, "closed")).toEqual(new CloseReason(1000, ""));
    },
  );

  it.each([
    [false, {}],
    [true, { perMessageDeflate: { threshold: 0 } }],
  ])(
    "reassembles fragmented messages from the server and answers pings sent between fragments (deflate: %s)",
    async (deflate, serverOptions) => {
      const server = await wsServer(serverOptions);
      const { session, peer } = await connected(server, { permessageDeflate: deflate });
      const pongs: string[] = [];
      peer.on("pong", (data) => pongs.push(data.toString()));
      peer.send("frag-", { fin: false });
      peer.ping("p1");
      peer.send("ment", { fin: false });
      peer.ping("p2");
      peer.send("ed", { fin: true });
      peer.send(Buffer.from([1, 2]), { binary: true, fin: false });
      peer.send(Buffer.from([3]), { binary: true, fin: true });
      const it = session.incoming[Symbol.asyncIterator]();
      const a = (await within(it.next(), 3000, "text")).value!;
      const b = (await within(it.next(), 3000, "binary")).value!;
      expect(a.type === "text" && a.text).toBe("frag-mented");
      expect([b.type, [...b.data]]).toEqual(["binary", [1, 2, 3]]);
      await until(() => pongs.length === 2, 3000, "two pongs");
      expect(pongs).toEqual(["p1", "p2"]);
    },
  );

  it("keepalive pings reach the server every pingPeriod and its pongs keep the session open", async () => {
    const server = await wsServer();
    const { session, peer } = await connected(server, { pingPeriod: 20, timeout: 500 });
    let pings = 0;
    peer.on("ping", () => pings++);
    await until(() => pings >= 4, 3000, "four keepalive pings");
    expect(session.isOpen).toBe(true);
  });

  it("close codes both ways: ours reaches the server, the server's reaches us", async () => {
    const server = await wsServer();
    const first = await connected(server);
    const serverSaw = deferred<[number, string]>();
    first.peer.on("close", (code, reason) => serverSaw.resolve([code, reason.toString()]));
    await first.session.close(4001, "client bye");
    expect(await within(serverSaw.promise, 3000, "the server's close event")).toEqual([4001, "client bye"]);
    expect(await within(first.session.closeReason, 3000, "closed")).toEqual(
      new CloseReason(4001, "client bye"),
    );

    const second = await connected(server);
    second.peer.close(4002, "server bye");
    const items = [];
    for await (const m of second.session.incoming) items.push(m);
    expect(items).toEqual([]);
    expect(await within(second.session.closeReason, 3000, "closed")).toEqual(
      new CloseReason(4002, "server bye"),
    );
  });

  it("a server that never answers our Close: the session ends after timeout with our code", async () => {
    const server = await wsServer();
    const { session, peer } = await connected(server, { timeout: 200 });
    // ws stops reading this connection: our Close is never read, never answered.
    (peer as unknown as { _socket: { pause(): void } })._socket.pause();
    const started = Date.now();
    await session.close(4003, "anyone?");
    expect(await within(session.closeReason, 3000, "the close timeout")).toEqual(
      new CloseReason(4003, "anyone?"),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(session.state).toBe("closed");
  });

  it("a server that sends a masked frame: the connection fails with 1002", async () => {
    const server = await wsServer();
    const reported: Array<{ error: unknown; kind: string }> = [];
    const { session, peer } = await connected(server, {
      timeout: 500,
      onError: (error, kind) => {
        reported.push({ error, kind });
        throw new Error("a failing hook is ignored");
      },
    });
    const serverSaw = deferred<number>();
    peer.on("close", (code) => serverSaw.resolve(code));
    const key = [0x11, 0x22, 0x33, 0x44];
    const payload = Buffer.from("masked").map((b, i) => b ^ key[i % 4]!);
    (peer as unknown as { _socket: { write(b: Buffer): void } })._socket.write(
      Buffer.from([0x81, 0x80 | payload.length, ...key, ...payload]),
    );
    expect((await within(session.closeReason, 3000, "the failure")).code).toBe(1002);
    expect(await within(serverSaw.promise, 3000, "ws's close event")).toBe(1002);
    // onError was told, once, with the violation.
    expect(reported.map((r) => [r.kind, (r.error as ProtocolError).code])).toEqual([
      ["protocol", "MASK_FORBIDDEN"],
    ]);
  });
});
