import { afterEach, describe, expect, it } from "vitest";
import {
  type Application,
  createApp,
  PubSub,
  type PubSubOptions,
  type Route,
  type SessionHandle,
  UsageError,
} from "../../src/index.js";
import { cleanup } from "../helpers/cleanup.js";
import { until } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import { startPubSub } from "./pubsub-app.js";

afterEach(cleanup);

/** A route that subscribes to `/t/{topic}` and publishes what it receives, except to itself. */
function chatRoute(r: Route<"">, app: Application, sessions: SessionHandle[] = []) {
  r.webSocket("/t/{topic}", async (session) => {
    const topic = session.call.parameters.topic!;
    sessions.push(session);
    await session.subscribe(topic);
    await session.send(`joined ${topic}`);
    for await (const m of session.incoming) {
      if (m.type === "text" && m.text === "leave") session.unsubscribe(topic);
      else app.publish(topic, m.type === "text" ? m.text : m.data, { except: session });
    }
  });
}

describe("topics in one process", () => {
  it("delivers to every subscriber but the excepted one, in publish order", async () => {
    const { app, wsUrl } = await startPubSub((r, app) => chatRoute(r, app));
    const a = await WsClient.open(`${wsUrl}/t/room`);
    const b = await WsClient.open(`${wsUrl}/t/room`);
    const c = await WsClient.open(`${wsUrl}/t/other`);
    for (const x of [a, b, c]) expect(await x.nextText()).toMatch(/^joined/);
    expect(app.subscriberCount("room")).toBe(2);
    expect(app.subscriberCount("other")).toBe(1);
    for (let i = 0; i < 50; i++) await a.send(`m${i}`);
    for (let i = 0; i < 50; i++) expect(await b.nextText()).toBe(`m${i}`);
    const result = app.publish("room", "from the app");
    expect(result).toEqual({ delivered: 2, dropped: 0, closed: 0 });
    expect(await a.nextText()).toBe("from the app");
    expect(await b.nextText()).toBe("from the app");
    expect(c.messages.length).toBe(1); // only "joined"
    expect(a.messages.length).toBe(2); // its own 50 were not echoed
  });

  it("sends bytes as binary and text as text", async () => {
    const { app, wsUrl } = await startPubSub((r, app) => chatRoute(r, app));
    const a = await WsClient.open(`${wsUrl}/t/x`);
    await a.nextText();
    app.publish("x", new Uint8Array([1, 2, 3]));
    app.publish("x", new Uint16Array([0x0201]).buffer);
    const m1 = await a.next();
    expect(m1.isBinary).toBe(true);
    expect([...m1.data]).toEqual([1, 2, 3]);
    const m2 = await a.next();
    expect([...m2.data]).toEqual([1, 2]);
  });

  it("unsubscribes on unsubscribe() and when the session ends; counts follow", async () => {
    const sessions: SessionHandle[] = [];
    const { app, wsUrl } = await startPubSub((r, app) => chatRoute(r, app, sessions));
    const a = await WsClient.open(`${wsUrl}/t/room`);
    const b = await WsClient.open(`${wsUrl}/t/room`);
    await a.nextText();
    await b.nextText();
    expect(sessions[0]!.isSubscribed("room")).toBe(true);
    expect(sessions[0]!.topics).toEqual(["room"]);
    await a.send("leave");
    await until(() => app.subscriberCount("room") === 1, 2000, "count of room");
    expect(sessions[0]!.isSubscribed("room")).toBe(false);
    expect(sessions[0]!.topics).toEqual([]);
    expect(sessions[0]!.unsubscribe("room")).toBe(false);
    b.close();
    await b.closed;
    await until(() => app.subscriberCount("room") === 0, 2000, "count of room");
    expect(app.pubsub.topics()).toEqual([]);
    expect(app.publish("room", "nobody")).toEqual({ delivered: 0, dropped: 0, closed: 0 });
  });

  it("a session that starts closing leaves its topics at once", async () => {
    const sessions: SessionHandle[] = [];
    const { app, wsUrl } = await startPubSub((r) =>
      r.webSocket("/s", async (session) => {
        sessions.push(session);
        session.subscribe("a");
        session.subscribe("b");
        for await (const _ of session.incoming);
      }),
    );
    const c = await WsClient.open(`${wsUrl}/s`);
    await until(() => app.subscriberCount("b") === 1, 2000, "count of b");
    const closing = sessions[0]!.close(1000);
    expect(app.subscriberCount("a")).toBe(0);
    expect(app.subscriberCount("b")).toBe(0);
    expect(sessions[0]!.topics).toEqual([]);
    // Subscribing once closing does nothing.
    await sessions[0]!.subscribe("c");
    expect(app.subscriberCount("c")).toBe(0);
    await closing;
    await c.closed;
  });

  it("validates topics and limits with typed errors", async () => {
    const sessions: SessionHandle[] = [];
    const { app, wsUrl } = await startPubSub(
      (r) =>
        r.webSocket("/s", async (session) => {
          sessions.push(session);
          for await (const _ of session.incoming);
        }),
      { maxTopicLength: 8, maxSubscriptionsPerSession: 2, maxPublicationSize: 4 },
    );
    await WsClient.open(`${wsUrl}/s`);
    await until(() => sessions.length === 1, 2000, "the session");
    const s = sessions[0]!;
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as UsageError).code;
      }
      return "no error";
    };
    expect(code(() => s.subscribe(""))).toBe("INVALID_TOPIC");
    expect(code(() => s.subscribe("123456789"))).toBe("INVALID_TOPIC");
    expect(code(() => s.subscribe("ééééé"))).toBe("INVALID_TOPIC"); // 10 bytes
    expect(code(() => s.subscribe(7 as unknown as string))).toBe("INVALID_TOPIC");
    s.subscribe("12345678");
    s.subscribe("b");
    s.subscribe("b"); // already: not counted twice
    expect(code(() => s.subscribe("c"))).toBe("TOO_MANY_SUBSCRIPTIONS");
    expect(code(() => app.publish("", "x"))).toBe("INVALID_TOPIC");
    expect(code(() => app.publish("b", "12345"))).toBe("PUBLICATION_TOO_LARGE");
    expect(code(() => app.publish("b", {} as unknown as string))).toBe("INVALID_FRAME");
    expect(app.publish("b", "1234").delivered).toBe(1);
  });

  it("rejects bad PubSub options with AppError INVALID_OPTION", () => {
    const bad: PubSubOptions[] = [
      { slowSubscriber: "kill" as "drop" },
      { slowCloseCode: 1005 },
      { maxTopicLength: 0 },
      { maxTopicLength: 70_000 },
      { maxSubscriptionsPerSession: 1.5 },
      { maxPublicationSize: -1 },
      { adapter: {} as never },
    ];
    for (const options of bad) {
      expect(() => createApp().install(PubSub, options)).toThrowError(
        expect.objectContaining({ code: "INVALID_OPTION" }),
      );
    }
  });
});
