/**
 * RFC 6455 §5.5 control frames, ping and pong (Autobahn case family 2), at the wire level.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  expectClose,
  expectEcho,
  expectNormalClosure,
  frame,
  OP,
  ping,
  pong,
  text,
  useEchoServer,
} from "./raw-client.js";

const { open } = useEchoServer();

describe("§5.5.2 / §5.5.3 ping and pong (Autobahn 2.x)", () => {
  it("an empty ping is answered with an empty pong (2.1)", async () => {
    const c = await open();
    await c.write(ping());
    await expectEcho(c, OP.pong, Buffer.alloc(0));
    await expectNormalClosure(c);
  });

  it("a ping with a text payload is answered with the same payload (2.2)", async () => {
    const c = await open();
    await c.write(ping("Hello, world!"));
    await expectEcho(c, OP.pong, "Hello, world!");
    await expectNormalClosure(c);
  });

  it("a ping with a binary payload is answered with the same bytes (2.3)", async () => {
    const c = await open();
    const payload = Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]);
    await c.write(ping(payload));
    await expectEcho(c, OP.pong, payload);
    await expectNormalClosure(c);
  });

  it("a ping with a 125-byte payload (the maximum) is answered with the same 125 bytes (2.4)", async () => {
    const c = await open();
    const payload = randomBytes(125);
    await c.write(ping(payload));
    await expectEcho(c, OP.pong, payload);
    await expectNormalClosure(c);
  });

  it("a ping with a 126-byte payload fails the connection with 1002 and gets no pong (2.5)", async () => {
    const c = await open();
    await c.write(ping(Buffer.alloc(126, 0xfe)));
    await expectClose(c, 1002);
  });

  it("a 126-byte ping is refused from its header alone, before its payload arrives", async () => {
    const c = await open();
    await c.write(frame({ opcode: OP.ping, length: 126 }).subarray(0, 8));
    await expectClose(c, 1002);
  });

  it("a 125-byte ping written one byte at a time is answered (2.6)", async () => {
    const c = await open();
    const payload = randomBytes(125);
    await c.trickle(ping(payload), 1, 1);
    await expectEcho(c, OP.pong, payload, 2000);
    await expectNormalClosure(c);
  });

  it("an unsolicited empty pong is ignored (2.7)", async () => {
    const c = await open();
    await c.write(Buffer.concat([pong(), text("after")]));
    await expectEcho(c, OP.text, "after");
    expect(await c.quietFor(50)).toBe(true);
    await expectNormalClosure(c);
  });

  it("an unsolicited pong with a payload is ignored (2.8)", async () => {
    const c = await open();
    await c.write(Buffer.concat([pong("unsolicited pong payload"), text("after")]));
    await expectEcho(c, OP.text, "after");
    await expectNormalClosure(c);
  });

  it("an unsolicited pong, then a ping: only the ping is answered (2.9)", async () => {
    const c = await open();
    await c.write(Buffer.concat([pong("unsolicited"), ping("ping payload")]));
    await expectEcho(c, OP.pong, "ping payload");
    expect(await c.quietFor(50)).toBe(true);
    await expectNormalClosure(c);
  });

  it("ten pings in one write get ten pongs with the same payloads, in order (2.10)", async () => {
    const c = await open();
    const payloads = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
    await c.write(Buffer.concat(payloads.map((p) => ping(p))));
    for (const p of payloads) await expectEcho(c, OP.pong, p);
    await expectNormalClosure(c);
  });

  it("ten pings written in 1-byte chunks get ten pongs in order (2.11)", async () => {
    const c = await open();
    const payloads = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
    await c.trickle(Buffer.concat(payloads.map((p) => ping(p))), 1, 0);
    for (const p of payloads) await expectEcho(c, OP.pong, p);
    await expectNormalClosure(c);
  });

  it("a fragmented ping (FIN clear) fails with 1002 (5.1)", async () => {
    const c = await open();
    await c.write(
      Buffer.concat([
        frame({ opcode: OP.ping, payload: "frag1", fin: false }),
        frame({ opcode: OP.continuation, payload: "frag2" }),
      ]),
    );
    await expectClose(c, 1002);
  });

  it("a fragmented pong (FIN clear) fails with 1002 (5.2)", async () => {
    const c = await open();
    await c.write(
      Buffer.concat([
        frame({ opcode: OP.pong, payload: "frag1", fin: false }),
        frame({ opcode: OP.continuation, payload: "frag2" }),
      ]),
    );
    await expectClose(c, 1002);
  });

  it("a 126-byte pong fails with 1002", async () => {
    const c = await open();
    await c.write(pong(Buffer.alloc(126)));
    await expectClose(c, 1002);
  });

  it("a ping that arrives behind a 200 kB message in the same write is answered too", async () => {
    const c = await open();
    const big = Buffer.alloc(200_000, "b");
    await c.write(Buffer.concat([text(big), ping("behind")]));
    const first = await c.nextFrame(2000);
    const second = await c.nextFrame(2000);
    const opcodes = [first.opcode, second.opcode].sort();
    expect(opcodes).toEqual([OP.text, OP.pong].sort());
    const pongFrame = first.opcode === OP.pong ? first : second;
    expect(pongFrame.payload.toString()).toBe("behind");
    await expectNormalClosure(c);
  });
});
