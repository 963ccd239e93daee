/**
 * RFC 6455 §5.5.1 and §7 (closing handshake, status codes) at the wire level (Autobahn case family 7).
 * The server echoes a peer's status code, then closes TCP itself (§7.1.1: the server closes first).
 */
import { describe, expect, it } from "vitest";
import {
  close,
  closePayload,
  expectClose,
  expectEcho,
  frame,
  OP,
  ping,
  text,
  useEchoServer,
} from "./raw-client.js";

const { open } = useEchoServer();

describe("§7.4 status codes in the peer's Close frame (Autobahn 7.7, 7.9)", () => {
  it.each([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])(
    "valid code %i is echoed, then the server closes TCP",
    async (code) => {
      const c = await open();
      await c.write(close(code));
      const r = await expectClose(c, code);
      expect(r.payload.length).toBe(2);
    },
  );

  it.each([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])(
    "invalid code %i fails the connection with 1002",
    async (code) => {
      const c = await open();
      await c.write(close(code));
      await expectClose(c, 1002);
    },
  );
});

describe("§5.5.1 Close frame payload (Autobahn 7.3, 7.5)", () => {
  it("an empty Close frame is answered with an empty Close frame (7.3.1)", async () => {
    const c = await open();
    await c.write(close());
    const r = await expectClose(c, undefined);
    expect(r.payload.length).toBe(0);
    expect(c.frames.at(-1)!.raw).toEqual(Buffer.from([0x88, 0x00]));
  });

  it("a 1-byte Close payload fails with 1002 (7.3.2)", async () => {
    const c = await open();
    await c.write(frame({ opcode: OP.close, payload: Buffer.from([0x03]) }));
    await expectClose(c, 1002);
  });

  it("a code with a reason is answered with the same code (7.3.4)", async () => {
    const c = await open();
    await c.write(close(1000, "Hello World!"));
    await expectClose(c, 1000);
  });

  it("a 123-byte reason (the maximum) is accepted (7.3.5)", async () => {
    const c = await open();
    await c.write(close(1000, "*".repeat(123)));
    await expectClose(c, 1000);
  });

  it("a 124-byte reason makes a 126-byte control payload: 1002 (7.3.6)", async () => {
    const c = await open();
    await c.write(close(1000, "*".repeat(124)));
    await expectClose(c, 1002);
  });

  it("a reason in valid multi-byte UTF-8 is accepted", async () => {
    const c = await open();
    await c.write(close(1000, "κόσμε 😀"));
    await expectClose(c, 1000);
  });

  it("a reason in invalid UTF-8 fails with 1007 (7.5.1)", async () => {
    const c = await open();
    await c.write(
      frame({
        opcode: OP.close,
        payload: closePayload(1000, Buffer.from("cebae1bdb9cf83cebcceb5eda080656469746564", "hex")),
      }),
    );
    await expectClose(c, 1007);
  });

  it("a reason ending inside a character fails with 1007", async () => {
    const c = await open();
    await c.write(frame({ opcode: OP.close, payload: closePayload(1000, Buffer.from("6f6bce", "hex")) }));
    await expectClose(c, 1007);
  });

  it("the server's reply is exactly 88 02 + the code, unmasked", async () => {
    const c = await open();
    await c.write(close(4321, "bye"));
    await expectClose(c, 4321);
    expect(c.frames.at(-1)!.raw).toEqual(Buffer.from([0x88, 0x02, 0x10, 0xe1]));
  });
});

describe("§7.1 closing handshake behaviour (Autobahn 7.1)", () => {
  it("a message, its echo, then Close: echo and clean close (7.1.1, separate writes)", async () => {
    const c = await open();
    await c.write(text("Hello World!"));
    await expectEcho(c, OP.text, "Hello World!");
    await c.write(close(1000));
    await expectClose(c, 1000);
  });

  // The reply to a Close waits until the handler has read to the end of `incoming`, so the answer to a
  // message that came in the same read goes out first (RFC 6455 §5.5.1 allows the delay).
  it("a message followed by Close in one TCP write: the echo comes before the Close (7.1.1)", async () => {
    const c = await open();
    await c.write(Buffer.concat([text("Hello World!"), close(1000)]));
    await expectEcho(c, OP.text, "Hello World!");
    await expectClose(c, 1000);
  });

  it("two Close frames: one Close echoed, the second ignored (7.1.2)", async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), close(1001)]));
    await expectClose(c, 1000);
  });

  it("a second Close frame after a pause is ignored too", async () => {
    const c = await open();
    await c.write(close(1000));
    await c.nextFrame(); // the echo; the server's FIN may follow at once
    await c.write(close(1001));
    const r = await c.waitForClose();
    expect(r.tcpClosed).toBe(true);
    expect(c.frames.map((f) => f.opcode)).toEqual([OP.close]);
  });

  it("a ping after Close gets no pong (7.1.3)", async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), ping("after close")]));
    await expectClose(c, 1000);
  });

  it("a text message after Close is not echoed (7.1.4)", async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), text("after close")]));
    await expectClose(c, 1000);
  });

  it("invalid frames after Close are ignored: no 1002 (data after close is not parsed)", async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), frame({ opcode: 0x3, payload: "x", rsv: 7 })]));
    await expectClose(c, 1000);
  });

  it("fragment 1, Close, fragment 2: Close echoed, the message never (7.1.5)", async () => {
    const c = await open();
    await c.write(
      Buffer.concat([
        text("fragment1", { fin: false }),
        close(1000),
        frame({ opcode: OP.continuation, payload: "fragment2" }),
      ]),
    );
    await expectClose(c, 1000);
  });

  it("a 256 kB message, its echo, then Close and a ping: no pong (7.1.6)", async () => {
    const c = await open();
    const big = Buffer.alloc(256 * 1024, "B");
    await c.write(text(big));
    await expectEcho(c, OP.text, big);
    await c.write(Buffer.concat([close(1000), ping()]));
    await expectClose(c, 1000);
  });

  it("the server closes TCP right after its Close echo, without waiting for the client", async () => {
    const c = await open();
    await c.write(close(1000));
    const r = await expectClose(c, 1000);
    expect(r.tcpClosedAt! - r.closeFrameAt!).toBeLessThan(500);
  });

  it("a client that half-closes (FIN) without a Close frame: the server closes TCP too", async () => {
    const c = await open();
    c.end();
    expect(await c.waitForTcpClose()).toBe(true);
    expect(c.frames).toEqual([]);
  });
});
