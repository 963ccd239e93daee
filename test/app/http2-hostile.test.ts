/**
 * WebSockets over HTTP/2 (RFC 8441) against hostile or careless peers: streams reset or ended at the
 * wrong time, dead connections, stream floods, peers that never read, shutdown in the middle of all of
 * it, and requests HTTP/2 forbids. node:http2's client (test/helpers/h2-peer.ts) where it can, frames
 * written by hand (test/helpers/raw-h2.ts) where it refuses to misbehave.
 */
import { constants as h2, connect as h2connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type ApplicationCall,
  DefaultWebSocketSession,
  permessageDeflate,
  type Route,
  SessionError,
} from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { echoRoute, startH2 } from "../helpers/h2-app.js";
import { H2Peer, H2WebSocket } from "../helpers/h2-peer.js";
import { clientFrame, closePayload } from "../helpers/raw-client.js";
import { H2Frame, RawH2 } from "../helpers/raw-h2.js";
import { deferred, delay, until, within } from "../helpers/wait.js";

afterEach(cleanup);

const echo = echoRoute;

type Session = DefaultWebSocketSession<ApplicationCall, unknown>;

/** A CONNECT stream opened without waiting for its answer. */
function openRaw(peer: H2Peer, path: string, headers: Record<string, string> = {}): H2WebSocket {
  return new H2WebSocket(
    peer.session.request({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "https",
      ":path": path,
      "sec-websocket-version": "13",
      ...headers,
    }),
  );
}

/** A fresh connection still echoes: the server is serving others. */
async function stillServes(url: string, path = "/echo"): Promise<void> {
  const peer = await H2Peer.connect(url);
  const ws = await peer.open(path);
  expect(ws.status).toBe(200);
  ws.sendText("anyone there?");
  expect((await ws.next()).payload.toString()).toBe("anyone there?");
  peer.session.destroy();
}

describe("a stream that misbehaves", () => {
  it("DATA sent before the 200 (during a slow beforeUpgrade) is read, in order, once the session starts", async () => {
    const hook = deferred();
    const { url, errors } = await startH2((r) =>
      r.webSocket(
        "/echo",
        {
          beforeUpgrade: async () => {
            await hook.promise;
          },
        },
        async (s) => {
          for await (const m of s.incoming) await s.send(m);
        },
      ),
    );
    const peer = await H2Peer.connect(url);
    const ws = openRaw(peer, "/echo");
    ws.sendText("one");
    ws.sendText("two");
    await delay(50);
    hook.resolve();
    expect((await within(ws.response, 5000, "200"))[":status"]).toBe(200);
    expect((await ws.next()).payload.toString()).toBe("one");
    expect((await ws.next()).payload.toString()).toBe("two");
    expect(errors).toEqual([]);
  });

  it("frames then END_STREAM before the 200: the handler gets the messages, then the session ends 1006", async () => {
    const hook = deferred();
    const got: string[] = [];
    const ended = deferred<number>();
    const { app, url, errors } = await startH2((r) =>
      r.webSocket(
        "/in",
        {
          beforeUpgrade: async () => {
            await hook.promise;
          },
        },
        async (s) => {
          for await (const m of s.incoming) got.push(m.data.toString());
          ended.resolve((await s.closeReason).code);
        },
      ),
    );
    const peer = await H2Peer.connect(url);
    const ws = openRaw(peer, "/in");
    ws.sendText("a");
    ws.sendText("b");
    ws.stream.end();
    await delay(50);
    hook.resolve();
    expect(await within(ended.promise, 5000, "the session's end")).toBe(1006);
    expect(got).toEqual(["a", "b"]);
    // The server ended its side too: the stream closes without a reset.
    expect(await within(ws.closed, 5000, "stream close")).toBe(h2.NGHTTP2_NO_ERROR);
    await until(() => app.sessions.size === 0, 2000, "no session left");
    expect(errors).toEqual([]);
  });

  it("frames then END_STREAM without a Close: 1006, the server ends the stream, nothing left", async () => {
    const reason = deferred<number>();
    const { app, url, errors } = await startH2((r) =>
      r.webSocket("/echo", async (s) => {
        for await (const m of s.incoming) await s.send(m);
        reason.resolve((await s.closeReason).code);
      }),
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/echo");
    ws.sendText("last words");
    expect((await ws.next()).payload.toString()).toBe("last words");
    ws.stream.end();
    expect(await within(reason.promise, 5000, "1006")).toBe(1006);
    await within(ws.ended, 5000, "the server's END_STREAM");
    expect(await within(ws.closed, 5000, "stream close")).toBe(h2.NGHTTP2_NO_ERROR);
    await until(() => app.sessions.size === 0, 2000, "no session left");
    expect(errors).toEqual([]);
    // The connection goes on.
    const again = await peer.open("/echo");
    again.sendText("next");
    expect((await again.next()).payload.toString()).toBe("next");
  });

  it("a reset in the middle of a 1 MiB message: 1006, no message, the connection's other streams go on", async () => {
    const got: unknown[] = [];
    const reason = deferred<number>();
    const { app, url, errors } = await startH2(
      (r) =>
        r.webSocket("/big", async (s) => {
          for await (const m of s.incoming) got.push(m);
          reason.resolve((await s.closeReason).code);
        }),
      { maxFrameSize: 2 * 1024 * 1024 },
    );
    const peer = await H2Peer.connect(url);
    const other = await peer.open("/big");
    const ws = await peer.open("/big");
    await until(() => app.sessions.size === 2, 5000, "two sessions");
    const frame = clientFrame(Opcode.Binary, Buffer.alloc(1024 * 1024, 3));
    ws.stream.write(frame.subarray(0, 600 * 1024));
    await delay(50);
    ws.stream.close(h2.NGHTTP2_CANCEL);
    expect(await within(reason.promise, 5000, "1006")).toBe(1006);
    expect(got).toEqual([]);
    await until(() => app.sessions.size === 1, 2000, "one session left");
    other.send(Opcode.Close, closePayload(1000));
    expect((await other.next()).opcode).toBe(Opcode.Close);
    expect(errors).toEqual([]);
  });

  it("a reset while the server compresses a large send: the send rejects, 1006, deflate goes on elsewhere", async () => {
    const outcome = deferred<{ error: unknown; code: number }>();
    const started = deferred();
    const { app, url, errors } = await startH2(
      (r) => {
        r.webSocket("/flood", async (s) => {
          let error: unknown;
          try {
            // Compressible but not trivially: 4 MiB of text, over and over.
            const text = Array.from({ length: (4 * 1024 * 1024) / 16 }, (_, i) =>
              `line ${i} xyz\n`.padEnd(16),
            ).join("");
            started.resolve();
            for (let i = 0; i < 50; i++) await s.send(text);
          } catch (e) {
            error = e;
          }
          outcome.resolve({ error, code: (await s.closeReason).code });
        });
        echo(r);
      },
      { extensions: [permessageDeflate({ threshold: 0 })] },
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/flood", { "sec-websocket-extensions": "permessage-deflate" });
    expect(String((await ws.response)["sec-websocket-extensions"])).toMatch(/^permessage-deflate/);
    await started.promise;
    await new Promise((resolve) => ws.stream.once("data", resolve));
    ws.stream.close(h2.NGHTTP2_CANCEL);
    const { error, code } = await within(outcome.promise, 10_000, "the handler's end");
    expect(error).toBeInstanceOf(SessionError);
    expect(code).toBe(1006);
    await until(() => app.sessions.size === 0, 2000, "no session left");
    expect(errors).toEqual([]);
    const again = await peer.open("/echo", { "sec-websocket-extensions": "permessage-deflate" });
    again.sendText("x");
    expect((await again.next()).opcode).toBe(Opcode.Text);
  });

  it("a reset during a slow beforeUpgrade: no session starts when the hook returns, nothing reported", async () => {
    const hook = deferred();
    const entered = deferred();
    let handlers = 0;
    const { app, url, errors } = await startH2((r) => {
      r.webSocket(
        "/slow",
        {
          beforeUpgrade: async () => {
            entered.resolve();
            await hook.promise;
            return { user: "x" };
          },
        },
        async () => {
          handlers++;
        },
      );
      echo(r);
    });
    const peer = await H2Peer.connect(url);
    const ws = openRaw(peer, "/slow");
    await within(entered.promise, 5000, "the hook");
    ws.stream.close(h2.NGHTTP2_CANCEL);
    await within(ws.closed, 5000, "the reset");
    await delay(20);
    hook.resolve();
    await delay(50);
    expect(handlers).toBe(0);
    expect(app.sessions.size).toBe(0);
    expect(app.host.inHook.size).toBe(0);
    expect(errors).toEqual([]);
    const again = await peer.open("/echo");
    again.sendText("fine");
    expect((await again.next()).payload.toString()).toBe("fine");
  });
});

describe("a connection that misbehaves", () => {
  it("the TCP connection dies under 50 WebSockets: every session ends 1006, nothing leaks, others are served", async () => {
    const reasons: Promise<number>[] = [];
    const handlersDone: Promise<unknown>[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    onCleanup(() => process.off("unhandledRejection", onUnhandled));
    const { app, url, port, errors } = await startH2((r) => {
      r.webSocket("/n", async (s) => {
        reasons.push(s.closeReason.then((c) => c.code));
        const done = (async () => {
          for await (const m of s.incoming) await s.send(m);
        })();
        handlersDone.push(done);
        await done;
      });
      echo(r);
    });
    // The TLS runs over a TCP socket of ours, to reset it.
    const tcp = netConnect({ host: "127.0.0.1", port });
    const session = h2connect(`https://127.0.0.1:${port}`, {
      createConnection: () =>
        tlsConnect({
          socket: tcp,
          servername: "localhost",
          ALPNProtocols: ["h2"],
          rejectUnauthorized: false,
        }),
    });
    session.on("error", () => {});
    onCleanup(() => session.destroy());
    await within(new Promise((resolve) => session.once("remoteSettings", resolve)), 5000, "SETTINGS");
    const peer = { session } as unknown as H2Peer;
    const streams = Array.from({ length: 50 }, () => openRaw(peer, "/n"));
    await within(Promise.all(streams.map((s) => s.response)), 5000, "50 answers");
    for (const ws of streams) ws.sendText("hi");
    await Promise.all(streams.map((ws) => ws.next()));
    expect(app.sessions.size).toBe(50);
    // An abrupt end of TCP (RST), no GOAWAY, no RST_STREAM.
    tcp.resetAndDestroy();
    const codes = await within(Promise.all(reasons), 5000, "50 ends");
    expect(new Set(codes)).toEqual(new Set([1006]));
    await within(Promise.all(handlersDone), 5000, "50 handlers to return");
    await until(() => app.sessions.size === 0, 2000, "no session left");
    expect(errors).toEqual([]);
    await stillServes(url);
    expect(unhandled).toEqual([]);
  });

  it("more CONNECTs than maxConcurrentStreams: nghttp2 cuts the connection; its sessions end 1006, others are served", async () => {
    // RFC 9113 §5.1.2 allows a stream error; nghttp2 makes it a connection error (PROTOCOL_ERROR) once
    // the limit is acknowledged. What matters here: the sessions already started end and are freed.
    const { app, port, url, errors } = await startH2(echo, {}, { maxConcurrentStreams: 4 });
    const raw = await RawH2.connect(port);
    // Let the server see our ACK of its SETTINGS: from then on the limit binds.
    await delay(50);
    const first = Array.from({ length: 4 }, () => raw.connectWebSocket("/echo"));
    await until(() => first.every((id) => raw.status(id) === 200), 5000, "4 answers");
    await until(() => app.sessions.size === 4, 5000, "4 sessions");
    const ends = [...app.sessions].map((s) => s.closeReason.then((r) => r.code));
    raw.connectWebSocket("/echo");
    await within(raw.closed, 5000, "the connection's end");
    expect(new Set(await within(Promise.all(ends), 5000, "4 ends"))).toEqual(new Set([1006]));
    await until(() => app.sessions.size === 0, 2000, "no session left");
    expect(errors).toEqual([]);
    await stillServes(url);
  });

  it("rapid reset: thousands of CONNECTs opened and reset at once leave no session, and others are served", async () => {
    const { app, port, url, errors } = await startH2(echo);
    const raw = await RawH2.connect(port);
    const before = process.memoryUsage().heapUsed;
    for (let batch = 0; batch < 20; batch++) {
      raw.socket.cork();
      for (let i = 0; i < 250; i++) {
        const id = raw.connectWebSocket("/echo");
        raw.reset(id);
      }
      raw.socket.uncork();
      await delay(5);
    }
    // Meanwhile another client is served promptly.
    const started = Date.now();
    await stillServes(url);
    expect(Date.now() - started).toBeLessThan(3000);
    await until(() => app.sessions.size === 0, 5000, "no session left");
    expect(app.host.inHook.size).toBe(0);
    // node:http2's rapid-reset limit (CVE-2023-44487) cuts the connection after a burst of resets on
    // Node 20 (GOAWAY INTERNAL_ERROR); Node 24 may keep it. Either way it must not be a clean NO_ERROR
    // end with work still pending, and the server must be left with nothing (checked above).
    if (raw.goaway !== undefined) expect(raw.goaway.code).not.toBe(h2.NGHTTP2_NO_ERROR);
    global.gc?.();
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(100 * 1024 * 1024);
    expect(errors).toEqual([]);
  });
});

describe("a peer that never reads", () => {
  const pusher = (sessions: Session[]) => (r: Route<"">) => {
    r.webSocket("/push", async (s) => {
      sessions.push(s as Session);
      await s.closeReason;
    });
    echo(r);
  };

  /** Sends 64 KiB messages without waiting until one is refused; returns how they went. */
  async function fill(session: Session): Promise<{ waiting: boolean; refused: unknown }> {
    const chunk = Buffer.alloc(64 * 1024, 1);
    let refused: unknown;
    let waiting = false;
    for (let i = 0; i < 1000 && refused === undefined; i++) {
      const p = session.send(chunk).catch((e: unknown) => {
        refused = e;
      });
      if (!waiting) waiting = !(await Promise.race([p.then(() => true), delay(20).then(() => false)]));
      else await Promise.resolve();
    }
    return { waiting, refused };
  }

  it("stream-level window exhausted: send waits, then SEND_BUFFER_FULL; its connection's other streams and stop() are fine", async () => {
    const sessions: Session[] = [];
    const { app, url } = await startH2(pusher(sessions), {
      outgoingHighWaterMark: 256 * 1024,
      outgoingBufferLimit: 1024 * 1024,
    });
    const peer = await H2Peer.connect(url);
    const stuck = await peer.open("/push");
    stuck.stream.pause();
    const other = await peer.open("/echo");
    await until(() => sessions.length === 1, 5000, "the session");
    const { waiting, refused } = await fill(sessions[0]!);
    expect(waiting).toBe(true);
    expect(refused).toMatchObject({ code: "SEND_BUFFER_FULL" });
    // node:http2's client consumes the connection window as data arrives: the other stream flows.
    other.sendText("beside");
    expect((await other.next()).payload.toString()).toBe("beside");
    await stillServes(url);
    const started = Date.now();
    await within(app.stop({ grace: 300 }), 3000, "stop()");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(app.sessions.size).toBe(0);
  });

  it("connection-level window exhausted (no WINDOW_UPDATE ever): sends wait on every stream, others are served, stop() resolves in time", async () => {
    const sessions: Session[] = [];
    const { app, port, url } = await startH2(pusher(sessions), {
      outgoingHighWaterMark: 128 * 1024,
      outgoingBufferLimit: 512 * 1024,
    });
    // A large stream window, but the connection's stays at 65,535 and is never updated.
    const raw = await RawH2.connect(port, { 4: 2 ** 30 });
    const a = raw.connectWebSocket("/push");
    const b = raw.connectWebSocket("/push");
    await until(() => sessions.length === 2, 5000, "two sessions");
    const first = await fill(sessions[0]!);
    expect(first.waiting).toBe(true);
    expect(first.refused).toMatchObject({ code: "SEND_BUFFER_FULL" });
    // The other stream shares the exhausted connection window: its send waits too.
    const second = await fill(sessions[1]!);
    expect(second.waiting).toBe(true);
    const received = raw.frames
      .filter((f) => f.type === H2Frame.DATA && (f.stream === a || f.stream === b))
      .reduce((n, f) => n + f.payload.length, 0);
    expect(received).toBeLessThanOrEqual(65_535);
    await stillServes(url);
    const started = Date.now();
    await within(app.stop({ grace: 300 }), 3000, "stop()");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(app.sessions.size).toBe(0);
  });

  it("a peer that stops reading TCP altogether: stop() still resolves in time", async () => {
    const sessions: Session[] = [];
    const { app, port } = await startH2(pusher(sessions));
    const raw = await RawH2.connect(port, { 4: 2 ** 30 });
    raw.windowUpdate(0, 2 ** 30);
    raw.connectWebSocket("/push");
    await until(() => sessions.length === 1, 5000, "the session");
    raw.socket.pause();
    await fill(sessions[0]!);
    const started = Date.now();
    await within(app.stop({ grace: 300 }), 3000, "stop()");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(app.sessions.size).toBe(0);
  });
});

describe("stop() in the middle of h2 handshakes", () => {
  it("while CONNECTs wait in beforeUpgrade: they get 503 at once, the hooks' late answers start nothing", async () => {
    const hook = deferred();
    let entered = 0;
    let handlers = 0;
    const { app, url, errors } = await startH2((r) =>
      r.webSocket(
        "/slow",
        {
          beforeUpgrade: async () => {
            entered++;
            await hook.promise;
          },
        },
        async () => {
          handlers++;
        },
      ),
    );
    const peer = await H2Peer.connect(url);
    const streams = [openRaw(peer, "/slow"), openRaw(peer, "/slow"), openRaw(peer, "/slow")];
    await until(() => entered === 3, 5000, "three hooks");
    const started = Date.now();
    await within(app.stop({ grace: 5000 }), 3000, "stop()");
    expect(Date.now() - started).toBeLessThan(1500);
    for (const ws of streams) {
      expect(ws.status).toBe(503);
      expect(ws.body).toBe("Server shutting down\n");
    }
    hook.resolve();
    await delay(50);
    expect(handlers).toBe(0);
    expect(app.sessions.size).toBe(0);
    expect(errors).toEqual([]);
  });

  it("waits for h2 connections only while they have streams: idle ones and finished WebSockets do not hold it", async () => {
    const { app, url } = await startH2((r) => {
      echo(r);
      r.get("/", (call) => call.respondText("hi"));
    });
    const idle = await H2Peer.connect(url);
    expect((await idle.get("/")).status).toBe(200);
    const busy = await H2Peer.connect(url);
    const ws = await busy.open("/echo");
    // This peer answers the server's Close and ends its side, as a WebSocket client must.
    void ws.next().then(() => {
      ws.send(Opcode.Close, closePayload(1001));
      ws.stream.end();
    });
    const started = Date.now();
    await within(app.stop({ grace: 5000 }), 3000, "stop()");
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("while a refusal's large body is still being written to a peer that does not read it", async () => {
    const { app, url } = await startH2((r) =>
      r.webSocket(
        "/no",
        { beforeUpgrade: (call) => call.reject(403, "x".repeat(2 * 1024 * 1024)) },
        async () => {},
      ),
    );
    const peer = await H2Peer.connect(url);
    const ws = openRaw(peer, "/no");
    ws.stream.pause();
    expect((await within(ws.response, 5000, "403"))[":status"]).toBe(403);
    const started = Date.now();
    await within(app.stop({ grace: 5000 }), 3000, "stop()");
    expect(Date.now() - started).toBeLessThan(1500);
    const internals = app as unknown as { h2Sessions: Set<unknown>; tlsSockets: Set<unknown> };
    await until(
      () => internals.h2Sessions.size + internals.tlsSockets.size === 0,
      2000,
      "no connection left",
    );
  });

  it("handshakes that arrive after the GOAWAY start no session; stop() resolves", async () => {
    const { app, port } = await startH2(echo);
    const raw = await RawH2.connect(port);
    const a = raw.connectWebSocket("/echo");
    await until(() => raw.status(a) === 200, 5000, "200");
    await until(() => app.sessions.size === 1, 5000, "the session");
    const stopped = app.stop({ grace: 500 });
    await raw.waitFor((f) => f.type === H2Frame.GOAWAY, "GOAWAY");
    const late = [raw.connectWebSocket("/echo"), raw.connectWebSocket("/echo")];
    await delay(100);
    for (const id of late) expect(raw.status(id)).toBeUndefined();
    expect(app.sessions.size).toBeLessThanOrEqual(1);
    await within(stopped, 3000, "stop()");
    expect(app.sessions.size).toBe(0);
  });
});

describe("odd requests over h2", () => {
  it("an extended CONNECT whose :protocol is not websocket is refused; any case of websocket is taken", async () => {
    const { app, url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    for (const protocol of ["connect-udp", "h2c", "websocket2", "web socket"]) {
      const ws = await peer.open("/echo", { ":protocol": protocol });
      expect([protocol, ws.status]).toEqual([protocol, 400]);
    }
    // Upgrade tokens compare case-insensitively (RFC 9110 §7.8).
    const upper = await peer.open("/echo", { ":protocol": "WebSocket" });
    expect(upper.status).toBe(200);
    await until(() => app.sessions.size === 1, 2000, "one session");
  });

  it("a CONNECT without sec-websocket-version: 426 naming version 13, no session", async () => {
    const { app, url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    const stream = peer.session.request({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "https",
      ":path": "/echo",
    });
    const ws = new H2WebSocket(stream);
    const head = await within(ws.response, 5000, "the answer");
    expect(head[":status"]).toBe(426);
    expect(head["sec-websocket-version"]).toBe("13");
    expect(app.sessions.size).toBe(0);
  });

  it("headers over maxHeaderSize: the stream is refused, never upgraded; the connection goes on", async () => {
    const { app, url } = await startH2(echo, { maxHeaderSize: 4096 });
    const peer = await H2Peer.connect(url);
    const ws = openRaw(peer, "/echo", { "x-big": "a".repeat(8000) });
    const code = await within(ws.closed, 5000, "the refusal");
    expect(ws.status === 431 || code !== h2.NGHTTP2_NO_ERROR).toBe(true);
    expect(ws.status).not.toBe(200);
    expect(app.sessions.size).toBe(0);
    const ok = await peer.open("/echo");
    expect(ok.status).toBe(200);
  });

  it("a :path with bad percent-escapes: 400 for a CONNECT and for a GET", async () => {
    const { app, url } = await startH2((r) => {
      r.webSocket("/rooms/{id}", async () => {});
    });
    const peer = await H2Peer.connect(url);
    for (const path of ["/rooms/%zz", "/rooms/%E0%A4%A", "/rooms/%C0%AF"]) {
      const ws = await peer.open(path);
      expect([path, ws.status]).toEqual([path, 400]);
      expect((await peer.get(path)).status).toBe(400);
    }
    expect(app.sessions.size).toBe(0);
  });

  it("a GET carrying HTTP/1.1's upgrade and connection headers (forbidden in h2) is reset, never upgraded", async () => {
    const { app, port, url } = await startH2(echo);
    const raw = await RawH2.connect(port);
    const id = raw.headers(
      [
        [":method", "GET"],
        [":scheme", "https"],
        [":path", "/echo"],
        [":authority", "127.0.0.1"],
        ["connection", "Upgrade"],
        ["upgrade", "websocket"],
        ["sec-websocket-version", "13"],
        ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ],
      { endStream: true },
    );
    const rst = await raw.waitFor((f) => f.stream === id && f.type === H2Frame.RST_STREAM, "the reset");
    expect(rst.payload.readUInt32BE(0)).toBe(h2.NGHTTP2_PROTOCOL_ERROR);
    expect(raw.status(id)).toBeUndefined();
    expect(app.sessions.size).toBe(0);
    await stillServes(url);
  });

  it("other methods on a WebSocket route over h2: 405 with Allow; HEAD and GET: 426", async () => {
    const { url } = await startH2(echo);
    const peer = await H2Peer.connect(url);
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
      const got = await peer.get("/echo", { ":method": method });
      expect([method, got.status]).toEqual([method, 405]);
      expect(got.headers.allow).toBe("GET, HEAD");
    }
    for (const method of ["GET", "HEAD"]) {
      const got = await peer.get("/echo", { ":method": method });
      expect([method, got.status]).toEqual([method, 426]);
      expect(got.headers.upgrade).toBeUndefined();
      expect(got.headers.connection).toBeUndefined();
    }
  });
});

describe("errors on h2 sessions", () => {
  it("a handler that throws is reported as 'handler' and its stream is closed with 1011", async () => {
    const boom = new Error("boom");
    const { app, url, errors } = await startH2((r) =>
      r.webSocket("/throw", async (s) => {
        await s.incoming.next();
        throw boom;
      }),
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/throw");
    ws.sendText("go");
    const close = await ws.next();
    expect(close.opcode).toBe(Opcode.Close);
    expect(close.payload.readUInt16BE(0)).toBe(1011);
    expect(errors).toEqual([["handler", boom]]);
    ws.send(Opcode.Close, closePayload(1011));
    ws.stream.end();
    expect(await within(ws.closed, 5000, "stream close")).toBe(h2.NGHTTP2_NO_ERROR);
    await until(() => app.sessions.size === 0, 2000, "no session left");
  });

  for (const [what, frame, code] of [
    ["an unmasked frame", clientFrame(Opcode.Text, "naked", { mask: false }), 1002],
    ["invalid UTF-8", clientFrame(Opcode.Text, Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xff])), 1007],
  ] as const) {
    it(`${what}: Close ${code}, reported as 'protocol', the stream ends (no reset) and the connection goes on`, async () => {
      const { app, url, errors } = await startH2(echo);
      const peer = await H2Peer.connect(url);
      const ws = await peer.open("/echo");
      ws.stream.write(frame);
      const close = await ws.next();
      expect(close.opcode).toBe(Opcode.Close);
      expect(close.payload.readUInt16BE(0)).toBe(code);
      await within(ws.ended, 5000, "the server's END_STREAM");
      // We answered nothing and kept our side open: the server is done with the stream regardless.
      await until(() => app.sessions.size === 0, 5000, "no session left");
      expect(errors.map(([kind]) => kind)).toEqual(["protocol"]);
      const again = await peer.open("/echo");
      again.sendText("ok");
      expect((await again.next()).payload.toString()).toBe("ok");
    });
  }
});

describe("a peer that floods", () => {
  it("a handler that does not read: h2 flow control stops the peer (memory bounded), unlike an auto WINDOW_UPDATE", async () => {
    const gate = deferred<Session>();
    const { url } = await startH2(
      (r) =>
        r.webSocket("/deaf", async (s) => {
          gate.resolve(s as Session);
          await s.closeReason;
        }),
      { incomingBufferLimit: 64 * 1024 },
    );
    const peer = await H2Peer.connect(url);
    const ws = await peer.open("/deaf");
    await gate.promise;
    const frame = clientFrame(Opcode.Binary, Buffer.alloc(32 * 1024, 5));
    let written = 0;
    for (let i = 0; i < 512; i++) ws.stream.write(frame, () => (written += frame.length));
    await delay(500);
    // 16 MiB offered; what left the peer is bounded by the session's limit, node's readable buffer and
    // the stream's window (256 KiB), not by what the peer wants to send.
    expect(written).toBeLessThan(2 * 1024 * 1024);
    expect(ws.stream.writableLength).toBeGreaterThan(10 * 1024 * 1024);
  });

  it("a publication to an h2 subscriber whose stream is stuck is dropped (slow subscriber), others get it", async () => {
    const sessions: Session[] = [];
    const { app, url } = await startH2(
      (r) =>
        r.webSocket("/sub", async (s) => {
          await s.subscribe("news");
          sessions.push(s as Session);
          await s.closeReason;
        }),
      { outgoingHighWaterMark: 128 * 1024, outgoingBufferLimit: 1024 * 1024 },
    );
    const peer = await H2Peer.connect(url);
    const stuck = await peer.open("/sub");
    stuck.stream.pause();
    const fine = await peer.open("/sub");
    await until(() => sessions.length === 2, 5000, "two subscribers");
    const big = Buffer.alloc(64 * 1024, 1);
    let dropped = 0;
    // The next publication waits for the reading stream to receive the last: a subscriber that keeps
    // up is never over its high-water mark, so only the stuck one may be dropped. A fixed pace can
    // outrun the first TLS writes and push the reading stream over it too.
    for (let i = 0; i < 40; i++) {
      const result = app.publish("news", big);
      dropped += result.dropped;
      expect(result.delivered).toBeGreaterThan(0);
      await until(() => fine.frames.length === i + 1, 5000, `publication ${i + 1} on the stream that reads`);
    }
    expect(dropped).toBeGreaterThan(0);
    expect(sessions[0]!.bufferedAmount + sessions[1]!.bufferedAmount).toBeLessThan(1024 * 1024);
  });
});

describe("pseudo-headers", () => {
  it("an extended CONNECT without :path or :scheme is reset by nghttp2 (RFC 8441 §4), never routed to /", async () => {
    const { app, port } = await startH2((r) => {
      r.webSocket("/", async () => {});
    });
    const raw = await RawH2.connect(port);
    const ids = [
      raw.headers([
        [":method", "CONNECT"],
        [":protocol", "websocket"],
        [":scheme", "https"],
        [":authority", "127.0.0.1"],
        ["sec-websocket-version", "13"],
      ]),
      raw.headers([
        [":method", "CONNECT"],
        [":protocol", "websocket"],
        [":path", "/"],
        [":authority", "127.0.0.1"],
        ["sec-websocket-version", "13"],
      ]),
    ];
    for (const id of ids) {
      const rst = await raw.waitFor((f) => f.stream === id && f.type === H2Frame.RST_STREAM, `reset #${id}`);
      expect(rst.payload.readUInt32BE(0)).toBe(h2.NGHTTP2_PROTOCOL_ERROR);
      expect(raw.status(id)).toBeUndefined();
    }
    expect(app.sessions.size).toBe(0);
  });
});

describe("HTTP/1.1 on the h2 port", () => {
  it("a request head that never completes is cut after handshakeTimeout (slowloris), as on a plain server", async () => {
    const { port } = await startH2(echo, { handshakeTimeout: 500 });
    const socket = tlsConnect({
      host: "127.0.0.1",
      port,
      ALPNProtocols: ["http/1.1"],
      rejectUnauthorized: false,
    });
    onCleanup(() => socket.destroy());
    socket.on("error", () => {});
    await within(new Promise((resolve) => socket.once("secureConnect", resolve)), 5000, "TLS");
    expect(socket.alpnProtocol).toBe("http/1.1");
    let answer = "";
    socket.on("data", (c: Buffer) => (answer += c.toString()));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.write("GET /echo HTTP/1.1\r\nHost: x\r\n");
    // A header line now and then, never the end of the head.
    const drip = setInterval(() => socket.write("X-Drip: 1\r\n"), 100);
    onCleanup(() => clearInterval(drip));
    await within(closed, 4000, "the server to cut the connection");
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });
});

describe("a failure after the 200", () => {
  it("a bug on the upgrade path once the stream was answered resets it (CANCEL), not a clean NO_ERROR end", async () => {
    const { app, url, errors } = await startH2(echo);
    const bug = new Error("bug after the 200");
    const spy = vi.spyOn(DefaultWebSocketSession.prototype, "receiveHead").mockImplementationOnce(() => {
      throw bug;
    });
    onCleanup(() => spy.mockRestore());
    const peer = await H2Peer.connect(url);
    const ws = openRaw(peer, "/echo");
    // The 200 went out before the failure: the peer must not take the end for a clean one.
    expect(await within(ws.closed, 5000, "the stream's end")).toBe(h2.NGHTTP2_CANCEL);
    expect(errors).toEqual([["handler", bug]]);
    await until(() => app.sessions.size === 0, 2000, "no session left");
  });
});

describe("default limits on one shared connection", () => {
  it("streams stuck with megabytes queued do not make the connection refuse new WebSockets and requests", async () => {
    const sessions: Session[] = [];
    const { url } = await startH2((r) => {
      r.webSocket("/push", async (s) => {
        sessions.push(s as Session);
        await s.closeReason;
      });
      r.get("/page", (call) => call.respondText("page"));
      echo(r);
    });
    const peer = await H2Peer.connect(url);
    const stuck = await Promise.all(Array.from({ length: 12 }, () => peer.open("/push")));
    for (const ws of stuck) ws.stream.pause();
    await until(() => sessions.length === 12, 5000, "twelve sessions");
    // Within each session's limits (1 MiB high-water mark, 16 MiB buffer limit): 12 MB on the streams.
    const message = Buffer.alloc(1024 * 1024, 7);
    for (const s of sessions) for (let i = 0; i < 3; i++) s.send(message).catch(() => {});
    await delay(200);
    // node:http2's default maxSessionMemory (10 MB) refused these with ENHANCE_YOUR_CALM.
    const fresh = await peer.open("/echo");
    expect(fresh.status).toBe(200);
    fresh.sendText("room for me");
    expect((await fresh.next()).payload.toString()).toBe("room for me");
    expect((await peer.get("/page")).body).toBe("page");
  });
});

describe("the peer's GOAWAY", () => {
  it("NO_ERROR: its open WebSockets go on to their end; an error code: they end 1006 at once", async () => {
    const { app, url, errors } = await startH2(echo);
    const polite = await H2Peer.connect(url);
    const ws = await polite.open("/echo");
    await until(() => app.sessions.size === 1, 5000, "the session");
    polite.session.goaway(h2.NGHTTP2_NO_ERROR);
    await delay(50);
    ws.sendText("after goaway");
    expect((await ws.next()).payload.toString()).toBe("after goaway");

    const rude = await H2Peer.connect(url);
    const doomed = await Promise.all([rude.open("/echo"), rude.open("/echo")]);
    expect(doomed.every((d) => d.status === 200)).toBe(true);
    await until(() => app.sessions.size === 3, 5000, "three sessions");
    const [, ...theirs] = [...app.sessions];
    rude.session.goaway(h2.NGHTTP2_INTERNAL_ERROR);
    const codes = await within(Promise.all(theirs.map((s) => s.closeReason)), 5000, "their ends");
    expect(codes.map((c) => c.code)).toEqual([1006, 1006]);
    expect(app.sessions.size).toBe(1);
    expect(errors).toEqual([]);
  });
});
