/**
 * An upgrade request pipelined behind plain requests on one connection: HTTP/1.1 answers in request
 * order (RFC 9112 §9.3.2), so the 101 and the frames after it wait for the earlier responses.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createApp, WebSockets } from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { openSocket, parseResponse } from "../helpers/http.js";
import { deferred, until, within } from "../helpers/wait.js";

afterEach(cleanup);

const upgradeHead = (path: string) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

/** A text frame as the server sends it (unmasked, payload under 126 bytes). */
const serverText = (text: string) => Buffer.concat([Buffer.from([0x81, text.length]), Buffer.from(text)]);

/**
 * "/slow" answers after a timer, "/fast" at once, "/never" never; the WebSocket route "/ws" sends
 * "first" at once.
 */
async function pipelineApp(upgradeReader: "sockway" | "node") {
  const called = deferred();
  const app = createApp()
    .install(WebSockets)
    .onError(() => {});
  app.routing((r) => {
    r.get("/slow", async (call) => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      call.respondText("slow");
    });
    r.get("/fast", (call) => call.respondText("fast"));
    r.get("/never", () => {
      called.resolve();
      return new Promise<void>(() => {});
    });
    r.webSocket("/ws", async (s) => {
      await s.send("first");
      for await (const _ of s.incoming) {
        // Keep the session open until the client goes.
      }
    });
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0, upgradeReader });
  onCleanup(() => app.stop({ grace: 0 }));
  return { app, port, neverCalled: called.promise };
}

/** Writes `requests` in one write; resolves with what came back once the frame "first" has arrived. */
async function exchange(port: number, requests: string): Promise<Buffer> {
  const socket = await openSocket(port);
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.write(requests);
  const first = serverText("first");
  await until(() => Buffer.concat(chunks).includes(first), 2000, "the frame sent after the 101");
  return Buffer.concat(chunks);
}

/** Cuts `bytes` into the responses before the 101, the 101's head, and what follows it. */
function split(bytes: Buffer): { before: Buffer; switching: string; after: Buffer } {
  const at = bytes.indexOf("HTTP/1.1 101 ");
  expect(at, "a 101 response").toBeGreaterThanOrEqual(0);
  const end = bytes.indexOf("\r\n\r\n", at) + 4;
  return {
    before: bytes.subarray(0, at),
    switching: bytes.subarray(at, end).toString("latin1"),
    after: bytes.subarray(end),
  };
}

describe.each(["sockway", "node"] as const)(
  "an upgrade pipelined behind plain GETs (upgradeReader %s)",
  (reader) => {
    it("the slow GET's whole response comes before the 101, and the session's first frame after it", async () => {
      const { port } = await pipelineApp(reader);
      const got = split(
        await exchange(port, `GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${upgradeHead("/ws")}`),
      );
      const slow = parseResponse(got.before);
      expect(slow.status).toBe(200);
      expect(slow.body).toBe("slow");
      // Exactly one whole response before the 101: its head and its Content-Length body, nothing else.
      expect(got.before.length).toBe(
        got.before.indexOf("\r\n\r\n") + 4 + Number(slow.headers["content-length"]),
      );
      expect(got.switching).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
      expect(got.after.equals(serverText("first"))).toBe(true);
    });

    it("with two GETs before it (the second answered first), both responses come in order before the 101", async () => {
      const { port } = await pipelineApp(reader);
      const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
      const got = split(await exchange(port, get("/slow") + get("/fast") + upgradeHead("/ws")));
      const text = got.before.toString("latin1");
      const second = text.indexOf("HTTP/1.1 200", 1);
      expect(parseResponse(got.before.subarray(0, second)).body).toBe("slow");
      expect(parseResponse(got.before.subarray(second)).body).toBe("fast");
      expect(got.after.equals(serverText("first"))).toBe(true);
    });

    it("an h2c upgrade request behind the slow GET is answered as plain HTTP, after the slow GET", async () => {
      const { port } = await pipelineApp(reader);
      const socket = await openSocket(port);
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.write(
        "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
          "GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
          "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
      );
      // The h2c request is answered, then the connection closed (see answerAsHttp).
      await within(closed, 2000, "the connection closing");
      const all = Buffer.concat(chunks);
      const second = all.indexOf("HTTP/1.1 ", 1);
      expect(parseResponse(all.subarray(0, second)).body).toBe("slow");
      expect(parseResponse(all.subarray(second)).body).toBe("fast");
    });

    it("app.stop() closes a connection whose upgrade waits behind a response that never comes", async () => {
      const { app, port, neverCalled } = await pipelineApp(reader);
      const socket = await openSocket(port);
      socket.resume(); // read whatever comes, so that the server's FIN is seen
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.write(`GET /never HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${upgradeHead("/ws")}`);
      // node:http parses both requests of one read together: once the first is being handled, the
      // second's 'upgrade' has been emitted too.
      await within(neverCalled, 2000, "the /never handler");
      await within(app.stop({ grace: 0 }), 2000, "stop()");
      await within(closed, 1000, "the waiting connection closing");
    });
  },
);
