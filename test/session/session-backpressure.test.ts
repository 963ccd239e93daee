import { afterEach, describe, expect, it } from "vitest";
import { type DefaultWebSocketSession, SessionError } from "../../src/index.js";
import { Opcode, writeHeader } from "../../src/protocol/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { RawClient } from "../helpers/raw-client.js";
import { deferred, delay, until, within } from "../helpers/wait.js";

afterEach(cleanup);

const KiB = 1024;
const MiB = 1024 * KiB;
const ZERO_MASK = new Uint8Array(4); // a valid masking key that leaves the payload as is: no copying

/** A 64 KiB binary message whose first 4 bytes are its sequence number. */
function numbered(seq: number, size = 64 * KiB): Buffer {
  const payload = Buffer.alloc(size, seq & 0xff);
  payload.writeUInt32BE(seq, 0);
  return payload;
}

/** Writes a masked binary frame without copying its payload; returns what socket.write returned. */
function writeFrame(client: RawClient, payload: Buffer): boolean {
  const header = Buffer.alloc(14);
  const end = writeHeader(header, 0, Opcode.Binary, payload.length, { mask: ZERO_MASK });
  client.socket.write(header.subarray(0, end));
  return client.socket.write(payload);
}

describe("backpressure: incoming", () => {
  it("a handler that does not read pauses the socket; reading resumes when it consumes, in order", async () => {
    const limit = 256 * KiB;
    const go = deferred();
    const session = deferred<DefaultWebSocketSession>();
    const received: number[] = [];
    const done = deferred();
    const total = 512; // 32 MiB: far more than the kernel's socket buffers on loopback
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
          await go.promise;
          for await (const frame of s.incoming) {
            received.push(frame.data.readUInt32BE(0));
            if (received.length === total) break;
          }
          done.resolve();
        });
      },
      { incomingBufferLimit: limit, maxFrameSize: 64 * KiB, pingPeriod: 0 },
    );
    const client = await RawClient.connect(port, "/ws");
    const s = await session.promise;

    let maxBuffered = 0;
    const sample = setInterval(() => {
      maxBuffered = Math.max(maxBuffered, s.incoming.cost);
    }, 1);
    try {
      let refused = 0;
      for (let seq = 0; seq < total; seq++) if (!writeFrame(client, numbered(seq))) refused++;
      expect(refused).toBeGreaterThan(0);
      // Give the server every chance to read; it must stop near the limit.
      await delay(300);
      const stalled = client.socket.writableLength;
      expect(stalled).toBeGreaterThan(4 * MiB); // the client cannot get rid of its data
      expect(s.incoming.cost).toBeGreaterThan(limit);
      expect(maxBuffered).toBeLessThanOrEqual(limit + 256 * KiB);
      await delay(100);
      // Still stuck while the handler sleeps (a read already under way may take one more chunk).
      expect(stalled - client.socket.writableLength).toBeLessThanOrEqual(256 * KiB);

      go.resolve();
      await within(done.promise, 5000, "the handler to read every message");
      expect(received).toEqual(Array.from({ length: total }, (_, i) => i));
      expect(maxBuffered).toBeLessThanOrEqual(limit + 256 * KiB);
      await until(() => client.socket.writableLength === 0, 2000, "the client's buffer to drain");
    } finally {
      clearInterval(sample);
    }
  });
});

describe("backpressure: outgoing", () => {
  it("await send() blocks while the client does not read; bufferedAmount stays bounded; all arrive", async () => {
    const highWaterMark = 64 * KiB;
    const total = 512; // 32 MiB
    const session = deferred<DefaultWebSocketSession>();
    let completed = 0;
    let maxBuffered = 0;
    const handlerDone = deferred();
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
          for (let seq = 0; seq < total; seq++) {
            await s.send(numbered(seq));
            completed++;
            maxBuffered = Math.max(maxBuffered, s.bufferedAmount);
          }
          handlerDone.resolve();
        });
      },
      { outgoingHighWaterMark: highWaterMark, pingPeriod: 0 },
    );
    const client = await RawClient.connect(port, "/ws");
    client.socket.pause();
    const s = await session.promise;
    const sample = setInterval(() => {
      maxBuffered = Math.max(maxBuffered, s.bufferedAmount);
    }, 1);
    try {
      await delay(300);
      const blockedAt = completed;
      expect(blockedAt).toBeGreaterThan(0);
      expect(blockedAt).toBeLessThan(total / 2); // the kernel took a few MiB at most, then sends blocked
      await delay(150);
      expect(completed).toBe(blockedAt); // no progress while the client does not read
      expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + 64 * KiB + KiB);

      client.socket.resume();
      await within(handlerDone.promise, 5000, "every send to complete");
      await client.waitUntil(() => client.frames.length >= total);
      const seqs = client.frames.slice(0, total).map((f) => f.payload.readUInt32BE(0));
      expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i));
      expect(client.frames.slice(0, total).every((f) => f.payload.length === 64 * KiB)).toBe(true);
      expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + 64 * KiB + KiB);
    } finally {
      clearInterval(sample);
    }
  });

  it("send without awaiting beyond outgoingBufferLimit rejects with SEND_BUFFER_FULL", async () => {
    const outcome = deferred<PromiseSettledResult<void>[]>();
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          const sends: Promise<void>[] = [];
          for (let seq = 0; seq < 10; seq++) sends.push(s.send(numbered(seq)));
          outcome.resolve(await Promise.allSettled(sends));
        });
      },
      // Room for four 64 KiB messages with their frame headers, not for a fifth.
      {
        outgoingBufferLimit: 4 * 64 * KiB + KiB,
        outgoingHighWaterMark: 64 * KiB,
        pingPeriod: 0,
      },
    );
    const client = await RawClient.connect(port, "/ws");
    const results = await within(outcome.promise, 2000, "the sends to settle");
    expect(results.map((r) => r.status)).toEqual([
      ...Array<string>(4).fill("fulfilled"),
      ...Array<string>(6).fill("rejected"),
    ]);
    for (const r of results.slice(4)) {
      const reason = (r as PromiseRejectedResult).reason;
      expect(reason).toBeInstanceOf(SessionError);
      expect((reason as SessionError).code).toBe("SEND_BUFFER_FULL");
    }
    const frames = [];
    for (let i = 0; i < 4; i++) frames.push(await client.nextData());
    expect(frames.map((f) => f.payload.readUInt32BE(0))).toEqual([0, 1, 2, 3]);
    expect(await client.nextClose()).toEqual({ code: 1000, reason: "" });
  });
});
