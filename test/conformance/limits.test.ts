/**
 * Implementation limits (RFC 6455 §10.4) and their close code 1009 (§7.4.1): `maxFrameSize` is checked
 * from each frame header, before the payload is buffered; `maxFragments` bounds frames per message.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  binary,
  destroyAllClients,
  type EchoServer,
  expectClose,
  expectEcho,
  expectNormalClosure,
  frame,
  OP,
  RawClient,
  startEchoServer,
  text,
} from "./raw-client.js";

const MAX = 1000;
const FRAGMENTS = 8;

let small: EchoServer;
let defaults: EchoServer;
beforeAll(async () => {
  small = await startEchoServer({ maxFrameSize: MAX, maxFragments: FRAGMENTS });
  defaults = await startEchoServer();
});
afterEach(() => destroyAllClients());
afterAll(async () => {
  destroyAllClients();
  await Promise.all([small.stop(), defaults.stop()]);
});

/** A message split into frames of the given sizes (text first, then continuations). */
function fragmentsOf(sizes: readonly number[], opcode: number = OP.binary): Buffer[] {
  return sizes.map((n, i) =>
    frame({
      opcode: i === 0 ? opcode : OP.continuation,
      payload: Buffer.alloc(n, 0x61),
      fin: i === sizes.length - 1,
    }),
  );
}

describe("§10.4 maxFrameSize (1009 Message Too Big)", () => {
  it("a message of exactly maxFrameSize bytes is echoed", async () => {
    const c = await RawClient.open(small.port);
    await c.write(binary(Buffer.alloc(MAX, 7)));
    await expectEcho(c, OP.binary, Buffer.alloc(MAX, 7));
    await expectNormalClosure(c);
  });

  it("maxFrameSize + 1: 1009 from the header alone, without the payload being sent", async () => {
    const c = await RawClient.open(small.port);
    await c.write(frame({ opcode: OP.binary, length: MAX + 1 })); // header and mask, no payload
    await expectClose(c, 1009);
  });

  it("a text message of maxFrameSize + 1 bytes fails with 1009", async () => {
    const c = await RawClient.open(small.port);
    await c.write(text(Buffer.alloc(MAX + 1, "t")));
    await expectClose(c, 1009);
  });

  it("fragments totalling exactly maxFrameSize are echoed as one message", async () => {
    const c = await RawClient.open(small.port);
    await c.write(Buffer.concat(fragmentsOf([400, 400, 200])));
    await expectEcho(c, OP.binary, Buffer.alloc(MAX, 0x61));
    await expectNormalClosure(c);
  });

  it("fragments totalling maxFrameSize + 1: 1009 at the header of the fragment that overflows", async () => {
    const c = await RawClient.open(small.port);
    await c.write(frame({ opcode: OP.binary, payload: Buffer.alloc(600), fin: false }));
    expect(await c.quietFor(50)).toBe(true);
    // The second fragment announces 401 bytes: only its header is sent.
    await c.write(frame({ opcode: OP.continuation, length: 401 }));
    await expectClose(c, 1009);
  });

  it("the limit counts the whole message, not each frame: 8 × 126 bytes > 1000 fails with 1009", async () => {
    const c = await RawClient.open(small.port);
    await c.write(Buffer.concat(fragmentsOf(Array.from({ length: 8 }, () => 126))));
    await expectClose(c, 1009);
  });

  it("control frames do not count towards the message size", async () => {
    const c = await RawClient.open(small.port);
    const [f1, f2] = fragmentsOf([500, 500]);
    const pings = Array.from({ length: 10 }, () => frame({ opcode: OP.ping, payload: Buffer.alloc(125) }));
    await c.write(Buffer.concat([f1!, ...pings, f2!]));
    for (let i = 0; i < 10; i++) await expectEcho(c, OP.pong, Buffer.alloc(125));
    await expectEcho(c, OP.binary, Buffer.alloc(MAX, 0x61));
    await expectNormalClosure(c);
  });

  it("the limit applies per message: many messages of maxFrameSize are all echoed", async () => {
    const c = await RawClient.open(small.port);
    await c.write(Buffer.concat(Array.from({ length: 20 }, () => binary(Buffer.alloc(MAX, 1)))));
    for (let i = 0; i < 20; i++) await expectEcho(c, OP.binary, Buffer.alloc(MAX, 1));
    await expectNormalClosure(c);
  });

  it("default limit: a message of exactly 1 MiB is echoed", async () => {
    const c = await RawClient.open(defaults.port);
    const payload = Buffer.alloc(1 << 20, 0x5a);
    await c.write(binary(payload));
    await expectEcho(c, OP.binary, payload, 3000);
    await expectNormalClosure(c);
  });

  it("default limit: a header announcing 1 MiB + 1 fails with 1009 before any payload", async () => {
    const c = await RawClient.open(defaults.port);
    await c.write(frame({ opcode: OP.text, length: (1 << 20) + 1 }));
    await expectClose(c, 1009);
  });
});

describe("§10.4 maxFragments (1009)", () => {
  it("a message in exactly maxFragments frames is echoed", async () => {
    const c = await RawClient.open(small.port);
    await c.write(
      Buffer.concat(
        fragmentsOf(
          Array.from({ length: FRAGMENTS }, () => 10),
          OP.text,
        ),
      ),
    );
    await expectEcho(c, OP.text, Buffer.alloc(FRAGMENTS * 10, 0x61));
    await expectNormalClosure(c);
  });

  it("maxFragments + 1 frames fail with 1009", async () => {
    const c = await RawClient.open(small.port);
    await c.write(Buffer.concat(fragmentsOf(Array.from({ length: FRAGMENTS + 1 }, () => 1))));
    await expectClose(c, 1009);
  });

  it("empty fragments count too: the (maxFragments + 1)th empty continuation fails with 1009", async () => {
    const c = await RawClient.open(small.port);
    const frames = [frame({ opcode: OP.text, fin: false })];
    for (let i = 0; i < FRAGMENTS; i++) frames.push(frame({ opcode: OP.continuation, fin: false }));
    await c.write(Buffer.concat(frames));
    await expectClose(c, 1009);
  });

  it("the count restarts with each message", async () => {
    const c = await RawClient.open(small.port);
    const one = Buffer.concat(fragmentsOf(Array.from({ length: FRAGMENTS }, () => 1)));
    await c.write(Buffer.concat([one, one, one]));
    for (let i = 0; i < 3; i++) await expectEcho(c, OP.binary, Buffer.alloc(FRAGMENTS, 0x61));
    await expectNormalClosure(c);
  });

  it("default limit: 1024 fragments are fine, 1025 fail with 1009", async () => {
    const ok = await RawClient.open(defaults.port);
    await ok.write(Buffer.concat(fragmentsOf(Array.from({ length: 1024 }, () => 1))));
    await expectEcho(ok, OP.binary, Buffer.alloc(1024, 0x61));
    await expectNormalClosure(ok);
    const bad = await RawClient.open(defaults.port);
    await bad.write(Buffer.concat(fragmentsOf(Array.from({ length: 1025 }, () => 1))));
    await expectClose(bad, 1009);
  });
});
