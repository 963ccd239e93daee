import { afterEach, describe, expect, it } from "vitest";
import { createApp, Frame, type Route, testApplication, WebSockets } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";

afterEach(cleanup);

/**
 * Defines the routes on an app and connects to `path` through the test host (in memory): the first
 * text message and the negotiated subprotocol, once the handler has returned (closed with 1000).
 */
async function hello(
  build: (route: Route<"">) => void,
  path: string,
  protocols: string[] = [],
): Promise<{ text: string; protocol: string }> {
  const app = createApp().install(WebSockets).routing(build);
  return testApplication(app, ({ client }) =>
    client.webSocket(path, { protocols }, async (s) => {
      const text = await s.expectText();
      await s.expectClose(1000);
      return { text, protocol: s.session.protocol ?? "" };
    }),
  );
}

describe("webSocket overloads", () => {
  it("webSocket(handler) inside route('/x') binds at /x", async () => {
    const build = (r: Route<"">) => {
      r.route("/x", (r) => {
        r.webSocket(async (session) => {
          await session.send(`at ${session.call.path}`);
        });
      });
    };
    expect(await hello(build, "/x")).toEqual({ text: "at /x", protocol: "" });
  });

  it("webSocket(path, handler) binds at path", async () => {
    const build = (r: Route<"">) => {
      r.webSocket("/echo/{id}", async (session) => {
        await session.send(`id ${session.call.parameters.id}`);
      });
    };
    expect(await hello(build, "/echo/7")).toEqual({ text: "id 7", protocol: "" });
  });

  it("webSocket({ protocol }, handler) binds at the current route with a subprotocol", async () => {
    const build = (r: Route<"">) => {
      r.route("/x/{room}", (r) => {
        r.webSocket({ protocol: "chat.v1" }, async (session) => {
          await session.send(`room ${session.call.parameters.room} via ${session.protocol}`);
        });
      });
    };
    expect(await hello(build, "/x/lobby", ["chat.v1"])).toEqual({
      text: "room lobby via chat.v1",
      protocol: "chat.v1",
    });
  });

  it("webSocket(path, { protocol }, handler) binds at path with a subprotocol", async () => {
    const build = (r: Route<"">) => {
      r.route("/x", (r) => {
        r.webSocket("/{room}", { protocol: "chat.v2" }, async (session) => {
          await session.send(`room ${session.call.parameters.room} via ${session.protocol}`);
        });
      });
    };
    expect(await hello(build, "/x/hall", ["chat.v2"])).toEqual({
      text: "room hall via chat.v2",
      protocol: "chat.v2",
    });
  });
});

describe("webSocketRaw overloads", () => {
  // A raw handler sends a frame of its own and then returns.
  const greet =
    (text: string) => async (session: { send(frame: ReturnType<typeof Frame.text>): Promise<void> }) => {
      await session.send(Frame.text(text));
    };

  it("webSocketRaw(handler) inside route('/x') binds at /x", async () => {
    const build = (r: Route<"">) => {
      r.route("/x", (r) => r.webSocketRaw(greet("raw at /x")));
    };
    expect(await hello(build, "/x")).toEqual({ text: "raw at /x", protocol: "" });
  });

  it("webSocketRaw(path, handler) binds at path", async () => {
    const build = (r: Route<"">) => {
      r.webSocketRaw("/raw/{id}", async (session) => {
        await session.send(Frame.text(`raw id ${session.call.parameters.id}`));
      });
    };
    expect(await hello(build, "/raw/9")).toEqual({ text: "raw id 9", protocol: "" });
  });

  it("webSocketRaw({ protocol }, handler) binds at the current route with a subprotocol", async () => {
    const build = (r: Route<"">) => {
      r.route("/x", (r) => r.webSocketRaw({ protocol: "raw.v1" }, greet("raw with protocol")));
    };
    expect(await hello(build, "/x", ["raw.v1"])).toEqual({ text: "raw with protocol", protocol: "raw.v1" });
  });

  it("webSocketRaw(path, { protocol }, handler) binds at path with a subprotocol", async () => {
    const build = (r: Route<"">) => {
      r.route("/x", (r) => r.webSocketRaw("/y", { protocol: "raw.v2" }, greet("raw at /x/y")));
    };
    expect(await hello(build, "/x/y", ["raw.v2"])).toEqual({ text: "raw at /x/y", protocol: "raw.v2" });
  });
});

describe("route definitions", () => {
  it("a webSocket handler that is not a function is refused at definition time", async () => {
    await expect(
      startApp((r) => {
        (r.webSocket as (...args: unknown[]) => void)("/ws", {});
      }),
    ).rejects.toThrow(TypeError);
  });

  it("an invalid path pattern is refused at definition time", async () => {
    await expect(startApp((r) => r.webSocket("/a/{rest...}/b", async () => {}))).rejects.toThrow(
      /Invalid route pattern/,
    );
  });
});
