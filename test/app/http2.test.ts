/**
 * WebSockets over HTTP/2 (RFC 8441) on `listen({ tls, http2 })`, against a peer written by hand on
 * node:http2 (test/helpers/h2-peer.ts), with HTTP/1.1 on the same port (ws, node:https).
 */
import { createSecureServer, createServer, constants as h2 } from "node:http2";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  AppError,
  type ApplicationCall,
  createApp,
  type DefaultWebSocketSession,
  permessageDeflate,
  WebSockets,
} from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { echoRoute, h2Tls, startH2 } from "../helpers/h2-app.js";
import { H2Peer } from "../helpers/h2-peer.js";
import { closePayload } from "../helpers/raw-client.js";
import { deferred, delay, until, within } from "../helpers/wait.js";

afterEach(cleanup);

const tls = h2Tls;
const echo = echoRoute;

type Session = DefaultWebSocketSession<ApplicationCall, unknown>;

describe("listen({ tls, http2 })", () => {
  it("advertises extended CONNECT only when the app has WebSocket routes", async () => {
    const withRoutes = await startH2(echo);
    expect((await H2Peer.connect(withRoutes.url)).connectProtocol).toBe(true);

    const httpOnly = await startH2((r) => r.get("/", (call) => call.respondText("hi")));
    const peer = await H2Peer.connect(httpOnly.url, { waitForSettings: false });
    await within(new Promise((resolve) => peer.session.once("remoteSettings", resolve)), 5000, "SETTINGS");
    expect(peer.connectProtocol).toBe(false);
    // Its HTTP routes are served over h2.
    const got = await peer.get("/");
    expect([got.status, got.body]).toEqual([200, "hi"]);
    // An extended CONNECT sent anyway is refused: the stream is reset (PROTOCOL_ERROR), never a 200.
    const ws = peer.session.request({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "https",
      ":path": "/",
      "sec-websocket-version": "13",
    });
    ws.on("error", () => {});
    let status: unknown;
    ws.on("response", (h) => {
      status = h[":status"];
    });
    const code = await within(
      new Promise((resolve) => ws.once("close", () => resolve(ws.rstCode))),
      5000,
      "refusal",
    );
    expect(status).toBeUndefined();
    expect(code).toBe(h2.NGHTTP2_PROTOCOL_ERROR);
  });

  it("refuses http2 without tls and invalid HTTP/2 options", async () => {
    const app = createApp().install(WebSockets);
    await expect(app.listen({ http2: true })).rejects.toMatchObject({ code: "INVALID_OPTION" });
    await expect(app.listen({ tls, http2: { maxConcurrentStreams: 0 } })).rejects.toBeInstanceOf(AppError);
    await expect(app.listen({ tls, http2: { initialWindowSize: 1000 } })).rejects.toMatchObject({
      code: "INVALID_OPTION",
    });
    await expect(app.listen({ tls, http2: { idleTimeout: -1 } })).rejects.toMatchObject({
      code: "INVALID_OPTION",
    });
  });

  it("closes an h2 connection that has had no stream for idleTimeout, not one with a WebSocket open", async () => {
    const { url } = await startH2(echo, {}, { idleTimeout: 150 });
    const idle = await H2Peer.connect(url);
    const busy = await H2Peer.connect(url);
    const ws = await busy.open("/echo");
    const goaway = deferred<number>();
    idle.session.once("goaway", (code) => goaway.resolve(code));
    expect(await within(goaway.promise, 3000, "GOAWAY on the idle connection")).toBe(h2.NGHTTP2_NO_ERROR);
    await delay(300);
    ws.sendText("still here");
    expect((await ws.next()).payload.toString()).toBe("still here");
    expect(busy.session.closed).toBe(false);
  });

  it("keeps HTTP/1.1's header limit on the same port: 431", async () => {
    const { port } = await startH2(echo, { maxHeaderSize: 4096 });
    const status = await new Promise<number>((resolve, reject) => {
      httpsRequest(
        {
          host: "127.0.0.1",
          port,
          path: "/",
          rejectUnauthorized: false,
          headers: { "x-big": "a".repeat(8000) },
        },
        (res) => resolve(res.statusCode ?? 0),
      )
        .on("error", reject)
        .end();
    });
    expect(status).toBe(431);
  });

  it("advertises its stream limit and window", async () => {
    const { url } = await startH2(echo, {}, { maxConcurrentStreams: 7, initialWindowSize: 100_000 });
    const peer = await H2Peer.connect(url);
    expect(peer.session.remoteSettings.maxConcurrentStreams).toBe(7);
    expect(peer.session.remoteSettings.initialWindowSize).toBe(100_000);
  });
});

describe("an extended CONNECT stream", () => {
  it("is answered :status 200 without Sec-WebSocket-Accept and echoes text, binary and 1 MiB", async () => {
    const { url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/echo");
    const head = await ws.response;
    expect(head[":status"]).toBe(200);
    expect(head["sec-websocket-accept"]).toBeUndefined();

    ws.sendText("hello");
    const text = await ws.next();
    expect([text.opcode, text.masked, text.payload.toString()]).toEqual([Opcode.Text, false, "hello"]);
    ws.send(Opcode.Binary, Buffer.from([1, 2, 3]));
    expect((await ws.next()).payload).toEqual(Buffer.from([1, 2, 3]));
    const big = Buffer.alloc(1024 * 1024, 7);
    big[12345] = 9;
    ws.send(Opcode.Binary, big);
    const back = await ws.next(10_000);
    expect(back.payload.equals(big)).toBe(true);

    // The closing handshake: the server answers Close and ends the stream (END_STREAM), no reset.
    ws.send(Opcode.Close, closePayload(1000, "bye"));
    const close = await ws.next();
    expect(close.opcode).toBe(Opcode.Close);
    expect(close.payload.readUInt16BE(0)).toBe(1000);
    ws.stream.end();
    await within(ws.ended, 5000, "END_STREAM");
    expect(await within(ws.closed, 5000, "stream close")).toBe(h2.NGHTTP2_NO_ERROR);
  });

  it("works when the CONNECT is sent before the server's SETTINGS arrived", async () => {
    const { url } = await startH2(echo);
    const peer = await H2Peer.connect(url, { waitForSettings: false });
    const ws = await peer.open("/echo");
    expect(ws.status).toBe(200);
    ws.sendText("early");
    expect((await ws.next()).payload.toString()).toBe("early");
  });

  it("is routed like an upgrade: path parameters, query, headers, subprotocol, call.httpVersion, ALPN h2", async () => {
    const seen = deferred<{
      params: unknown;
      q: string | null;
      h: unknown;
      v: string;
      alpn: unknown;
      m: string;
    }>();
    const { url } = await startH2(
      (r) => {
        r.webSocket("/rooms/{id}", { protocol: "chat.v2" }, async (s) => {
          const call = s.call;
          const socket = call.request.socket as TLSSocket;
          seen.resolve({
            params: call.parameters,
            q: call.query.get("x"),
            h: call.headers["x-test"],
            v: call.httpVersion,
            alpn: socket.alpnProtocol,
            m: call.method,
          });
          await s.send("in");
        });
      },
      { keepRequest: true },
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/rooms/42?x=y", {
      "sec-websocket-protocol": "chat.v1, chat.v2",
      "x-test": "t",
    });
    expect((await ws.response)["sec-websocket-protocol"]).toBe("chat.v2");
    expect(await seen.promise).toEqual({
      params: { id: "42" },
      q: "y",
      h: "t",
      v: "2.0",
      alpn: "h2",
      m: "CONNECT",
    });
    expect((await ws.next()).payload.toString()).toBe("in");
    // The handler returned: the server starts the closing handshake.
    expect((await ws.next()).opcode).toBe(Opcode.Close);
  });

  it("answers refusals as HTTP statuses on the stream", async () => {
    const { url } = await startH2(
      (r) => {
        r.webSocket(
          "/private",
          { beforeUpgrade: (call) => call.reject(401, "who are you?\n", { "WWW-Authenticate": "Bearer" }) },
          async () => {},
        );
        r.webSocket("/proto", { protocol: "only.this" }, async () => {});
        echo(r);
      },
      { allowedOrigins: ["https://good.example"] },
    );
    const peer = await H2Peer.connect(url);
    const cases: Array<[string, Record<string, string>, number]> = [
      ["/nowhere", { origin: "https://good.example" }, 404],
      ["/private", { origin: "https://good.example" }, 401],
      ["/echo", { origin: "https://evil.example" }, 403],
      ["/proto", { origin: "https://good.example", "sec-websocket-protocol": "other" }, 400],
      ["/echo", { origin: "https://good.example", "sec-websocket-version": "8" }, 426],
      ["/echo", { origin: "https://good.example", "sec-websocket-extensions": "a;;b" }, 400],
    ];
    for (const [path, headers, status] of cases) {
      const ws = await peer.open(path, headers);
      expect([path, ws.status]).toEqual([path, status]);
      await within(ws.ended, 5000, "the refusal's end");
      if (status === 401) {
        expect(ws.body).toBe("who are you?\n");
        expect((await ws.response)["www-authenticate"]).toBe("Bearer");
      }
      if (status === 426) expect((await ws.response)["sec-websocket-version"]).toBe("13");
    }
    // A CONNECT without :protocol is a tunnel request, not a WebSocket.
    const tunnel = peer.session.request({ ":method": "CONNECT", ":authority": "example.com:443" });
    const status = await within(
      new Promise((resolve) => tunnel.once("response", (h) => resolve(h[":status"]))),
      5000,
      "tunnel answer",
    );
    expect(status).toBe(405);
    // The connection is still good for WebSockets.
    const ws = await peer.open("/echo", { origin: "https://good.example" });
    ws.sendText("still");
    expect((await ws.next()).payload.toString()).toBe("still");
  });

  it("a refusal whose body the peer does not read is reset with CANCEL after a second, not ended cleanly", async () => {
    const body = "x".repeat(2 * 1024 * 1024);
    const { url } = await startH2((r) =>
      r.webSocket("/big-no", { beforeUpgrade: (call) => call.reject(403, body) }, async () => {}),
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/big-no");
    ws.stream.pause();
    expect(ws.status).toBe(403);
    expect(await within(ws.closed, 5000, "the reset")).toBe(h2.NGHTTP2_CANCEL);
  });

  it("negotiates permessage-deflate over h2", async () => {
    const { url } = await startH2(echo, { extensions: [permessageDeflate({ threshold: 0 })] });
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/echo", {
      "sec-websocket-extensions": "permessage-deflate; client_no_context_takeover",
    });
    const accepted = String((await ws.response)["sec-websocket-extensions"]);
    expect(accepted).toMatch(/^permessage-deflate/);
    const text = "compress me ".repeat(200);
    const compressed = deflateRawSync(Buffer.from(text), { finishFlush: 2 /* Z_SYNC_FLUSH */ });
    ws.send(Opcode.Text, compressed.subarray(0, compressed.length - 4), { rsv1: true });
    const back = await ws.next();
    expect(back.rsv1).toBe(true);
    const inflated = inflateRawSync(Buffer.concat([back.payload, Buffer.from([0, 0, 0xff, 0xff])]), {
      finishFlush: 2,
    });
    expect(inflated.toString()).toBe(text);
    expect(back.payload.length).toBeLessThan(text.length / 4);
  });

  it("sends keepalive pings on each stream and closes a stream whose peer stops answering", async () => {
    const { app, url } = await startH2(echo, { pingPeriod: 100, timeout: 200 });
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/echo");
    const ping = await ws.next(3000);
    expect(ping.opcode).toBe(Opcode.Ping);
    // No pong from this hand-written peer: the session gives up within pingPeriod + timeout.
    const [session] = [...app.sessions] as Session[];
    const reason = await within(session!.closeReason, 3000, "the keepalive timeout");
    expect(reason.code).toBe(1011);
  });
});

describe("stream semantics", () => {
  it("a peer that resets its stream ends the session with 1006; the other streams go on", async () => {
    const { app, url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    const a = await peer.open("/echo");
    const b = await peer.open("/echo");
    await until(() => app.sessions.size === 2, 5000, "two sessions");
    const [sa] = [...app.sessions] as Session[];
    a.stream.close(h2.NGHTTP2_CANCEL);
    expect((await within(sa!.closeReason, 5000, "1006")).code).toBe(1006);
    b.sendText("alive");
    expect((await b.next()).payload.toString()).toBe("alive");
  });

  it("session.terminate() resets the stream; the h2 connection stays up", async () => {
    const { app, url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    const a = await peer.open("/echo");
    await until(() => app.sessions.size === 1, 5000, "the session");
    const [sa] = [...app.sessions] as Session[];
    sa!.terminate();
    const code = await within(a.closed, 5000, "reset");
    expect(code).not.toBe(h2.NGHTTP2_NO_ERROR);
    const b = await peer.open("/echo");
    b.sendText("next");
    expect((await b.next()).payload.toString()).toBe("next");
  });

  it("h2 flow control is the session's backpressure: a stream that stops reading blocks send", async () => {
    const gate = deferred<Session>();
    const { url } = await startH2((r) =>
      r.webSocket("/push", async (s) => {
        gate.resolve(s as Session);
        await s.closeReason;
      }),
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/push");
    const session = await gate.promise;
    ws.stream.pause();
    const chunk = Buffer.alloc(64 * 1024, 1);
    let sent = 0;
    let blocked = false;
    // The stream's window (256 KiB) and the peer's connection window fill; then send() waits.
    for (let i = 0; i < 200 && !blocked; i++) {
      const p = session.send(chunk).then(() => {
        sent++;
      });
      const settled = await Promise.race([p.then(() => true), delay(50).then(() => false)]);
      if (!settled) blocked = true;
    }
    expect(blocked).toBe(true);
    expect(sent).toBeLessThan(100);
    expect(session.bufferedAmount).toBeGreaterThan(0);
    const before = sent;
    ws.stream.resume();
    await until(() => sent > before, 5000, "a send after resume");
  });

  it("carries 150 WebSockets on one h2 connection", async () => {
    const sessions = new Set<unknown>();
    const { app, url } = await startH2(
      (r) =>
        r.webSocket("/n", async (s) => {
          sessions.add((s.call.request as unknown as { stream: { session: unknown } }).stream.session);
          for await (const m of s.incoming) await s.send(m);
        }),
      { keepRequest: true },
    );
    const peer = await H2Peer.connect(url);
    const streams = await Promise.all(Array.from({ length: 150 }, () => peer.open("/n")));
    streams.forEach((ws, i) => {
      ws.sendText(`m${i}`);
    });
    const got = await Promise.all(streams.map(async (ws) => (await ws.next()).payload.toString()));
    expect(got).toEqual(streams.map((_, i) => `m${i}`));
    expect(app.sessions.size).toBe(150);
    expect(sessions.size).toBe(1);
  });

  it("stop() sends 1001 on every stream and GOAWAY to the connection", async () => {
    const { app, url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    const goaway = deferred<number>();
    peer.session.once("goaway", (code) => goaway.resolve(code));
    const streams = await Promise.all([peer.open("/echo"), peer.open("/echo")]);
    await until(() => app.sessions.size === 2, 5000, "two sessions");
    // This peer answers the server's Close, as a WebSocket client must.
    const answered = streams.map(async (ws) => {
      const close = await ws.next();
      ws.send(Opcode.Close, closePayload(1001));
      ws.stream.end();
      return close.payload.readUInt16BE(0);
    });
    const stopped = app.stop({ grace: 2000 });
    expect(await Promise.all(answered)).toEqual([1001, 1001]);
    expect(await within(goaway.promise, 5000, "GOAWAY")).toBe(h2.NGHTTP2_NO_ERROR);
    await within(stopped, 5000, "stop()");
    expect(app.sessions.size).toBe(0);
  });

  it("stop() does not wait on an h2 connection or an HTTP/1.1 keep-alive connection that stays idle", async () => {
    const { app, url, port } = await startH2((r) => {
      echo(r);
      r.get("/", (call) => call.respondText("hi"));
    });
    const peer = await H2Peer.connect(url);
    expect((await peer.get("/")).status).toBe(200);
    const agentBody = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: "127.0.0.1",
          port,
          path: "/",
          rejectUnauthorized: false,
          headers: { connection: "keep-alive" },
        },
        (res) => {
          let body = "";
          res.on("data", (c) => (body += c));
          res.on("end", () => resolve(body));
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(agentBody).toBe("hi");
    await within(app.stop({ grace: 200 }), 3000, "stop()");
  });

  it("stop() ends HTTP/1.1 and h2 requests still waiting for their answer", async () => {
    const started = { h1: deferred(), h2: deferred() };
    const { app, url, port } = await startH2((r) => {
      echo(r);
      r.get("/slow", (call) => {
        started[call.httpVersion === "2.0" ? "h2" : "h1"].resolve();
        return new Promise(() => {});
      });
    });
    const peer = await H2Peer.connect(url);
    const h2Request = peer.session.request({ ":method": "GET", ":path": "/slow" });
    h2Request.on("error", () => {});
    const h1Request = httpsRequest({ host: "127.0.0.1", port, path: "/slow", rejectUnauthorized: false });
    h1Request.on("error", () => {});
    h1Request.end();
    await within(Promise.all([started.h1.promise, started.h2.promise]), 5000, "both requests");
    await within(app.stop({ grace: 200 }), 3000, "stop()");
  });
});

describe("HTTP/1.1 on the same port", () => {
  it("a ws client upgrades over HTTP/1.1; https GETs and h2 GETs reach the same HTTP routes", async () => {
    const { url, port } = await startH2((r) => {
      echo(r);
      r.get("/hello", (call) => call.respondText(`hello over ${call.httpVersion}`));
    });
    const client = new WebSocket(`wss://127.0.0.1:${port}/echo`, { rejectUnauthorized: false });
    onCleanup(() => client.terminate());
    await within(
      new Promise((resolve, reject) => client.once("open", resolve).once("error", reject)),
      5000,
      "open",
    );
    const echoed = new Promise<string>((resolve) => client.once("message", (m) => resolve(String(m))));
    client.send("over 1.1");
    expect(await within(echoed, 5000, "echo")).toBe("over 1.1");

    const h1 = await new Promise<string>((resolve, reject) => {
      httpsRequest({ host: "127.0.0.1", port, path: "/hello", rejectUnauthorized: false }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve(body));
      })
        .on("error", reject)
        .end();
    });
    expect(h1).toBe("hello over 1.1");
    const peer = await H2Peer.connect(url);
    expect((await peer.get("/hello")).body).toBe("hello over 2.0");
    // A GET on a WebSocket route over h2 cannot upgrade: 426, without HTTP/1.1's Upgrade header.
    const get = await peer.get("/echo");
    expect(get.status).toBe(426);
    expect(get.headers.upgrade).toBeUndefined();
  });

  it("an HTTP/1.1 CONNECT on the same port is refused 405", async () => {
    const { port } = await startH2(echo);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest({
        host: "127.0.0.1",
        port,
        method: "CONNECT",
        path: "example.com:443",
        rejectUnauthorized: false,
      });
      req.on("connect", (res, socket) => {
        socket.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on("response", (res) => resolve(res.statusCode ?? 0));
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(405);
  });
});

describe("app.attach(http2 server)", () => {
  it("serves extended CONNECTs and HTTP/1.1 upgrades on a secure server someone else made", async () => {
    const server = createSecureServer({ ...tls, allowHTTP1: true }, (_req, res) =>
      res.end("the owner's answer"),
    );
    const app = createApp().install(WebSockets).routing(echo).attach(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onCleanup(() => new Promise((resolve) => server.close(resolve)));
    onCleanup(() => app.stop({ grace: 0 }));
    const { port } = server.address() as AddressInfo;
    const peer = await H2Peer.connect(`https://127.0.0.1:${port}`);
    expect(peer.connectProtocol).toBe(true);
    const ws = await peer.open("/echo");
    ws.sendText("attached");
    expect((await ws.next()).payload.toString()).toBe("attached");
    expect((await peer.get("/anything")).body).toBe("the owner's answer");
    const client = new WebSocket(`wss://127.0.0.1:${port}/echo`, { rejectUnauthorized: false });
    onCleanup(() => client.terminate());
    const echoed = new Promise<string>((resolve, reject) => {
      client.once("open", () => client.send("h1 too"));
      client.once("message", (m) => resolve(String(m)));
      client.once("error", reject);
    });
    expect(await within(echoed, 5000, "the HTTP/1.1 echo")).toBe("h1 too");
    peer.session.destroy();
  });

  it("works on a cleartext HTTP/2 server (prior knowledge)", async () => {
    const server = createServer((_req, res) => res.end("plain"));
    const app = createApp().install(WebSockets).routing(echo).attach(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onCleanup(() => new Promise((resolve) => server.close(resolve)));
    onCleanup(() => app.stop({ grace: 0 }));
    const { port } = server.address() as AddressInfo;
    const peer = await H2Peer.connect(`http://127.0.0.1:${port}`);
    const ws = await peer.open("/echo");
    ws.sendText("h2c");
    expect((await ws.next()).payload.toString()).toBe("h2c");
    peer.session.destroy();
  });
});
