import { afterEach, describe, expect, it } from "vitest";
import type { CloseReason } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { openSocket } from "../helpers/http.js";
import { RawClient } from "../helpers/raw-client.js";
import { within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

/** An echo route that records how each session ended. */
async function echoApp(options: { timeout?: number } = {}) {
  const reasons: CloseReason[] = [];
  const started = await startApp((r) => {
    r.webSocket("/ws", async (session) => {
      for await (const frame of session.incoming) await session.send(frame);
      reasons.push(await session.closeReason);
    });
  }, options);
  return { ...started, reasons };
}

describe("graceful shutdown", () => {
  it("stop() closes every session with 1001 and resolves once the clients have answered", async () => {
    const { app, wsUrl, reasons, errors } = await echoApp();
    const a = await WsClient.open(`${wsUrl}/ws`);
    const b = await WsClient.open(`${wsUrl}/ws`);
    const started = Date.now();
    await within(app.stop({ grace: 2000 }), 3000, "stop");
    expect(Date.now() - started).toBeLessThan(1000); // no need to wait out the grace period
    expect(await within(a.closed, 1000, "a closed")).toEqual({ code: 1001, reason: "Server shutting down" });
    expect(await within(b.closed, 1000, "b closed")).toEqual({ code: 1001, reason: "Server shutting down" });
    expect(app.sessions.size).toBe(0);
    await within(
      (async () => {
        while (reasons.length < 2) await new Promise((resolve) => setTimeout(resolve, 2));
      })(),
      1000,
      "the handlers to end",
    );
    expect(reasons.map((r) => r.code)).toEqual([1001, 1001]);
    expect(errors).toEqual([]);
  });

  it("a client that never answers is destroyed after the grace period", async () => {
    const { app, port } = await echoApp({ timeout: 10_000 });
    const client = await RawClient.connect(port, "/ws");
    const started = Date.now();
    const stopped = app.stop({ grace: 150 });
    expect(await client.nextClose()).toEqual({ code: 1001, reason: "Server shutting down" });
    await within(stopped, 2000, "stop");
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(1000);
    await within(client.closed, 1000, "the client's socket to be closed");
    expect(app.sessions.size).toBe(0);
  });

  it("new connections are refused once stop() has begun, and after it", async () => {
    const { app, port } = await echoApp({ timeout: 10_000 });
    await RawClient.connect(port, "/ws"); // holds the grace period open
    const stopped = app.stop({ grace: 300 });
    await expect(openSocket(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await within(stopped, 2000, "stop");
    await expect(openSocket(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("stop() with no sessions resolves at once", async () => {
    const { app } = await echoApp();
    const started = Date.now();
    await within(app.stop({ grace: 5000 }), 1000, "stop");
    expect(Date.now() - started).toBeLessThan(500);
  });
});
