import { Buffer } from "node:buffer";
import { constants, inflateRawSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import {
  type DefaultWebSocketSession,
  Frame,
  permessageDeflate,
  SessionError,
  UsageError,
} from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { request } from "../helpers/http.js";
import {
  clientFrame,
  closeInfo,
  closePayload,
  RawClient,
  type ReceivedFrame,
} from "../helpers/raw-client.js";
import { deferred, within } from "../helpers/wait.js";

afterEach(cleanup);

const DEFLATE = { "Sec-WebSocket-Extensions": "permessage-deflate" };

/** A data frame's text, inflated when the server compressed it (RSV1). */
function textOf(frame: ReceivedFrame): string {
  if (!frame.rsv1) return frame.payload.toString("utf8");
  const tail = Buffer.from([0, 0, 0xff, 0xff]);
  return inflateRawSync(Buffer.concat([frame.payload, tail]), {
    finishFlush: constants.Z_SYNC_FLUSH,
  }).toString("utf8");
}

/** Reads frames up to and including the server's Close: the data frames' texts, then the Close. */
async function untilClose(
  client: RawClient,
): Promise<{ texts: string[]; close: { code: number; reason: string } }> {
  const texts: string[] = [];
  for (;;) {
    const frame = await client.next(3000);
    if (frame.opcode === Opcode.Close) return { texts, close: closeInfo(frame) };
    if (frame.opcode === Opcode.Text || frame.opcode === Opcode.Binary) texts.push(textOf(frame));
  }
}

async function healthy(port: number): Promise<void> {
  const response = await within(request(port, "GET", "/health"), 2000, "/health");
  expect(response.status).toBe(200);
}

const health = (r: Parameters<Parameters<typeof startApp>[0]>[0]) =>
  r.get("/health", (call) => call.respondText("ok"));

describe("closing while permessage-deflate is compressing", () => {
  it("a handler that returns while its unawaited send is compressing: the message, then 1000; the process keeps serving", async () => {
    const big = "x".repeat(2048);
    const { port } = await startApp(
      (r) => {
        health(r);
        r.webSocket("/ws", async (s) => {
          void s.send(big);
        });
      },
      { extensions: [permessageDeflate()] },
    );
    const client = await RawClient.connect(port, "/ws", { headers: DEFLATE });
    const { texts, close } = await untilClose(client);
    expect(texts).toEqual([big]);
    expect(close.code).toBe(1000);
    await healthy(port);
  });

  it("close() while sends are compressing: every message before the Close, close() resolves", async () => {
    const closed = deferred<void>();
    const { port } = await startApp(
      (r) => {
        health(r);
        r.webSocket("/ws", async (s) => {
          for (let i = 0; i < 5; i++) void s.send(`${i}`.repeat(3000));
          await s.close(4000, "done");
          closed.resolve();
          await s.closeReason;
        });
      },
      { extensions: [permessageDeflate()] },
    );
    const client = await RawClient.connect(port, "/ws", { headers: DEFLATE });
    const { texts, close } = await untilClose(client);
    expect(texts.map((t) => t[0])).toEqual(["0", "1", "2", "3", "4"]);
    expect(close).toEqual({ code: 4000, reason: "done" });
    await within(closed.promise, 2000, "close() to resolve");
    client.sendClose(4000);
    await healthy(port);
  });

  it("app.stop() while a send is compressing: the message, then 1001", async () => {
    const sending = deferred<void>();
    const { app, port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          void s.send("y".repeat(4096));
          sending.resolve();
          await s.closeReason;
        });
      },
      { extensions: [permessageDeflate()] },
    );
    const client = await RawClient.connect(port, "/ws", { headers: DEFLATE });
    await sending.promise;
    const stopped = app.stop({ grace: 1000 });
    const { texts, close } = await untilClose(client);
    expect(texts).toEqual(["y".repeat(4096)]);
    expect(close.code).toBe(1001);
    client.sendClose(1001);
    await within(stopped, 3000, "stop()");
  });

  it("the peer's message and Close in one write while the handler answers without awaiting: answer, then the echo", async () => {
    const { port } = await startApp(
      (r) => {
        health(r);
        r.webSocket("/ws", async (s) => {
          for await (const m of s.incoming) {
            if (m.type === "text") void s.send(`${m.text}!`.repeat(400)).catch(() => {});
          }
        });
      },
      { extensions: [permessageDeflate()] },
    );
    const client = await RawClient.connect(port, "/ws", { headers: DEFLATE });
    client.write(
      Buffer.concat([
        clientFrame(Opcode.Text, "m".repeat(360)),
        clientFrame(Opcode.Close, closePayload(1000)),
      ]),
    );
    const { texts, close } = await untilClose(client);
    expect(texts).toEqual([`${"m".repeat(360)}!`.repeat(400)]);
    expect(close.code).toBe(1000);
    await healthy(port);
  });
});

describe("the reply to the peer's Close", () => {
  it("goes out at once even when the handler never reads again (timeout 0 would wait forever otherwise)", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
          await s.incoming.receive();
          await new Promise(() => {}); // the handler hangs
        });
      },
      { timeout: 0 },
    );
    const client = await RawClient.connect(port, "/ws");
    client.sendText("one");
    client.sendText("two");
    client.sendClose(4001, "bye");
    expect(await client.nextClose(1000)).toEqual({ code: 4001, reason: "" });
    const s = await session.promise;
    expect(s.isOpen).toBe(false);
    const error = await s.send("late").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("SESSION_CLOSED");
  });

  it("follows the answers the handler sends while taking the messages that came before it", async () => {
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        for await (const m of s.incoming) if (m.type === "text") await s.send(m.text.toUpperCase());
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.write(
      Buffer.concat([
        clientFrame(Opcode.Text, "a"),
        clientFrame(Opcode.Text, "b"),
        clientFrame(Opcode.Text, "c"),
        clientFrame(Opcode.Close, closePayload(1000)),
      ]),
    );
    expect(await untilClose(client)).toEqual({ texts: ["A", "B", "C"], close: { code: 1000, reason: "" } });
  });

  it("isOpen is false once the peer's Close has arrived; a send after incoming ended rejects", async () => {
    const seen = deferred<{ open: boolean; error: unknown }>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        for await (const _ of s.incoming) {
          // until the peer closes
        }
        seen.resolve({ open: s.isOpen, error: await s.send("late").catch((e: unknown) => e) });
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.sendClose(1000);
    const { open, error } = await within(seen.promise, 2000, "the handler");
    expect(open).toBe(false);
    expect((error as SessionError).code).toBe("SESSION_CLOSED");
    expect(await untilClose(client)).toEqual({ texts: [], close: { code: 1000, reason: "" } });
  });
});

describe("a protocol violation after valid messages in the same read", () => {
  it.each([
    ["a frame with RSV2 set", clientFrame(Opcode.Text, "bad")],
    ["an orphan continuation", clientFrame(Opcode.Continuation, "orphan")],
  ])("the messages before %s are delivered and answered before the 1002 Close", async (what, violation) => {
    const bad = what.includes("RSV2") ? Buffer.from(violation) : violation;
    if (what.includes("RSV2")) bad[0] = bad[0]! | 0x20;
    const { port, errors } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        for await (const m of s.incoming) if (m.type === "text") await s.send(`echo ${m.text}`);
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.write(
      Buffer.concat([
        clientFrame(Opcode.Text, "one"),
        clientFrame(Opcode.Text, "tw", { fin: false }),
        clientFrame(Opcode.Continuation, "o", { fin: true }),
        bad,
      ]),
    );
    const { texts, close } = await untilClose(client);
    expect(texts).toEqual(["echo one", "echo two"]);
    expect(close.code).toBe(1002);
    expect(errors.map((e) => e.kind)).toEqual(["protocol"]);
  });

  it("after the violation the server stops reading and closes TCP soon, even if the peer never does", async () => {
    const { port } = await startApp((r) => r.webSocket("/ws", async (s) => void (await s.closeReason)));
    const client = await RawClient.connect(port, "/ws", { allowHalfOpen: true });
    client.socket.on("error", () => {}); // our flood outlives the connection
    client.send(Opcode.Text, "unmasked", { mask: false });
    expect((await client.nextClose()).code).toBe(1002);
    const start = Date.now();
    // The peer keeps sending and never closes; the server must let go well before `timeout` (15 s).
    const flood = setInterval(() => client.sendText("more"), 5);
    await within(client.closed, 3000, "the server closing the connection");
    clearInterval(flood);
    expect(Date.now() - start).toBeLessThan(2500);
  });
});

describe("close() arguments", () => {
  it.each([
    ["code 1005 (reserved for reporting)", [1005], "INVALID_CLOSE_CODE"],
    ["code 999", [999], "INVALID_CLOSE_CODE"],
    ["code 1000.5", [1000.5], "INVALID_CLOSE_CODE"],
    ["a reason over 123 bytes", [4000, "é".repeat(62)], "CLOSE_REASON_TOO_LONG"],
  ] as const)(
    "%s rejects with UsageError and sends nothing; the session stays open",
    async (_what, args, code) => {
      const result = deferred<unknown>();
      const { port } = await startApp((r) => {
        r.webSocket("/ws", async (s) => {
          result.resolve(await s.close(...(args as unknown as [number, string])).catch((e: unknown) => e));
          await s.send("still open");
        });
      });
      const client = await RawClient.connect(port, "/ws");
      const error = await within(result.promise, 2000, "close()");
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).code).toBe(code);
      expect(await untilClose(client)).toEqual({ texts: ["still open"], close: { code: 1000, reason: "" } });
    },
  );

  it("close(code, reason) sends both", async () => {
    const { port } = await startApp((r) => r.webSocket("/ws", (s) => s.close(4321, "custom")));
    const client = await RawClient.connect(port, "/ws");
    expect(await client.nextClose()).toEqual({ code: 4321, reason: "custom" });
  });
});

describe("send options", () => {
  it("{ compress: false } sends a message over the threshold uncompressed; the next one is compressed", async () => {
    const big = "z".repeat(4096);
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          await s.send(big, { compress: false });
          await s.send(big);
        });
      },
      { extensions: [permessageDeflate({ threshold: 1024 })] },
    );
    const client = await RawClient.connect(port, "/ws", { headers: DEFLATE });
    const first = await client.nextData();
    const second = await client.nextData();
    expect([first.rsv1, first.payload.toString()]).toEqual([false, big]);
    expect(second.rsv1).toBe(true);
    expect(textOf(second)).toBe(big);
  });
});

describe("flush() and close() with deflate in flight", () => {
  it("flush() resolves only once every compressed message has been handed to the kernel", async () => {
    const after = deferred<number>();
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          for (let i = 0; i < 4; i++) void s.send(Buffer.alloc(1 << 20, i).toString("latin1"));
          await s.flush();
          after.resolve(s.bufferedAmount);
        });
      },
      { extensions: [permessageDeflate()] },
    );
    const client = await RawClient.connect(port, "/ws", { headers: DEFLATE });
    expect(await within(after.promise, 5000, "flush()")).toBe(0);
    const { texts } = await untilClose(client);
    expect(texts).toHaveLength(4);
  });
});

describe("the peer leaves without a Close (TCP FIN)", () => {
  it("isOpen turns false, send rejects with SessionError, and no handler error is reported", async () => {
    const state = deferred<{ open: boolean; error: unknown }>();
    const { port, errors } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        await s.closeReason;
        state.resolve({ open: s.isOpen, error: await s.send("gone?").catch((e: unknown) => e) });
        await s.send("again"); // rejects: ends the handler with a SessionError, which is not reported
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.socket.end();
    const { open, error } = await within(state.promise, 2000, "the handler");
    expect(open).toBe(false);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("SESSION_CLOSED");
    await within(client.closed, 2000, "the close");
    expect(errors).toEqual([]);
  });

  it("a handler sending every turn gets a SessionError from the first send after the FIN, and nothing is reported", async () => {
    const failure = deferred<{ error: unknown; open: boolean }>();
    const { port, errors } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        await s.send("started");
        try {
          for (;;) {
            await new Promise((resolve) => setImmediate(resolve));
            await s.send("tick");
          }
        } catch (error) {
          failure.resolve({ error, open: s.isOpen });
          throw error; // a SessionError out of the handler after the peer left is not an application error
        }
      });
    });
    const client = await RawClient.connect(port, "/ws", { allowHalfOpen: true });
    await client.nextData();
    client.socket.end();
    const { error, open } = await within(failure.promise, 2000, "the failing send");
    expect(open).toBe(false);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("SESSION_CLOSED");
    await within(client.closed, 2000, "the close");
    expect(errors).toEqual([]);
  });
});

describe("what send accepts", () => {
  it("ArrayBuffer and any ArrayBufferView are sent as binary; a fragment or a number is a rejected promise", async () => {
    const outcomes = deferred<unknown[]>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        const results: unknown[] = [];
        const attempt = (data: unknown) => {
          let promise: Promise<void>;
          try {
            promise = s.send(data as never);
          } catch (error) {
            results.push(`threw synchronously: ${String(error)}`);
            return;
          }
          return promise.then(
            () => results.push("ok"),
            (e: unknown) => results.push(e instanceof UsageError ? e.code : String(e)),
          );
        };
        await attempt(new Uint8Array([1, 2, 3, 4]).buffer);
        await attempt(new Uint16Array([0x0201, 0x0403]));
        await attempt(new DataView(new Uint8Array([9, 8, 7]).buffer, 1, 2));
        await attempt(Frame.continuation("x"));
        await attempt(Frame.text("part", false));
        await attempt(42);
        outcomes.resolve(results);
      });
    });
    const client = await RawClient.connect(port, "/ws");
    expect(await within(outcomes.promise, 2000, "the sends")).toEqual([
      "ok",
      "ok",
      "ok",
      "INVALID_FRAME",
      "INVALID_FRAME",
      "INVALID_FRAME",
    ]);
    const payloads = [await client.nextData(), await client.nextData(), await client.nextData()];
    expect(payloads.map((f) => [f.opcode, [...f.payload]])).toEqual([
      [Opcode.Binary, [1, 2, 3, 4]],
      [Opcode.Binary, [1, 2, 3, 4]],
      [Opcode.Binary, [8, 7]],
    ]);
  });

  it("a message larger than outgoingBufferLimit goes out when nothing else is buffered", async () => {
    const { port, errors } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          for await (const m of s.incoming) await s.send(m);
        });
      },
      { maxFrameSize: 4 << 20, outgoingBufferLimit: 1 << 20 },
    );
    const client = await RawClient.connect(port, "/ws");
    const big = Buffer.alloc(3 << 20, 7);
    client.sendBinary(big);
    const echo = await client.nextData(5000);
    expect(echo.payload.equals(big)).toBe(true);
    expect(errors).toEqual([]);
  });
});
