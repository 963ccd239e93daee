// The example of README's "Testing your routes", as it is there.

import { expect, it } from "vitest";
import { createApp, PubSub, testApplication, WebSockets } from "../../src/index.js";

const app = createApp().install(WebSockets).install(PubSub);
app.routing((r) =>
  r.webSocket("/chat/{room}", async (session) => {
    const room = `room:${session.call.parameters.room}`;
    await session.subscribe(room);
    await session.send("joined");
    for await (const frame of session.incoming) if (frame.type === "text") app.publish(room, frame.text);
  }),
);

it("members of a room hear each other", () =>
  testApplication(app, async ({ client }) => {
    const alice = await client.webSocket("/chat/lobby");
    await alice.expectText("joined");
    await client.webSocket("/chat/lobby", {}, async (bob) => {
      await bob.expectText("joined");
      await alice.send("hi bob");
      await bob.expectText("hi bob", { timeout: 1000 });
    });
    await alice.expectText("hi bob"); // publish reaches the sender too
    await alice.close();
    await alice.expectClose(1000);
  }));

// Its HTTP example, on the same app.
app.routing((r) => r.post("/rooms", (call) => call.respondJson({ created: true }, 201)));

it("creates a room", () =>
  testApplication(app, async ({ client }) => {
    const res = await client.post("/rooms", { body: JSON.stringify({ name: "lobby" }) });
    expect(res.status).toBe(201);
    expect(res.json()).toEqual({ created: true });
    expect((await client.get("/nowhere")).status).toBe(404);
  }));
