import { afterEach, describe, expect, it } from "vitest";
import type { DefaultWebSocketSession } from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { RawClient } from "../helpers/raw-client.js";
import { deferred, delay, until, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

/** An echo route at /ws that hands its session to the test. */
async function keepaliveApp(options: { pingPeriod: number; timeout: number }) {
  const session = deferred<DefaultWebSocketSession>();
  const started = await startApp((r) => {
    r.webSocket("/ws", async (s) => {
      session.resolve(s);
      for await (const frame of s.incoming) await s.send(frame);
    });
  }, options);
  return { ...started, session: session.promise };
}

describe("keepalive pings", () => {
  it("a client that never answers pings gets close 1011 'Ping timeout', and so does closeReason", async () => {
    const app = await keepaliveApp({ pingPeriod: 50, timeout: 100 });
    const connectedAt = Date.now();
    const client = await RawClient.connect(app.port, "/ws");
    const ping = await client.next();
    expect(ping.opcode).toBe(Opcode.Ping);
    expect(ping.payload.length).toBe(4);
    expect(await client.nextClose(2000)).toEqual({ code: 1011, reason: "Ping timeout" });
    const elapsed = Date.now() - connectedAt;
    expect(elapsed).toBeGreaterThanOrEqual(130); // one period, then the whole timeout
    expect(elapsed).toBeLessThan(1500);
    const reason = await within((await app.session).closeReason, 2000, "closeReason");
    expect([reason.code, reason.reason]).toEqual([1011, "Ping timeout"]);
    await within(client.closed, 2000, "the connection to be gone");
    expect(app.errors).toEqual([]);
  });

  it("a pong with a different payload does not count as the answer", async () => {
    const app = await keepaliveApp({ pingPeriod: 50, timeout: 100 });
    const client = await RawClient.connect(app.port, "/ws");
    const ping = await client.next();
    expect(ping.opcode).toBe(Opcode.Ping);
    client.send(Opcode.Pong, Buffer.from("not yours"));
    expect(await client.nextClose(2000)).toEqual({ code: 1011, reason: "Ping timeout" });
  });

  it("a raw client that answers each ping with its payload stays connected", async () => {
    // A generous timeout: only the answering matters here, not how fast a loaded machine is.
    const app = await keepaliveApp({ pingPeriod: 50, timeout: 250 });
    const client = await RawClient.connect(app.port, "/ws");
    for (let i = 0; i < 5; i++) {
      const ping = await client.next();
      expect(ping.opcode).toBe(Opcode.Ping);
      client.send(Opcode.Pong, ping.payload);
    }
    client.sendText("alive");
    expect((await client.nextData()).payload.toString()).toBe("alive");
    expect((await app.session).isOpen).toBe(true);
  });

  it("a ws client (which answers pings itself) stays connected past several periods", async () => {
    const app = await keepaliveApp({ pingPeriod: 50, timeout: 250 });
    const client = await WsClient.open(`${app.wsUrl}/ws`);
    await delay(450);
    expect(client.pings).toBeGreaterThanOrEqual(4);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    await client.send("still here");
    expect(await client.nextText()).toBe("still here");
    expect(app.errors).toEqual([]);
  });

  it("pingPeriod: 0 sends no pings and never times out", async () => {
    const app = await keepaliveApp({ pingPeriod: 0, timeout: 50 });
    const client = await RawClient.connect(app.port, "/ws");
    await delay(300);
    expect(client.frames).toEqual([]);
    client.sendText("quiet");
    expect((await client.next()).payload.toString()).toBe("quiet");
  });

  it("timeout: 0 keeps pinging a silent client without ever closing", async () => {
    const app = await keepaliveApp({ pingPeriod: 40, timeout: 0 });
    const client = await RawClient.connect(app.port, "/ws");
    await delay(300);
    const opcodes = client.frames.map((f) => f.opcode);
    expect(opcodes.length).toBeGreaterThanOrEqual(3);
    expect(opcodes.every((op) => op === Opcode.Ping)).toBe(true);
    expect((await app.session).isOpen).toBe(true);
  });

  it("setting session.pingPeriod to 0 stops the pings", async () => {
    const app = await keepaliveApp({ pingPeriod: 50, timeout: 100 });
    const client = await RawClient.connect(app.port, "/ws");
    const first = await client.next();
    client.send(Opcode.Pong, first.payload);
    (await app.session).pingPeriod = 0;
    const count = client.frames.length;
    await delay(250);
    expect(client.frames.length).toBe(count);
    expect((await app.session).isOpen).toBe(true);
  });
});

describe("keepalive while the handler is behind", () => {
  it("a live peer is not closed for a late pong while reads are paused by a handler that is not reading", async () => {
    const release = deferred();
    const received: number[] = [];
    const app = await startApp(
      (r) => {
        r.webSocket("/slow", async (s) => {
          await release.promise; // not reading: incoming fills up and socket reads pause
          for await (const frame of s.incoming) received.push(frame.data.length);
        });
      },
      { pingPeriod: 50, timeout: 100, incomingBufferLimit: 64 * 1024 },
    );
    const { default: WebSocket } = await import("ws");
    const client = new WebSocket(`${app.wsUrl}/slow`); // ws answers pings by itself
    await new Promise((resolve, reject) => client.once("open", resolve).once("error", reject));
    let closeCode: number | undefined;
    client.on("close", (code) => {
      closeCode = code;
    });
    for (let i = 0; i < 64; i++) client.send(Buffer.alloc(32 * 1024, i)); // 2 MiB: far over the limit
    await delay(700); // many ping periods and timeouts
    expect(closeCode).toBeUndefined();
    release.resolve();
    await until(() => received.length === 64, 5000, "every message to arrive");
    expect(received.every((n) => n === 32 * 1024)).toBe(true);
    expect(closeCode).toBeUndefined();
    client.close(1000);
    await new Promise((resolve) => client.once("close", resolve));
    expect(closeCode).toBe(1000);
    expect(app.errors).toEqual([]);
  });
});
