import * as v from "valibot";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AppError,
  connect,
  createApp,
  deserializedMessages,
  type MessageConverter,
  MessageError,
  receiveDeserialized,
  SessionError,
  sendSerialized,
  WebSockets,
} from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { deferred, delay, until, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

const ChatIn = z.object({ type: z.literal("say"), text: z.string().min(1) });
const ChatOut = z.object({ type: z.literal("said"), text: z.string(), length: z.number().int() });

const VChatIn = v.object({ type: v.literal("say"), text: v.pipe(v.string(), v.minLength(1)) });
const VChatOut = v.object({ type: v.literal("said"), text: v.string(), length: v.number() });

const say = (text: string) => JSON.stringify({ type: "say", text });

describe("typed routes (Zod)", () => {
  it("yields validated values and sends validated replies", async () => {
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/chat", { incoming: ChatIn, outgoing: ChatOut }, async (session) => {
        for await (const msg of session.messages)
          await session.sendTyped({ type: "said", text: msg.text, length: msg.text.length });
      }),
    );
    const client = await WsClient.open(`${wsUrl}/chat`);
    await client.send(say("hello"));
    expect(JSON.parse(await client.nextText())).toEqual({ type: "said", text: "hello", length: 5 });
    await client.send(say("again"));
    expect(JSON.parse(await client.nextText())).toEqual({ type: "said", text: "again", length: 5 });
  });

  it("keeps the order of messages when async validation is slower for early messages than late ones", async () => {
    const finished: number[] = [];
    const Slow = z.object({ n: z.number() }).refine(async (m) => {
      await delay((6 - m.n) * 15); // message 1 takes longest
      // Zod 4's validate runs an async refinement twice (a sync attempt, then async): count each once.
      if (!finished.includes(m.n)) finished.push(m.n);
      return true;
    });
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/slow", { incoming: Slow }, async (session) => {
        // All five are queued before reading starts, so their validations run at once.
        await until(() => session.incoming.length === 5, 3000, "five queued messages");
        for await (const msg of session.messages) await session.sendTyped(msg.n);
      }),
    );
    const client = await WsClient.open(`${wsUrl}/slow`);
    for (let n = 1; n <= 5; n++) await client.send(JSON.stringify({ n }));
    const got: string[] = [];
    for (let n = 1; n <= 5; n++) got.push(await client.nextText());
    expect(got).toEqual(["1", "2", "3", "4", "5"]);
    // The validations really overlapped and finished out of order.
    expect(finished).toEqual([5, 4, 3, 2, 1]);
  });

  it("closes with 1007 on malformed JSON by default", async () => {
    const seen: unknown[] = [];
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/chat", { incoming: ChatIn }, async (session) => {
        for await (const msg of session.messages) seen.push(msg);
      }),
    );
    const client = await WsClient.open(`${wsUrl}/chat`);
    await client.send(say("first"));
    await client.send("{not json");
    await client.send(say("never"));
    const closed = await within(client.closed, 3000, "close");
    expect(closed).toEqual({ code: 1007, reason: "Malformed message" });
    expect(seen).toEqual([{ type: "say", text: "first" }]);
  });

  it("skips malformed and invalid messages with onInvalidMessage: skip", async () => {
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/chat", { incoming: ChatIn, onInvalidMessage: "skip" }, async (session) => {
        for await (const msg of session.messages) await session.sendTyped(msg.text);
      }),
    );
    const client = await WsClient.open(`${wsUrl}/chat`);
    await client.send("{not json");
    await client.send(JSON.stringify({ type: "say", text: "" }));
    await client.send(Buffer.from([1, 2, 3]));
    await client.send(say("kept"));
    expect(await client.nextText()).toBe('"kept"');
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });

  it("closes with 1003 when a binary message arrives where text is expected", async () => {
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/chat", { incoming: ChatIn }, async (session) => {
        for await (const _ of session.messages);
      }),
    );
    const client = await WsClient.open(`${wsUrl}/chat`);
    await client.send(Buffer.from(say("as bytes")));
    expect(await within(client.closed, 3000, "close")).toEqual({ code: 1003, reason: "Unsupported data" });
  });

  it("gives the policy a MessageError with the frame and the schema's issues", async () => {
    const errors: MessageError[] = [];
    const { wsUrl } = await startApp((r) =>
      r.webSocket(
        "/chat",
        {
          incoming: ChatIn,
          onInvalidMessage: (error) => {
            errors.push(error);
            return errors.length < 2 ? "skip" : "close";
          },
        },
        async (session) => {
          for await (const _ of session.messages);
        },
      ),
    );
    const client = await WsClient.open(`${wsUrl}/chat`);
    const bad = JSON.stringify({ type: "say", text: 42 });
    await client.send(bad);
    await client.send("[");
    expect(await within(client.closed, 3000, "close")).toEqual({ code: 1007, reason: "Malformed message" });
    expect(errors).toHaveLength(2);
    const [invalid, malformed] = errors as [MessageError, MessageError];
    expect(invalid).toBeInstanceOf(MessageError);
    expect(invalid.code).toBe("INVALID");
    expect(invalid.direction).toBe("incoming");
    expect(invalid.closeCode).toBe(1007);
    expect(invalid.frame?.type === "text" && invalid.frame.text).toBe(bad);
    expect(invalid.value).toEqual({ type: "say", text: 42 });
    expect(invalid.issues.length).toBeGreaterThan(0);
    expect(invalid.issues[0]?.path).toEqual(["text"]);
    expect(malformed.code).toBe("MALFORMED");
    expect(malformed.cause).toBeInstanceOf(SyntaxError);
    expect(malformed.issues).toEqual([]);
  });

  it("rejects sendTyped with a MessageError for an invalid outgoing value, sending nothing and not closing", async () => {
    const result = deferred<unknown>();
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/chat", { incoming: ChatIn, outgoing: ChatOut }, async (session) => {
        for await (const msg of session.messages) {
          try {
            // @ts-expect-error: length must be a number (the app's bug, caught at run time too)
            await session.sendTyped({ type: "said", text: msg.text, length: "five" });
          } catch (error) {
            result.resolve(error);
          }
          await session.sendTyped({ type: "said", text: msg.text, length: 1 });
        }
      }),
    );
    const client = await WsClient.open(`${wsUrl}/chat`);
    await client.send(say("x"));
    expect(JSON.parse(await client.nextText())).toEqual({ type: "said", text: "x", length: 1 });
    const error = (await within(result.promise, 3000, "the rejection")) as MessageError;
    expect(error).toBeInstanceOf(MessageError);
    expect(error.code).toBe("INVALID");
    expect(error.direction).toBe("outgoing");
    expect(error.issues[0]?.path).toEqual(["length"]);
    expect(client.messages).toHaveLength(1);
    await client.send(say("still open"));
    expect(JSON.parse(await client.nextText()).text).toBe("still open");
  });

  it("sends typed values in call order when async outgoing validation finishes later ones first", async () => {
    const Out = z
      .number()
      .int()
      .refine(async (n) => {
        await delay((6 - n) * 15);
        return n !== 3;
      });
    const outcomes = deferred<string[]>();
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/out", { incoming: z.unknown(), outgoing: Out }, async (session) => {
        for await (const _ of session.messages) {
          const sends = [1, 2, 3, 4, 5].map((n) => session.sendTyped(n)); // not awaited one by one
          const settled = await Promise.allSettled(sends);
          outcomes.resolve(
            settled.map((s) => (s.status === "fulfilled" ? "sent" : (s.reason as MessageError).code)),
          );
        }
      }),
    );
    const client = await WsClient.open(`${wsUrl}/out`);
    await client.send("{}");
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push(await client.nextText());
    expect(got).toEqual(["1", "2", "4", "5"]);
    expect(await within(outcomes.promise, 3000, "outcomes")).toEqual([
      "sent",
      "sent",
      "INVALID",
      "sent",
      "sent",
    ]);
  });

  it("refuses options that are not Standard Schemas", () => {
    const app = createApp().install(WebSockets);
    expect(() =>
      app.routing((r) =>
        // @ts-expect-error: not a schema
        r.webSocket("/x", { incoming: { parse: () => 1 } }, () => {}),
      ),
    ).toThrow(AppError);
    expect(() =>
      app.routing((r) =>
        // @ts-expect-error: not a policy
        r.webSocket("/y", { incoming: ChatIn, onInvalidMessage: "ignore" }, () => {}),
      ),
    ).toThrow(/onInvalidMessage/);
  });
});

describe("typed routes (Valibot)", () => {
  it("yields validated values, skips or closes on failures, validates outgoing", async () => {
    const outgoingErrors: unknown[] = [];
    const { wsUrl } = await startApp((r) => {
      r.webSocket("/chat", { incoming: VChatIn, outgoing: VChatOut }, async (session) => {
        for await (const msg of session.messages) {
          // @ts-expect-error: text must be a string
          await session.sendTyped({ type: "said", text: 1, length: 1 }).catch((e) => outgoingErrors.push(e));
          await session.sendTyped({ type: "said", text: msg.text, length: msg.text.length });
        }
      });
    });
    const client = await WsClient.open(`${wsUrl}/chat`);
    await client.send(say("valibot"));
    expect(JSON.parse(await client.nextText())).toEqual({ type: "said", text: "valibot", length: 7 });
    expect(outgoingErrors).toHaveLength(1);
    expect((outgoingErrors[0] as MessageError).code).toBe("INVALID");
    await client.send(JSON.stringify({ type: "shout", text: "x" }));
    expect(await within(client.closed, 3000, "close")).toEqual({ code: 1007, reason: "Invalid message" });
  });

  it("keeps the order with async validation (pipeAsync)", async () => {
    const Slow = v.pipeAsync(
      v.object({ n: v.number() }),
      v.checkAsync(async (m) => {
        await delay((6 - m.n) * 15);
        return true;
      }),
    );
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/slow", { incoming: Slow, onInvalidMessage: "skip" }, async (session) => {
        await until(() => session.incoming.length === 6, 3000, "six queued messages");
        for await (const msg of session.messages) await session.sendTyped(msg.n);
      }),
    );
    const client = await WsClient.open(`${wsUrl}/slow`);
    for (let n = 1; n <= 5; n++) {
      await client.send(JSON.stringify({ n }));
      if (n === 2) await client.send(JSON.stringify({ n: "two" })); // skipped, in its place
    }
    const got: string[] = [];
    for (let n = 1; n <= 5; n++) got.push(await client.nextText());
    expect(got).toEqual(["1", "2", "3", "4", "5"]);
  });
});

/** A binary converter: { n } as 4 bytes, big-endian. */
const uint32Converter: MessageConverter = {
  frameType: "binary",
  serialize: (value) => {
    const out = Buffer.alloc(4);
    out.writeUInt32BE((value as { n: number }).n);
    return out;
  },
  deserialize: (frame) => {
    if (frame.data.length !== 4) throw new RangeError(`expected 4 bytes, got ${frame.data.length}`);
    return { n: frame.data.readUInt32BE(0) };
  },
};

describe("sendSerialized / receiveDeserialized", () => {
  it("work on a plain session, with a binary converter", async () => {
    const N = z.object({ n: z.number().max(1000) });
    const errors: unknown[] = [];
    const ended = deferred<unknown>();
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/bin", async (session) => {
        for (;;) {
          try {
            const { n } = await receiveDeserialized(session, N, { converter: uint32Converter });
            await sendSerialized(session, { n: n + 1 }, { schema: N, converter: uint32Converter });
          } catch (error) {
            if (error instanceof SessionError) {
              ended.resolve(error);
              return;
            }
            errors.push(error);
          }
        }
      }),
    );
    const client = await WsClient.open(`${wsUrl}/bin`);
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    await client.send(u32(41));
    const reply = await client.next();
    expect(reply.isBinary).toBe(true);
    expect(reply.data.readUInt32BE(0)).toBe(42);
    await client.send(Buffer.from([1, 2])); // MALFORMED
    await client.send("text"); // UNSUPPORTED
    await client.send(u32(5000)); // INVALID
    await client.send(u32(1000)); // valid, but 1001 fails the outgoing schema
    await client.send(u32(7));
    expect((await client.next()).data.readUInt32BE(0)).toBe(8);
    expect(errors.map((e) => [(e as MessageError).code, (e as MessageError).direction])).toEqual([
      ["MALFORMED", "incoming"],
      ["UNSUPPORTED", "incoming"],
      ["INVALID", "incoming"],
      ["INVALID", "outgoing"],
    ]);
    expect((errors[0] as MessageError).cause).toBeInstanceOf(RangeError);
    client.close(1000);
    expect(await within(ended.promise, 3000, "SESSION_CLOSED")).toMatchObject({ code: "SESSION_CLOSED" });
  });

  it("sendSerialized rejects a value JSON cannot write as MALFORMED", async () => {
    const result = deferred<unknown>();
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/x", async (session) => {
        result.resolve(await sendSerialized(session, { big: 1n }).catch((e: unknown) => e));
      }),
    );
    await WsClient.open(`${wsUrl}/x`);
    const error = (await within(result.promise, 3000, "rejection")) as MessageError;
    expect(error).toBeInstanceOf(MessageError);
    expect(error.code).toBe("MALFORMED");
    expect(error.direction).toBe("outgoing");
  });
});

describe("on a client session", () => {
  it("sockway's connect() session takes sendSerialized and deserializedMessages", async () => {
    const { wsUrl } = await startApp((r) =>
      r.webSocket("/chat", { incoming: ChatIn, outgoing: ChatOut }, async (session) => {
        for await (const msg of session.messages)
          await session.sendTyped({ type: "said", text: msg.text, length: msg.text.length });
      }),
    );
    const text = await connect(`${wsUrl}/chat`, {}, async (session) => {
      await sendSerialized(session, { type: "say", text: "from the client" }, { schema: ChatIn });
      for await (const reply of deserializedMessages(session, ChatOut)) return reply.text;
      return undefined;
    });
    expect(text).toBe("from the client");
  });
});
