/**
 * Hostile frames after a successful handshake: absurd lengths, fragment floods, trickles, vanishing
 * peers and garbage. Each attack gets the RFC's answer, and an established session next to it keeps
 * working; the process sees no unhandled rejection.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/index.js";
import {
  close,
  destroyAllClients,
  expectClose,
  expectEcho,
  expectNormalClosure,
  expectStillHealthy,
  frame,
  OP,
  type ProcessWatch,
  RawClient,
  rssMiB,
  sleep,
  text,
  watchProcess,
} from "../conformance/raw-client.js";
import { closeReasonWithin, type HostileServer, startHostileServer } from "./hostile-app.js";

let server: HostileServer;
let watch: ProcessWatch;
let healthy: RawClient;

beforeAll(async () => {
  watch = watchProcess();
  server = await startHostileServer();
});
beforeEach(async () => {
  server.errors.length = 0;
  healthy = await RawClient.open(server.port);
});
afterEach(() => destroyAllClients());
afterAll(async () => {
  destroyAllClients();
  await server.stop();
  watch.dispose();
});

/** The error hook got exactly one protocol error, with this close code. */
function expectOneProtocolError(closeCode: number): void {
  expect(server.errors.map((e) => e.kind)).toEqual(["protocol"]);
  const error = server.errors[0]!.error;
  expect(error).toBeInstanceOf(ProtocolError);
  expect((error as ProtocolError).closeCode).toBe(closeCode);
}

describe("absurd payload lengths (checked from the header, §5.2)", () => {
  it.each([
    ["2^63 - 1 (MSB clear, beyond 2^53: 1009)", 0x7fffffffffffffffn, 1009],
    ["2^63 (MSB set: 1002)", 0x8000000000000000n, 1002],
    ["2^64 - 1 (MSB set: 1002)", 0xffffffffffffffffn, 1002],
    ["2^53 (beyond the safe integers: 1009)", 2n ** 53n, 1009],
    ["2^53 - 1 (over maxFrameSize: 1009)", 2n ** 53n - 1n, 1009],
    ["2^32 (over maxFrameSize: 1009)", 2n ** 32n, 1009],
  ])("a 64-bit length of %s", async (_name, length, code) => {
    const c = await RawClient.open(server.port);
    await c.write(frame({ opcode: OP.binary, length, lengthForm: 64 })); // header and mask only
    await expectClose(c, code);
    expectOneProtocolError(code);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("a length just above maxFrameSize (1 MiB + 1): 1009 from the header, no payload needed", async () => {
    const c = await RawClient.open(server.port);
    await c.write(frame({ opcode: OP.text, length: (1 << 20) + 1 }));
    await expectClose(c, 1009);
    expectOneProtocolError(1009);
    await expectStillHealthy(server.port, healthy, watch);
  });
});

describe("floods and trickles", () => {
  it("100,000 empty fragments: 1009 once maxFragments (1024) is passed, quickly", async () => {
    const c = await RawClient.open(server.port);
    const before = rssMiB();
    const start = frame({ opcode: OP.text, fin: false });
    const empty = frame({ opcode: OP.continuation, fin: false, mask: Buffer.from([1, 2, 3, 4]) });
    const flood = Buffer.concat([start, ...Array.from({ length: 99_999 }, () => empty)]);
    const sentAt = performance.now();
    void c.write(flood);
    const r = await expectClose(c, 1009);
    expect(r.closeFrameAt! - sentAt, "time to 1009").toBeLessThan(1000);
    expectOneProtocolError(1009);
    expect(rssMiB() - before).toBeLessThan(100);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("a small frame trickled one byte every 20 ms is still echoed", async () => {
    const c = await RawClient.open(server.port);
    const bytes = text("trickle, trickle"); // 6 + 16 bytes: ~450 ms
    await c.trickle(bytes, 1, 20);
    await expectEcho(c, OP.text, "trickle, trickle");
    await expectNormalClosure(c);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("50 connections stalled halfway through 1 MiB messages: memory stays bounded, all are served", async () => {
    const before = rssMiB();
    const stalled = await Promise.all(Array.from({ length: 50 }, () => RawClient.open(server.port)));
    const whole = frame({ opcode: OP.binary, payload: Buffer.alloc(1 << 20, 0x42) });
    const half = whole.length >> 1;
    await Promise.all(stalled.map((c) => c.write(whole.subarray(0, half))));
    await sleep(100);
    await expectStillHealthy(server.port, healthy, watch);
    const grown = rssMiB() - before;
    expect(grown, `RSS grew by ${grown.toFixed(1)} MiB`).toBeLessThan(100);
    // Finish one of them: its message is echoed whole.
    await stalled[0]!.write(whole.subarray(half));
    await expectEcho(stalled[0]!, OP.binary, Buffer.alloc(1 << 20, 0x42), 3000);
    for (const c of stalled) c.destroy();
    expect(server.errors).toEqual([]);
  });

  it("random bytes instead of frames: the server fails or waits, never crashes", async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.open(server.port)));
    await Promise.all(clients.map((c) => c.write(randomBytes(4096))));
    await sleep(200);
    for (const c of clients) {
      // Noise may happen to start with a valid frame (a ping, a short message) that gets its answer;
      // if the server closed, it was with a failure code, and nothing followed its Close frame.
      const closeAt = c.frames.findIndex((f) => f.opcode === OP.close);
      if (closeAt >= 0) {
        expect([1002, 1007, 1009]).toContain(c.frames[closeAt]!.payload.readUInt16BE(0));
        expect(c.frames.length).toBe(closeAt + 1);
      }
    }
    expect(server.errors.every((e) => e.kind === "protocol")).toBe(true);
    await expectStillHealthy(server.port, healthy, watch);
  });
});

describe("peers that vanish or babble after the end", () => {
  it.each([
    ["FIN", (c: RawClient) => c.end()],
    ["RST", (c: RawClient) => c.reset()],
  ])("disconnect mid-frame (%s): the session ends with 1006, nothing reported", async (_name, vanish) => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/observe");
    const f = text("this frame is never finished");
    await c.write(f.subarray(0, 10));
    await sleep(50);
    vanish(c);
    const session = server.sessions[seen]!;
    const reason = await closeReasonWithin(session, 1500);
    expect(reason?.code).toBe(1006);
    expect(server.app.sessions.has(session)).toBe(false);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("disconnect mid-header (RST after 1 byte): 1006, nothing reported", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/observe");
    await c.write(text("x").subarray(0, 1));
    await sleep(30);
    c.reset();
    const reason = await closeReasonWithin(server.sessions[seen]!, 1500);
    expect(reason?.code).toBe(1006);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("garbage after the Close frame, in the same write, is ignored", async () => {
    const c = await RawClient.open(server.port);
    await c.write(Buffer.concat([close(1000), randomBytes(64 * 1024)]));
    await expectClose(c, 1000);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("garbage after the Close frame, in later writes, is ignored", async () => {
    const c = await RawClient.open(server.port, "/observe");
    const seen = server.sessions.length - 1;
    await c.write(close(4000, "bye"));
    await c.write(randomBytes(1024));
    await c.write(frame({ opcode: 0xf, payload: "reserved", mask: false }));
    await expectClose(c, 4000);
    expect((await closeReasonWithin(server.sessions[seen]!, 1500))?.code).toBe(4000);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });
});
