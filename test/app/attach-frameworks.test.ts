import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startExpress } from "../../examples/attach/express.js";
import { startFastify } from "../../examples/attach/fastify.js";
import { createNodeServer } from "../../examples/attach/node-http.js";
import { type Application, createApp, WebSockets } from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { selfSignedCert } from "../helpers/tls.js";

afterEach(cleanup);

function echoApp(): Application {
  const app = createApp()
    .install(WebSockets, { pingPeriod: 0 })
    .onError(() => {});
  app.routing((r) => {
    r.webSocket("/ws/{room}", async (session) => {
      const room = session.call.parameters.room;
      for await (const frame of session.incoming) {
        if (frame.type === "text") await session.send(`${room}: ${frame.text}`);
      }
    });
  });
  onCleanup(() => app.stop({ grace: 0 }));
  return app;
}

/** Opens a ws client, sends one text, and resolves with the answer and the close code after closing. */
async function roundTrip(url: string, text: string, options: WebSocket.ClientOptions = {}) {
  const client = new WebSocket(url, options);
  await new Promise((resolve, reject) => client.once("open", resolve).once("error", reject));
  const answer = new Promise<string>((resolve) => client.once("message", (data) => resolve(String(data))));
  client.send(text);
  const reply = await answer;
  const closed = new Promise<number>((resolve) => client.once("close", resolve));
  client.close(1000);
  return { reply, code: await closed };
}

describe("attach to frameworks' servers (examples/attach)", () => {
  it("Express: WebSocket routes on app.listen()'s server, Express routes still answer", async () => {
    const { server, stop } = await startExpress();
    onCleanup(() => new Promise((resolve) => server.close(() => resolve(undefined))));
    onCleanup(stop);
    const { port } = server.address() as AddressInfo;

    expect(await roundTrip(`ws://127.0.0.1:${port}/ws/express`, "hi")).toEqual({
      reply: "express: hi",
      code: 1000,
    });
    const page = await fetch(`http://127.0.0.1:${port}/hello`);
    expect(page.status).toBe(200);
    expect(await page.text()).toBe("hello from express");
  });

  it("Fastify: WebSocket routes on fastify.server, Fastify routes still answer", async () => {
    const { fastify, stop } = await startFastify();
    onCleanup(() => fastify.close());
    onCleanup(stop);
    const { port } = fastify.server.address() as AddressInfo;

    expect(await roundTrip(`ws://127.0.0.1:${port}/ws/fastify`, "hey")).toEqual({
      reply: "fastify: hey",
      code: 1000,
    });
    const page = await fetch(`http://127.0.0.1:${port}/hello`);
    expect(await page.json()).toEqual({ from: "fastify" });
  });

  it("node:http: WebSocket routes beside the server's own request handler", async () => {
    const { server, stop } = createNodeServer();
    onCleanup(() => new Promise((resolve) => server.close(() => resolve(undefined))));
    onCleanup(stop);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;

    expect(await roundTrip(`ws://127.0.0.1:${port}/ws/plain`, "yo")).toEqual({
      reply: "plain: yo",
      code: 1000,
    });
    expect(await (await fetch(`http://127.0.0.1:${port}/anything`)).text()).toBe("hello from node:http\n");
  });
});

describe("listen with TLS", () => {
  it("serves wss:// and https:// from app.listen({ tls })", async () => {
    const { key, cert } = selfSignedCert("IP:127.0.0.1");
    const app = echoApp();
    app.routing((r) => r.get("/health", (call) => call.respondText("ok")));
    const { url, port } = await app.listen({ tls: { key, cert } });
    expect(url).toBe(`https://127.0.0.1:${port}`);

    expect(await roundTrip(`wss://127.0.0.1:${port}/ws/tls`, "secret", { ca: cert })).toEqual({
      reply: "tls: secret",
      code: 1000,
    });
    // A plaintext client on the TLS port gets no WebSocket.
    const plain = new WebSocket(`ws://127.0.0.1:${port}/ws/tls`);
    const failure = await new Promise<string>((resolve) => {
      plain.once("open", () => resolve("opened"));
      plain.once("error", () => resolve("error"));
    });
    expect(failure).toBe("error");
  });
});
