/**
 * One contract for every kind of session: a server route's session over TCP, a client session from
 * `connect`, and both ends over the test host's in-memory transport. Each harness gives the session
 * under test a peer that echoes every message, answers "big N" with N bytes, and reports the Close it
 * received; the same tests then run on each.
 */
import { Buffer } from "node:buffer";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import {
  CloseReason,
  connect,
  connectOver,
  createApp,
  type DefaultWebSocketSession,
  SessionError,
  WebSockets,
} from "../../src/index.js";
import { memorySockets } from "../../src/testing/memory-pair.js";
import { serve } from "../../src/testing/test-application.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { deferred, within } from "../helpers/wait.js";

afterEach(cleanup);

// biome-ignore lint/suspicious/noExplicitAny: server and client sessions differ only in their call
type AnySession = DefaultWebSocketSession<any, any>;
interface Opened {
  session: AnySession;
  /** The Close frame the peer received (code 1005 for an empty one, 1006 for none). */
  peerGotClose: Promise<{ code: number; reason: string }>;
}
const LIMIT = 64 * 1024;
const options = { pingPeriod: 0, maxFrameSize: LIMIT };

/** A ws peer's behaviour: echo, "big N", and the Close it got. */
function wsPeer(ws: WebSocket): Promise<{ code: number; reason: string }> {
  ws.on("error", () => {});
  ws.on("message", (data: Buffer, isBinary) => {
    const text = isBinary ? "" : data.toString();
    if (text.startsWith("big ")) ws.send(Buffer.alloc(Number(text.slice(4)), 1));
    else ws.send(data, { binary: isBinary });
  });
  return new Promise((resolve) =>
    ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

/** The same behaviour as a sockway session (the in-memory harnesses' peer). */
async function sockwayPeer(peer: AnySession): Promise<{ code: number; reason: string }> {
  try {
    for await (const m of peer.incoming) {
      if (m.type === "text" && m.text.startsWith("big "))
        await peer.send(Buffer.alloc(Number(m.text.slice(4)), 1));
      else await peer.send(m);
    }
  } catch {
    // ended while echoing
  }
  const r = await peer.closeReason;
  return { code: r.code, reason: r.reason };
}

/** An app whose "/" route hands its session to the test and keeps it open until cleanup. */
function capturingApp() {
  const got = deferred<AnySession>();
  const done = deferred();
  const app = createApp()
    .install(WebSockets, options)
    .routing((r) =>
      r.webSocket("/", async (s) => {
        got.resolve(s);
        await done.promise;
      }),
    );
  onCleanup(() => done.resolve());
  return { app, session: () => within(got.promise, 3000, "the session") };
}

const harnesses: Record<string, () => Promise<Opened>> = {
  "server session over TCP (ws client)": async () => {
    const { app, session } = capturingApp();
    const { url } = await app.listen({ port: 0 });
    onCleanup(() => app.stop({ grace: 0 }));
    const ws = new WebSocket(url.replace("http", "ws"), { maxPayload: 16 << 20 });
    onCleanup(() => ws.terminate());
    const peerGotClose = wsPeer(ws);
    return { session: await session(), peerGotClose };
  },
  "client session over TCP (ws server)": async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", maxPayload: 16 << 20 });
    await new Promise((resolve) => wss.once("listening", resolve));
    onCleanup(() => new Promise((resolve) => wss.close(resolve)));
    // Wrapped: a promise resolved with a promise would wait for the peer's Close itself.
    const peer = new Promise<{ closed: Promise<{ code: number; reason: string }> }>((resolve) =>
      wss.once("connection", (ws) => {
        onCleanup(() => ws.terminate());
        resolve({ closed: wsPeer(ws) });
      }),
    );
    const session = await connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, options);
    onCleanup(() => session.terminate());
    return { session, peerGotClose: (await peer).closed };
  },
  "server session in memory (sockway client)": async () => {
    const { app, session } = capturingApp();
    const [clientEnd, serverEnd] = memorySockets();
    serve(app, serverEnd);
    const peer = await connectOver(clientEnd as unknown as Duplex, "ws://sockway.test/", {
      pingPeriod: 0,
      maxFrameSize: 16 << 20,
    });
    onCleanup(() => peer.terminate());
    const peerGotClose = sockwayPeer(peer);
    return { session: await session(), peerGotClose };
  },
  "client session in memory (sockway route)": async () => {
    const peerClose = deferred<{ closed: Promise<{ code: number; reason: string }> }>();
    const app = createApp()
      .install(WebSockets, { pingPeriod: 0, maxFrameSize: 16 << 20 })
      .routing((r) =>
        r.webSocket("/", async (s) => {
          const closed = sockwayPeer(s);
          peerClose.resolve({ closed });
          await closed;
        }),
      );
    const [clientEnd, serverEnd] = memorySockets();
    serve(app, serverEnd);
    const session = await connectOver(clientEnd as unknown as Duplex, "ws://sockway.test/", options);
    onCleanup(() => session.terminate());
    return { session, peerGotClose: (await within(peerClose.promise, 3000, "the peer")).closed };
  },
};

/** The next message, or a failure if `incoming` ended. */
async function next(session: AnySession): Promise<{ type: string; data: Buffer; text: string }> {
  const m = await within(session.incoming.receive(), 3000, "a message");
  if (m === undefined) throw new Error("incoming ended");
  return { type: m.type, data: m.data, text: m.type === "text" ? m.text : "" };
}

describe.each(Object.entries(harnesses))("session contract: %s", (_name, open) => {
  it("incoming yields whole text and binary messages, in order", async () => {
    const { session } = await open();
    for (let i = 0; i < 50; i++) await session.send(i % 2 ? `text ${i}` : Buffer.from([i, i, i]));
    for (let i = 0; i < 50; i++) {
      const m = await next(session);
      if (i % 2) expect([m.type, m.text]).toEqual(["text", `text ${i}`]);
      else expect([m.type, ...m.data]).toEqual(["binary", i, i, i]);
    }
    expect(session.isOpen).toBe(true);
    expect(session.state).toBe("open");
  });

  it("outgoing is a WritableStream over send; flush resolves", async () => {
    const { session } = await open();
    const writer = session.outgoing.getWriter();
    await writer.write("via the stream");
    writer.releaseLock();
    await session.flush();
    const m = await next(session);
    expect([m.type, m.text]).toEqual(["text", "via the stream"]);
  });

  it("close(code, reason): the peer gets them, closeReason has the echo, later sends reject", async () => {
    const { session, peerGotClose } = await open();
    const aborted = deferred<unknown>();
    session.signal.addEventListener("abort", () => aborted.resolve(session.signal.reason));
    await session.close(4001, "bye");
    expect(await within(peerGotClose, 3000, "the peer's close")).toEqual({ code: 4001, reason: "bye" });
    const reason = await within(session.closeReason, 3000, "closeReason");
    expect(reason).toBeInstanceOf(CloseReason);
    expect(reason.code).toBe(4001);
    expect(await within(aborted.promise, 3000, "the signal")).toBe(reason);
    expect(session.state).toBe("closed");
    await expect(session.send("late")).rejects.toBeInstanceOf(SessionError);
  });

  it("a message over maxFrameSize closes with 1009", async () => {
    const { session, peerGotClose } = await open();
    await session.send(`big ${LIMIT + 1}`);
    expect((await within(peerGotClose, 3000, "the peer's close")).code).toBe(1009);
    expect((await within(session.closeReason, 3000, "closeReason")).code).toBe(1009);
  });

  it("terminate() ends at once with 1006", async () => {
    const { session } = await open();
    session.terminate();
    expect(session.state).toBe("closed");
    expect((await session.closeReason).code).toBe(1006);
  });

  it("send waits for drain above the high-water mark: a large message still gets through", async () => {
    const { session } = await open();
    const big = Buffer.alloc(LIMIT - 100, 7); // under the peer's limit both ways
    await Promise.all([session.send(big), session.send(big), session.send("after")]);
    expect((await next(session)).data.length).toBe(big.length);
    expect((await next(session)).data.length).toBe(big.length);
    const m = await next(session);
    expect([m.type, m.text]).toEqual(["text", "after"]);
  });
});

it("the harnesses are distinct kinds of session", async () => {
  const sides = [];
  for (const open of Object.values(harnesses)) {
    const { session } = await open();
    sides.push((session as unknown as { connection: { side: string } }).connection.side);
  }
  expect(sides).toEqual(["server", "client", "server", "client"]);
});
