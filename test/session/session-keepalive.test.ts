import { afterEach, describe, expect, it } from "vitest";
import type { DefaultWebSocketSession } from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { RawClient } from "../helpers/raw-client.js";
import { deferred, until, within } from "../helpers/wait.js";
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

/**
 * For "nothing happens for a while" checks: resolves once a ws client of a second app with
 * pingPeriod `period` (and no timeout) has been pinged `pings` times, so at least `pings * period` ms
 * of the server's own timers have run. A loaded machine delays these timers as much as those under
 * test, where a fixed delay could end before the timer it waits out has had its chance to fire.
 */
async function serverTimers(pings: number, period = 50): Promise<void> {
  const clock = await keepaliveApp({ pingPeriod: period, timeout: 0 });
  const client = await WsClient.open(`${clock.wsUrl}/ws`);
  await until(() => client.pings >= pings, 3000, `${pings} pings of the clock app`);
  client.close();
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
    await until(() => client.pings >= 5, 3000, "five pings, each answered by ws");
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    await client.send("still here");
    expect(await client.nextText()).toBe("still here");
    expect(app.errors).toEqual([]);
  });

  it("pingPeriod: 0 sends no pings and never times out (nothing for 4 periods of a pinging app)", async () => {
    const app = await keepaliveApp({ pingPeriod: 0, timeout: 50 });
    const client = await RawClient.connect(app.port, "/ws");
    await serverTimers(4); // the quiet time is the point: 200 ms or more, 4 times the timeout
    expect(client.frames).toEqual([]);
    client.sendText("quiet");
    expect((await client.next()).payload.toString()).toBe("quiet");
  });

  it("timeout: 0 keeps pinging a silent client without ever closing", async () => {
    const app = await keepaliveApp({ pingPeriod: 40, timeout: 0 });
    const client = await RawClient.connect(app.port, "/ws");
    // A session that waited for a pong would send one ping only; one that timed out at once, a Close.
    await within(
      client.waitUntil(() => client.frames.length >= 3),
      2000,
      "three frames",
    );
    expect(client.frames.slice(0, 3).map((f) => f.opcode)).toEqual([Opcode.Ping, Opcode.Ping, Opcode.Ping]);
    expect((await app.session).isOpen).toBe(true);
  });

  it("setting session.pingPeriod to 0 cancels the next ping (none for 2.5 periods after)", async () => {
    const app = await keepaliveApp({ pingPeriod: 100, timeout: 200 });
    const client = await RawClient.connect(app.port, "/ws");
    const first = await client.next();
    client.send(Opcode.Pong, first.payload);
    // Once this echo is back, the server has read the pong: the next ping is scheduled, 100 ms away.
    client.sendText("after the pong");
    expect((await client.nextData()).payload.toString()).toBe("after the pong");
    (await app.session).pingPeriod = 0;
    const count = client.frames.length;
    await serverTimers(5); // the quiet time is the point: 250 ms or more, where 2 pings were due
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
    let pings = 0;
    client.on("close", (code) => {
      closeCode = code;
    });
    client.on("ping", () => pings++);
    for (let i = 0; i < 64; i++) client.send(Buffer.alloc(32 * 1024, i)); // 2 MiB: far over the limit
    await until(() => pings >= 1, 2000, "the keepalive ping"); // its pong waits unread behind the 2 MiB
    // The quiet time is the point: 6 periods of 50 ms or more, three times the 100 ms pong timeout.
    await serverTimers(6);
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
