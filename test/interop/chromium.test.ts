/**
 * Interop with headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core): the chat example
 * in two pages (join, broadcast, leave with 1000, rejoin; what a user types rendered as text in a message
 * line, never as markup or as a system line; a refused name's close code and reason on the page), and a
 * raw `new WebSocket(url)` against an echo route. Chromium offers permessage-deflate: the chat runs once
 * without it and once with it negotiated.
 */
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningChat, startChat } from "../../examples/chat/server.js";
import { useChromium } from "./browser.js";
import { type EchoServer, patternBytes, startEchoApp, within } from "./echo-app.js";

const TIMEOUT = 30_000;
const MIB = 1024 * 1024;

const browser = useChromium(TIMEOUT);

/** Text of every item in the page's message list. */
const messagesOf = (page: Page) => page.locator("#messages li").allTextContents();
const statusOf = (page: Page) => page.locator("#status").textContent();

describe.each([
  { deflate: false, status: "connected (chat.v2, no extensions)" },
  { deflate: true, status: "connected (chat.v2, permessage-deflate)" },
])(
  "Chromium ↔ sockway chat example (deflate: $deflate)",
  { timeout: TIMEOUT },
  ({ deflate, status: CONNECTED }) => {
    let chat: RunningChat;
    let base: string;
    let context: BrowserContext;

    beforeAll(async () => {
      chat = await startChat({ deflate, host: "127.0.0.1", port: 0 });
      base = chat.url;
      context = await browser().newContext();
    }, TIMEOUT);

    afterAll(async () => {
      await context?.close();
      await chat?.stop(1000);
    }, TIMEOUT);

    it("serves its page and static files", async () => {
      const page = await fetch(`${base}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("<title>sockway chat</title>");
      const script = await fetch(`${base}/static/chat.js`);
      expect(script.status).toBe(200);
      expect(script.headers.get("content-type")).toContain("javascript");
    });

    async function openChat(): Promise<Page> {
      const page = await context.newPage();
      await page.goto(`${base}/`);
      expect(await page.title()).toBe("sockway chat");
      return page;
    }

    async function join(page: Page, name: string, room: string): Promise<void> {
      await page.fill("#name", name);
      await page.fill("#room", room);
      await page.click("#connect");
      await expect.poll(() => statusOf(page), { timeout: 5000 }).toBe(CONNECTED);
    }

    async function say(page: Page, text: string): Promise<void> {
      await page.fill("#text", text);
      await page.click("#say");
    }

    it("two pages chat in one room, leave with 1000, rejoin and chat again", async () => {
      const alice = await openChat();
      const bob = await openChat();

      await join(alice, "alice", "lobby");
      await expect.poll(() => messagesOf(alice)).toEqual(["* alice joined lobby"]);
      await join(bob, "bob", "lobby");
      await expect.poll(() => messagesOf(bob)).toEqual(["* bob joined lobby"]);
      await expect.poll(() => messagesOf(alice)).toEqual(["* alice joined lobby", "* bob joined lobby"]);

      await say(bob, "hello");
      await expect.poll(() => messagesOf(bob)).toEqual(["* bob joined lobby", "bob: hello"]);
      await expect
        .poll(() => messagesOf(alice))
        .toEqual(["* alice joined lobby", "* bob joined lobby", "bob: hello"]);

      await say(alice, "hi bob ✓");
      await expect
        .poll(() => messagesOf(bob))
        .toEqual(["* bob joined lobby", "bob: hello", "alice: hi bob ✓"]);

      // Leave: the page closes with 1000 "bye"; sockway echoes 1000.
      await bob.click("#leave");
      await expect.poll(() => statusOf(bob), { timeout: 5000 }).toBe("closed (1000)");
      await expect
        .poll(() => messagesOf(alice))
        .toEqual([
          "* alice joined lobby",
          "* bob joined lobby",
          "bob: hello",
          "alice: hi bob ✓",
          "* bob left",
        ]);

      // Rejoin (a new WebSocket) and talk again.
      await bob.click("#connect");
      await expect.poll(() => statusOf(bob), { timeout: 5000 }).toBe(CONNECTED);
      await say(bob, "back again");
      await expect
        .poll(() => messagesOf(bob))
        .toEqual([
          "* bob joined lobby",
          "bob: hello",
          "alice: hi bob ✓",
          "* bob joined lobby",
          "bob: back again",
        ]);
      await expect
        .poll(() => messagesOf(alice))
        .toEqual([
          "* alice joined lobby",
          "* bob joined lobby",
          "bob: hello",
          "alice: hi bob ✓",
          "* bob left",
          "* bob joined lobby",
          "bob: back again",
        ]);
      expect(await statusOf(alice)).toBe(CONNECTED);
      const health = (await (await fetch(`${base}/health`)).json()) as unknown;
      expect(health).toEqual({ status: "ok", rooms: 1 });

      await alice.close();
      await bob.close();
    });

    it("what a user sends is shown as text in one message line: no markup, no system line", async () => {
      const alice = await openChat();
      const bob = await openChat();
      await join(alice, "alice", "forge");
      await join(bob, "bob", "forge");
      await expect.poll(() => messagesOf(alice)).toEqual(["* alice joined forge", "* bob joined forge"]);
      // Straight onto bob's socket: the page's text input would drop the line breaks itself.
      const forged = `<img src=x onerror="document.title='pwned'">\n* alice left\r\n\u202Eevil`;
      await bob.evaluate(`socket.send(${JSON.stringify(forged)})`);
      await say(bob, "<b>bold?</b>");
      const shown = [
        `bob: <img src=x onerror="document.title='pwned'"> * alice left evil`,
        "bob: <b>bold?</b>",
      ];
      await expect.poll(() => alice.locator("#messages li.message").allTextContents()).toEqual(shown);
      expect(await alice.locator("#messages li.system").allTextContents()).toEqual([
        "* alice joined forge",
        "* bob joined forge",
      ]);
      expect(await alice.locator("#messages li.message bdi.name").allTextContents()).toEqual(["bob", "bob"]);
      expect(await alice.locator("#messages img, #messages b").count()).toBe(0);
      expect(await alice.title()).toBe("sockway chat");
      await alice.close();
      await bob.close();
    });

    it("a name with a bidi override is refused: the page shows the close code and the reason", async () => {
      const page = await openChat();
      await page.fill("#name", "\u202Enimda");
      await page.fill("#room", "lobby");
      await page.click("#connect");
      await expect
        .poll(() => statusOf(page), { timeout: 5000 })
        .toBe("closed (1008: Name has control, bidi or invisible characters)");
      expect(await messagesOf(page)).toEqual([]);
      await page.close();
    });
  },
);

/**
 * Runs in the page: opens `url`, echoes a text, a binary (ArrayBuffer) and two 1 MiB messages, closes
 * with 1000 "done", and reports what came back (binary as base64). A string, since the project's types
 * have no DOM.
 */
const PAGE_ECHO = `async ({ url, big }) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const queue = [];
  const waiters = [];
  ws.onmessage = (e) => { const w = waiters.shift(); if (w) w(e.data); else queue.push(e.data); };
  const closed = new Promise((resolve) => {
    ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
  });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("WebSocket error"));
  });
  const next = () => (queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));
  const describe = (data) => {
    if (typeof data === "string") return { type: "text", text: data };
    const bytes = new Uint8Array(data);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { type: data instanceof ArrayBuffer ? "arraybuffer" : typeof data, base64: btoa(s) };
  };
  const pattern = (size, seed) => {
    const out = new Uint8Array(size);
    for (let i = 0; i < size; i++) out[i] = (i * 31 + seed + Math.floor(i / 251)) & 0xff;
    return out;
  };
  const results = { protocol: ws.protocol, extensions: ws.extensions };
  ws.send("hello from chromium ✓ 😀");
  results.text = describe(await next());
  ws.send(Uint8Array.from({ length: 256 }, (_, i) => i).buffer);
  results.binary = describe(await next());
  ws.send(pattern(big, 5).buffer);
  results.bigBinary = describe(await next());
  ws.send("é".repeat(big / 2));
  results.bigText = describe(await next());
  ws.close(1000, "done");
  results.close = await closed;
  return results;
}`;

interface PageEchoResults {
  protocol: string;
  extensions: string;
  text: { type: string; text?: string };
  binary: { type: string; base64?: string };
  bigBinary: { type: string; base64?: string };
  bigText: { type: string; text?: string };
  close: { code: number; reason: string; wasClean: boolean };
}

describe("Chromium raw WebSocket ↔ sockway echo", { timeout: TIMEOUT }, () => {
  let server: EchoServer;
  let context: BrowserContext;

  beforeAll(async () => {
    server = await startEchoApp({ maxFrameSize: 4 * MIB });
    context = await browser().newContext();
  }, TIMEOUT);

  afterAll(async () => {
    await context?.close();
    await server?.stop();
  }, TIMEOUT);

  it("echoes text, ArrayBuffer and 1 MiB messages, without deflate, and closes cleanly", async () => {
    const page = await context.newPage();
    const session = server.nextSession();
    const run = page.evaluate(
      `(${PAGE_ECHO})(${JSON.stringify({ url: `${server.wsBase}/echo`, big: MIB })})`,
    );
    const s = await within(session, 10_000, "the session");
    const results = (await run) as PageEchoResults;

    expect(String(s.call.headers["sec-websocket-extensions"])).toContain("permessage-deflate");
    expect(s.extensions).toEqual([]);
    expect(results.protocol).toBe("");
    expect(results.extensions).toBe("");
    expect(results.text).toEqual({ type: "text", text: "hello from chromium ✓ 😀" });
    expect(results.binary).toEqual({
      type: "arraybuffer",
      base64: Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString("base64"),
    });
    expect(results.bigBinary.type).toBe("arraybuffer");
    const bigBinary = Buffer.from(results.bigBinary.base64 ?? "", "base64");
    expect(bigBinary.length).toBe(MIB);
    expect(bigBinary.equals(patternBytes(MIB, 5))).toBe(true);
    expect(results.bigText.type).toBe("text");
    expect(results.bigText.text?.length).toBe(MIB / 2);
    expect(results.bigText.text === "é".repeat(MIB / 2)).toBe(true);
    expect(results.close).toEqual({ code: 1000, reason: "", wasClean: true });
    expect(await within(s.closeReason, 5000, "the session's closeReason")).toMatchObject({
      code: 1000,
      reason: "done",
    });
    await page.close();
  });
});
