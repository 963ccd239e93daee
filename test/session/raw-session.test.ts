import { afterEach, describe, expect, it } from "vitest";
import { Frame, type RawWebSocketSession } from "../../src/index.js";
import { Opcode } from "../../src/protocol/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { closePayload, RawClient } from "../helpers/raw-client.js";
import { deferred, delay, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

type Seen = Array<[type: string, fin: boolean, payload: string]>;

/** A raw route at /raw that records every frame `incoming` yields until it ends. */
async function recordingApp(options: { autoPong?: boolean; pingPeriod?: number } = {}) {
  const seen: Seen = [];
  const done = deferred<Seen>();
  const session = deferred<RawWebSocketSession>();
  const started = await startApp(
    (r) => {
      const handler = async (s: RawWebSocketSession) => {
        session.resolve(s);
        for await (const frame of s.incoming) {
          seen.push([frame.type, frame.fin, frame.data.toString("latin1")]);
        }
        done.resolve(seen);
      };
      if (options.autoPong === undefined) r.webSocketRaw("/raw", handler);
      else r.webSocketRaw("/raw", { autoPong: options.autoPong }, handler);
    },
    options.pingPeriod === undefined ? {} : { pingPeriod: options.pingPeriod, timeout: 100 },
  );
  return { ...started, seen, done: done.promise, session: session.promise };
}

describe("raw session", () => {
  it("receives fragments as separate frames, control frames in between, and the close frame", async () => {
    const app = await recordingApp();
    const client = await RawClient.connect(app.port, "/raw");
    client.send(Opcode.Text, "Hel", { fin: false });
    client.send(Opcode.Continuation, "lo", { fin: false });
    client.send(Opcode.Ping, "p");
    client.send(Opcode.Continuation, "!", { fin: true });
    client.send(Opcode.Pong, "q");
    client.send(Opcode.Binary, Buffer.from([7, 8]));
    client.sendClose(1000, "bye");
    expect(await within(app.done, 2000, "the handler")).toEqual([
      ["text", false, "Hel"],
      ["continuation", false, "lo"],
      ["ping", true, "p"],
      ["continuation", true, "!"],
      ["pong", true, "q"],
      ["binary", true, "\x07\x08"],
      ["close", true, closePayload(1000, "bye").toString("latin1")],
    ]);
    expect(await client.nextClose()).toEqual({ code: 1000, reason: "" }); // the echo still happens
    expect(app.errors).toEqual([]);
  });

  it("does not answer pings by default", async () => {
    const app = await recordingApp();
    const client = await RawClient.connect(app.port, "/raw");
    client.send(Opcode.Ping, "anyone?");
    await delay(150);
    expect(client.frames).toEqual([]);
    expect(app.seen).toEqual([["ping", true, "anyone?"]]);
  });

  it("answers pings when the route sets autoPong: true", async () => {
    const app = await recordingApp({ autoPong: true });
    const client = await RawClient.connect(app.port, "/raw");
    client.send(Opcode.Ping, "anyone?");
    const pong = await client.next();
    expect([pong.opcode, pong.payload.toString()]).toEqual([Opcode.Pong, "anyone?"]);
  });

  it("sends no keepalive pings even when the plugin's pingPeriod is set", async () => {
    const app = await recordingApp({ pingPeriod: 30 });
    const client = await RawClient.connect(app.port, "/raw");
    await delay(200);
    expect(client.frames).toEqual([]);
    expect((await app.session).pingPeriod).toBe(0);
  });

  it("can answer a ping itself with a pong frame", async () => {
    const { port } = await startApp((r) => {
      r.webSocketRaw("/raw", async (session) => {
        for await (const frame of session.incoming) {
          if (frame.type === "ping") await session.send(Frame.pong(frame.data));
        }
      });
    });
    const client = await RawClient.connect(port, "/raw");
    client.send(Opcode.Ping, "mine");
    const pong = await client.next();
    expect([pong.opcode, pong.payload.toString()]).toEqual([Opcode.Pong, "mine"]);
  });

  it("can send its own fragments, which a client reassembles", async () => {
    const handler = async (session: RawWebSocketSession) => {
      await session.send(Frame.text("Hel", false));
      await session.send(Frame.continuation("lo", false));
      await session.send(Frame.ping("between"));
      await session.send(Frame.continuation(", raw!", true));
    };
    const { port, wsUrl } = await startApp((r) => r.webSocketRaw("/raw", handler));

    const raw = await RawClient.connect(port, "/raw");
    const frames = [];
    for (let i = 0; i < 5; i++) frames.push(await raw.next());
    const summary = frames.map((f) => [f.opcode, f.fin, f.payload.toString()]);
    // The ping may overtake queued data frames (§5.4); data frames keep their order.
    expect(summary.filter(([opcode]) => opcode !== Opcode.Ping)).toEqual([
      [Opcode.Text, false, "Hel"],
      [Opcode.Continuation, false, "lo"],
      [Opcode.Continuation, true, ", raw!"],
      [Opcode.Close, true, closePayload(1000).toString()],
    ]);
    expect(summary.filter(([opcode]) => opcode === Opcode.Ping)).toEqual([[Opcode.Ping, true, "between"]]);

    const ws = await WsClient.open(`${wsUrl}/raw`);
    expect(await ws.nextText()).toBe("Hello, raw!");
  });

  it("still enforces the protocol: an unmasked frame closes with 1002", async () => {
    const app = await recordingApp();
    const client = await RawClient.connect(app.port, "/raw");
    client.sendText("bare", { mask: false });
    expect((await client.nextClose()).code).toBe(1002);
    expect(await within(app.done, 2000, "incoming to end")).toEqual([]);
    expect(app.errors.map((e) => e.kind)).toEqual(["protocol"]);
  });
});
