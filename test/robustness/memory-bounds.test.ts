/**
 * The server's memory under hostile floods, measured where it is spent: the JS heap plus ArrayBuffer
 * memory (`heapUsed + arrayBuffers`) of a sockway server running alone in a child process, after a forced
 * GC, per connection, against a bound derived below from the configured limits.
 *
 * Small limits keep the floods short and the bounds tight. Each bound is the sum of what the limits let
 * each buffer hold (queues are charged what their items cost: docs/architecture.md, "Memory accounting"),
 * times MARGIN. Without those limits the same floods reach gigabytes within seconds; the child runs with
 * --max-old-space-size=512 and is killed past 1 GiB of RSS, which counts as exceeding the bound.
 *
 * Each flood first runs briefly on two connections that are then closed (code compiled on the way is not
 * charged to the connections); the growth is measured from the idle connections to the flood's end.
 *
 * SOCKWAY_DIST=<dir of a compiled index.js> runs the same floods against another build (e.g. an older
 * commit's, to see them fail); by default src/ is compiled into .cache/ first.
 */
import type { Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { deflateMessage } from "../extensions/deflate-helpers.js";
import {
  type FloodServer,
  type FloodServerOptions,
  flood,
  heap,
  KiB,
  type Measure,
  MiB,
  maskedFrame,
  openClients,
  repeatFrames,
  sockwayDist,
  startFloodServer,
  trickle,
} from "../memory/flood-harness.js";

const INCOMING_LIMIT = 64 * KiB;
const HIGH_WATER_MARK = 64 * KiB;
const OUTGOING_LIMIT = 256 * KiB;
const LIMITS: FloodServerOptions = {
  incomingBufferLimit: INCOMING_LIMIT,
  outgoingHighWaterMark: HIGH_WATER_MARK,
  outgoingBufferLimit: OUTGOING_LIMIT,
};
/** What one item queued in `incoming`, or one frame queued for sending, is charged beside its bytes. */
const ITEM_OVERHEAD = 192;
const FRAME_OVERHEAD = 192;
/** The largest chunk one socket read delivers (libuv reads into 64 KiB). */
const READ = 64 * KiB;
/**
 * What the socket holds once reading pauses: up to one more chunk read into the Readable's buffer (its
 * high-water mark is 16 KiB, so one 64 KiB chunk gets in), and the chunk being delivered.
 */
const SOCKET_READ_BUFFERS = 2 * READ;
/** Measured figures may exceed the derived sum by this factor (objects' real sizes, allocator slack). */
const MARGIN = 2;
const FLOOD_MS = 2000;
const WARM_UP_MS = 300;
const CONNECTIONS = 20;

const OP_TEXT = 0x1;
const OP_BINARY = 0x2;

let dist: { dir: string; dispose: () => void };
let server: FloodServer | undefined;
let sockets: Socket[] = [];

beforeAll(async () => {
  dist = await sockwayDist();
}, 60_000);
afterAll(() => dist?.dispose());
afterEach(() => {
  for (const s of sockets) s.destroy();
  sockets = [];
  server?.stop();
  server = undefined;
});

const fmt = (bytes: number): string =>
  Math.abs(bytes) >= MiB ? `${(bytes / MiB).toFixed(2)} MiB` : `${(bytes / KiB).toFixed(1)} KiB`;

/** A flood: opens its clients (`size` of them) and returns them with how to run it for `ms`. */
type Flood = (
  s: FloodServer,
  size: number,
) => Promise<{ clients: Socket[]; run: (ms: number) => Promise<string> }>;

interface Outcome {
  /** Heap growth per connection counted (undefined: the server died). */
  perConnection: number | undefined;
  after: Measure | undefined;
  death: string | undefined;
}

/**
 * Runs `load` briefly at `warmSize` and closes it, then at `size`: the growth from the idle connections
 * to the end of the flood, divided by `counted` connections.
 */
async function measureFlood(
  name: string,
  s: FloodServer,
  load: Flood,
  sizes: { warm: number; size: number; counted: number },
  ms: number,
  bound: () => number,
): Promise<Outcome> {
  let before: Measure | undefined;
  let after: Measure | undefined;
  let detail = "";
  try {
    const warm = await load(s, sizes.warm);
    sockets = warm.clients;
    await warm.run(WARM_UP_MS);
    await s.terminateAll();
    for (const c of warm.clients) c.destroy();
    const real = await load(s, sizes.size);
    sockets = real.clients;
    before = await s.measure();
    expect(before.gc, "the server runs with --expose-gc").toBe(true);
    detail = await real.run(ms);
    after = await s.measure();
  } catch (error) {
    if (s.death === undefined) throw error;
  }
  const perConnection = after && before ? (heap(after) - heap(before)) / sizes.counted : undefined;
  const max = (f: (r: Measure["perSession"][number]) => number | undefined) =>
    Math.max(0, ...(after?.perSession ?? []).map((r) => f(r) ?? 0));
  const figures =
    after && before
      ? `${fmt(perConnection!)} per connection, bound ${fmt(bound())}: ${perConnection! <= bound() ? "within" : "EXCEEDED"} ` +
        `(growth ${fmt(heap(after) - heap(before))}; ` +
        `after: heapUsed ${fmt(after.heapUsed)}, arrayBuffers ${fmt(after.arrayBuffers)}, rss ${fmt(after.rss)}; ` +
        `max incoming.cost ${fmt(max((r) => r.incomingCost))}, max bufferedAmount ${fmt(max((r) => r.bufferedAmount))}` +
        `${after.sendFull ? `; ${after.sendFull} sends refused SEND_BUFFER_FULL` : ""})`
      : `bound ${fmt(bound())}: EXCEEDED, the server ${s.death}`;
  console.log(`[memory-bounds] ${name}: ${detail || "(flood cut short)"}; ${figures}`);
  return { perConnection, after, death: s.death };
}

function expectWithin(o: Outcome, bound: number, what: string): void {
  expect(o.death, `the server died: ${o.death}`).toBeUndefined();
  expect(
    o.perConnection!,
    `${what}: ${fmt(o.perConnection!)} per connection, bound ${fmt(bound)}`,
  ).toBeLessThanOrEqual(bound);
  expect(o.after!.errors, o.after!.firstError).toBe(0);
}

async function start(options: FloodServerOptions): Promise<FloodServer> {
  server = await startFloodServer(dist.dir, options);
  return server;
}

/** Floods every client with `chunk` for `ms`; says how much the kernel took from them. */
async function floodAll(clients: Socket[], chunk: Buffer, frameSize: number, ms: number): Promise<string> {
  const taken = await Promise.all(clients.map((c) => flood(c, chunk, ms)));
  const bytes = taken.reduce((a, b) => a + b, 0);
  return `${clients.length} client(s) sent ${fmt(bytes)} (${Math.round(bytes / frameSize).toLocaleString("en")} frames)`;
}

describe("memory under floods into an echo whose peer never reads", () => {
  // The handler awaits each echo; the client never reads, so the echo stalls at the high-water mark, the
  // handler stops taking from `incoming`, and `incoming` fills to its limit and pauses reads.
  // Per connection:
  //   incoming: items charged up to the limit, and the read that crosses it is queued whole: at most
  //             READ / frame size more items, each charged ITEM_OVERHEAD (+ its payload's memory).
  //             Measured real cost: ~200 B for a 1-byte item, ~290 B for an empty one (copied out of a
  //             large read, each empty payload gets an ArrayBuffer of its own); MARGIN covers that;
  //   the socket's read buffers (SOCKET_READ_BUFFERS);
  //   outgoing: send resolves only at or below the high-water mark, so one frame goes over it
  //             (bufferedAmount counts the socket's writableLength, and FRAME_OVERHEAD per queued frame).
  const echoBound = (frameSize: number, payloadMemory: number, echoSize: number) =>
    MARGIN *
    (INCOMING_LIMIT +
      Math.ceil(READ / frameSize) * (ITEM_OVERHEAD + payloadMemory) +
      SOCKET_READ_BUFFERS +
      HIGH_WATER_MARK +
      FRAME_OVERHEAD +
      echoSize);
  const echoFlood =
    (frame: Buffer): Flood =>
    async (s, size) => {
      const clients = await openClients(s.port, "/echo", size, { read: false });
      return { clients, run: (ms) => floodAll(clients, repeatFrames(frame), frame.length, ms) };
    };

  it("empty text frames: incomingBufferLimit + one read of items + the high-water mark", async () => {
    const frame = maskedFrame(OP_TEXT, Buffer.alloc(0)); // 6 bytes
    const bound = echoBound(frame.length, 0, 2); // ~4.5 MiB
    const s = await start(LIMITS);
    const sizes = { warm: 2, size: CONNECTIONS, counted: CONNECTIONS };
    const o = await measureFlood("flood 1 (empty frames)", s, echoFlood(frame), sizes, FLOOD_MS, () => bound);
    expectWithin(o, bound, "empty-frame flood");
  });

  it("1-byte text frames: the same (each payload copied out of a large read: 8 B of pool)", async () => {
    const frame = maskedFrame(OP_TEXT, Buffer.from("x")); // 7 bytes
    const bound = echoBound(frame.length, 8, 3); // ~4 MiB
    const s = await start(LIMITS);
    const sizes = { warm: 2, size: CONNECTIONS, counted: CONNECTIONS };
    const o = await measureFlood(
      "flood 2 (1-byte frames)",
      s,
      echoFlood(frame),
      sizes,
      FLOOD_MS,
      () => bound,
    );
    expectWithin(o, bound, "1-byte flood");
  });
});

describe("memory when a room broadcasts to members that never read", () => {
  const MEMBERS = 10; // one sender that reads, nine members that never do
  const frame = maskedFrame(OP_BINARY, Buffer.from([0x2a])); // 1-byte messages
  const outFrame = 3 + FRAME_OVERHEAD; // one broadcast frame as charged: 2-byte header, 1 byte, overhead
  const outPrimer = 4 + 16 * KiB + FRAME_OVERHEAD; // a 16 KiB message the server primes members with
  const room =
    (path: string): Flood =>
    async (s, size) => {
      const [sender] = await openClients(s.port, path, 1, { read: true });
      const idle = await openClients(s.port, path, size - 1, { read: false });
      return {
        clients: [sender!, ...idle],
        run: async (ms) => {
          // Members that never read: their sockets and kernel buffers are full before the flood starts
          // (1-byte frames alone would take far longer than the flood to fill them).
          expect(await s.prime(), "the members' sockets filled up").toBe(true);
          const sent = await floodAll([sender!], repeatFrames(frame), frame.length, ms);
          return `members' sockets filled with 16 KiB messages, then ${sent}`;
        },
      };
    };
  // Everything the server grows by is put on the nine members that never read (the sender's share too).
  const sizes = { warm: 3, size: MEMBERS, counted: MEMBERS - 1 };

  it("members over the high-water mark skipped: each holds the high-water mark + one message", async () => {
    // A member is sent to only while its bufferedAmount is at or below the high-water mark, so the last
    // message sent takes it at most one message (here a 16 KiB one) over; what is queued is charged what
    // it costs, and bufferedAmount counts what the socket holds too.
    const bound = MARGIN * (HIGH_WATER_MARK + outPrimer); // ~160 KiB
    const s = await start(LIMITS);
    const o = await measureFlood(
      "flood 3a (broadcast, skip over HWM)",
      s,
      room("/room/skip"),
      sizes,
      FLOOD_MS,
      () => bound,
    );
    expectWithin(o, bound, "broadcast with skip");
    for (const r of o.after!.perSession)
      expect(r.bufferedAmount).toBeLessThanOrEqual(HIGH_WATER_MARK + Math.max(outPrimer, outFrame));
  });

  it("without the skip, SEND_BUFFER_FULL stops it: each holds at most outgoingBufferLimit", async () => {
    // send refuses what would take bufferedAmount past outgoingBufferLimit; what it accepted is charged
    // FRAME_OVERHEAD per frame, which should be its real cost, so memory follows the limit.
    const bound = MARGIN * OUTGOING_LIMIT; // 512 KiB
    const s = await start(LIMITS);
    const o = await measureFlood(
      "flood 3b (broadcast, SEND_BUFFER_FULL only)",
      s,
      room("/room/all"),
      sizes,
      FLOOD_MS,
      () => bound,
    );
    expectWithin(o, bound, "broadcast without skip");
    expect(o.after!.sendFull, "sends were refused with SEND_BUFFER_FULL").toBeGreaterThan(0);
    for (const r of o.after!.perSession) expect(r.bufferedAmount).toBeLessThanOrEqual(OUTGOING_LIMIT);
  });
});

describe("memory when compressed messages inflate into a slow handler", () => {
  it("1 KiB inflating to 1 MiB, 200 ms per message: at most one decoded message beyond the limit", async () => {
    const MAX_FRAME = 2 * MiB;
    const MESSAGE = 1 * MiB;
    const ZLIB = 300 * KiB;
    const compressed = deflateMessage(Buffer.alloc(MESSAGE), 9); // ~1 KiB
    const frame = maskedFrame(OP_BINARY, compressed, { rsv1: true });
    // Per connection: the message the handler holds while it sleeps; incoming up to its limit plus one
    // decoded message beyond it (a decode starts only while incoming is under its limit: at most
    // maxFrameSize); compressed messages waiting for the decoder (reads pause past incomingBufferLimit,
    // plus the read that crossed it); the socket's read buffers; zlib's inflate state (kept in the
    // bound, though zlib's own memory is outside the JS heap and not measured here).
    const bound =
      MARGIN * (MESSAGE + INCOMING_LIMIT + MAX_FRAME + INCOMING_LIMIT + READ + SOCKET_READ_BUFFERS + ZLIB); // ~7.3 MiB
    const s = await start({ ...LIMITS, maxFrameSize: MAX_FRAME, deflate: true });
    const load: Flood = async (server, size) => {
      const clients = await openClients(server.port, "/slow", size, {
        read: false,
        extensions: "permessage-deflate; client_no_context_takeover",
      });
      return {
        clients,
        run: async (ms) =>
          `${await floodAll(clients, repeatFrames(frame), frame.length, ms)} of ${compressed.length} B, each inflating to ${fmt(MESSAGE)}`,
      };
    };
    const sizes = { warm: 2, size: CONNECTIONS, counted: CONNECTIONS };
    const o = await measureFlood(
      "flood 4 (deflate into a slow handler)",
      s,
      load,
      sizes,
      FLOOD_MS,
      () => bound,
    );
    expectWithin(o, bound, "deflate into a slow handler");
  });
});

describe("memory while one frame trickles in a byte at a time", () => {
  it("a 256 KiB frame one byte per TCP write: at most 4x the bytes received + 64 KiB", async () => {
    const frame = maskedFrame(OP_BINARY, Buffer.alloc(256 * KiB));
    let received = 0;
    const s = await start(LIMITS);
    const load: Flood = async (server, size) => {
      const clients = await openClients(server.port, "/hold", size, { read: false });
      return {
        clients,
        run: async (ms) => {
          const sent = await Promise.all(clients.map((c) => trickle(c, frame, ms)));
          received = sent.reduce((a, b) => a + b, 0) / clients.length;
          await new Promise((resolve) => setTimeout(resolve, 100)); // the last bytes are read
          return `${clients.length} clients trickled ${fmt(received)} each of a ${fmt(frame.length)} frame`;
        },
      };
    };
    const sizes = { warm: 2, size: CONNECTIONS, counted: CONNECTIONS };
    // What a frame's partial payload may cost beside its bytes once the parser gathers pieces instead of
    // keeping one Buffer per read (the protocol-layer fix this bound is written for).
    const bound = () => 4 * received + 64 * KiB;
    const o = await measureFlood("flood 5 (trickled 256 KiB frame)", s, load, sizes, 3000, bound);
    expect(received, "the frame is still incomplete").toBeLessThan(frame.length);
    expectWithin(o, bound(), "trickled frame");
  });
});
