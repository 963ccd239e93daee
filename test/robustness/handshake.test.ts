/**
 * Hostile opening handshakes: malformed requests get the RFC's HTTP answer and a closed connection;
 * slow and silent clients are cut off; none of it disturbs an established session or the process.
 */
import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  destroyAllClients,
  expectStillHealthy,
  handshakeRequest,
  type ProcessWatch,
  RawClient,
  rssMiB,
  sleep,
  watchProcess,
} from "../conformance/raw-client.js";
import { closeReasonWithin, type HostileServer, startHostileServer } from "./hostile-app.js";

let server: HostileServer;
let watch: ProcessWatch;
let healthy: RawClient;

beforeAll(async () => {
  watch = watchProcess();
  server = await startHostileServer({ handshakeTimeout: 1000 });
});
beforeEach(async () => {
  healthy = await RawClient.open(server.port);
});
afterEach(async () => {
  destroyAllClients();
});
afterAll(async () => {
  destroyAllClients();
  await server.stop();
  watch.dispose();
});

/** Sends `request` on a new connection; returns the response once the server has closed TCP. */
async function refused(request: string | Buffer) {
  const c = await RawClient.connect(server.port);
  const res = await c.request(request);
  expect(await c.waitForTcpClose(), "the server closes the connection").toBe(true);
  expect(c.frames).toEqual([]);
  return res;
}

describe("§4.2.1 invalid upgrade requests are refused", () => {
  it("missing Sec-WebSocket-Key: 400", async () => {
    const res = await refused(handshakeRequest({ headers: { "Sec-WebSocket-Key": undefined } }));
    expect(res.status).toBe(400);
    expect(res.headers["sec-websocket-accept"]).toBeUndefined();
    await expectStillHealthy(server.port, healthy, watch);
  });

  it.each([
    ["not base64", "this is not a key!!"],
    ["15 bytes", Buffer.alloc(15, 1).toString("base64")],
    ["17 bytes", Buffer.alloc(17, 1).toString("base64")],
    ["empty", ""],
  ])("malformed Sec-WebSocket-Key (%s): 400", async (_name, key) => {
    const res = await refused(handshakeRequest({ key }));
    expect(res.status).toBe(400);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it.each(["8", "12", "14", "13, 8", ""])(
    "Sec-WebSocket-Version %j: 426 with Sec-WebSocket-Version: 13",
    async (v) => {
      const res = await refused(handshakeRequest({ headers: { "Sec-WebSocket-Version": v } }));
      expect(res.status).toBe(426);
      expect(res.headers["sec-websocket-version"]).toBe("13");
      await expectStillHealthy(server.port, healthy, watch);
    },
  );

  it("missing Sec-WebSocket-Version: 426 with Sec-WebSocket-Version: 13", async () => {
    const res = await refused(handshakeRequest({ headers: { "Sec-WebSocket-Version": undefined } }));
    expect(res.status).toBe(426);
    expect(res.headers["sec-websocket-version"]).toBe("13");
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("an HTTP/1.0 upgrade request: 400", async () => {
    const res = await refused(handshakeRequest().replace("HTTP/1.1", "HTTP/1.0"));
    expect(res.status).toBe(400);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("POST with all the upgrade headers: 405", async () => {
    const res = await refused(handshakeRequest({ method: "POST", headers: { "Content-Length": "0" } }));
    expect(res.status).toBe(405);
    await expectStillHealthy(server.port, healthy, watch);
  });

  // Regression: sockway's clientError listener (application.ts, listen()) used to answer every client
  // error with 400, this one included (node:http reports it as HPE_HEADER_OVERFLOW).
  it("a request head over 8 KiB: 431", async () => {
    const res = await refused(handshakeRequest({ headers: { "X-Padding": "p".repeat(9000) } }));
    expect(res.status).toBe(431);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("many headers that add up to more than 8 KiB are refused too", async () => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 200; i++) headers[`X-H${i}`] = "v".repeat(50);
    const res = await refused(handshakeRequest({ headers }));
    expect(res.status).toBe(431);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("garbage instead of an HTTP request: 400 and closed", async () => {
    const res = await refused(
      Buffer.from("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", "latin1"),
    );
    expect(res.status).toBe(400);
    await expectStillHealthy(server.port, healthy, watch);
  });
});

describe("slow, silent and vanishing clients", () => {
  it("a request sent one byte every 300 ms is cut off after handshakeTimeout (1000 ms)", async () => {
    const c = await RawClient.connect(server.port);
    const bytes = Buffer.from(handshakeRequest());
    let sent = 0;
    const start = performance.now();
    while (!c.tcpClosed && sent < bytes.length && performance.now() - start < 4000) {
      await c.write(bytes.subarray(sent, sent + 1));
      sent++;
      await sleep(300);
    }
    expect(c.tcpClosed, "the server closed the connection").toBe(true);
    // headersTimeout is checked once a second by node:http: 1000 ms + up to 1000 ms + scheduling slack.
    expect((c.endAt ?? c.closeAt)! - c.connectedAt).toBeLessThan(2500);
    expect(c.response?.status ?? 0).not.toBe(101);
    await expectStillHealthy(server.port, healthy, watch);
  });

  // Regression: the same clientError listener used to answer ERR_HTTP_REQUEST_TIMEOUT with 400;
  // node's own answer is 408, and docs/options.md says the socket is destroyed.
  it("a request head that times out gets 408 Request Timeout or no answer, not 400", async () => {
    const c = await RawClient.connect(server.port);
    await c.write(Buffer.from("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    expect(await c.waitForTcpClose(2500)).toBe(true);
    expect([undefined, 408]).toContain(c.response?.status);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("2,000 silent TCP connections: the server stays responsive and memory stays bounded", async () => {
    // A default handshakeTimeout (10 s), so that all of them stay open together: connecting 2,000
    // sockets takes seconds on a slow machine.
    const patient = await startHostileServer();
    try {
      const steady = await RawClient.open(patient.port);
      const before = rssMiB();
      const silent: RawClient[] = [];
      for (let batch = 0; batch < 10; batch++) {
        silent.push(
          ...(await Promise.all(Array.from({ length: 200 }, () => RawClient.connect(patient.port)))),
        );
      }
      expect(silent.filter((c) => !c.tcpClosed)).toHaveLength(2000);
      // While they are all open: established sessions and new handshakes still work.
      await expectStillHealthy(patient.port, steady, watch);
      const grown = rssMiB() - before;
      expect(grown, `RSS grew by ${grown.toFixed(1)} MiB`).toBeLessThan(100);
      for (const c of silent) c.destroy();
      await sleep(100);
      await expectStillHealthy(patient.port, steady, watch);
      expect(patient.errors).toEqual([]);
    } finally {
      destroyAllClients();
      await patient.stop();
    }
  }, 20_000);

  it("silent TCP connections are closed by the server after handshakeTimeout (1000 ms)", async () => {
    const silent = await Promise.all(Array.from({ length: 200 }, () => RawClient.connect(server.port)));
    const openedAt = performance.now();
    await expectStillHealthy(server.port, healthy, watch);
    // node:http checks headersTimeout once a second: 1000 ms + up to 1000 ms + slack.
    while (silent.some((c) => !c.tcpClosed) && performance.now() - openedAt < 2500) await sleep(50);
    expect(silent.filter((c) => !c.tcpClosed).length, "connections left open by the server").toBe(0);
    for (const c of silent) expect(c.response?.status ?? 0).not.toBe(101);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it.each([
    ["FIN", (c: RawClient) => c.end()],
    ["RST", (c: RawClient) => c.reset()],
  ])("a client that vanishes mid-handshake (%s): no session, nothing reported", async (_name, vanish) => {
    const sessionsBefore = server.app.sessions.size;
    const errorsBefore = server.errors.length;
    const c = await RawClient.connect(server.port);
    const request = handshakeRequest({ path: "/observe" });
    await c.write(Buffer.from(request.slice(0, request.length / 2)));
    await sleep(50);
    vanish(c);
    await sleep(100);
    expect(server.app.sessions.size).toBe(sessionsBefore);
    expect(server.errors.slice(errorsBefore)).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("a client that sends a complete upgrade request and vanishes before reading the 101", async () => {
    const observedBefore = server.sessions.length;
    const errorsBefore = server.errors.length;
    const c = await RawClient.connect(server.port);
    await c.write(Buffer.from(handshakeRequest({ path: "/observe" })));
    c.reset();
    const deadline = performance.now() + 1500;
    while (server.sessions.length === observedBefore && performance.now() < deadline) await sleep(10);
    // If a session started, it ends as an abnormal closure and nothing is reported as an error.
    for (const s of server.sessions.slice(observedBefore)) {
      expect((await closeReasonWithin(s, 1500))?.code).toBe(1006);
    }
    expect(server.errors.slice(errorsBefore)).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });
});
