/**
 * RFC 6455 §5.4 fragmentation (Autobahn case family 5), at the wire level: the echo server must
 * reassemble fragments into one message and reply with it whole.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  expectClose,
  expectEcho,
  expectNormalClosure,
  expectServerFrame,
  frame,
  OP,
  ping,
  text,
  useEchoServer,
} from "./raw-client.js";

const { open } = useEchoServer();

/** A message split into frames: the first with `opcode`, the rest continuations, FIN on the last. */
function fragments(opcode: number, parts: ReadonlyArray<Buffer | string>): Buffer[] {
  return parts.map((p, i) =>
    frame({ opcode: i === 0 ? opcode : OP.continuation, payload: p, fin: i === parts.length - 1 }),
  );
}

describe("§5.4 fragmentation: valid sequences", () => {
  it("a text message in one fragment (FIN set on the first frame) is echoed", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments(OP.text, ["whole"])));
    await expectEcho(c, OP.text, "whole");
    await expectNormalClosure(c);
  });

  it("a text message in two fragments is echoed as one message (5.3)", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments(OP.text, ["fragment1", "fragment2"])));
    await expectEcho(c, OP.text, "fragment1fragment2");
    await expectNormalClosure(c);
  });

  it("a binary message in two fragments is echoed as one message", async () => {
    const c = await open();
    const a = randomBytes(300);
    const b = randomBytes(70_000);
    await c.write(Buffer.concat(fragments(OP.binary, [a, b])));
    await expectEcho(c, OP.binary, Buffer.concat([a, b]));
    await expectNormalClosure(c);
  });

  it("two fragments in separate writes with a pause between them are echoed whole (5.4, 5.5)", async () => {
    const c = await open();
    await c.writeChunks(fragments(OP.text, ["fragment1", "fragment2"]), 100);
    await expectEcho(c, OP.text, "fragment1fragment2");
    await expectNormalClosure(c);
  });

  it("a message in 100 fragments is echoed whole", async () => {
    const c = await open();
    const parts = Array.from({ length: 100 }, (_, i) => `<${i}>`);
    await c.write(Buffer.concat(fragments(OP.text, parts)));
    await expectEcho(c, OP.text, parts.join(""));
    await expectNormalClosure(c);
  });

  it("empty fragments make an empty message (and an empty final fragment is fine)", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments(OP.text, ["", "", ""])));
    await expectEcho(c, OP.text, "");
    await c.write(Buffer.concat(fragments(OP.binary, [Buffer.from("ab"), Buffer.alloc(0)])));
    await expectEcho(c, OP.binary, Buffer.from("ab"));
    await expectNormalClosure(c);
  });

  it("a ping between two fragments is answered before the message is echoed (5.6, 5.7)", async () => {
    const c = await open();
    const [f1, f2] = fragments(OP.text, ["fragment1", "fragment2"]);
    await c.write(Buffer.concat([f1!, ping("between"), f2!]));
    await expectEcho(c, OP.pong, "between");
    await expectEcho(c, OP.text, "fragment1fragment2");
    await expectNormalClosure(c);
  });

  it("a ping between fragments written apart is answered at once, while the message is incomplete (5.8)", async () => {
    const c = await open();
    const [f1, f2] = fragments(OP.text, ["fragment1", "fragment2"]);
    await c.write(Buffer.concat([f1!, ping("between")]));
    // The pong must come before the final fragment has even been sent.
    await expectEcho(c, OP.pong, "between");
    await c.write(f2!);
    await expectEcho(c, OP.text, "fragment1fragment2");
    await expectNormalClosure(c);
  });

  it("pings interleaved with many fragments: every pong, then the message (5.19, 5.20)", async () => {
    const c = await open();
    const parts = ["f1", "f2", "f3", "f4", "f5"];
    const frames = fragments(OP.text, parts);
    const interleaved: Buffer[] = [];
    frames.forEach((f, i) => {
      interleaved.push(f);
      if (i < frames.length - 1) interleaved.push(ping(`p${i}`));
    });
    await c.writeChunks(interleaved, 10);
    for (let i = 0; i < parts.length - 1; i++) await expectEcho(c, OP.pong, `p${i}`);
    await expectEcho(c, OP.text, parts.join(""));
    await expectNormalClosure(c);
  });

  it("an unsolicited pong between fragments is ignored", async () => {
    const c = await open();
    const [f1, f2] = fragments(OP.binary, [Buffer.from([1]), Buffer.from([2])]);
    await c.write(Buffer.concat([f1!, frame({ opcode: OP.pong, payload: "x" }), f2!]));
    await expectEcho(c, OP.binary, Buffer.from([1, 2]));
    await expectNormalClosure(c);
  });

  it("two fragmented messages in a row are echoed separately", async () => {
    const c = await open();
    await c.write(Buffer.concat([...fragments(OP.text, ["a", "b"]), ...fragments(OP.binary, ["c", "d"])]));
    await expectEcho(c, OP.text, "ab");
    await expectEcho(c, OP.binary, Buffer.from("cd"));
    await expectNormalClosure(c);
  });

  it("the echo of a fragmented message is a single unfragmented frame", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments(OP.text, ["x", "y", "z"])));
    const f = await c.nextFrame();
    expectServerFrame(f, OP.text, "xyz");
    expect(c.pending).toEqual([]);
    await expectNormalClosure(c);
  });
});

describe("§5.4 fragmentation: violations fail with 1002", () => {
  it("a continuation frame (FIN set) with nothing to continue (5.9)", async () => {
    const c = await open();
    await c.write(frame({ opcode: OP.continuation, payload: "non-continuation payload" }));
    await expectClose(c, 1002);
  });

  it("a continuation frame (FIN clear) with nothing to continue (5.10)", async () => {
    const c = await open();
    await c.write(frame({ opcode: OP.continuation, payload: "x", fin: false }));
    await expectClose(c, 1002);
  });

  it("a continuation frame after a complete message (5.15)", async () => {
    const c = await open();
    await c.write(Buffer.concat(fragments(OP.text, ["fragment1", "fragment2"])));
    await expectEcho(c, OP.text, "fragment1fragment2");
    await c.write(
      Buffer.concat([frame({ opcode: OP.continuation, payload: "fragment3", fin: false }), text("x")]),
    );
    await expectClose(c, 1002);
  });

  it("a new text frame inside a fragmented message (5.18)", async () => {
    const c = await open();
    await c.write(Buffer.concat([text("fragment1", { fin: false }), text("fragment2")]));
    await expectClose(c, 1002);
  });

  it("a new binary frame (FIN clear) inside a fragmented text message", async () => {
    const c = await open();
    await c.write(
      Buffer.concat([text("fragment1", { fin: false }), frame({ opcode: OP.binary, fin: false })]),
    );
    await expectClose(c, 1002);
  });

  it("a fragmented close frame", async () => {
    const c = await open();
    await c.write(
      Buffer.concat([
        frame({ opcode: OP.close, payload: Buffer.from([0x03]), fin: false }),
        frame({ opcode: OP.continuation, payload: Buffer.from([0xe8]) }),
      ]),
    );
    await expectClose(c, 1002);
  });

  it("a fragmented ping inside a fragmented text message", async () => {
    const c = await open();
    await c.write(
      Buffer.concat([text("a", { fin: false }), frame({ opcode: OP.ping, payload: "p", fin: false })]),
    );
    await expectClose(c, 1002);
  });
});
