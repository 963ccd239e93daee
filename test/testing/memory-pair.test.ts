/**
 * The in-memory connection under the test host: order, backpressure, FIN, reset, hold/release, what
 * comes synchronously and what on a later tick, and the node:stream Duplex (memoryPair) built on it,
 * which node:http gets for plain HTTP requests.
 */
import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { connectOver } from "../../src/client/index.js";
import { createApp, type DefaultWebSocketSession, WebSockets } from "../../src/index.js";
import { type MemorySocket, memoryPair, memorySockets } from "../../src/testing/memory-pair.js";
import { serve } from "../../src/testing/test-application.js";

/** Lets every pending process.nextTick (and promise job) run. */
const ticks = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Collects what a socket reads, as text, and whether it saw 'end' and 'close'. */
function reader(socket: MemorySocket) {
  const got = { data: [] as string[], end: false, close: false };
  socket.on("data", (chunk: Buffer) => got.data.push(chunk.toString()));
  socket.on("end", () => {
    got.end = true;
  });
  socket.on("close", () => {
    got.close = true;
  });
  return got;
}

describe("memorySockets", () => {
  it("delivers writes in order, to a reading peer at once; write callbacks come on a later tick", async () => {
    const [a, b] = memorySockets();
    const got = reader(b);
    await ticks();
    let called = false;
    a.write("one");
    a.write(Buffer.from("two"), () => {
      called = true;
    });
    expect(got.data).toEqual(["one", "two"]);
    expect(called).toBe(false);
    await ticks();
    expect(called).toBe(true);
  });

  it("a write is a copy: what the peer read does not change when the writer reuses its buffer", async () => {
    const [a, b] = memorySockets();
    const got: Buffer[] = [];
    b.on("data", (chunk: Buffer) => got.push(chunk));
    b.pause(); // one chunk delivered later from the queue, one at once
    const buffer = Buffer.from("first");
    a.write(buffer);
    buffer.write("xxxxx");
    b.resume();
    await ticks();
    a.write(buffer);
    buffer.write("yyyyy");
    expect(got.map(String)).toEqual(["first", "xxxxx"]);
  });

  it("queues for a peer that is not reading yet and gives it everything once it listens", async () => {
    const [a, b] = memorySockets();
    a.write("early");
    a.end();
    await ticks();
    const got = reader(b);
    await ticks();
    expect(got).toEqual({ data: ["early"], end: true, close: false });
  });

  it("holds writes beyond the peer's room until it reads, then drains", async () => {
    const [a, b] = memorySockets();
    const got = reader(b);
    b.pause();
    const chunk = Buffer.alloc(1024, 120);
    let completed = 0;
    let refusedAt = -1;
    for (let i = 0; i < 64; i++) {
      const ok = a.write(chunk, () => completed++);
      if (!ok && refusedAt < 0) refusedAt = i;
    }
    let drained = false;
    a.on("drain", () => {
      drained = true;
    });
    await ticks();
    // 16 KiB taken in by the paused peer; the rest waits, counted by the writer.
    expect(completed).toBe(16);
    expect(a.writableLength).toBe(48 * 1024);
    expect(a.writableNeedDrain).toBe(true);
    expect(refusedAt).toBe(31); // the write that brought the writer's own buffer to 16 KiB
    expect(got.data).toEqual([]);
    expect(drained).toBe(false);
    b.resume();
    await ticks();
    expect(got.data.join("").length).toBe(64 * 1024);
    expect(completed).toBe(64);
    expect(a.writableLength).toBe(0);
    expect(a.writableNeedDrain).toBe(false);
    expect(drained).toBe(true);
  });

  it("completes an empty write only after the writes before it", async () => {
    const [a, b] = memorySockets();
    reader(b);
    b.pause();
    a.write(Buffer.alloc(20_000));
    a.write(Buffer.alloc(20_000));
    let done = false;
    a.write(Buffer.alloc(0), () => {
      done = true;
    });
    await ticks();
    expect(done).toBe(false);
    b.resume();
    await ticks();
    expect(done).toBe(true);
  });

  it("end() is a FIN: the peer reads the data, then EOF, and may still write back", async () => {
    const [a, b] = memorySockets();
    const atA = reader(a);
    const atB = reader(b);
    a.end("last words");
    expect(a.writable).toBe(false);
    await ticks();
    expect(atB).toEqual({ data: ["last words"], end: true, close: false });
    expect(a.writableFinished).toBe(true);
    b.write("still here");
    await ticks();
    expect(atA.data).toEqual(["still here"]);
    expect(atA.close).toBe(false);
    b.end();
    await ticks();
    expect(atA).toEqual({ data: ["still here"], end: true, close: true });
    expect(atB.close).toBe(true);
    expect(a.destroyed && b.destroyed).toBe(true);
  });

  it("destroy() is a reset: the peer reads EOF, its writes are dropped, the destroyed end closes at once", async () => {
    const [a, b] = memorySockets();
    const atA = reader(a);
    const atB = reader(b);
    a.write("before");
    a.destroy();
    await ticks();
    expect(atA).toEqual({ data: [], end: false, close: true });
    expect(atB).toEqual({ data: ["before"], end: true, close: false });
    let written = false;
    b.write("into the void", () => {
      written = true;
    });
    b.end();
    await ticks();
    expect(written).toBe(true);
    expect(atA.data).toEqual([]);
    expect(atB.close).toBe(true);
  });

  it("a reset fails the writes still waiting for room and completes the peer's", async () => {
    const [a, b] = memorySockets();
    reader(b);
    b.pause();
    const errors: Array<string | undefined> = [];
    for (let i = 0; i < 4; i++)
      a.write(Buffer.alloc(10_000), (error) => errors.push((error as { code?: string } | null)?.code));
    await ticks();
    expect(errors).toEqual([undefined, undefined]);
    a.destroy();
    await ticks();
    expect(errors).toEqual([undefined, undefined, "ERR_STREAM_DESTROYED", "ERR_STREAM_DESTROYED"]);
  });

  it("hold() keeps what one end writes, FIN included, until release()", async () => {
    const [a, b] = memorySockets();
    const atB = reader(b);
    a.hold();
    let written = false;
    a.write("held", () => {
      written = true;
    });
    a.end();
    await ticks();
    expect(written).toBe(true);
    expect(atB).toEqual({ data: [], end: false, close: false });
    b.write("the other way still works");
    const atA = reader(a);
    await ticks();
    expect(atA.data).toEqual(["the other way still works"]);
    a.release();
    await ticks();
    expect(atB).toEqual({ data: ["held"], end: true, close: false });
  });

  it("a reply written from a 'data' listener keeps its order and does not nest further", async () => {
    const [a, b] = memorySockets();
    const order: string[] = [];
    let depth = 0;
    let deepest = 0;
    const echo = (name: string, socket: MemorySocket) =>
      socket.on("data", (chunk: Buffer) => {
        depth++;
        deepest = Math.max(deepest, depth);
        const n = Number(chunk.toString());
        order.push(`${name}${n}`);
        if (n < 6) socket.write(String(n + 1));
        depth--;
      });
    echo("a", a);
    echo("b", b);
    await ticks();
    a.write("0");
    b.write("10");
    await ticks();
    expect(order).toEqual(["b0", "a1", "b2", "a3", "b4", "a5", "b6", "a10"]);
    expect(deepest).toBeLessThanOrEqual(2);
  });

  it("pause() stops reading, EOF included, until resume()", async () => {
    const [a, b] = memorySockets();
    const atB = reader(b);
    await ticks();
    b.pause();
    a.write("x");
    await ticks();
    expect(atB.data).toEqual([]);
    b.resume();
    await ticks();
    expect(atB.data).toEqual(["x"]);
    b.pause();
    a.end();
    await ticks();
    expect(atB.end).toBe(false);
    b.resume();
    await ticks();
    expect(atB.end).toBe(true);
  });

  it("a 'data' listener that pauses gets nothing more until resume()", async () => {
    const [a, b] = memorySockets();
    const got: string[] = [];
    b.pause();
    b.on("data", (chunk: Buffer) => {
      got.push(chunk.toString());
      b.pause();
    });
    for (const word of ["one", "two", "three"]) a.write(word);
    b.resume();
    await ticks();
    expect(got).toEqual(["one"]);
    b.resume();
    await ticks();
    expect(got).toEqual(["one", "two"]);
  });
});

describe("memoryPair (node:stream Duplex ends)", () => {
  it("carries bytes both ways with backpressure, FIN and close", async () => {
    const [client, server] = memoryPair();
    const big = Buffer.alloc(1 << 20, 7);
    const received: Buffer[] = [];
    server.on("data", (chunk: Buffer) => received.push(chunk));
    const ended = new Promise<void>((resolve) => server.on("end", resolve));
    await pipeline(
      (async function* () {
        for (let i = 0; i < big.length; i += 4096) yield big.subarray(i, i + 4096);
      })(),
      client,
    ).catch(() => {});
    await ended;
    expect(Buffer.concat(received).equals(big)).toBe(true);
    const closed = new Promise<void>((resolve) => client.on("close", resolve));
    client.resume();
    server.end();
    await closed;
  });

  it("a reader that does not read holds the writer back", async () => {
    const [client, server] = memoryPair();
    server.pause();
    const chunk = Buffer.alloc(4096);
    let refused = false;
    for (let i = 0; i < 256; i++) if (!client.write(chunk)) refused = true;
    await ticks();
    expect(refused).toBe(true);
    expect(server.readableLength).toBeLessThanOrEqual(64 * 1024);
    expect(client.writableLength).toBeGreaterThan(512 * 1024);
    let total = 0;
    server.on("data", (c: Buffer) => {
      total += c.length;
    });
    server.resume();
    await new Promise<void>((resolve) => client.once("drain", resolve));
    await ticks();
    expect(total).toBe(256 * 4096);
  });

  it("destroy() resets: the other end reads EOF", async () => {
    const [client, server] = memoryPair();
    server.resume();
    const ended = new Promise<void>((resolve) => server.on("end", resolve));
    client.destroy();
    await ended;
  });
});

describe("serve, for requests that are not plain WebSocket upgrades", () => {
  it("hands a plain HTTP request to node:http, which answers it from the application", async () => {
    const app = createApp()
      .install(WebSockets)
      .routing((r) => r.get("/hello", (call) => call.respondText("hello over memory")));
    const [client, server] = memorySockets();
    serve(app, server);
    const answer: Buffer[] = [];
    client.on("data", (chunk: Buffer) => answer.push(chunk));
    const ended = new Promise<void>((resolve) => client.on("end", resolve));
    client.write("GET /hello HTTP/1.1\r\nHost: sockway.test\r\nConnection: close\r\n\r\n");
    await ended;
    const text = Buffer.concat(answer).toString("latin1");
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(text.endsWith("hello over memory")).toBe(true);
  });
});

describe("memorySockets under a sustained stream", () => {
  it("a reader that pauses every turn while the writer keeps up does not grow the queue without bound", async () => {
    const [a, b] = memorySockets();
    let received = 0;
    b.on("data", (chunk: Buffer) => {
      received += chunk.length;
      // As a session does after a burst of frames: read again on the next turn.
      b.pause();
      setImmediate(() => b.resume());
    });
    let writes = 0;
    let stop = false;
    const pump = () => {
      while (!stop && a.write(Buffer.alloc(100))) writes++;
      if (!stop) a.once("drain", pump);
    };
    pump();
    await new Promise((resolve) => setTimeout(resolve, 300));
    stop = true;
    // Read chunks must not stay in the queue's arrays while the queue never quite empties.
    const inside = b as unknown as { queue: unknown[]; callbacks: unknown[] };
    expect(writes).toBeGreaterThan(20_000);
    expect(received).toBeGreaterThan(1_000_000);
    expect(inside.queue.length).toBeLessThan(2048);
    expect(inside.callbacks.length).toBeLessThan(2048);
  });
});

describe("sessions over memorySockets: a side that does not read holds the other back, in bounded memory", () => {
  const LIMIT = 256 * 1024; // incomingBufferLimit and outgoingHighWaterMark, both sides
  const MESSAGE = 32 * 1024;
  /** Bytes a socket holds for its reader: taken in and unread, plus the writer's writes waiting for room. */
  const held = (socket: MemorySocket) => {
    const inside = socket as unknown as { queue: Buffer[]; next: number };
    let bytes = 0;
    for (let i = inside.next; i < inside.queue.length; i++) bytes += inside.queue[i]!.length;
    return bytes;
  };
  /** Sends until a send waits (backpressure), at most `max` messages; returns how many went and the peak. */
  async function flood(send: () => Promise<void>, measure: () => number, max: number) {
    let sent = 0;
    let peak = 0;
    while (sent < max) {
      const went = await Promise.race([
        send().then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 50)),
      ]);
      peak = Math.max(peak, measure());
      if (!went) break;
      sent++;
    }
    return { sent, peak };
  }
  const app = (route: (s: DefaultWebSocketSession) => Promise<void>) =>
    createApp()
      .install(WebSockets, { pingPeriod: 0, incomingBufferLimit: LIMIT, outgoingHighWaterMark: LIMIT })
      .onError(() => {})
      .routing((r) => r.webSocket("/", route));
  // What the in-memory socket may hold beside the sessions' own bounds: the peer's room and one write.
  const BOUND = 2 * LIMIT + 2 * MESSAGE + 64 * 1024;

  it("a client flooding a route that never reads", async () => {
    const [client, server] = memorySockets();
    serve(
      app(() => new Promise(() => {})),
      server,
    );
    const session = await connectOver(client as unknown as Duplex, "ws://sockway.test/", {
      pingPeriod: 0,
      outgoingHighWaterMark: LIMIT,
    });
    const message = Buffer.alloc(MESSAGE, 1);
    const { sent, peak } = await flood(
      () => session.send(message),
      () => held(server) + session.bufferedAmount - client.writableLength,
      (8 * BOUND) / MESSAGE,
    );
    expect(sent).toBeLessThan((2 * BOUND) / MESSAGE);
    expect(peak).toBeLessThan(BOUND);
    session.terminate();
    await session.closeReason;
  });

  it("a route flooding a client that never reads", async () => {
    const [client, server] = memorySockets();
    let result: Promise<{ sent: number; peak: number }> | undefined;
    let serverSession: DefaultWebSocketSession | undefined;
    serve(
      app(async (s) => {
        serverSession = s;
        const message = Buffer.alloc(MESSAGE, 2);
        result = flood(
          () => s.send(message),
          () => held(client) + s.bufferedAmount - server.writableLength,
          (8 * BOUND) / MESSAGE,
        );
        await result;
        await new Promise(() => {});
      }),
      server,
    );
    const session = await connectOver(client as unknown as Duplex, "ws://sockway.test/", {
      pingPeriod: 0,
      incomingBufferLimit: LIMIT,
    });
    while (result === undefined) await ticks();
    const { sent, peak } = await result;
    expect(sent).toBeLessThan((2 * BOUND) / MESSAGE);
    expect(peak).toBeLessThan(BOUND);
    expect(serverSession?.isOpen).toBe(true);
    session.terminate();
    await session.closeReason;
  });
});

describe("memorySockets as net.Socket after a destroy", () => {
  it("a destroyed end emits no 'drain', even with a refused write waiting (as node:stream)", async () => {
    const [a, b] = memorySockets();
    reader(b);
    b.pause();
    let drains = 0;
    a.on("drain", () => drains++);
    while (a.write(Buffer.alloc(4096))) {}
    a.destroy();
    await ticks();
    expect(drains).toBe(0);
  });

  it("readable is true until EOF is read or the end is destroyed", async () => {
    const [a, b] = memorySockets();
    const atB = reader(b);
    expect(b.readable).toBe(true);
    a.end();
    await ticks();
    expect(atB.end).toBe(true);
    expect(b.readable).toBe(false);
    expect(a.readable).toBe(true);
    a.destroy();
    expect(a.readable).toBe(false);
  });
});
