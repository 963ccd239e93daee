/**
 * Misbehaving applications: handlers that throw, reject, never return, or use the session after it
 * closed. The peer gets the right close code, the error hook hears about real handler errors only, and
 * nothing escapes as an unhandled rejection or disturbs other sessions.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SessionError } from "../../src/index.js";
import {
  close,
  destroyAllClients,
  expectClose,
  expectStillHealthy,
  type ProcessWatch,
  RawClient,
  sleep,
  text,
  watchProcess,
} from "../conformance/raw-client.js";
import { closeReasonWithin, HandlerFailure, type HostileServer, startHostileServer } from "./hostile-app.js";

let server: HostileServer;
let watch: ProcessWatch;
let healthy: RawClient;

beforeAll(async () => {
  watch = watchProcess();
  server = await startHostileServer();
});
beforeEach(async () => {
  server.errors.length = 0;
  server.sendErrors.length = 0;
  healthy = await RawClient.open(server.port);
});
afterEach(() => destroyAllClients());
afterAll(async () => {
  destroyAllClients();
  await server.stop();
  watch.dispose();
});

/** The error hook got exactly one handler error, the HandlerFailure with this message. */
function expectHandlerError(message: string): void {
  expect(server.errors.map((e) => e.kind)).toEqual(["handler"]);
  expect(server.errors[0]!.error).toBeInstanceOf(HandlerFailure);
  expect((server.errors[0]!.error as Error).message).toBe(message);
}

describe("handlers that fail: close 1011 and the error hook", () => {
  it("a handler that throws synchronously: 1011, reported once", async () => {
    const c = await RawClient.open(server.port, "/throw");
    await expectClose(c, 1011, { reply: true });
    expectHandlerError("thrown synchronously");
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("a handler that throws after receiving a message: 1011, reported once", async () => {
    const c = await RawClient.open(server.port, "/throw-later");
    await c.write(text("trigger"));
    await expectClose(c, 1011, { reply: true });
    expectHandlerError("thrown after a message");
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("a handler whose promise rejects: 1011, reported once", async () => {
    const c = await RawClient.open(server.port, "/reject");
    await expectClose(c, 1011, { reply: true });
    expectHandlerError("rejected");
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("twenty failing handlers at once do not disturb each other or the healthy session", async () => {
    const clients = await Promise.all(
      Array.from({ length: 20 }, (_, i) => RawClient.open(server.port, i % 2 ? "/throw" : "/reject")),
    );
    for (const c of clients) await expectClose(c, 1011, { reply: true });
    expect(server.errors).toHaveLength(20);
    expect(server.errors.every((e) => e.kind === "handler" && e.error instanceof HandlerFailure)).toBe(true);
    await expectStillHealthy(server.port, healthy, watch);
  });
});

describe("handlers that never return", () => {
  it("the client can still close: its code is echoed, TCP closed, closeReason resolves", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/hang");
    const session = server.sessions[seen]!;
    await c.write(close(1001, "leaving"));
    await expectClose(c, 1001);
    const reason = await closeReasonWithin(session, 1500);
    expect(reason?.code).toBe(1001);
    expect(reason?.reason).toBe("leaving");
    expect(session.signal.aborted).toBe(true);
    expect(server.app.sessions.has(session)).toBe(false);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("the client can vanish: closeReason resolves with 1006", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/hang");
    const session = server.sessions[seen]!;
    c.reset();
    expect((await closeReasonWithin(session, 1500))?.code).toBe(1006);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("pings are still answered while the handler hangs", async () => {
    const c = await RawClient.open(server.port, "/hang");
    await c.write(Buffer.from([0x89, 0x84, 0, 0, 0, 0, 0x68, 0x61, 0x6e, 0x67])); // masked ping "hang"
    const f = await c.nextFrame();
    expect({ opcode: f.opcode, payload: f.payload.toString() }).toEqual({ opcode: 0xa, payload: "hang" });
    await c.write(close(1000));
    await expectClose(c, 1000);
    await expectStillHealthy(server.port, healthy, watch);
  });
});

describe("using the session after it closed", () => {
  it("send after the peer closed: the handler gets a SessionError (SESSION_CLOSED), nothing else happens", async () => {
    const c = await RawClient.open(server.port, "/send-after-close");
    await c.write(close(1000));
    await expectClose(c, 1000);
    await sleep(50);
    expect(server.sendErrors).toHaveLength(1);
    expect(server.sendErrors[0]).toBeInstanceOf(SessionError);
    expect((server.sendErrors[0] as SessionError).code).toBe("SESSION_CLOSED");
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("send after the handler's own close(): a SessionError, and only the Close frame goes out", async () => {
    const c = await RawClient.open(server.port, "/close-then-send");
    await expectClose(c, 1000, { reply: true });
    await sleep(50);
    expect(server.sendErrors).toHaveLength(1);
    expect(server.sendErrors[0]).toBeInstanceOf(SessionError);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("send on a session whose handler returned: rejects with HANDLER_RETURNED, nothing is sent", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/leak");
    const session = server.sessions[seen]!;
    await expectClose(c, 1000, { reply: true }); // the handler returned: close 1000
    const error = await session.send("from beyond").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe("HANDLER_RETURNED");
    expect(c.frames.map((f) => f.opcode)).toEqual([0x8]);
    expect(server.errors).toEqual([]);
    await expectStillHealthy(server.port, healthy, watch);
  });

  it("send while the Close handshake is in progress (before the peer answers) rejects too", async () => {
    const seen = server.sessions.length;
    const c = await RawClient.open(server.port, "/leak");
    const session = server.sessions[seen]!;
    await c.nextFrame(); // the server's Close 1000; we do not answer yet
    await expect(session.send("late")).rejects.toBeInstanceOf(SessionError);
    await c.write(close(1000));
    expect(await c.waitForTcpClose()).toBe(true);
    expect(c.frames.map((f) => f.opcode)).toEqual([0x8]);
    expect((await closeReasonWithin(session, 1500))?.code).toBe(1000);
    await expectStillHealthy(server.port, healthy, watch);
  });
});
