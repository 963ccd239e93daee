/**
 * The chat demo's server over real sockets (ws clients): rooms as topics, the JSON protocol, the
 * origin policy (403), names refused with 1008 and a reason, messages that cannot pass for system
 * lines, and members that stop reading closed (1008) without holding up the room.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ChatEvent } from "../../examples/chat/protocol.js";
import {
  type RunningChat,
  SLOW_MEMBER_LIMIT,
  type StartChatOptions,
  startChat,
} from "../../examples/chat/server.js";
import type { SessionHandle } from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { upgradeRequest } from "../helpers/http.js";
import { RawClient } from "../helpers/raw-client.js";
import { until, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

async function chat(options: StartChatOptions = {}): Promise<RunningChat & { port: number; ws: string }> {
  const running = await startChat({ host: "127.0.0.1", port: 0, deflate: false, ...options });
  onCleanup(() => running.stop(0));
  const port = Number(new URL(running.url).port);
  return { ...running, port, ws: running.url.replace(/^http/, "ws") };
}

/** A member as a browser page on `origin` would connect. */
function member(
  c: { ws: string; port: number },
  name: string,
  room = "lobby",
  origin = `http://127.0.0.1:${c.port}`,
) {
  const url = `${c.ws}/chat/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`;
  return new WsClient(url, ["chat.v2"], { origin });
}

const next = async (client: WsClient): Promise<ChatEvent> => JSON.parse(await client.nextText()) as ChatEvent;

/** The server's session of the member called `name`. */
function sessionOf(app: RunningChat["app"], name: string): SessionHandle {
  const found = [...app.sessions].find((s) => s.call.query.get("name") === name);
  if (!found) throw new Error(`no session for ${name}`);
  return found;
}

describe("chat rooms are topics", () => {
  it("joins, messages and leaves reach every member of the room (the sender too), and only them", async () => {
    const c = await chat();
    const alice = member(c, "alice");
    await alice.opened;
    expect(await next(alice)).toEqual({ type: "joined", room: "lobby", name: "alice" });
    const bob = member(c, "bob");
    const other = member(c, "carol", "kitchen");
    expect(await next(bob)).toEqual({ type: "joined", room: "lobby", name: "bob" });
    expect(await next(alice)).toEqual({ type: "joined", room: "lobby", name: "bob" });
    expect(await next(other)).toEqual({ type: "joined", room: "kitchen", name: "carol" });
    expect(c.app.subscriberCount("room:lobby")).toBe(2);

    await bob.send("hello ✓");
    const hello = { type: "message", room: "lobby", name: "bob", text: "hello ✓" };
    expect(await next(alice)).toEqual(hello);
    expect(await next(bob)).toEqual(hello);

    bob.close(1000, "bye");
    expect(await next(alice)).toEqual({ type: "left", room: "lobby", name: "bob" });
    await until(() => c.app.subscriberCount("room:lobby") === 1, 2000, "bob to leave the topic");
    expect(bob.messages.length).toBe(2); // bob heard neither his own leaving nor anything after it
    expect(other.messages.length).toBe(1); // kitchen heard nothing from the lobby
    const health = (await (await fetch(`${c.url}/health`)).json()) as unknown;
    expect(health).toEqual({ status: "ok", rooms: 2 });
  });

  it("a member that stops reading is closed with 1008 at its high-water mark; the others get everything", async () => {
    // No rate limit, so that one sender can fill the kernel's buffers (megabytes) in a few seconds.
    const c = await chat({ rate: false });
    const reader = member(c, "reader");
    expect((await next(reader)).type).toBe("joined");
    const slow = await RawClient.connect(c.port, "/chat/lobby?name=slow", {
      headers: { "Sec-WebSocket-Protocol": "chat.v2" },
    });
    await slow.nextData(); // its own join: it is in the room
    slow.socket.pause(); // and never reads again
    const slowSession = sessionOf(c.app, "slow");
    const sender = member(c, "sender");
    await sender.opened;
    const events = (client: WsClient) =>
      client.messages.map((m) => JSON.parse(m.data.toString()) as ChatEvent);
    const said = (client: WsClient) => events(client).filter((e) => e.type === "message").length;
    // Batches of 64 (about 70 KB), each sent once the last has come back: the members that read stay
    // far below the limit, while the kernel's buffers and then the session's fill up for the one that
    // does not.
    const text = "x".repeat(1000);
    let sent = 0;
    const deadline = Date.now() + 20_000;
    while (slowSession.isOpen) {
      if (Date.now() > deadline) throw new Error(`slow member still open after ${sent} messages`);
      await Promise.all(Array.from({ length: 64 }, () => sender.send(text)));
      sent += 64;
      await until(() => said(sender) === sent, 5000, "the sender's messages to come back");
    }
    // What it holds is bounded by the limit (plus the Close), however long the others go on.
    expect(slowSession.bufferedAmount).toBeLessThanOrEqual(SLOW_MEMBER_LIMIT + 2 * 1024);
    console.log("DBG", slowSession.state, c.app.subscriberCount("room:lobby"), sent, c.app.pubsub.stats);
    await until(() => c.app.subscriberCount("room:lobby") === 2, 2000, "the slow member to leave the topic");
    slow.socket.resume(); // reads what was queued before the close, then the Close itself
    expect(await slow.nextClose(5000)).toEqual({ code: 1008, reason: "Too slow for its subscriptions" });
    expect(slow.frames.filter((f) => f.opcode === 1).length).toBeLessThan(sent);
    // A page answers the Close once it reads it; then its handler ends and the room hears it left
    // (one that never answers leaves at the closing timeout).
    slow.sendClose(1008);
    // The reader got every message, and heard the slow member leave.
    await until(() => said(reader) === sent, 10_000, "every message at the reader");
    await until(() => events(reader).some((e) => e.type === "left"), 5000, "the slow member's leaving");
    expect(events(reader).filter((e) => e.type === "left")).toEqual([
      { type: "left", room: "lobby", name: "slow" },
    ]);
    expect(reader.ws.readyState).toBe(reader.ws.OPEN);
  });
});

describe("chat origin policy", () => {
  it("a page of another origin gets 403; the chat's own origins, and clients without Origin, get in", async () => {
    const c = await chat();
    const refused = [
      "http://evil.example",
      `http://127.0.0.1:${c.port + 1}`,
      `https://127.0.0.1:${c.port}`,
      `http://127.0.0.1.evil.example:${c.port}`,
      "null",
    ];
    for (const origin of refused) {
      const response = await upgradeRequest(c.port, "/chat/lobby?name=x", {
        Origin: origin,
        "Sec-WebSocket-Protocol": "chat.v2",
      });
      expect(response.status, origin).toBe(403);
    }
    expect(c.app.sessions.size).toBe(0);
    for (const origin of [
      `http://127.0.0.1:${c.port}`,
      `http://localhost:${c.port}`,
      `http://[::1]:${c.port}`,
    ]) {
      const page = member(c, "page", "lobby", origin);
      await within(page.opened, 3000, origin);
      expect((await next(page)).type).toBe("joined");
    }
    const tool = new WsClient(`${c.ws}/chat/lobby?name=cli`, ["chat.v2"]); // no Origin: not a browser
    expect(await next(tool)).toEqual({ type: "joined", room: "lobby", name: "cli" });
  });

  it("listed origins (CHAT_ORIGINS) replace the derived ones", async () => {
    const c = await chat({ origins: ["https://chat.example.com"] });
    expect(c.origins).toEqual(["https://chat.example.com"]);
    const own = await upgradeRequest(c.port, "/chat/lobby?name=x", {
      Origin: `http://127.0.0.1:${c.port}`,
      "Sec-WebSocket-Protocol": "chat.v2",
    });
    expect(own.status).toBe(403);
    const proxied = member(c, "p", "lobby", "https://chat.example.com");
    expect((await next(proxied)).type).toBe("joined");
  });
});

describe("chat names and messages", () => {
  it("a name or room with bidi, control or invisible characters is closed with 1008 and the reason; the room hears nothing", async () => {
    const c = await chat();
    const observer = member(c, "observer");
    expect((await next(observer)).type).toBe("joined");
    const refused: Array<[name: string, room: string, reason: string]> = [
      ["\u202Enimda", "lobby", "Name has control, bidi or invisible characters"],
      ["bob\u2066 joined", "lobby", "Name has control, bidi or invisible characters"],
      ["bob\u200F", "lobby", "Name has control, bidi or invisible characters"],
      ["bob\n* admin", "lobby", "Name has control, bidi or invisible characters"],
      ["bob\u0000", "lobby", "Name has control, bidi or invisible characters"],
      ["\u3164", "lobby", "Name has control, bidi or invisible characters"],
      ["", "lobby", "Name required"],
      ["b".repeat(33), "lobby", "Name too long (at most 32 characters)"],
      ["bob", "lob\u202Eby", "Room has control, bidi or invisible characters"],
    ];
    for (const [name, room, reason] of refused) {
      const client = member(c, name, room);
      expect(await within(client.closed, 3000, JSON.stringify(name)), JSON.stringify([name, room])).toEqual({
        code: 1008,
        reason,
      });
      expect(client.messages).toEqual([]);
    }
    const sentinel = member(c, "sentinel");
    expect(await next(observer)).toEqual({ type: "joined", room: "lobby", name: "sentinel" });
    expect(observer.messages.length).toBe(2); // its own join and the sentinel's: none of the refused
    expect(sentinel.messages.length).toBeLessThanOrEqual(1);
  });

  it("a message with line breaks or bidi controls stays one message event: it cannot forge a system line", async () => {
    const c = await chat();
    const alice = member(c, "alice");
    expect((await next(alice)).type).toBe("joined");
    const mallory = member(c, "mallory");
    expect((await next(alice)).type).toBe("joined");
    const forged =
      'hi\n* admin joined lobby\r\n{"type":"left","room":"lobby","name":"alice"}\u2028\u202Eevil';
    await mallory.send(forged);
    await mallory.send("end");
    expect(await next(alice)).toEqual({
      type: "message",
      room: "lobby",
      name: "mallory",
      text: 'hi * admin joined lobby {"type":"left","room":"lobby","name":"alice"} evil',
    });
    expect(await next(alice)).toEqual({ type: "message", room: "lobby", name: "mallory", text: "end" });
    expect(alice.messages.length).toBe(4);
  });

  it("an over-long, empty or binary message gets an error event, to its sender only", async () => {
    const c = await chat();
    const alice = member(c, "alice");
    expect((await next(alice)).type).toBe("joined");
    const bob = member(c, "bob");
    expect((await next(bob)).type).toBe("joined");
    expect((await next(alice)).type).toBe("joined");
    await bob.send("y".repeat(1001));
    expect(await next(bob)).toEqual({ type: "error", text: "Message too long (at most 1000 characters)" });
    await bob.send(" \n ");
    expect(await next(bob)).toEqual({ type: "error", text: "Empty message" });
    await bob.send(Buffer.from("bytes"));
    expect(await next(bob)).toEqual({ type: "error", text: "Text only" });
    await bob.send("ok");
    expect(await next(alice)).toEqual({ type: "message", room: "lobby", name: "bob", text: "ok" });
    expect(alice.messages.length).toBe(3); // nothing of bob's refused messages
  });

  it("a member over its message rate gets an error event for each message over it; the room gets the rest", async () => {
    let now = 1_000_000;
    const c = await chat({ rate: { burst: 3, perSecond: 2 }, now: () => now });
    const alice = member(c, "alice");
    expect((await next(alice)).type).toBe("joined");
    const bob = member(c, "bob");
    expect((await next(bob)).type).toBe("joined");
    expect((await next(alice)).type).toBe("joined");
    for (let i = 0; i < 5; i++) await bob.send(`m${i}`);
    for (let i = 0; i < 3; i++) expect(await next(alice)).toMatchObject({ type: "message", text: `m${i}` });
    const slowDown = { type: "error", text: "Too many messages: slow down" };
    const bobs = [];
    for (let i = 0; i < 5; i++) bobs.push(await next(bob));
    expect(bobs.filter((e) => e.type === "error")).toEqual([slowDown, slowDown]);
    now += 1000; // two more
    for (let i = 5; i < 8; i++) await bob.send(`m${i}`);
    expect(await next(alice)).toMatchObject({ text: "m5" });
    expect(await next(alice)).toMatchObject({ text: "m6" });
    const more = [await next(bob), await next(bob), await next(bob)];
    expect(more.filter((e) => e.type === "error")).toEqual([slowDown]);
    expect(alice.messages.length).toBe(2 + 5); // two joins, m0-m2, m5 and m6: nothing of the refused
  });
});
