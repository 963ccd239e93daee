import { describe, expect, it } from "vitest";
import { AppError, createApp, type Route, WebSockets, type WebSocketsOptions } from "../../src/index.js";

/** Runs `fn` and returns what it threw (failing the test if it did not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

describe("WebSockets plugin", () => {
  it.each(["webSocket", "webSocketRaw"] as const)(
    "defining %s without app.install(WebSockets) throws PLUGIN_MISSING naming the plugin and the fix",
    (kind) => {
      const app = createApp();
      const define = (r: Route<"">) =>
        kind === "webSocket" ? r.webSocket("/ws", async () => {}) : r.webSocketRaw("/ws", async () => {});
      const error = thrown(() => app.routing(define));
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe("PLUGIN_MISSING");
      expect((error as AppError).message).toContain("WebSockets");
      expect((error as AppError).message).toContain("app.install");
      expect((error as AppError).message).toContain(`${kind}()`);
    },
  );

  it("an app without the plugin still serves HTTP routes", () => {
    const app = createApp();
    expect(() => app.routing((r) => r.get("/", (call) => call.respondText("hi")))).not.toThrow();
    expect(app.host.webSocketsInstalled).toBe(false);
  });

  it("installing twice throws PLUGIN_ALREADY_INSTALLED", () => {
    const app = createApp().install(WebSockets);
    const error = thrown(() => app.install(WebSockets, { pingPeriod: 1000 }));
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("PLUGIN_ALREADY_INSTALLED");
    expect((error as AppError).message).toContain("WebSockets");
  });

  it.each<[string, WebSocketsOptions]>([
    ["negative pingPeriod", { pingPeriod: -1 }],
    ["fractional timeout", { timeout: 1.5 }],
    ["NaN maxFrameSize", { maxFrameSize: Number.NaN }],
    ["maxFrameSize below 125", { maxFrameSize: 100 }],
    ["zero maxFragments", { maxFragments: 0 }],
    ["masking: true", { masking: true }],
    ["zero handshakeTimeout", { handshakeTimeout: 0 }],
    ["negative maxHeaderSize", { maxHeaderSize: -5 }],
    [
      "outgoingBufferLimit under outgoingHighWaterMark",
      { outgoingBufferLimit: 1000, outgoingHighWaterMark: 2000 },
    ],
  ])("rejects %s with AppError INVALID_OPTION", (_name, options) => {
    const error = thrown(() => createApp().install(WebSockets, options));
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("INVALID_OPTION");
  });

  it("the INVALID_OPTION message names the option", () => {
    const error = thrown(() => createApp().install(WebSockets, { pingPeriod: -1 })) as AppError;
    expect(error.message).toContain("pingPeriod");
    const masking = thrown(() => createApp().install(WebSockets, { masking: true })) as AppError;
    expect(masking.message).toContain("masking");
  });

  it("accepts masking: false and pingPeriod: 0", () => {
    const app = createApp().install(WebSockets, { masking: false, pingPeriod: 0, timeout: 0 });
    expect(app.host.config.session.pingPeriod).toBe(0);
    expect(app.host.config.session.timeout).toBe(0);
  });

  it("a route protocol that is not a token throws INVALID_OPTION at definition time", () => {
    const app = createApp().install(WebSockets);
    const error = thrown(() =>
      app.routing((r) => r.webSocket("/ws", { protocol: "chat v1" }, async () => {})),
    );
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("INVALID_OPTION");
  });
});
