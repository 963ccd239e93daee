import { afterEach, describe, expect, it } from "vitest";
import { AppError, createApp, testApplication, WebSockets } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { openSocket, rawRequest, request, requestAndWaitForClose } from "../helpers/http.js";
import { within } from "../helpers/wait.js";

afterEach(cleanup);

describe("HTTP routes", () => {
  it("a GET route serves its body", async () => {
    const { port } = await startApp((r) => {
      r.get("/hello", (call) => call.respondText("hello, world"));
    });
    const res = await request(port, "GET", "/hello");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(res.body).toBe("hello, world");
  });

  it("HEAD falls back to the GET route and sends no body", async () => {
    const { port } = await startApp((r) => {
      r.get("/hello", (call) => call.respondText("hello, world"));
    });
    const res = await request(port, "HEAD", "/hello");
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("12");
    expect(res.body).toBe("");
  });

  it("typed path parameters {name}, {name?} and {rest...} reach call.parameters", async () => {
    const { port } = await startApp((r) => {
      r.get("/users/{id}", (call) => call.respondJson({ id: call.parameters.id }));
      r.get("/pages/{page?}", (call) => call.respondJson({ page: call.parameters.page ?? null }));
      r.get("/files/{rest...}", (call) => call.respondJson({ rest: call.parameters.rest }));
    });
    expect(JSON.parse((await request(port, "GET", "/users/42")).body)).toEqual({ id: "42" });
    expect(JSON.parse((await request(port, "GET", "/users/a%20b")).body)).toEqual({ id: "a b" });
    expect(JSON.parse((await request(port, "GET", "/pages/7")).body)).toEqual({ page: "7" });
    expect(JSON.parse((await request(port, "GET", "/pages")).body)).toEqual({ page: null });
    expect(JSON.parse((await request(port, "GET", "/files/a/b/c.txt")).body)).toEqual({ rest: "a/b/c.txt" });
    expect(JSON.parse((await request(port, "GET", "/files")).body)).toEqual({ rest: "" });
  });

  it("the query string reaches call.query and is not part of the matched path", async () => {
    const { port } = await startApp((r) => {
      r.get("/search", (call) => call.respondJson({ q: call.query.get("q"), path: call.path }));
    });
    const res = await request(port, "GET", "/search?q=sock%20way");
    expect(JSON.parse(res.body)).toEqual({ q: "sock way", path: "/search" });
  });

  it("an absolute-form request target (as proxies send) is routed by its path and query", async () => {
    const { port } = await startApp((r) => {
      r.get("/search", (call) => call.respondJson({ q: call.query.get("q"), path: call.path }));
    });
    const res = await rawRequest(
      port,
      "GET http://example.test:8080/search?q=abs HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    );
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ q: "abs", path: "/search" });
  });

  it("nested route() prefixes reach a webSocket handler's session.call.parameters", async () => {
    const app = createApp()
      .install(WebSockets)
      .routing((r) => {
        r.route("/orgs/{org}", (r) => {
          r.route("/rooms/{room}", (r) => {
            r.webSocket("/{user}", async (session) => {
              const { org, room, user } = session.call.parameters;
              await session.send(JSON.stringify({ org, room, user }));
            });
          });
        });
      });
    await testApplication(app, ({ client }) =>
      client.webSocket("/orgs/acme/rooms/lobby/ann", {}, async (s) => {
        await s.expectJson({ org: "acme", room: "lobby", user: "ann" });
        await s.expectClose(1000);
      }),
    );
  });

  it("an unknown path is 404", async () => {
    const { port } = await startApp((r) => {
      r.get("/hello", (call) => call.respondText("hi"));
    });
    const res = await request(port, "GET", "/nope");
    expect(res.status).toBe(404);
    expect(res.body).toBe("Not Found\n");
  });

  it("a wrong method is 405 with Allow listing the route's methods", async () => {
    const { port } = await startApp((r) => {
      r.get("/item", (call) => call.respondText("item"));
      r.put("/item", (call) => call.respondText("put"));
    });
    const res = await request(port, "POST", "/item", {}, "x");
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe("GET, PUT, HEAD");
  });

  it("POST to a WebSocket-only route is 405 with Allow: GET, HEAD", async () => {
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async () => {});
    });
    const res = await request(port, "POST", "/ws", {}, "x");
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe("GET, HEAD");
  });

  it("a plain GET (no upgrade) to a WebSocket-only route is 426 with Upgrade: websocket", async () => {
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async () => {});
    });
    const res = await request(port, "GET", "/ws");
    expect(res.status).toBe(426);
    expect(res.headers.upgrade).toBe("websocket");
    expect(res.headers["sec-websocket-version"]).toBe("13");
  });

  it("HEAD to a WebSocket-only route is 426 as well, not a 405 whose Allow lists HEAD", async () => {
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async () => {});
    });
    const res = await request(port, "HEAD", "/ws");
    expect(res.status).toBe(426);
    expect(res.headers.upgrade).toBe("websocket");
  });

  it("an h2c upgrade request to an HTTP route is answered as plain HTTP (RFC 9110 §7.8)", async () => {
    const { port } = await startApp((r) => {
      r.get("/health", (call) => call.respondJson({ status: "ok" }));
      r.webSocket("/ws", async () => {});
    });
    // What `curl --http2 http://...` sends.
    const h2c =
      "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    const res = await rawRequest(port, `GET /health HTTP/1.1\r\nHost: a\r\n${h2c}\r\n`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: "ok" });
    const missing = await rawRequest(port, `GET /nope HTTP/1.1\r\nHost: a\r\n${h2c}\r\n`);
    expect(missing.status).toBe(404);
  });

  it("the 426 answer honours Connection: close from the client (RFC 9112 §9.6)", async () => {
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async () => {});
    });
    const { response, closedByServer } = await requestAndWaitForClose(
      port,
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    );
    expect(response.status).toBe(426);
    expect(response.headers.connection).toBe("Upgrade, close");
    expect(closedByServer).toBe(true);

    const keepAlive = await requestAndWaitForClose(port, `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 100);
    expect(keepAlive.response.status).toBe(426);
    expect(keepAlive.response.headers.connection).toBe("Upgrade");
    expect(keepAlive.closedByServer).toBe(false);
  });

  it("a malformed percent-escape in the path is 400", async () => {
    const { port } = await startApp((r) => {
      r.get("/{name}", (call) => call.respondText("hi"));
    });
    const res = await request(port, "GET", "/%zz");
    expect(res.status).toBe(400);
  });

  it("an HTTP handler that throws answers 500 and reports kind 'http' to the error hook", async () => {
    const boom = new Error("boom");
    const { port, errors } = await startApp((r) => {
      r.get("/sync", () => {
        throw boom;
      });
      r.get("/async", async () => {
        await Promise.resolve();
        throw boom;
      });
    });
    const sync = await request(port, "GET", "/sync");
    expect(sync.status).toBe(500);
    expect(sync.body).toBe("Internal Server Error\n");
    const async = await request(port, "GET", "/async");
    expect(async.status).toBe(500);
    expect(errors).toEqual([
      { error: boom, kind: "http" },
      { error: boom, kind: "http" },
    ]);
    // The server keeps serving.
    expect((await request(port, "GET", "/nope")).status).toBe(404);
  });
});

describe("request limits when sockway runs the server", () => {
  it("a request head over maxHeaderSize is 431, for HTTP and upgrade requests alike", async () => {
    const { port } = await startApp(
      (r) => {
        r.get("/", (call) => call.respondText("hi"));
        r.webSocket("/ws", async () => {});
      },
      { maxHeaderSize: 1024 },
    );
    const big = "x".repeat(2000);
    const http = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${big}\r\n\r\n`);
    expect(http.status).toBe(431);
    const ws = await rawRequest(
      port,
      `GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Big: ${big}\r\n\r\n`,
    );
    expect(ws.status).toBe(431);
    // Under the limit, all is well.
    expect((await request(port, "GET", "/", { "X-Small": "x".repeat(200) })).status).toBe(200);
  });

  it("a request head not complete within handshakeTimeout is answered 408 and closed", async () => {
    const { port } = await startApp((r) => r.get("/", (call) => call.respondText("hi")), {
      handshakeTimeout: 100,
    });
    const socket = await openSocket(port);
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.write("GET / HTTP/1.1\r\nHost: a\r\n"); // and never the blank line
    // node:http checks for expired heads once a second.
    await within(closed, 2500, "the server to give up on the request");
    expect(Buffer.concat(chunks).toString("latin1")).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("listen() twice throws ALREADY_LISTENING", async () => {
    const { app } = await startApp(() => {});
    await expect(app.listen({ port: 0 })).rejects.toMatchObject({ code: "ALREADY_LISTENING" });
    await expect(app.listen({ port: 0 })).rejects.toBeInstanceOf(AppError);
  });
});
