import { afterEach, describe, expect, it } from "vitest";
import { type CloseReason, type DefaultWebSocketSession, Frame, SessionError } from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { type StartedApp, startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { clientFrame, RawClient } from "../helpers/raw-client.js";
import { deferred, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

interface Seen {
  /** Every item the handler took from `incoming`, as [type, payload]. */
  received: Array<[string, Buffer]>;
  sessions: DefaultWebSocketSession[];
}

/** An echo route at /echo that also records what `incoming` yielded. */
async function echoApp(options: Parameters<typeof startApp>[1] = {}): Promise<StartedApp & Seen> {
  const seen: Seen = { received: [], sessions: [] };
  const started = await startApp((r) => {
    r.webSocket("/echo", async (session) => {
      seen.sessions.push(session);
      for await (const frame of session.incoming) {
        seen.received.push([frame.type, frame.data]);
        await session.send(frame);
      }
    });
  }, options);
  return { ...started, ...seen };
}

describe("default session: messages", () => {
  it("echoes a text message", async () => {
    const { wsUrl } = await echoApp();
    const client = await WsClient.open(`${wsUrl}/echo`);
    await client.send("héllo ✓");
    const message = await client.next();
    expect(message.isBinary).toBe(false);
    expect(message.data.toString("utf8")).toBe("héllo ✓");
  });

  it("echoes a binary message", async () => {
    const { wsUrl } = await echoApp();
    const client = await WsClient.open(`${wsUrl}/echo`);
    const bytes = Buffer.from([0, 1, 2, 254, 255]);
    await client.send(bytes);
    const message = await client.next();
    expect(message.isBinary).toBe(true);
    expect(message.data).toEqual(bytes);
  });

  it("echoes empty text and empty binary messages", async () => {
    const { wsUrl } = await echoApp();
    const client = await WsClient.open(`${wsUrl}/echo`);
    await client.send("");
    await client.send(Buffer.alloc(0));
    const text = await client.next();
    const binary = await client.next();
    expect([text.isBinary, text.data.length]).toEqual([false, 0]);
    expect([binary.isBinary, binary.data.length]).toEqual([true, 0]);
  });

  it("echoes a 200 KB message intact", async () => {
    const { wsUrl } = await echoApp();
    const client = await WsClient.open(`${wsUrl}/echo`);
    const big = Buffer.alloc(200 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    await client.send(big);
    const message = await client.next();
    expect(message.isBinary).toBe(true);
    expect(message.data.equals(big)).toBe(true);
  });

  it("sends server frames unmasked, as whole single frames", async () => {
    const { port } = await echoApp();
    const client = await RawClient.connect(port, "/echo");
    client.sendText("abc");
    const frame = await client.nextData();
    expect(frame).toMatchObject({ fin: true, rsv1: false, opcode: Opcode.Text, masked: false });
    expect(frame.payload.toString()).toBe("abc");
  });

  it("keeps messages in order", async () => {
    const { wsUrl } = await echoApp();
    const client = await WsClient.open(`${wsUrl}/echo`);
    for (let i = 0; i < 50; i++) void client.send(`m${i}`);
    const got: string[] = [];
    for (let i = 0; i < 50; i++) got.push(await client.nextText());
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
  });
});

describe("default session: what incoming yields", () => {
  it("a fragmented message arrives whole, never a fragment or a control frame", async () => {
    const app = await echoApp();
    const client = await RawClient.connect(app.port, "/echo");
    client.send(Opcode.Text, "Hel", { fin: false });
    client.send(Opcode.Ping, "in between");
    client.send(Opcode.Continuation, "lo, ", { fin: false });
    client.send(Opcode.Pong, "unsolicited");
    client.send(Opcode.Continuation, "world", { fin: true });
    client.send(Opcode.Binary, Buffer.from([1]), { fin: false });
    client.send(Opcode.Continuation, Buffer.from([2, 3]), { fin: true });

    const pong = await client.next();
    expect(pong.opcode).toBe(Opcode.Pong);
    const text = await client.nextData();
    expect([text.opcode, text.fin, text.payload.toString()]).toEqual([Opcode.Text, true, "Hello, world"]);
    const binary = await client.nextData();
    expect([binary.opcode, binary.fin, [...binary.payload]]).toEqual([Opcode.Binary, true, [1, 2, 3]]);
    expect(app.received).toEqual([
      ["text", Buffer.from("Hello, world")],
      ["binary", Buffer.from([1, 2, 3])],
    ]);
  });

  it("a message split across many TCP writes, byte by byte, arrives whole", async () => {
    const app = await echoApp();
    const client = await RawClient.connect(app.port, "/echo");
    const bytes = clientFrame(Opcode.Text, "split everywhere");
    for (const byte of bytes) {
      client.write(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect((await client.nextData()).payload.toString()).toBe("split everywhere");
    expect(app.received).toEqual([["text", Buffer.from("split everywhere")]]);
  });

  it("pings from the client are answered with pongs carrying identical payloads", async () => {
    const app = await echoApp();
    const client = await RawClient.connect(app.port, "/echo");
    const payloads = [Buffer.alloc(0), Buffer.from("ping-1"), Buffer.alloc(125, 0xab)];
    for (const p of payloads) client.send(Opcode.Ping, p);
    for (const p of payloads) {
      const pong = await client.next();
      expect(pong.opcode).toBe(Opcode.Pong);
      expect(pong.payload).toEqual(p);
    }
    expect(app.received).toEqual([]);
  });
});

describe("default session: limits and violations", () => {
  it("a message over maxFrameSize closes with 1009 and closeReason resolves with 1009", async () => {
    const app = await echoApp({ maxFrameSize: 1024 });
    const client = await RawClient.connect(app.port, "/echo");
    client.sendBinary(Buffer.alloc(1024)); // at the limit: fine
    expect((await client.nextData()).payload.length).toBe(1024);
    client.sendBinary(Buffer.alloc(1025));
    expect((await client.nextClose()).code).toBe(1009);
    const reason: CloseReason = await within(app.sessions[0]!.closeReason, 2000, "closeReason");
    expect(reason.code).toBe(1009);
    expect(app.received.map(([type, data]) => [type, data.length])).toEqual([["binary", 1024]]);
    expect(app.errors.map((e) => e.kind)).toEqual(["protocol"]);
  });

  it("a fragmented message whose fragments add up past maxFrameSize closes with 1009", async () => {
    const app = await echoApp({ maxFrameSize: 1024 });
    const client = await RawClient.connect(app.port, "/echo");
    client.send(Opcode.Binary, Buffer.alloc(600), { fin: false });
    client.send(Opcode.Continuation, Buffer.alloc(600), { fin: true });
    expect((await client.nextClose()).code).toBe(1009);
    expect((await app.sessions[0]!.closeReason).code).toBe(1009);
    expect(app.received).toEqual([]);
  });

  it("maxFragments: a message of exactly that many frames passes, one more closes with 1009", async () => {
    const app = await echoApp({ maxFragments: 3 });
    const client = await RawClient.connect(app.port, "/echo");
    client.send(Opcode.Text, "a", { fin: false });
    client.send(Opcode.Continuation, "b", { fin: false });
    client.send(Opcode.Continuation, "c", { fin: true });
    expect((await client.nextData()).payload.toString()).toBe("abc");
    client.send(Opcode.Text, "a", { fin: false });
    client.send(Opcode.Continuation, "b", { fin: false });
    client.send(Opcode.Continuation, "c", { fin: false });
    client.send(Opcode.Continuation, "d", { fin: true });
    expect((await client.nextClose()).code).toBe(1009);
    expect(app.received).toEqual([["text", Buffer.from("abc")]]);
  });

  it("an unmasked client frame closes with 1002 and reports kind 'protocol' to the error hook", async () => {
    const app = await echoApp();
    const client = await RawClient.connect(app.port, "/echo");
    client.sendText("unmasked", { mask: false });
    expect((await client.nextClose()).code).toBe(1002);
    expect((await within(app.sessions[0]!.closeReason, 2000, "closeReason")).code).toBe(1002);
    expect(app.errors).toHaveLength(1);
    expect(app.errors[0]!.kind).toBe("protocol");
    expect((app.errors[0]!.error as { code: string }).code).toBe("MASK_REQUIRED");
    expect(app.received).toEqual([]);
  });

  it("invalid UTF-8 in a text message closes with 1007", async () => {
    const app = await echoApp();
    const client = await RawClient.connect(app.port, "/echo");
    client.send(Opcode.Text, Buffer.from([0xc3, 0x28]));
    expect((await client.nextClose()).code).toBe(1007);
    expect(app.errors.map((e) => e.kind)).toEqual(["protocol"]);
  });

  it("a protocol failure closes the TCP connection after the Close frame", async () => {
    const app = await echoApp();
    const client = await RawClient.connect(app.port, "/echo");
    client.send(0x3, "reserved opcode");
    expect((await client.nextClose()).code).toBe(1002);
    await within(client.ended, 2000, "the server's FIN");
  });

  it("a bad peer does not affect another connection", async () => {
    const app = await echoApp();
    const good = await WsClient.open(`${app.wsUrl}/echo`);
    const bad = await RawClient.connect(app.port, "/echo");
    bad.sendText("unmasked", { mask: false });
    expect((await bad.nextClose()).code).toBe(1002);
    await good.send("still here");
    expect(await good.nextText()).toBe("still here");
  });
});

describe("default session: misuse", () => {
  it("iterating incoming twice at once throws INCOMING_IN_USE", async () => {
    const outcome = deferred<unknown>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        const first = session.incoming[Symbol.asyncIterator]();
        void first.next();
        try {
          session.incoming[Symbol.asyncIterator]();
          outcome.resolve("no error");
        } catch (error) {
          outcome.resolve(error);
        }
      });
    });
    await RawClient.connect(port, "/ws");
    const error = await within(outcome.promise, 2000, "the handler");
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("INCOMING_IN_USE");
  });

  it("a fragment sent through the default session is refused; the session stays usable", async () => {
    const outcome = deferred<unknown>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        outcome.resolve(await session.send(Frame.text("part", false)).catch((error: unknown) => error));
        await session.send("whole");
      });
    });
    const client = await RawClient.connect(port, "/ws");
    const error = await within(outcome.promise, 2000, "the send");
    expect((error as { code?: string }).code).toBe("INVALID_FRAME");
    const frame = await client.nextData();
    expect([frame.opcode, frame.fin, frame.payload.toString()]).toEqual([Opcode.Text, true, "whole"]);
  });
});
