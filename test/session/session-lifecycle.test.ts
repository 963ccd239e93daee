import { afterEach, describe, expect, it } from "vitest";
import { CloseReason, type DefaultWebSocketSession, SessionError } from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { RawClient } from "../helpers/raw-client.js";
import { deferred, delay, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

/** Whether `promise` has settled within `ms`. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await delay(ms);
  return settled;
}

/** Resolves with what `promise` rejected with (fails if it fulfilled). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("session lifecycle: the handler ends the session", () => {
  it("handler returns → the client receives close 1000; closeReason resolves after the client's close", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port, errors } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        session.resolve(s);
      });
    });
    const client = await RawClient.connect(port, "/ws");
    expect(await client.nextClose()).toEqual({ code: 1000, reason: "" });
    const s = await session.promise;
    expect(await settledWithin(s.closeReason, 50)).toBe(false); // waits for the peer's Close frame
    client.sendClose(1000);
    const reason = await within(s.closeReason, 2000, "closeReason");
    expect([reason.code, reason.reason]).toEqual([1000, ""]);
    await within(client.ended, 2000, "the server closing TCP");
    expect(errors).toEqual([]);
  });

  it("handler throws → close 1011, the error hook gets kind 'handler' with the error, the server lives on", async () => {
    const boom = new Error("handler failed");
    const { port, wsUrl, errors } = await startApp((r) => {
      r.webSocket("/throws", async (session) => {
        await session.incoming.receive();
        throw boom;
      });
      r.webSocket("/sync-throws", () => {
        throw boom;
      });
      r.webSocket("/ok", async (session) => {
        await session.send("fine");
      });
    });
    const client = await RawClient.connect(port, "/throws");
    client.sendText("go");
    expect(await client.nextClose()).toEqual({ code: 1011, reason: "Internal error" });
    const sync = await WsClient.open(`${wsUrl}/sync-throws`);
    expect(await within(sync.closed, 2000, "close")).toEqual({ code: 1011, reason: "Internal error" });
    expect(errors).toEqual([
      { error: boom, kind: "handler" },
      { error: boom, kind: "handler" },
    ]);
    const other = await WsClient.open(`${wsUrl}/ok`);
    expect(await other.nextText()).toBe("fine");
  });

  it("an error hook that throws takes neither the connection nor the process down", async () => {
    const { app, wsUrl } = await startApp((r) => {
      r.webSocket("/throws", () => {
        throw new Error("handler failed");
      });
      r.webSocket("/ok", async (session) => {
        await session.send("fine");
      });
    });
    app.onError(() => {
      throw new Error("the hook failed too");
    });
    const failing = await WsClient.open(`${wsUrl}/throws`);
    expect(await within(failing.closed, 2000, "close")).toEqual({ code: 1011, reason: "Internal error" });
    const other = await WsClient.open(`${wsUrl}/ok`);
    expect(await other.nextText()).toBe("fine");
  });

  it("session.close(reason) sends that code and reason", async () => {
    const { wsUrl } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        await session.close(new CloseReason(4000, "done here"));
      });
    });
    const client = await WsClient.open(`${wsUrl}/ws`);
    expect(await within(client.closed, 2000, "close")).toEqual({ code: 4000, reason: "done here" });
  });
});

describe("session lifecycle: closeReason is the Close frame received (RFC 6455 §7.1.5)", () => {
  it.each([
    ["the peer answers with its own code and text", 4001, "other", { code: 4001, message: "other" }],
    ["the peer echoes our code without text", 4000, "", { code: 4000, message: "" }],
  ])(
    "we close with 4000 'done' and %s: closeReason is what the peer sent",
    async (_what, code, text, expected) => {
      const session = deferred<DefaultWebSocketSession>();
      const { port } = await startApp((r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
          await s.close(new CloseReason(4000, "done"));
        });
      });
      const client = await RawClient.connect(port, "/ws");
      expect(await client.nextClose()).toEqual({ code: 4000, reason: "done" });
      client.sendClose(code, text);
      const reason = await within((await session.promise).closeReason, 2000, "closeReason");
      expect({ code: reason.code, message: reason.reason }).toEqual(expected);
    },
  );
});

describe("session lifecycle: the peer ends the session", () => {
  it("peer sends close 1000 'bye' → incoming ends normally and closeReason is 1000 'bye'", async () => {
    const outcome = deferred<{ received: string[]; reason: CloseReason }>();
    const { port, errors } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        const received: string[] = [];
        for await (const frame of session.incoming) if (frame.type === "text") received.push(frame.text);
        outcome.resolve({ received, reason: await session.closeReason });
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.sendText("one");
    client.sendClose(1000, "bye");
    const { received, reason } = await within(outcome.promise, 2000, "the handler");
    expect(received).toEqual(["one"]);
    expect([reason.code, reason.reason]).toEqual([1000, "bye"]);
    expect(await client.nextClose()).toEqual({ code: 1000, reason: "" }); // the echo (§5.5.1)
    await within(client.ended, 2000, "the server closing TCP");
    expect(errors).toEqual([]);
  });

  it("peer destroys the socket → incoming ends and closeReason is 1006", async () => {
    const outcome = deferred<{ ended: boolean; reason: CloseReason }>();
    const { port, errors } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        for await (const _ of session.incoming) {
          // drain
        }
        outcome.resolve({ ended: true, reason: await session.closeReason });
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.sendText("hi");
    await delay(20);
    client.destroy();
    const { ended, reason } = await within(outcome.promise, 2000, "the handler");
    expect(ended).toBe(true);
    expect(reason.code).toBe(1006);
    expect(errors).toEqual([]);
  });

  it("send after the peer's close rejects with SESSION_CLOSED; an unhandled one is not reported", async () => {
    const caught = deferred<unknown>();
    const { port, errors } = await startApp((r) => {
      r.webSocket("/caught", async (session) => {
        for await (const _ of session.incoming) {
          // until the peer closes
        }
        caught.resolve(await rejection(session.send("too late")));
      });
      r.webSocket("/uncaught", async (session) => {
        for await (const _ of session.incoming) {
          // until the peer closes
        }
        await session.send("too late"); // rejects: the handler ends with that error
      });
    });
    const a = await RawClient.connect(port, "/caught");
    a.sendClose(1000);
    const error = await within(caught.promise, 2000, "the send");
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("SESSION_CLOSED");

    const b = await RawClient.connect(port, "/uncaught");
    b.sendClose(1000);
    expect(await b.nextClose()).toEqual({ code: 1000, reason: "" });
    await within(b.closed, 2000, "the end of the session");
    await delay(20);
    expect(errors).toEqual([]);
  });

  it("a send waiting for drain rejects with SESSION_CLOSED when the peer disappears", async () => {
    const caught = deferred<unknown>();
    const { port } = await startApp(
      (r) => {
        r.webSocket("/ws", async (session) => {
          const big = Buffer.alloc(256 * 1024);
          try {
            for (;;) await session.send(big);
          } catch (error) {
            caught.resolve(error);
          }
        });
      },
      { outgoingHighWaterMark: 16 * 1024 },
    );
    const client = await RawClient.connect(port, "/ws");
    client.socket.pause();
    await delay(100);
    client.destroy();
    const error = await within(caught.promise, 2000, "the blocked send to fail");
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("SESSION_CLOSED");
  });
});

describe("session lifecycle: after the end", () => {
  it("after the handler returned, using the session rejects with HANDLER_RETURNED", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        session.resolve(s);
      });
    });
    const client = await RawClient.connect(port, "/ws");
    await client.nextClose();
    const s = await session.promise;
    expect(s.isOpen).toBe(false);
    const closing = await rejection(s.send("late"));
    expect(closing).toBeInstanceOf(SessionError);
    expect((closing as SessionError).code).toBe("HANDLER_RETURNED");
    expect((closing as SessionError).message).toContain("handler has returned");
    client.sendClose(1000);
    await within(s.closeReason, 2000, "closeReason");
    const closed = await rejection(s.send(Buffer.from("later")));
    expect((closed as SessionError).code).toBe("HANDLER_RETURNED");
  });

  it("signal aborts when the session ends, with the CloseReason as its reason", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (s) => {
        session.resolve(s);
        for await (const _ of s.incoming) {
          // until the peer closes
        }
      });
    });
    const client = await RawClient.connect(port, "/ws");
    const s = await session.promise;
    const aborted = new Promise<unknown>((resolve) =>
      s.signal.addEventListener("abort", () => resolve(s.signal.reason)),
    );
    await delay(20);
    expect(s.signal.aborted).toBe(false);
    client.sendClose(1001, "leaving");
    const reason = await within(aborted, 2000, "the abort");
    expect(reason).toBeInstanceOf(CloseReason);
    expect([(reason as CloseReason).code, (reason as CloseReason).reason]).toEqual([1001, "leaving"]);
  });

  it("a peer that never answers our Close frame is disconnected after `timeout` ms", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port, errors } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
        });
      },
      { timeout: 150, pingPeriod: 0 },
    );
    const client = await RawClient.connect(port, "/ws");
    expect(await client.nextClose()).toEqual({ code: 1000, reason: "" });
    const closeFrameAt = Date.now();
    await within(client.closed, 2000, "the server to cut the connection");
    const waited = client.closedAt - closeFrameAt;
    expect(waited).toBeGreaterThanOrEqual(120);
    expect(waited).toBeLessThan(1000);
    const reason = await within((await session.promise).closeReason, 1000, "closeReason");
    expect(reason.code).toBe(1000); // ours: the peer never sent one
    expect(errors).toEqual([]);
  });

  it("a peer that sends Close but never closes TCP is cut off after `timeout` ms", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port, app } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
          for await (const _ of s.incoming) {
            // until the peer closes
          }
        });
      },
      { timeout: 150, pingPeriod: 0 },
    );
    const client = await RawClient.connect(port, "/ws", { allowHalfOpen: true });
    const s = await session.promise;
    client.sendClose(1000);
    expect((await client.nextClose()).code).toBe(1000);
    await within(client.ended, 1000, "the server's FIN");
    const finAt = Date.now();
    // Our half stays open; the server must still release the connection on its own.
    await within(s.closeReason, 2000, "the server to release the connection");
    const waited = Date.now() - finAt;
    expect(waited).toBeGreaterThanOrEqual(120);
    expect(waited).toBeLessThan(1000);
    expect(app.sessions.size).toBe(0);
  });

  it("a peer that ends TCP without reading what is still queued for it is cut off after `timeout` ms", async () => {
    const session = deferred<DefaultWebSocketSession>();
    const { port, app } = await startApp(
      (r) => {
        r.webSocket("/ws", async (s) => {
          session.resolve(s);
          // More than the kernel's buffers hold: some stays queued in the socket.
          for (let i = 0; i < 64; i++) s.send(Buffer.alloc(256 * 1024)).catch(() => {});
          for await (const _ of s.incoming) {
            // until the peer ends
          }
        });
      },
      { timeout: 150, pingPeriod: 0 },
    );
    const client = await RawClient.connect(port, "/ws", { allowHalfOpen: true });
    client.socket.pause(); // never reads
    const s = await session.promise;
    await delay(50);
    client.socket.end(); // FIN: the server's 'end', with its own output still queued
    const endAt = Date.now();
    await within(s.closeReason, 2000, "the server to release the connection");
    expect(Date.now() - endAt).toBeGreaterThanOrEqual(120);
    expect((await s.closeReason).code).toBe(1006);
    expect(app.sessions.size).toBe(0);
    client.destroy();
  });

  it("the close handshake with a well-behaved client reports nothing to the error hook", async () => {
    const { wsUrl, errors } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        for await (const frame of session.incoming) await session.send(frame);
      });
    });
    const a = await WsClient.open(`${wsUrl}/ws`);
    await a.send("x");
    await a.next();
    a.close(1000, "done");
    expect(await within(a.closed, 2000, "close")).toEqual({ code: 1000, reason: "" }); // the echo
    const b = await WsClient.open(`${wsUrl}/ws`);
    b.ws.terminate();
    await within(b.closed, 2000, "close");
    await delay(50);
    expect(errors).toEqual([]);
  });

  it("incoming can be read with receive() and yields undefined once the session has ended", async () => {
    const got = deferred<Array<string | undefined>>();
    const { port } = await startApp((r) => {
      r.webSocket("/ws", async (session) => {
        const first = await session.incoming.receive();
        const second = await session.incoming.receive();
        got.resolve([first?.type === "text" ? first.text : "?", second?.type]);
      });
    });
    const client = await RawClient.connect(port, "/ws");
    client.send(Opcode.Text, "only");
    client.sendClose(1000);
    expect(await within(got.promise, 2000, "the handler")).toEqual(["only", undefined]);
  });
});
