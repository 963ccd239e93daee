import { afterEach, describe, expect, it, vi } from "vitest";
import { DefaultWebSocketSession } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { openSocket, upgradeHeaders, upgradeRequest } from "../helpers/http.js";
import { clientFrame, RawClient } from "../helpers/raw-client.js";
import { deferred, within } from "../helpers/wait.js";
import { WsClient, wsRefusal } from "../helpers/ws-client.js";

afterEach(cleanup);

/** Routes that answer with the subprotocol the session was opened with. */
const protocolRoutes = () =>
  startApp((r) => {
    r.webSocket("/chat", { protocol: "chat.v1" }, async (session) => {
      await session.send(`v1:${session.protocol}`);
    });
    r.webSocket("/chat", { protocol: "chat.v2" }, async (session) => {
      await session.send(`v2:${session.protocol}`);
    });
  });

describe("opening handshake: subprotocols", () => {
  it("a protocol route matches when the client offers it and echoes it", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket("/chat", { protocol: "chat.v1" }, async (session) => {
        await session.send(`protocol ${session.protocol}`);
      });
    });
    const client = await WsClient.open(`${wsUrl}/chat`, ["chat.v1"]);
    expect(client.ws.protocol).toBe("chat.v1");
    expect(await client.nextText()).toBe("protocol chat.v1");
  });

  it("a client offering another protocol is refused with 400", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket("/chat", { protocol: "chat.v1" }, async () => {});
    });
    const refusal = await wsRefusal(`${wsUrl}/chat`, ["other.v9"]);
    expect(refusal.status).toBe(400);
    expect(refusal.body).toContain("chat.v1");
  });

  it("a client offering no protocol to a protocol-only route is refused with 400", async () => {
    const { port } = await startApp((r) => {
      r.webSocket("/chat", { protocol: "chat.v1" }, async () => {});
    });
    expect((await upgradeRequest(port, "/chat")).status).toBe(400);
  });

  it("two routes on the same path with different protocols are picked by the client's offer", async () => {
    const { wsUrl } = await protocolRoutes();
    const v2 = await WsClient.open(`${wsUrl}/chat`, ["chat.v2"]);
    expect(v2.ws.protocol).toBe("chat.v2");
    expect(await v2.nextText()).toBe("v2:chat.v2");
    const v1 = await WsClient.open(`${wsUrl}/chat`, ["chat.v1"]);
    expect(v1.ws.protocol).toBe("chat.v1");
    expect(await v1.nextText()).toBe("v1:chat.v1");
  });

  it("the response carries exactly one Sec-WebSocket-Protocol, never one the client did not offer", async () => {
    const { port } = await protocolRoutes();
    const client = await RawClient.connect(port, "/chat", {
      headers: { "Sec-WebSocket-Protocol": "x.v0, chat.v2" },
    });
    expect(client.response.headers["sec-websocket-protocol"]).toBe("chat.v2");
  });
});

describe("opening handshake: validation", () => {
  const echo = () =>
    startApp((r) => {
      r.webSocket("/ws", async (session) => {
        for await (const frame of session.incoming) await session.send(frame);
      });
    });

  it("a missing Sec-WebSocket-Key is 400", async () => {
    const { port } = await echo();
    const res = await upgradeRequest(port, "/ws", { "Sec-WebSocket-Key": undefined });
    expect(res.status).toBe(400);
    expect(res.body).toBe("Sec-WebSocket-Key is missing\n");
  });

  it("a Sec-WebSocket-Key that is not 16 bytes in base64 is 400", async () => {
    const { port } = await echo();
    expect((await upgradeRequest(port, "/ws", { "Sec-WebSocket-Key": "c2hvcnQ=" })).status).toBe(400);
  });

  it("version 8 is 426 with Sec-WebSocket-Version: 13", async () => {
    const { port } = await echo();
    const res = await upgradeRequest(port, "/ws", { "Sec-WebSocket-Version": "8" });
    expect(res.status).toBe(426);
    expect(res.headers["sec-websocket-version"]).toBe("13");
  });

  it("an upgrade to a path without a WebSocket route is 404", async () => {
    const { port } = await startApp((r) => {
      r.get("/page", (call) => call.respondText("page"));
    });
    expect((await upgradeRequest(port, "/page")).status).toBe(404);
    expect((await upgradeRequest(port, "/nowhere")).status).toBe(404);
  });

  it("the handshake answer is 101 with the RFC 6455 §4.2.2 accept value", async () => {
    const { port } = await echo();
    const client = await RawClient.connect(port, "/ws");
    expect(client.response.status).toBe(101);
    expect(client.response.headers.upgrade).toBe("websocket");
    expect(client.response.headers.connection).toBe("Upgrade");
    expect(client.response.headers["sec-websocket-protocol"]).toBeUndefined();
  });

  it("frames sent in the same packet as the request (the upgrade head) are not lost", async () => {
    const { port } = await echo();
    const client = await RawClient.connect(port, "/ws", { after: clientFrame(0x1, "early bird") });
    const frame = await client.nextData();
    expect(frame.payload.toString()).toBe("early bird");
  });
});

describe("opening handshake: origins", () => {
  const withOrigins = () =>
    startApp(
      (r) => {
        r.webSocket("/ws", async (session) => {
          await session.send("welcome");
        });
      },
      { allowedOrigins: ["https://good.example"] },
    );

  it("allowedOrigins rejects a foreign Origin with 403", async () => {
    const { wsUrl } = await withOrigins();
    const refusal = await wsRefusal(`${wsUrl}/ws`, [], { origin: "https://evil.example" });
    expect(refusal.status).toBe(403);
  });

  it("allowedOrigins rejects a request without Origin with 403", async () => {
    const { port } = await withOrigins();
    expect((await upgradeRequest(port, "/ws")).status).toBe(403);
  });

  it("allowedOrigins accepts a listed Origin (case-insensitively)", async () => {
    const { wsUrl } = await withOrigins();
    const client = await WsClient.open(`${wsUrl}/ws`, [], { origin: "https://GOOD.example" });
    expect(await client.nextText()).toBe("welcome");
  });
});

describe("opening handshake: beforeUpgrade", () => {
  it("returning call.reject(401, 'token required') refuses with 401 and that body", async () => {
    let handlerRan = false;
    const { wsUrl } = await startApp((r) => {
      r.webSocket(
        "/ws",
        {
          beforeUpgrade: (call) =>
            call.query.get("token") === "s3cret" ? { user: "ann" } : call.reject(401, "token required"),
        },
        async () => {
          handlerRan = true;
        },
      );
    });
    const refusal = await wsRefusal(`${wsUrl}/ws`);
    expect(refusal.status).toBe(401);
    expect(refusal.body).toBe("token required");
    expect(handlerRan).toBe(false);
  });

  it("reject headers are sent with the refusal", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket(
        "/ws",
        { beforeUpgrade: (call) => call.reject(401, "no", { "WWW-Authenticate": "Bearer" }) },
        async () => {},
      );
    });
    const refusal = await wsRefusal(`${wsUrl}/ws`);
    expect(refusal.status).toBe(401);
    expect(refusal.headers["www-authenticate"]).toBe("Bearer");
  });

  it("the value it returns (sync or async) becomes session.data", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket(
        "/ws",
        {
          beforeUpgrade: async (call) => {
            await new Promise((resolve) => setTimeout(resolve, 5));
            return { user: call.query.get("user") ?? "" };
          },
        },
        async (session) => {
          await session.send(JSON.stringify(session.data));
        },
      );
    });
    const client = await WsClient.open(`${wsUrl}/ws?user=ann`);
    expect(JSON.parse(await client.nextText())).toEqual({ user: "ann" });
  });

  it("sees path parameters, headers and the route's protocol", async () => {
    const seen = deferred<unknown>();
    const { wsUrl } = await startApp((r) => {
      r.webSocket(
        "/rooms/{room}",
        {
          protocol: "chat.v1",
          beforeUpgrade: (call) => {
            seen.resolve({
              room: call.parameters.room,
              header: call.headers["x-test"],
              protocol: call.protocol,
              remote: call.remoteAddress,
            });
            return undefined;
          },
        },
        async () => {},
      );
    });
    await WsClient.open(`${wsUrl}/rooms/lobby`, ["chat.v1"], { headers: { "X-Test": "yes" } });
    expect(await within(seen.promise, 1000, "beforeUpgrade")).toEqual({
      room: "lobby",
      header: "yes",
      protocol: "chat.v1",
      remote: "127.0.0.1",
    });
  });

  it("a hook that never settles is cut off after handshakeTimeout with 503", async () => {
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", { beforeUpgrade: () => new Promise<undefined>(() => {}) }, async () => {});
      },
      { handshakeTimeout: 100 },
    );
    const socket = await openSocket(port);
    const closed = new Promise((resolve) => socket.once("close", resolve));
    let answer = "";
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString("latin1");
    });
    const started = Date.now();
    socket.write(
      `GET /ws HTTP/1.1\r\nHost: a\r\n${Object.entries(upgradeHeaders())
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("")}\r\n`,
    );
    await within(closed, 2000, "the socket to be closed");
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(80);
    expect(waited).toBeLessThan(1000);
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 503 Service Unavailable");
  });

  it("an upgrade still in its hook when stop() begins is refused with 503", async () => {
    const entered = deferred();
    const release = deferred();
    let handlerRan = false;
    const { app, port } = await startApp((r) => {
      r.webSocket(
        "/ws",
        {
          beforeUpgrade: async () => {
            entered.resolve();
            await release.promise;
            return undefined;
          },
        },
        async () => {
          handlerRan = true;
        },
      );
    });
    const answer = upgradeRequest(port, "/ws");
    await within(entered.promise, 1000, "beforeUpgrade");
    const stopped = app.stop({ grace: 100 });
    release.resolve();
    const res = await answer;
    expect(res.status).toBe(503);
    await within(stopped, 2000, "stop");
    expect(handlerRan).toBe(false);
  });

  it("throwing answers 500 and reports kind 'handler' to the error hook", async () => {
    const boom = new Error("beforeUpgrade failed");
    const { wsUrl, errors } = await startApp((r) => {
      r.webSocket(
        "/ws",
        {
          beforeUpgrade: () => {
            throw boom;
          },
        },
        async () => {},
      );
    });
    const refusal = await wsRefusal(`${wsUrl}/ws`);
    expect(refusal.status).toBe(500);
    expect(errors).toEqual([{ error: boom, kind: "handler" }]);
  });

  it.each([
    ["a status below 300", 101, {}],
    ["a 2xx status", 200, {}],
    ["a status above 599", 600, {}],
    ["a fractional status", 401.5, {}],
    ["a header value with CR LF", 401, { "X-Why": "no\r\nSet-Cookie: a=b" }],
    ["a header name that is not a token", 401, { "X Why": "no" }],
  ])("reject with %s throws INVALID_REJECTION, answered 500", async (_what, status, headers) => {
    const { wsUrl, errors } = await startApp((r) => {
      r.webSocket(
        "/ws",
        { beforeUpgrade: (call) => call.reject(status, "no", headers as Record<string, string>) },
        async () => {},
      );
    });
    const refusal = await wsRefusal(`${wsUrl}/ws`);
    expect(refusal.status).toBe(500);
    expect(refusal.headers["set-cookie"]).toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(errors[0]?.error).toMatchObject({ name: "AppError", code: "INVALID_REJECTION" });
  });

  it("reject with a redirect status (302 and Location) is sent as it is", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket(
        "/ws",
        { beforeUpgrade: (call) => call.reject(302, "", { Location: "/elsewhere" }) },
        async () => {},
      );
    });
    const refusal = await wsRefusal(`${wsUrl}/ws`);
    expect(refusal.status).toBe(302);
    expect(refusal.headers.location).toBe("/elsewhere");
  });
});

describe("session.call after the handshake", () => {
  /** What a handler sees of its call, as JSON sent back to the client. */
  const describeCall = (session: {
    call: { request: { url?: string }; headers: Record<string, unknown> } & Record<string, unknown>;
    send(text: string): Promise<void>;
  }) => {
    let request: string;
    try {
      request = `url ${session.call.request.url}`;
    } catch (error) {
      request = `${(error as { name: string }).name} ${(error as { code: string }).code}`;
    }
    return session.send(
      JSON.stringify({
        request,
        header: session.call.headers["x-test"],
        path: session.call.path,
        room: (session.call.parameters as Record<string, string>).room,
        query: (session.call.query as URLSearchParams).get("q"),
        method: session.call.method,
        remote: session.call.remoteAddress,
      }),
    );
  };

  it("releases the IncomingMessage by default: request throws REQUEST_RELEASED, the rest stays", async () => {
    const seenInHook = deferred<string | undefined>();
    const { wsUrl } = await startApp((r) => {
      r.webSocket(
        "/rooms/{room}",
        { beforeUpgrade: (call) => void seenInHook.resolve(call.request.url) },
        (session) => describeCall(session as never),
      );
    });
    const client = await WsClient.open(`${wsUrl}/rooms/lobby?q=1`, [], { headers: { "X-Test": "yes" } });
    expect(await within(seenInHook.promise, 1000, "beforeUpgrade")).toBe("/rooms/lobby?q=1");
    expect(JSON.parse(await client.nextText())).toEqual({
      request: "AppError REQUEST_RELEASED",
      header: "yes",
      path: "/rooms/lobby",
      room: "lobby",
      query: "1",
      method: "GET",
      remote: "127.0.0.1",
    });
  });

  it("keepRequest: true keeps call.request for the whole session", async () => {
    const { wsUrl } = await startApp(
      (r) => {
        r.webSocket("/rooms/{room}", (session) => describeCall(session as never));
      },
      { keepRequest: true },
    );
    const client = await WsClient.open(`${wsUrl}/rooms/lobby?q=1`, [], { headers: { "X-Test": "yes" } });
    expect(JSON.parse(await client.nextText())).toMatchObject({
      request: "url /rooms/lobby?q=1",
      header: "yes",
      method: "GET",
    });
  });
});

describe("a failure after the 101", () => {
  it("drops the connection and reports the bug, never writing an HTTP 500 into the WebSocket stream", async () => {
    const { port, errors } = await startApp((r) => r.webSocket("/echo", async () => {}));
    const bug = new Error("bug after the 101");
    const spy = vi.spyOn(DefaultWebSocketSession.prototype, "receiveHead").mockImplementationOnce(() => {
      throw bug;
    });
    onCleanup(() => spy.mockRestore());
    const socket = await openSocket(port);
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    const closed = new Promise((resolve) => socket.once("close", resolve));
    let head = `GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
    for (const [name, value] of Object.entries(upgradeHeaders())) head += `${name}: ${value}\r\n`;
    socket.write(`${head}\r\n`);
    await within(closed, 5000, "the connection's end");
    const bytes = Buffer.concat(chunks).toString("latin1");
    expect(bytes.startsWith("HTTP/1.1 101 ")).toBe(true);
    expect(bytes).not.toContain("HTTP/1.1 500");
    expect(bytes.slice(bytes.indexOf("\r\n\r\n") + 4)).toBe("");
    expect(errors.map((e) => [e.kind, e.error])).toEqual([["handler", bug]]);
  });
});
