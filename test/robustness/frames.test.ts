/**
 * Hostile frames after a successful handshake: absurd lengths, fragment floods, trickles, vanishing
 * peers and garbage. Each attack gets the RFC's answer, and an established session next to it keeps
 * working; the process sees no unhandled rejection.
 */
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { TextDecoder } from "node:util";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/index.js";
import {
  close,
  closePayload,
  collectGarbage,
  destroyAllClients,
  expectClose,
  expectEcho,
  expectNormalClosure,
  expectStillHealthy,
  frame,
  OP,
  PROMPT_MS,
  type ProcessWatch,
  RawClient,
  type ServerFrame,
  sleep,
  text,
  watchProcess,
} from "../conformance/raw-client.js";
import { until } from "../helpers/wait.js";
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
    const start = frame({ opcode: OP.text, fin: false });
    const empty = frame({ opcode: OP.continuation, fin: false, mask: Buffer.from([1, 2, 3, 4]) });
    const flood = Buffer.concat([start, ...Array.from({ length: 99_999 }, () => empty)]);
    const sentAt = performance.now();
    void c.write(flood);
    const r = await expectClose(c, 1009);
    expect(r.closeFrameAt! - sentAt, "time to 1009").toBeLessThan(1000);
    expectOneProtocolError(1009);
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

  it("50 connections stalled halfway through 1 MiB messages: the server holds what they sent, not what they announced", async () => {
    const n = 50;
    const whole = frame({
      opcode: OP.binary,
      payload: Buffer.alloc(1 << 20, 0x42),
      mask: Buffer.from([1, 2, 3, 4]),
    });
    const half = whole.length >> 1;
    const payloadSent = half - 14; // header: 2 bytes, the 64-bit length, the mask key
    await expectRealGc();
    const before = heapAfterGc();
    const accepted = acceptedSockets(server, n);
    const stalled = await Promise.all(Array.from({ length: n }, () => RawClient.open(server.port)));
    const readAtOpen = accepted.bytesRead();
    await Promise.all(stalled.map((c) => c.write(whole.subarray(0, half))));
    // Synchronise on the server itself: every half frame has been read by its socket.
    await until(
      () => accepted.bytesRead() - readAtOpen >= n * half,
      5000,
      "the server reading every half frame",
    );
    accepted.dispose();
    await expectStillHealthy(server.port, healthy, watch);
    // The bound. Each connection announced 1 MiB (maxFrameSize: allowed) and sent `payloadSent` bytes of it,
    // which the server has to keep to reassemble the message: n * payloadSent = 25 MiB it cannot do
    // without. Beside them, both ends' objects for each connection (sockets, session, parser, the raw
    // client's records), measured at about 13 KiB a connection, for which 64 KiB is allowed (room for a
    // whole 64 KiB read buffer kept alive by a view). So n * (payloadSent + 64 KiB) = 28.1 MiB of JS heap
    // and ArrayBuffer memory after a GC (measured: 25.7 MiB). A server that allocated the announced length
    // up front, or kept a copy of what it read, holds 50 MiB or more and fails here (an RSS slack of
    // 100 MiB let both pass). Heap after GC, not RSS: RSS keeps pages the allocator has not returned.
    const grown = heapAfterGc() - before;
    const bound = n * (payloadSent + 64 * 1024);
    expect(grown, `heap + buffers grew by ${(grown / MiB).toFixed(1)} MiB`).toBeLessThan(bound);
    // Finish one of them: its message is echoed whole.
    await stalled[0]!.write(whole.subarray(half));
    await expectEcho(stalled[0]!, OP.binary, Buffer.alloc(1 << 20, 0x42), 3000);
    for (const c of stalled) c.destroy();
    expect(server.errors).toEqual([]);
  });

  it("random bytes, alone or after frames: each input gets the answer RFC 6455 allows for it (seeded)", async () => {
    const counts = { closed: 0, echoedClose: 0, waited: 0 };
    await fc.assert(
      fc.asyncProperty(noise, async (bytes) => {
        const outcome = await expectAllowedAnswer(Buffer.from(bytes));
        counts[outcome]++;
      }),
      { seed: 6455, numRuns: 300 },
    );
    // The generator reaches every kind of answer (else the property above checks less than it claims).
    expect(counts.closed).toBeGreaterThan(0);
    expect(counts.echoedClose).toBeGreaterThan(0);
    expect(counts.waited).toBeGreaterThan(0);
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

// ---- memory, measured after a real GC --------------------------------------------------------------

const MiB = 1 << 20;

/** JS heap plus ArrayBuffer (Buffer) memory of this process after a full GC. */
function heapAfterGc(): number {
  collectGarbage();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** `collectGarbage()` really collects (vitest gives no --expose-gc; it turns the flag on at run time). */
async function expectRealGc(): Promise<void> {
  const ref = new WeakRef(Buffer.alloc(64));
  await sleep(0); // a WeakRef's target lives at least until the end of the job that made it
  collectGarbage();
  expect(ref.deref(), "collectGarbage() ran a full GC").toBeUndefined();
}

/** The server-side sockets of the next `n` connections the hostile server accepts. */
function acceptedSockets(
  hostile: HostileServer,
  n: number,
): { bytesRead: () => number; dispose: () => void } {
  const httpServer = (hostile.app as unknown as { server: Server }).server;
  const sockets: Socket[] = [];
  const onConnection = (socket: Socket) => {
    if (sockets.length < n) sockets.push(socket);
  };
  httpServer.on("connection", onConnection);
  return {
    bytesRead: () => sockets.reduce((sum, s) => sum + s.bytesRead, 0),
    dispose: () => httpServer.off("connection", onConnection),
  };
}

// ---- random bytes: what RFC 6455 lets the server answer -------------------------------------------

const MAX_FRAME_SIZE = 1 << 20; // the hostile server's maxFrameSize and maxFragments (the defaults)
const MAX_FRAGMENTS = 1024;

/**
 * What the server may answer to `bytes` sent right after the handshake, worked out from RFC 6455
 * alone (§5.2 framing, §5.4 fragments, §5.5 control frames, §7.4 close codes, §8.1 UTF-8), frame by frame:
 * - `failures`: the close codes of the violations in the first offending frame (the RFC does not order
 *   its checks, so any of them may be the one reported);
 * - `peerClose`: a valid Close frame arrived and must be echoed with its code (undefined: empty Close);
 * - `mayWait`: the input ends inside or after valid frames: the server must wait for more (and may fail
 *   at once on a violation already visible in an incomplete header: `failures` then lists it);
 * - `pongs` and `echoes`: what the valid frames before the end earn (echoes: whole messages, by the echo route);
 * - `atBoundary`: the input ends between frames, so a ping sent next must get its pong.
 */
interface AllowedAnswer {
  failures: Set<number>;
  peerClose: { code: number | undefined } | undefined;
  mayWait: boolean;
  pongs: Buffer[];
  echoes: Array<{ opcode: number; payload: Buffer }>;
  atBoundary: boolean;
}

const utf8Valid = (bytes: Buffer): boolean => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
};

/** §7.4: 1000-1003 and 1007-1011 (and the IANA-registered 1012-1014), or 3000-4999. */
const receivableCloseCode = (code: number): boolean =>
  (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);

function allowedAnswer(bytes: Buffer): AllowedAnswer {
  const a: AllowedAnswer = {
    failures: new Set(),
    peerClose: undefined,
    mayWait: false,
    pongs: [],
    echoes: [],
    atBoundary: false,
  };
  const fail = (codes: number[]) => {
    for (const code of codes) a.failures.add(code);
    return a;
  };
  const waits = (visible: number[] = []) => {
    a.mayWait = true;
    return fail(visible);
  };
  let message:
    | { opcode: number; pieces: Buffer[]; size: number; frames: number; utf8: TextDecoder | undefined }
    | undefined;
  let pos = 0;
  for (;;) {
    const left = bytes.length - pos;
    if (left === 0) {
      a.atBoundary = true;
      return waits();
    }
    const b0 = bytes[pos]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const control = opcode >= 8;
    const violations: number[] = [];
    if (b0 & 0x70) violations.push(1002); // RSV1-3 without an extension
    if ((opcode >= 3 && opcode <= 7) || opcode >= 0xb) violations.push(1002); // reserved opcode
    if (control && !fin) violations.push(1002); // fragmented control frame
    if (opcode === OP.continuation && !message) violations.push(1002); // nothing to continue
    if ((opcode === OP.text || opcode === OP.binary) && message) violations.push(1002); // expected a continuation
    if (left < 2) return waits(violations);
    const b1 = bytes[pos + 1]!;
    const masked = (b1 & 0x80) !== 0;
    const len7 = b1 & 0x7f;
    if (!masked) violations.push(1002); // client frames are masked
    if (control && len7 > 125) violations.push(1002); // control payloads are at most 125 bytes
    const headerSize = (len7 < 126 ? 2 : len7 === 126 ? 4 : 10) + (masked ? 4 : 0);
    if (left < headerSize) return waits(violations);
    let length = BigInt(len7);
    if (len7 === 126) {
      length = BigInt(bytes.readUInt16BE(pos + 2));
      if (length < 126n) violations.push(1002); // not the minimal length form
    } else if (len7 === 127) {
      length = bytes.readBigUInt64BE(pos + 2);
      if (length >> 63n) violations.push(1002); // most significant bit set
      if (length >= 2n ** 53n) violations.push(1009);
      if (length < 65536n) violations.push(1002); // not the minimal length form
    }
    if (!control) {
      if (length > BigInt(MAX_FRAME_SIZE - (message?.size ?? 0))) violations.push(1009);
      if ((message?.frames ?? 0) + 1 > MAX_FRAGMENTS) violations.push(1009);
    }
    if (violations.length > 0) return fail(violations);
    const n = Number(length);
    const key = bytes.subarray(pos + headerSize - 4, pos + headerSize);
    const payload = Buffer.from(bytes.subarray(pos + headerSize, pos + headerSize + n));
    for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    const complete = payload.length === n;
    if (control) {
      if (!complete) return waits();
      if (opcode === OP.ping) a.pongs.push(payload);
      if (opcode === OP.close) {
        if (n === 1) return fail([1002]);
        if (n === 0) a.peerClose = { code: undefined };
        else if (!receivableCloseCode(payload.readUInt16BE(0))) return fail([1002]);
        else if (!utf8Valid(payload.subarray(2))) return fail([1007]);
        else a.peerClose = { code: payload.readUInt16BE(0) };
        return a; // nothing after a Close frame is read (§5.5.1)
      }
    } else {
      message ??= {
        opcode,
        pieces: [],
        size: 0,
        frames: 0,
        utf8: opcode === OP.text ? new TextDecoder("utf-8", { fatal: true }) : undefined,
      };
      const m = message;
      m.size += n;
      m.frames++;
      m.pieces.push(payload);
      try {
        // §8.1: invalid UTF-8 fails the connection as soon as it is found, even before the frame ends.
        m.utf8?.decode(payload, { stream: true });
        if (complete && fin) m.utf8?.decode();
      } catch {
        return fail([1007]);
      }
      if (!complete) return waits();
      if (fin) {
        a.echoes.push({ opcode: m.opcode, payload: Buffer.concat(m.pieces) });
        message = undefined;
      }
    }
    pos += headerSize + n;
  }
}

/**
 * A quarter pure noise; the rest frames followed by noise: mostly well-formed frames (fragments, pings,
 * pongs, Closes with any code, text that may not be UTF-8, now and then a longer length form than
 * needed), some with anything in their first byte or unmasked, some headers announcing any 64-bit
 * length. Masking keys come from the generator too, so the seed fixes every byte.
 */
const maskKey = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((k) => Buffer.from(k));
const someBytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));
const someText = fc.string({ unit: "binary", maxLength: 40 }).map((s) => Buffer.from(s, "utf8"));
const closeBody = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  someBytes(1),
  fc
    .tuple(
      fc.oneof(
        fc.constantFrom(
          999,
          1000,
          1001,
          1003,
          1004,
          1005,
          1006,
          1007,
          1011,
          1014,
          1015,
          1016,
          2999,
          3000,
          4999,
        ),
        fc.integer({ min: 0, max: 65535 }),
      ),
      fc.oneof(someText, someBytes(8)),
    )
    .map(([code, reason]) => closePayload(code, reason)),
);
const payloadFor = (opcode: number) =>
  opcode === OP.close
    ? closeBody
    : opcode === OP.binary
      ? someBytes(300)
      : opcode === OP.text || opcode === OP.continuation
        ? fc.oneof({ arbitrary: someText, weight: 3 }, { arbitrary: someBytes(40), weight: 1 })
        : someBytes(130); // ping, pong: now and then over 125 bytes
const wellFormedFrame = fc
  .oneof(
    { arbitrary: fc.constantFrom(OP.text, OP.binary), weight: 4 },
    { arbitrary: fc.constantFrom(OP.continuation, OP.ping, OP.close), weight: 2 },
    { arbitrary: fc.constant(OP.pong), weight: 1 },
  )
  .chain((opcode) =>
    fc.record({
      opcode: fc.constant(opcode),
      fin: opcode >= OP.close ? fc.constant(true) : fc.boolean(),
      payload: payloadFor(opcode),
      mask: maskKey,
      longer: fc.oneof(
        { arbitrary: fc.constant(0), weight: 9 },
        { arbitrary: fc.constantFrom(16, 64), weight: 1 },
      ),
    }),
  )
  .map(({ longer, ...spec }) =>
    frame(longer === 16 || longer === 64 ? { ...spec, lengthForm: longer } : spec),
  );
const anyFrame = fc
  .record({
    b0: fc.integer({ min: 0, max: 255 }),
    payload: someBytes(160),
    mask: fc.oneof(maskKey, fc.constant(false as const)),
  })
  .map(({ b0, payload, mask }) => {
    const bytes = frame({ opcode: b0 & 0x0f, payload, mask });
    bytes[0] = b0;
    return bytes;
  });
const lengthOnly = fc
  .record({ length: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), mask: maskKey })
  .map(({ length, mask }) => frame({ opcode: OP.binary, length, lengthForm: 64, mask }));
const noise = fc.oneof(
  { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 4096 }), weight: 1 },
  {
    arbitrary: fc
      .tuple(
        fc.array(
          fc.oneof(
            { arbitrary: wellFormedFrame, weight: 8 },
            { arbitrary: anyFrame, weight: 1 },
            { arbitrary: lengthOnly, weight: 1 },
          ),
          { maxLength: 6 },
        ),
        someBytes(64),
      )
      .map(([frames, tail]) => Buffer.concat([...frames, tail])),
    weight: 3,
  },
);

/** The opcodes and payloads of frames, for comparing what came with what was due. */
const described = (frames: ReadonlyArray<{ opcode: number; payload: Buffer }>) =>
  frames.map((f) => `${f.opcode}:${f.payload.toString("hex")}`);

/**
 * Sends `bytes` on a new connection and checks the server's answer against `allowedAnswer(bytes)`:
 * a Close with an allowed code (and only the answers due before it), the echo of a valid Close, or,
 * where the input may leave the server waiting, every answer due, a pong to a ping sent next (when
 * the input ended between frames), and, after our FIN, TCP closed without any Close frame.
 */
async function expectAllowedAnswer(bytes: Buffer): Promise<"closed" | "echoedClose" | "waited"> {
  const allowed = allowedAnswer(bytes);
  server.errors.length = 0;
  const c = await RawClient.open(server.port);
  await c.write(bytes);
  const closeArrived = () => c.frames.some((f) => f.opcode === OP.close);
  const pongsOf = (frames: ServerFrame[]) => frames.filter((f) => f.opcode === OP.pong);
  const dataOf = (frames: ServerFrame[]) =>
    frames.filter((f) => f.opcode === OP.text || f.opcode === OP.binary);
  const due = allowed.pongs.length + allowed.echoes.length;
  if (allowed.mayWait) {
    await until(() => c.frames.length >= due || closeArrived() || c.tcpClosed, PROMPT_MS, "the answers due");
  }
  if (!allowed.mayWait || closeArrived()) {
    const r = await c.waitForClose(PROMPT_MS);
    expect(r.closeFrame, "a Close frame").toBe(true);
    expect(r.after, "nothing after the Close frame").toEqual([]);
    expect(r.tcpClosed, "the server closed TCP").toBe(true);
    if (allowed.peerClose) {
      expect(r.code, "the peer's close code, echoed").toBe(allowed.peerClose.code);
      expect(described(pongsOf(r.before))).toEqual(
        described(allowed.pongs.map((p) => ({ opcode: OP.pong, payload: p }))),
      );
      expect(described(dataOf(r.before))).toEqual(described(allowed.echoes));
      expect(server.errors).toEqual([]);
      return "echoedClose";
    }
    expect([...allowed.failures], `close code ${r.code}`).toContain(r.code);
    // Failing the connection (§7.1.7) may drop answers not yet sent, never invent or reorder them.
    const pongs = described(pongsOf(r.before));
    const echoes = described(dataOf(r.before));
    expect(pongs).toEqual(
      described(allowed.pongs.map((p) => ({ opcode: OP.pong, payload: p }))).slice(0, pongs.length),
    );
    expect(echoes).toEqual(described(allowed.echoes).slice(0, echoes.length));
    expect(server.errors.map((e) => [e.kind, (e.error as ProtocolError).closeCode])).toEqual([
      ["protocol", r.code],
    ]);
    return "closed";
  }
  // The server waits: everything due has come, and nothing else.
  if (allowed.atBoundary) {
    await c.write(frame({ opcode: OP.ping, payload: "probe", mask: Buffer.from([9, 8, 7, 6]) }));
    await until(() => c.frames.length > due, PROMPT_MS, "the pong to the probe");
  }
  c.end();
  expect(await c.waitForTcpClose(), "the server closed TCP after our FIN").toBe(true);
  const probe = allowed.atBoundary ? [{ opcode: OP.pong, payload: Buffer.from("probe") }] : [];
  expect(described(pongsOf(c.frames))).toEqual(
    described([...allowed.pongs.map((p) => ({ opcode: OP.pong, payload: p })), ...probe]),
  );
  expect(described(dataOf(c.frames))).toEqual(described(allowed.echoes));
  expect(
    c.frames.map((f) => f.opcode).filter((op) => op !== OP.pong && op !== OP.text && op !== OP.binary),
  ).toEqual([]);
  expect(server.errors).toEqual([]);
  return "waited";
}
