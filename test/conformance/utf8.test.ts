/**
 * RFC 6455 §5.6 and §8.1: text messages must be valid UTF-8 (RFC 3629); otherwise the connection fails
 * with 1007 (Autobahn case family 6), as early as the first invalid byte ("fail fast").
 */
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import {
  expectClose,
  expectEcho,
  expectNormalClosure,
  frame,
  OP,
  type RawClient,
  text,
  useEchoServer,
} from "./raw-client.js";

const { open } = useEchoServer();
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const utf8 = (s: string) => Buffer.from(s, "utf8");
const KOSME = utf8("κόσμε");

/** A message split into frames: text first, then continuations, FIN on the last. */
const fragments = (parts: readonly Buffer[]) =>
  parts.map((p, i) =>
    frame({ opcode: i === 0 ? OP.text : OP.continuation, payload: p, fin: i === parts.length - 1 }),
  );

describe("§5.6 valid UTF-8 text is echoed exactly (Autobahn 6.2, 6.5, 6.6)", () => {
  it.each([
    ["Greek", "κόσμε"],
    ["mixed Latin-1", "Hello-µ@ßöäüàá-UTF-8!!"],
    ["a 4-byte emoji", "😀 and 🦀"],
    ["U+0000", "\u0000"],
    ["U+007F / U+0080", "\u007f\u0080"],
    ["U+07FF / U+0800", "\u07ff\u0800"],
    ["U+D7FF / U+E000 (around the surrogates)", "\ud7ff\ue000"],
    ["U+FFFD / U+FFFF", "\ufffd\uffff"],
    ["U+10000 / U+10FFFF", "\u{10000}\u{10ffff}"],
    ["a long mixed string (native validation path)", "aé€😀".repeat(500)],
  ])("%s", async (_name, s) => {
    const c = await open();
    await c.write(text(s));
    await expectEcho(c, OP.text, utf8(s));
    await expectNormalClosure(c);
  });

  it("a 4-byte character split across two fragments after each of its bytes is echoed whole", async () => {
    const bytes = utf8("a😀b");
    for (const cut of [2, 3, 4]) {
      const c = await open();
      await c.write(Buffer.concat(fragments([bytes.subarray(0, cut), bytes.subarray(cut)])));
      await expectEcho(c, OP.text, bytes);
      await expectNormalClosure(c);
    }
  });

  it("a text message sent one byte per fragment is echoed whole (6.2.4)", async () => {
    const c = await open();
    const bytes = utf8("κόσμε😀");
    await c.write(Buffer.concat(fragments([...bytes].map((b) => Buffer.from([b])))));
    await expectEcho(c, OP.text, bytes);
    await expectNormalClosure(c);
  });

  it("one frame written one byte per TCP write, characters split between writes, is echoed whole (6.2.3)", async () => {
    const c = await open();
    const bytes = utf8("Hello-µ@ßöäüàá-UTF-8!! κόσμε 😀");
    await c.trickle(text(bytes), 1, 2);
    await expectEcho(c, OP.text, bytes, 2000);
    await expectNormalClosure(c);
  });

  it("a long frame split mid-character between two TCP writes is echoed whole", async () => {
    const c = await open();
    const bytes = utf8("€".repeat(1000)); // 3000 bytes
    const f = text(bytes);
    const cut = 8 + 1501; // 8-byte header (16-bit length + mask), then 1501 payload bytes: mid-character
    await c.writeChunks([f.subarray(0, cut), f.subarray(cut)], 30);
    await expectEcho(c, OP.text, bytes);
    await expectNormalClosure(c);
  });

  it("invalid UTF-8 in a binary message is not checked", async () => {
    const c = await open();
    const bytes = hex("c0 af ed a0 80 ff");
    await c.write(frame({ opcode: OP.binary, payload: bytes }));
    await expectEcho(c, OP.binary, bytes);
    await expectNormalClosure(c);
  });
});

describe("§5.6 / §8.1 invalid UTF-8 fails with 1007 (Autobahn 6.3, 6.8–6.21)", () => {
  it.each([
    ["a lone continuation byte", "80"],
    ["a continuation byte after ASCII", "41 bf"],
    ["an overlong 2-byte '/' (C0 AF)", "c0 af"],
    ["an overlong 2-byte (C1 BF)", "c1 bf"],
    ["an overlong 3-byte (E0 80 AF)", "e0 80 af"],
    ["an overlong 4-byte (F0 80 80 AF)", "f0 80 80 af"],
    ["a UTF-16 high surrogate (ED A0 80)", "ed a0 80"],
    ["a UTF-16 low surrogate (ED BF BF)", "ed bf bf"],
    ["a code point above U+10FFFF (F4 90 80 80)", "f4 90 80 80"],
    ["an F5 lead byte", "f5 80 80 80"],
    ["a 5-byte sequence", "f8 88 80 80 80"],
    ["FE", "fe"],
    ["FF", "ff"],
    ["a lead byte followed by ASCII", "c2 41"],
    ["a message ending inside a 2-byte character", "ce"],
    ["a message ending inside a 4-byte character", "f0 9f 98"],
    ["κόσμε + a surrogate + 'edited' (6.3.1)", "cebae1bdb9cf83cebcceb5eda080656469746564"],
  ])("%s", async (_name, h) => {
    const c = await open();
    await c.write(text(hex(h)));
    await expectClose(c, 1007);
  });

  it("an invalid sequence deep in a long message (native validation path)", async () => {
    const c = await open();
    const bytes = Buffer.concat([utf8("a".repeat(500)), hex("ed a0 80"), utf8("b".repeat(500))]);
    await c.write(text(bytes));
    await expectClose(c, 1007);
  });

  it("an invalid sequence split across fragments: κόσμε | surrogate + 'edited' (6.3.2)", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments([KOSME, Buffer.concat([hex("ed a0 80"), utf8("edited")])])));
    await expectClose(c, 1007);
  });

  it("a lead byte at the end of one fragment and ASCII at the start of the next", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments([Buffer.concat([KOSME, hex("ce")]), utf8("A")])));
    await expectClose(c, 1007);
  });

  it("an overlong sequence whose bytes are in different fragments (E0 | 80 80)", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments([hex("e0"), hex("80 80")])));
    await expectClose(c, 1007);
  });

  it("a message whose final fragment ends inside a character", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments([utf8("ab"), hex("e2 82")])));
    await expectClose(c, 1007);
  });

  it("a message whose last (empty) fragment leaves a character incomplete", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments([hex("f0 9f 98"), Buffer.alloc(0)])));
    await expectClose(c, 1007);
  });
});

describe("§5.6 / §8.1 fail fast: 1007 before the rest of the message is sent (Autobahn 6.4)", () => {
  /** Writes `first`, then waits up to 500 ms; the Close must come in that pause. Then writes `rest`. */
  async function expectCloseDuringPause(c: RawClient, first: Buffer, rest: Buffer): Promise<void> {
    await c.write(first);
    const sentAt = performance.now();
    const r = await c.waitForClose(500);
    expect(r.closeFrame, "Close frame during the pause").toBe(true);
    expect(r.code).toBe(1007);
    expect(r.closeFrameAt! - sentAt).toBeLessThan(500);
    expect(r.tcpClosed, "TCP closed during the pause").toBe(true);
    expect(r.before).toEqual([]);
    await c.write(rest); // too late: nothing may change any more
    expect(await c.quietFor(30)).toBe(true);
  }

  it("first fragment with an invalid code point, then a pause (6.4.1)", async () => {
    const c = await open();
    const [f1, f2, f3] = fragments([
      Buffer.concat([KOSME, hex("f4 90 80 80")]),
      utf8("edited"),
      Buffer.alloc(0),
    ]);
    await expectCloseDuringPause(c, f1!, Buffer.concat([f2!, f3!]));
  });

  it("a valid prefix in fragment 1, the invalid byte alone in fragment 2, then a pause (6.4.2)", async () => {
    const c = await open();
    const [f1, f2, f3] = fragments([Buffer.concat([KOSME, hex("f4")]), hex("90"), hex("80 80")]);
    await c.write(f1!);
    expect(await c.quietFor(100)).toBe(true); // F4 alone is a valid prefix
    await expectCloseDuringPause(c, f2!, f3!);
  });

  it("one frame: the first part (with the invalid bytes) written, a pause, then the rest (6.4.3)", async () => {
    const c = await open();
    const f = text(Buffer.concat([KOSME, hex("f4 90 80 80"), utf8("edited")]));
    const cut = 6 + KOSME.length + 4; // header (2 + 4 mask) + κόσμε + the invalid sequence
    await expectCloseDuringPause(c, f.subarray(0, cut), f.subarray(cut));
  });

  it("one frame: κόσμε F4 written, then 90 alone (the failing byte), then the rest (6.4.4)", async () => {
    const c = await open();
    const f = text(Buffer.concat([KOSME, hex("f4 90 80 80"), utf8("edited")]));
    const cut1 = 6 + KOSME.length + 1;
    await c.write(f.subarray(0, cut1));
    expect(await c.quietFor(100)).toBe(true);
    await expectCloseDuringPause(c, f.subarray(cut1, cut1 + 1), f.subarray(cut1 + 1));
  });

  it("a long frame (native validation path): first half with a surrogate, pause, second half", async () => {
    const c = await open();
    const payload = Buffer.concat([utf8("x".repeat(200)), hex("ed a0 80"), utf8("y".repeat(2000))]);
    const f = text(payload);
    await expectCloseDuringPause(c, f.subarray(0, 600), f.subarray(600));
  });

  it("a long first fragment ending with an invalid sequence, pause before the final fragment", async () => {
    const c = await open();
    const [f1, f2] = fragments([Buffer.concat([utf8("z".repeat(300)), hex("c0")]), utf8("end")]);
    await expectCloseDuringPause(c, f1!, f2!);
  });
});
