/**
 * Publishing encodes once: one frame for every plain subscriber, one compression per shared encoder for
 * subscribers with permessage-deflate and no server context takeover; many publications in one turn
 * reach a subscriber in one socket write; a session's own sends and its publications keep their order.
 */
import { Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { permessageDeflate, type SessionHandle } from "../../src/index.js";
import { cleanup } from "../helpers/cleanup.js";
import { until } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import { startPubSub } from "./pubsub-app.js";

afterEach(cleanup);

/** An app whose `/sub/{topic}` sessions subscribe and then read until the peer closes. */
function subscriberApp(extensions = false, serverNoContextTakeover = true) {
  const sessions: SessionHandle[] = [];
  return startPubSub(
    (r) =>
      r.webSocket("/sub/{topic}", async (session) => {
        sessions.push(session);
        await session.subscribe(session.call.parameters.topic!);
        await session.send("ready");
        for await (const _ of session.incoming);
      }),
    undefined,
    extensions ? { extensions: [permessageDeflate({ threshold: 64, serverNoContextTakeover })] } : {},
  ).then((started) => ({ ...started, sessions }));
}

async function subscribers(wsUrl: string, topic: string, n: number, options = {}): Promise<WsClient[]> {
  const clients = await Promise.all(
    Array.from({ length: n }, () => WsClient.open(`${wsUrl}/sub/${topic}`, [], options)),
  );
  for (const c of clients) expect(await c.nextText()).toBe("ready");
  return clients;
}

const text = (n: number) => "publication ".repeat(Math.ceil(n / 12)).slice(0, n);

describe("encode once", () => {
  it("one frame for every plain subscriber", async () => {
    const { app, wsUrl } = await subscriberApp();
    const clients = await subscribers(wsUrl, "t", 20);
    const before = app.pubsub.stats;
    for (const size of [10, 1000, 70_000]) {
      expect(app.publish("t", text(size)).delivered).toBe(20);
      for (const c of clients) expect(await c.nextText()).toBe(text(size));
    }
    const after = app.pubsub.stats;
    expect(after.framesEncoded - before.framesEncoded).toBe(3);
    expect(after.compressions - before.compressions).toBe(0);
    expect(after.delivered - before.delivered).toBe(60);
  });

  it("one compression per publication for subscribers without server context takeover", async () => {
    const { app, wsUrl } = await subscriberApp(true, true);
    const wide = await subscribers(wsUrl, "z", 10, { perMessageDeflate: true });
    // A smaller window needs its own compressor: one more compression, shared by these.
    const narrow = await subscribers(wsUrl, "z", 5, { perMessageDeflate: { serverMaxWindowBits: 10 } });
    const plain = await subscribers(wsUrl, "z", 3, { perMessageDeflate: false });
    const before = app.pubsub.stats;
    const message = text(8000);
    expect(app.publish("z", message).delivered).toBe(18);
    for (const c of [...wide, ...narrow, ...plain]) expect(await c.nextText()).toBe(message);
    let after = app.pubsub.stats;
    expect(after.compressions - before.compressions).toBe(2);
    expect(after.framesEncoded - before.framesEncoded).toBe(1); // for the three without deflate
    // Under the threshold nothing is compressed; compress: false sends it plain to everyone.
    app.publish("z", "tiny");
    app.publish("z", message, { compress: false });
    for (const c of [...wide, ...narrow, ...plain]) {
      expect(await c.nextText()).toBe("tiny");
      expect(await c.nextText()).toBe(message);
    }
    after = app.pubsub.stats;
    expect(after.compressions - before.compressions).toBe(2);
    expect(after.framesEncoded - before.framesEncoded).toBe(3);
    // Many in one turn: the shared compressor takes them one at a time, in order.
    for (let i = 0; i < 30; i++) app.publish("z", `${i} ${text(1000 + i * 37)}`);
    for (const c of [...wide, ...narrow, ...plain])
      for (let i = 0; i < 30; i++) expect(await c.nextText()).toBe(`${i} ${text(1000 + i * 37)}`);
    expect(app.pubsub.stats.compressions - after.compressions).toBe(60);
  });

  it("subscribers with context takeover compress with their own codec, in order", async () => {
    const { app, wsUrl } = await subscriberApp(true, false);
    const clients = await subscribers(wsUrl, "c", 4, { perMessageDeflate: true });
    const before = app.pubsub.stats;
    for (let i = 0; i < 20; i++) app.publish("c", `${i} ${text(3000)}`);
    for (const c of clients)
      for (let i = 0; i < 20; i++) expect(await c.nextText()).toBe(`${i} ${text(3000)}`);
    expect(app.pubsub.stats.compressions - before.compressions).toBe(0);
  });
});

describe("writes and order", () => {
  it("many publications in one turn reach each subscriber in one write", async () => {
    const { app, wsUrl, port } = await subscriberApp();
    const clients = await subscribers(wsUrl, "w", 10);
    const write = vi.spyOn(Socket.prototype, "write");
    try {
      for (let i = 0; i < 200; i++) app.publish("w", `message ${i}`);
      for (const c of clients) for (let i = 0; i < 200; i++) expect(await c.nextText()).toBe(`message ${i}`);
      const serverWrites = write.mock.contexts.filter((s) => (s as Socket).localPort === port).length;
      expect(serverWrites).toBe(10);
    } finally {
      write.mockRestore();
    }
  });

  it("a session's own sends and its publications keep their order, compressed or not", async () => {
    for (const noContext of [true, false]) {
      const { app, wsUrl } = await startPubSub(
        (r, app) =>
          r.webSocket("/o", async (session) => {
            await session.subscribe("o");
            for await (const m of session.incoming) {
              const n = Number(m.type === "text" ? m.text : "");
              // Interleave: a compressed send, a publication (compressed or under the threshold), a plain send.
              void session.send(`send ${n} ${text(2000)}`);
              app.publish("o", n % 2 ? `pub ${n}` : `pub ${n} ${text(2000)}`);
              void session.send(`after ${n}`);
            }
          }),
        undefined,
        { extensions: [permessageDeflate({ threshold: 64, serverNoContextTakeover: noContext })] },
      );
      const c = await WsClient.open(`${wsUrl}/o`, [], { perMessageDeflate: true });
      await until(() => app.subscriberCount("o") === 1, 2000, "the subscription");
      for (let n = 0; n < 10; n++) await c.send(String(n));
      for (let n = 0; n < 10; n++) {
        expect(await c.nextText()).toBe(`send ${n} ${text(2000)}`);
        expect(await c.nextText()).toBe(n % 2 ? `pub ${n}` : `pub ${n} ${text(2000)}`);
        expect(await c.nextText()).toBe(`after ${n}`);
      }
    }
  });
});
