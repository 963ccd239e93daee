/**
 * Peers that stop cooperating after the handshake: they never answer pings or Close frames, never read,
 * or reset while a large reply is being written. The server frees them on its timers and keeps its
 * buffers bounded, without reporting anything as an application error.
 */
import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  binary,
  close,
  destroyAllClients,
  expectStillHealthy,
  frame,
  OP,
  type ProcessWatch,
  RawClient,
  rssMiB,
  sleep,
  watchProcess,
} from "../conformance/raw-client.js";
import { closeReasonWithin, type HostileServer, startHostileServer } from "./hostile-app.js";

const PING_PERIOD = 200;
const TIMEOUT = 400;

let server: HostileServer; // keepalive on: pingPeriod 200 ms, timeout 400 ms
let quiet: HostileServer; // no keepalive pings (they would end a non-reading peer with 1011)
let watch: ProcessWatch;
let healthy: RawClient;

beforeAll(async () => {
  watch = watchProcess();
  server = await startHostileServer({ pingPeriod: PING_PERIOD, timeout: TIMEOUT });
  quiet = await startHostileServer();
});
beforeEach(async () => {
  server.errors.length = 0;
  quiet.errors.length = 0;
  // Keepalive pings are on: the healthy client answers them, like a browser.
  healthy = await RawClient.open(server.port, "/echo", { autoPong: true });
});
afterEach(() => destroyAllClients());
afterAll(async () => {
  destroyAllClients();
  await Promise.all([server.stop(), quiet.stop()]);
  watch.dispose();
});

describe("keepalive and closing timeouts", () => {
  it("a peer that never answers pings: Close 1011 after pingPeriod + timeout, then TCP closed", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/observe");
    const r = await c.waitForClose(PING_PERIOD + TIMEOUT + 1500);
    expect(r.closeFrame).toBe(true);
    expect(r.code).toBe(1011);
    expect(r.before.every((f) => f.opcode === OP.ping)).toBe(true);
    expect(r.before.length).toBeGreaterThanOrEqual(1);
    expect(r.tcpClosed).toBe(true);
    const reason = await closeReasonWithin(server.sessions[seen]!, 1500);
    expect(reason?.code).toBe(1011);
    expect(server.errors).toEqual([]); // a ping timeout is not an error (docs/options.md)
    const probe = await RawClient.open(server.port);
    await probe.write(binary(Buffer.from("ok")));
    expect((await probe.nextFrame()).payload.toString()).toBe("ok");
  });

  it("a peer that never answers the server's Close: TCP is cut after `timeout`", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/leak"); // the handler returns: Close 1000 at once
    const first = await c.nextFrame();
    expect(first.opcode).toBe(OP.close);
    const start = performance.now();
    expect(await c.waitForTcpClose(TIMEOUT + 1500)).toBe(true);
    expect(performance.now() - start).toBeGreaterThan(TIMEOUT - 100);
    const reason = await closeReasonWithin(server.sessions[seen]!, 1500);
    expect(reason?.code).toBe(1000);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("a peer that sends Close but never closes its side of TCP is cut off after `timeout`", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/observe", { allowHalfOpen: true });
    const session = server.sessions[seen]!;
    await c.write(close(1000));
    const sentAt = performance.now();
    const echo = await c.nextFrame();
    expect(echo.opcode).toBe(OP.close);
    expect(await c.waitForTcpClose()).toBe(true); // the server's FIN; our side stays open
    const reason = await closeReasonWithin(session, TIMEOUT + 1500);
    expect(reason?.code).toBe(1000);
    // The server destroyed the socket on its timer, not because we closed.
    expect(performance.now() - sentAt).toBeGreaterThan(TIMEOUT - 100);
    expect(server.app.sessions.has(session)).toBe(false);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });
});

describe("backpressure against a peer that never reads", () => {
  let quietHealthy: RawClient;
  beforeEach(async () => {
    quietHealthy = await RawClient.open(quiet.port);
  });

  it("the echo stalls, the server stops reading, and its buffers stay bounded", async () => {
    const seen = quiet.sessions.length;
    const c = await RawClient.open(quiet.port, "/observe");
    const session = quiet.sessions[seen]!;
    c.socket.pause(); // never read the echoes
    const before = rssMiB();
    const message = binary(Buffer.alloc(64 * 1024, 0x77));
    let written = 0;
    let accepted = 0; // bytes the kernel took from us
    let lastProgress = performance.now();
    const start = performance.now();
    // Keep about 1 MiB queued on our side until the kernel stops taking more for 300 ms: the server has
    // stopped reading (or 5 s pass).
    while (performance.now() - start < 5000 && performance.now() - lastProgress < 300) {
      while (c.socket.writableLength < 1 << 20) {
        c.socket.write(message);
        written += message.length;
      }
      await sleep(20);
      const now = written - c.socket.writableLength;
      if (now > accepted) {
        accepted = now;
        lastProgress = performance.now();
      }
    }
    expect(performance.now() - lastProgress, "the server stopped reading").toBeGreaterThanOrEqual(300);
    expect(accepted, "bytes taken before the stall").toBeGreaterThan(1 << 20);
    // What the server holds for this peer: outgoing below outgoingBufferLimit (16 MiB) plus the socket's
    // buffer, incoming below incomingBufferLimit (1 MiB) plus one message.
    expect(session.bufferedAmount).toBeLessThan(20 << 20);
    expect(session.incoming.cost).toBeLessThanOrEqual((1 << 20) + 64 * 1024);
    const grown = rssMiB() - before;
    expect(grown, `RSS grew by ${grown.toFixed(1)} MiB (writer's own buffer included)`).toBeLessThan(100);
    c.destroy();
    expect((await closeReasonWithin(session, 1500))?.code).toBe(1006);
    expect(quiet.errors).toEqual([]);
    await expectStillHealthy(quiet.port, quietHealthy, watch);
  }, 15_000);

  // Pongs are coalesced in the core (§5.5.3: only the latest unanswered ping is answered) and nothing is
  // written to a socket over the high-water mark, so the pongs a flood can hold are bounded.
  it("a ping flood from a peer that never reads: the server's buffers stay bounded", async () => {
    const seen = quiet.sessions.length;
    const c = await RawClient.open(quiet.port, "/observe");
    const session = quiet.sessions[seen]!;
    c.socket.pause(); // never read the pongs
    const before = rssMiB();
    const ping = frame({ opcode: OP.ping, payload: Buffer.alloc(125, 1) });
    const batch = Buffer.concat(Array.from({ length: 8000 }, () => ping)); // about 1 MiB of pings
    let written = 0;
    let accepted = 0;
    let lastProgress = performance.now();
    const start = performance.now();
    // Until the server stops reading (300 ms without progress), closes, 48 MiB were taken, or 4 s.
    while (
      performance.now() - start < 4000 &&
      performance.now() - lastProgress < 300 &&
      accepted < 48 << 20 &&
      !c.tcpClosed
    ) {
      while (c.socket.writableLength < 1 << 20) {
        c.socket.write(batch);
        written += batch.length;
      }
      await sleep(20);
      const now = written - c.socket.writableLength;
      if (now > accepted) {
        accepted = now;
        lastProgress = performance.now();
      }
    }
    const held = session.bufferedAmount;
    const grown = rssMiB() - before;
    c.destroy();
    expect(held / (1 << 20), "MiB of pongs held by the server").toBeLessThan(17);
    expect(grown, `RSS grew by ${grown.toFixed(1)} MiB`).toBeLessThan(100);
    expect(quiet.errors.every((e) => e.kind === "protocol")).toBe(true);
    await expectStillHealthy(quiet.port, quietHealthy, watch);
  });

  it("a peer that resets while a 1 MiB echo is being written: 1006, nothing reported", async () => {
    const seen = quiet.sessions.length;
    const c = await RawClient.open(quiet.port, "/observe");
    c.socket.pause();
    await c.write(binary(Buffer.alloc(1 << 20, 1)));
    await sleep(30);
    c.reset();
    expect((await closeReasonWithin(quiet.sessions[seen]!, 1500))?.code).toBe(1006);
    expect(quiet.errors).toEqual([]);
    await expectStillHealthy(quiet.port, quietHealthy, watch);
  });
});
