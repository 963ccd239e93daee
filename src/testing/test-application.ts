import { Buffer } from "node:buffer";
import type { IncomingMessage } from "node:http";
import { createServer } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Application } from "../app/index.js";
import { DirectRequest } from "../app/upgrade-gate.js";
import { type ClientOptions, type ClientSession, connect, connectOver } from "../client/index.js";
import { findHeadEnd, HandshakeError, readUpgradeHead } from "../protocol/index.js";
import { MemoryEnd, type MemorySocket, memorySockets } from "./memory-pair.js";
import { type HttpTarget, TestHttp, type TestHttpClient } from "./test-http.js";
import { ExpectationError, TestHostError, TestSession } from "./test-session.js";

/** How the test client reaches the application. */
export type TestTransport = "memory" | "tcp";

export interface TestApplicationOptions {
  /**
   * "memory" (default): an in-memory stream pair per connection, no port, no real I/O (fake timers
   * can drive everything). "tcp": the application listens on 127.0.0.1:0 and the client uses
   * `connect`, for the same test over a real socket.
   */
  transport?: TestTransport;
}

/**
 * The client of a test: opens sessions on the application under test, and sends HTTP requests to its
 * HTTP routes (`request`, `get`, `head`, `post`).
 */
export interface TestClient extends TestHttpClient {
  readonly transport: TestTransport;
  /**
   * Opens a session on `path` (with its query), with `connect`'s options. Without a handler, resolves
   * with the open session; the test closes it (one left open fails the test). With a handler, as
   * `connect`: its return closes with 1000, a throw with 1011, and the call resolves with what it
   * returned once the session has ended. A refused handshake rejects with the `HandshakeError`
   * (`status`, `headers`, `body`).
   */
  webSocket(path: string, options?: ClientOptions): Promise<TestSession>;
  webSocket<R>(
    path: string,
    options: ClientOptions,
    handler: (session: TestSession) => R | Promise<R>,
  ): Promise<Awaited<R>>;
  /**
   * Expects the handshake on `path` to be refused (with `status`, if given); resolves with the
   * `HandshakeError` (status, headers, body). An accepted handshake fails with an `ExpectationError`.
   */
  expectRefused(path: string, status?: number, options?: ClientOptions): Promise<HandshakeError>;
}

export interface TestContext {
  readonly client: TestClient;
  readonly app: Application;
}

/** The host the in-memory client pretends to reach (the Host header, `call.url`). */
const MEMORY_ORIGIN = "ws://sockway.test";

/**
 * Runs `body` against `app`: its real handshake, routing, plugins and codec, over in-memory streams
 * (or TCP with `{ transport: "tcp" }`). Resolves with what `body` returned. Rejects with what it
 * threw, or, when it returned with a client session still open, with a `TestHostError` naming the
 * paths of those sessions (they are closed first). Over TCP, the application listens for the test
 * and is stopped after it.
 */
export async function testApplication<R>(
  app: Application,
  body: (context: TestContext) => R | Promise<R>,
  options: TestApplicationOptions = {},
): Promise<Awaited<R>> {
  const transport = options.transport ?? "memory";
  if (transport !== "memory" && transport !== "tcp")
    throw new TestHostError(`testApplication: transport "memory" or "tcp", not ${JSON.stringify(transport)}`);
  const sessions: TestSession[] = [];
  let base = MEMORY_ORIGIN;
  let target: HttpTarget = {
    connect: () => {
      const [client, server] = memorySockets();
      serve(app, server);
      return new MemoryEnd(client);
    },
  };
  if (transport === "tcp") {
    const listening = await app.listen({ host: "127.0.0.1", port: 0 });
    base = listening.url.replace(/^http/, "ws");
    target = { host: "127.0.0.1", port: listening.port };
  } else app.pubsub.start();
  const http = new TestHttp(target);

  let ended = false;
  const open = async (path: string, clientOptions: ClientOptions = {}): Promise<TestSession> => {
    if (!path.startsWith("/")) throw new TestHostError(`testApplication: a path starts with "/": ${path}`);
    // Nobody would close it or see it left open.
    if (ended)
      throw new TestHostError(`testApplication: ${path}: the test has ended; open sessions from its body`);
    const url = `${base}${path}`;
    let session: ClientSession;
    let link: MemorySocket | undefined;
    if (transport === "tcp") session = await connect(url, clientOptions);
    else {
      const [client, server] = memorySockets();
      link = client;
      serve(app, server);
      session = await connectOver(client as unknown as Duplex, url, clientOptions);
    }
    const s = new TestSession(session, path, link);
    sessions.push(s);
    return s;
  };

  const client: TestClient = {
    transport,
    request: (path, requestOptions) => http.request(path, requestOptions),
    get: (path, requestOptions) => http.get(path, requestOptions),
    head: (path, requestOptions) => http.head(path, requestOptions),
    post: (path, requestOptions) => http.post(path, requestOptions),
    webSocket: (async (
      path: string,
      clientOptions?: ClientOptions,
      handler?: (session: TestSession) => unknown,
    ): Promise<unknown> => {
      const s = await open(path, clientOptions);
      if (handler === undefined) return s;
      let result: unknown;
      let failure: { error: unknown } | undefined;
      try {
        result = await handler(s);
      } catch (error) {
        failure = { error };
      }
      s.session.handlerFinished(
        failure === undefined ? undefined : (failure.error ?? new Error("the handler threw undefined")),
      );
      await s.session.closeReason;
      if (failure !== undefined) throw failure.error;
      return result;
    }) as TestClient["webSocket"],
    async expectRefused(path, status, clientOptions) {
      let s: TestSession;
      try {
        s = await open(path, clientOptions);
      } catch (error) {
        if (!(error instanceof HandshakeError) || error.status === 0) throw error;
        if (status !== undefined && error.status !== status)
          throw new ExpectationError(
            `${path}: expected the handshake refused with ${status}, got ${error.status}: ${error.message}`,
          );
        return error;
      }
      s.session.terminate();
      throw new ExpectationError(
        `${path}: expected the handshake refused${status === undefined ? "" : ` with ${status}`}, it was accepted`,
      );
    },
  };

  let outcome: { value: Awaited<R> } | { error: unknown };
  try {
    outcome = { value: await body({ client, app }) };
  } catch (error) {
    outcome = { error };
  }
  ended = true;
  const leftOpen = sessions.filter((s) => s.session.state !== "closed");
  if (leftOpen.length > 0) {
    for (const s of leftOpen) s.session.terminate();
    await Promise.all(leftOpen.map((s) => s.session.closeReason));
  }
  const unanswered = http.close();
  if (transport === "tcp") await app.stop({ grace: 0 });
  if ("error" in outcome) throw outcome.error;
  if (unanswered.length > 0)
    throw new TestHostError(
      `testApplication: ${unanswered.length === 1 ? "a request was" : `${unanswered.length} requests were`} still waiting for an answer at the end of the test: ${unanswered.join(", ")} (await each request; it fails after its \`timeout\`)`,
    );
  if (leftOpen.length > 0)
    throw new TestHostError(
      `testApplication: ${leftOpen.length === 1 ? "a session was" : `${leftOpen.length} sessions were`} left open at the end of the test: ${leftOpen.map((s) => s.path).join(", ")} (close each with \`await s.close()\` and \`await s.expectClose()\`, or open it with a handler)`,
    );
  return outcome.value;
}

/**
 * @internal
 * The server's side of one in-memory connection: reads the request head as the upgrade gate does
 * and gives a plain WebSocket upgrade to `app.handleUpgrade`; anything else goes to node:http (as on
 * a listening application), which answers HTTP requests with `app.handleRequest`.
 */
export function serve(app: Application, socket: MemorySocket): void {
  let bytes: Buffer | undefined;
  const onData = (chunk: Buffer) => {
    bytes = bytes === undefined ? chunk : Buffer.concat([bytes, chunk]);
    const end = findHeadEnd(bytes);
    if (end < 0) return;
    socket.off("data", onData);
    socket.readableFlowing = null; // not reading until the session (or node:http) listens
    const text = end > 0 ? bytes.toString("latin1", 0, end - 4) : undefined;
    const head = text === undefined ? undefined : readUpgradeHead(text, bytes);
    if (head === undefined || text === undefined) {
      // node:http needs a real stream: it gets one over this socket, with the head put back.
      const server = createServer(app.handleRequest);
      server.on("upgrade", app.handleUpgrade);
      const stream = new MemoryEnd(socket);
      stream.unshift(bytes);
      server.emit("connection", stream);
      return;
    }
    const req = new DirectRequest(head, text, socket as unknown as Socket);
    app.handleUpgrade(req as unknown as IncomingMessage, socket as unknown as Duplex, bytes.subarray(end));
  };
  socket.on("data", onData);
}
