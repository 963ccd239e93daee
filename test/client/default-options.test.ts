/**
 * Connections made with no options (`{}`) share one resolved set of defaults: a session that changes
 * its own settings must not change them for the next connection, and options given later still count.
 */
import { describe, expect, it } from "vitest";
import { createApp, DEFAULT_SESSION_OPTIONS, testApplication, WebSockets } from "../../src/index.js";

const app = createApp()
  .install(WebSockets)
  .routing((r) =>
    r.webSocket("/echo", async (session) => {
      for await (const frame of session.incoming) await session.send(frame);
    }),
  );

describe("a client's default options", () => {
  it("are the defaults for every connection, whatever an earlier session changed", () =>
    testApplication(app, async ({ client }) => {
      const first = await client.webSocket("/echo", {});
      first.session.pingPeriod = 0;
      first.session.timeout = 5;
      expect(first.session.pingPeriod).toBe(0);
      const second = await client.webSocket("/echo");
      expect(second.session.pingPeriod).toBe(DEFAULT_SESSION_OPTIONS.pingPeriod);
      expect(second.session.timeout).toBe(DEFAULT_SESSION_OPTIONS.timeout);
      const third = await client.webSocket("/echo", { pingPeriod: 1000, maxFrameSize: 4096 });
      expect(third.session.pingPeriod).toBe(1000);
      expect(third.session.maxFrameSize).toBe(4096);
      const fourth = await client.webSocket("/echo", {});
      expect(fourth.session.maxFrameSize).toBe(DEFAULT_SESSION_OPTIONS.maxFrameSize);
      for (const s of [first, second, third, fourth]) {
        await s.close();
        await s.expectClose(1000);
      }
    }));
});
