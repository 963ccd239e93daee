import { describe, expect, it } from "vitest";
import {
  type Application,
  CloseReason,
  createApp,
  ExpectationError,
  HandshakeError,
  PubSub,
  permessageDeflate,
  TestHostError,
  type TestTransport,
  testApplication,
  WebSockets,
} from "../../src/index.js";

/** A chat: each room a topic; what a member sends goes to every member of the room, as JSON. */
function chatApp(): Application {
  const app = createApp()
    .install(WebSockets)
    .install(PubSub)
    .onError(() => {});
  app.routing((r) => {
    r.webSocket(
      "/chat/{room}",
      {
        beforeUpgrade: (call) =>
          call.query.get("token") === "secret"
            ? { user: call.query.get("user") ?? "anon" }
            : call.reject(401, "Unauthorized\n"),
      },
      async (session) => {
        const room = `room:${session.call.parameters.room}`;
        await session.subscribe(room);
        await session.send(JSON.stringify({ joined: session.call.parameters.room }));
        for await (const frame of session.incoming) {
          if (frame.type === "text")
            app.publish(room, JSON.stringify({ from: session.data.user, text: frame.text }));
        }
      },
    );
    r.webSocket("/bye", async (session) => {
      await session.close(4001, "bye");
    });
    r.webSocket("/headers", async (session) => {
      await session.send(String(session.call.headers["x-dup"]));
    });
    r.webSocket("/echo", async (session) => {
      for await (const frame of session.incoming) await session.send(frame);
    });
  });
  return app;
}

for (const transport of ["memory", "tcp"] as TestTransport[]) {
  describe(`the test host (${transport})`, () => {
    it("two chat members hear each other through app.publish", async () => {
      await testApplication(
        chatApp(),
        async ({ client }) => {
          const alice = await client.webSocket("/chat/lobby?token=secret&user=alice");
          const bob = await client.webSocket("/chat/lobby?token=secret&user=bob");
          await alice.expectJson({ joined: "lobby" });
          await bob.expectJson({ joined: "lobby" });
          await alice.send("hi bob");
          await bob.expectJson({ from: "alice", text: "hi bob" });
          await alice.expectJson({ from: "alice", text: "hi bob" });
          await alice.close();
          expect((await alice.expectClose(1000)).code).toBe(1000);
          await bob.close();
          await bob.expectClose(1000);
        },
        { transport },
      );
    });

    it("the handler form closes with 1000 when it returns and resolves with its result", async () => {
      const result = await testApplication(
        chatApp(),
        ({ client }) =>
          client.webSocket("/echo", {}, async (s) => {
            await s.send(Buffer.from([1, 2, 3]));
            const echoed = await s.expectBinary(Buffer.from([1, 2, 3]));
            await s.send("text");
            await s.expectText(/^te/);
            return echoed.length;
          }),
        { transport },
      );
      expect(result).toBe(3);
    });

    it("a refused handshake shows its status and body", async () => {
      await testApplication(
        chatApp(),
        async ({ client }) => {
          const refusal = await client.expectRefused("/chat/lobby?token=wrong", 401);
          expect(refusal.body?.toString()).toBe("Unauthorized\n");
          const error = await client.webSocket("/nowhere").catch((e: unknown) => e);
          expect(error).toBeInstanceOf(HandshakeError);
          expect((error as HandshakeError).status).toBe(404);
          await expect(client.expectRefused("/echo")).rejects.toThrow(/it was accepted/);
        },
        { transport },
      );
    });

    it("a request head node:http has to read (a repeated header) is served too", async () => {
      await testApplication(
        chatApp(),
        ({ client }) =>
          client.webSocket("/headers", { headers: { "X-Dup": ["a", "b"] } }, async (s) => {
            await s.expectText("a, b");
            await s.expectClose(1000);
          }),
        { transport },
      );
    });

    it("permessage-deflate is negotiated and runs both ways", async () => {
      const app = createApp()
        .install(WebSockets, { extensions: [permessageDeflate()] })
        .routing((r) =>
          r.webSocket("/echo", async (session) => {
            for await (const frame of session.incoming) await session.send(frame);
          }),
        );
      await testApplication(
        app,
        ({ client }) =>
          client.webSocket("/echo", { permessageDeflate: true }, async (s) => {
            expect(s.session.extensions.map((e) => e.name)).toEqual(["permessage-deflate"]);
            const big = "sockway ".repeat(10_000);
            await s.send(big);
            await s.expectText(big);
          }),
        { transport },
      );
    });

    it("a session left open fails the test, naming its path, after closing it", async () => {
      const app = chatApp();
      let left: CloseReason | undefined;
      const run = testApplication(
        app,
        async ({ client }) => {
          const s = await client.webSocket("/echo");
          s.session.closeReason.then((r) => {
            left = r;
          });
        },
        { transport },
      );
      await expect(run).rejects.toThrow(TestHostError);
      await expect(run).rejects.toThrow(/left open at the end of the test: \/echo/);
      expect(left).toBeInstanceOf(CloseReason);
    });

    it("an expectation not met fails with a clear ExpectationError", async () => {
      await testApplication(
        chatApp(),
        async ({ client }) => {
          await client.webSocket("/echo", {}, async (s) => {
            await s.send("one");
            const wrong = await s.expectText("two").catch((e: unknown) => e);
            expect(wrong).toBeInstanceOf(ExpectationError);
            expect((wrong as Error).message).toBe('/echo: expected text "two", got text "one"');
            const late = await s.expectText("x", { timeout: 20 }).catch((e: unknown) => e);
            expect((late as Error).message).toBe('/echo: expected text "x", got nothing within 20 ms');
          });
          const bye = await client.webSocket("/bye");
          await expect(bye.expectClose(1000)).rejects.toThrow(
            "/bye: expected a close with 1000, got CloseReason(4001, bye)",
          );
        },
        { transport },
      );
    });

    it("a message received keeps its bytes when the server reuses the buffer it sent (as over TCP)", async () => {
      const reused = Buffer.alloc(64 * 1024, 0x61);
      const app = createApp()
        .install(WebSockets)
        .routing((r) =>
          r.webSocket("/reuse", async (session) => {
            await session.send(reused);
            await session.flush(); // written: the buffer is the server's to change again
            for await (const _ of session.incoming);
          }),
        );
      await testApplication(
        app,
        async ({ client }) => {
          await client.webSocket("/reuse", {}, async (s) => {
            const got = await s.expectBinary();
            reused.fill(0x62);
            expect(got.every((byte) => byte === 0x61)).toBe(true);
          });
        },
        { transport },
      );
    });
  });
}
