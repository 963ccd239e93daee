import { afterEach, describe, expect, it } from "vitest";
import { Frame } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

/** Connects with `ws`, returns the first text message and the negotiated subprotocol. */
async function hello(url: string, protocols: string[] = []): Promise<{ text: string; protocol: string }> {
  const client = await WsClient.open(url, protocols);
  return { text: await client.nextText(), protocol: client.ws.protocol };
}

describe("webSocket overloads", () => {
  it("webSocket(handler) inside route('/x') binds at /x", async () => {
    const { wsUrl } = await startApp((r) => {
      r.route("/x", (r) => {
        r.webSocket(async (session) => {
          await session.send(`at ${session.call.path}`);
        });
      });
    });
    expect(await hello(`${wsUrl}/x`)).toEqual({ text: "at /x", protocol: "" });
  });

  it("webSocket(path, handler) binds at path", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket("/echo/{id}", async (session) => {
        await session.send(`id ${session.call.parameters.id}`);
      });
    });
    expect(await hello(`${wsUrl}/echo/7`)).toEqual({ text: "id 7", protocol: "" });
  });

  it("webSocket({ protocol }, handler) binds at the current route with a subprotocol", async () => {
    const { wsUrl } = await startApp((r) => {
      r.route("/x/{room}", (r) => {
        r.webSocket({ protocol: "chat.v1" }, async (session) => {
          await session.send(`room ${session.call.parameters.room} via ${session.protocol}`);
        });
      });
    });
    expect(await hello(`${wsUrl}/x/lobby`, ["chat.v1"])).toEqual({
      text: "room lobby via chat.v1",
      protocol: "chat.v1",
    });
  });

  it("webSocket(path, { protocol }, handler) binds at path with a subprotocol", async () => {
    const { wsUrl } = await startApp((r) => {
      r.route("/x", (r) => {
        r.webSocket("/{room}", { protocol: "chat.v2" }, async (session) => {
          await session.send(`room ${session.call.parameters.room} via ${session.protocol}`);
        });
      });
    });
    expect(await hello(`${wsUrl}/x/hall`, ["chat.v2"])).toEqual({
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
    const { wsUrl } = await startApp((r) => {
      r.route("/x", (r) => r.webSocketRaw(greet("raw at /x")));
    });
    expect(await hello(`${wsUrl}/x`)).toEqual({ text: "raw at /x", protocol: "" });
  });

  it("webSocketRaw(path, handler) binds at path", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocketRaw("/raw/{id}", async (session) => {
        await session.send(Frame.text(`raw id ${session.call.parameters.id}`));
      });
    });
    expect(await hello(`${wsUrl}/raw/9`)).toEqual({ text: "raw id 9", protocol: "" });
  });

  it("webSocketRaw({ protocol }, handler) binds at the current route with a subprotocol", async () => {
    const { wsUrl } = await startApp((r) => {
      r.route("/x", (r) => r.webSocketRaw({ protocol: "raw.v1" }, greet("raw with protocol")));
    });
    expect(await hello(`${wsUrl}/x`, ["raw.v1"])).toEqual({ text: "raw with protocol", protocol: "raw.v1" });
  });

  it("webSocketRaw(path, { protocol }, handler) binds at path with a subprotocol", async () => {
    const { wsUrl } = await startApp((r) => {
      r.route("/x", (r) => r.webSocketRaw("/y", { protocol: "raw.v2" }, greet("raw at /x/y")));
    });
    expect(await hello(`${wsUrl}/x/y`, ["raw.v2"])).toEqual({ text: "raw at /x/y", protocol: "raw.v2" });
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
