import { afterEach, describe, expect, it, vi } from "vitest";
import { type CloseReason, createApp, testApplication, WebSockets } from "../../src/index.js";

/** The real clock, taken before any test fakes it. */
const realNow = Date.now;

afterEach(() => {
  vi.useRealTimers();
});

/** An echo route with the default keepalive (a ping every 30 s, 15 s for the pong): minutes of it. */
function echoApp(serverReasons: Array<Promise<CloseReason>>) {
  return createApp()
    .install(WebSockets)
    .onError(() => {})
    .routing((r) =>
      r.webSocket("/echo", async (session) => {
        serverReasons.push(session.closeReason);
        for await (const frame of session.incoming) await session.send(frame);
      }),
    );
}

describe("the test host under fake timers", () => {
  it("a client that stops answering pings is closed with 1011, in virtual time", async () => {
    vi.useFakeTimers();
    const server: Array<Promise<CloseReason>> = [];
    const started = realNow();
    await testApplication(echoApp(server), async ({ client }) => {
      const s = await client.webSocket("/echo");
      s.stallOutgoing(); // our pongs (and everything else we send) are lost from here on
      const closed = s.expectClose(1011);
      // 30 s to the ping, 15 s for the pong, 15 s for our Close reply: a minute of virtual time.
      await vi.advanceTimersByTimeAsync(61_000);
      const reason = await closed;
      expect(reason.code).toBe(1011);
    });
    expect((await server[0])?.code).toBe(1011);
    expect(realNow() - started).toBeLessThan(5000); // not a real minute
  });

  it("a client that answers pings stays open through ten virtual minutes of keepalive", async () => {
    vi.useFakeTimers();
    const server: Array<Promise<CloseReason>> = [];
    await testApplication(echoApp(server), async ({ client }) => {
      const s = await client.webSocket("/echo");
      await vi.advanceTimersByTimeAsync(10 * 60_000);
      expect(s.isOpen).toBe(true);
      const echoed = s.expectText("still here");
      await s.send("still here");
      // sockway writes from setImmediate, which the fake clock holds too: each hop of output is
      // written when the clock moves (1 virtual ms per hop scheduled during a tick).
      await vi.advanceTimersByTimeAsync(10);
      await echoed;
      const closing = s.close();
      await vi.advanceTimersByTimeAsync(10);
      await closing;
      await s.expectClose(1000);
    });
    expect((await server[0])?.code).toBe(1000);
  });
});
