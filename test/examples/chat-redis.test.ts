/**
 * Two chat processes sharing rooms through a real redis-server (REDIS_URL mode): the built demo is
 * started twice as child processes, and two Chromium pages, one on each, chat in the same room both
 * ways. Each page must see the other's join and messages exactly once, and its own once.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ChatEvent } from "../../examples/chat/protocol.js";
import { startChat } from "../../examples/chat/server.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { startRedisServer } from "../helpers/redis-server.js";
import { until, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import { useChromium } from "../interop/browser.js";

const TIMEOUT = 60_000;
const repo = fileURLToPath(new URL("../../", import.meta.url));

afterEach(cleanup);
const browser = useChromium(TIMEOUT);

// Built as `npm run build` builds it, into a directory of its own (dist/ may be in use by others).
let built: string | undefined;
beforeAll(async () => {
  mkdirSync(`${repo}.cache`, { recursive: true });
  const out = mkdtempSync(`${repo}.cache/chat-redis-`);
  built = out;
  const tsc = `${repo}node_modules/typescript/bin/tsc`;
  await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { cwd: repo });
}, TIMEOUT);
afterAll(() => {
  if (built) rmSync(built, { recursive: true, force: true });
});

interface ChatProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

/** `node <built>/examples/chat/server.js` with PORT=0 and REDIS_URL; resolves once it prints its address. */
async function startChatProcess(redisUrl: string): Promise<ChatProcess> {
  const child = spawn(process.execPath, [`${built}/examples/chat/server.js`], {
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", REDIS_URL: redisUrl },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onCleanup(() => child.kill("SIGKILL"));
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await within(
    new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /chat at (http:\/\/[^/\s]+)\//.exec(output);
        if (match && output.includes("rooms shared through Redis")) resolve(match[1]!);
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      void exited.then((code) => reject(new Error(`chat exited with ${code}:\n${output}`)));
    }),
    15_000,
    "the chat process to listen",
  );
  return { child, url, output: () => output, exited };
}

const messagesOf = (page: Page) => page.locator("#messages li").allTextContents();
const CONNECTED = /^connected \(chat\.v2/;

async function join(page: Page, base: string, name: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.fill("#name", name);
  await page.fill("#room", "lobby");
  await page.click("#connect");
  await expect.poll(() => page.locator("#status").textContent(), { timeout: 5000 }).toMatch(CONNECTED);
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.click("#say");
}

describe("chat over Redis: two processes, one room", { timeout: TIMEOUT }, () => {
  it("pages on different processes chat both ways and see each line exactly once", async () => {
    const redis = await startRedisServer();
    const one = await startChatProcess(redis.url);
    const two = await startChatProcess(redis.url);
    expect(one.url).not.toBe(two.url);
    const context = await browser().newContext();
    onCleanup(() => context.close());
    const alice = await context.newPage();
    const bob = await context.newPage();

    await join(alice, one.url, "alice");
    await expect.poll(() => messagesOf(alice)).toEqual(["* alice joined lobby"]);
    await join(bob, two.url, "bob");
    await expect.poll(() => messagesOf(alice)).toEqual(["* alice joined lobby", "* bob joined lobby"]);

    await say(bob, "hello from two");
    await expect.poll(() => messagesOf(alice)).toContain("bob: hello from two");
    await say(alice, "hello from one");
    await expect.poll(() => messagesOf(bob)).toContain("alice: hello from one");
    // A line delivered twice (locally and again as its own echo through Redis, say) breaks the exact
    // lists below; its copy would come before the lines sent after it, which they wait for.
    await say(bob, "bye from two");
    await expect.poll(() => messagesOf(alice)).toContain("bob: bye from two");
    await say(alice, "bye from one");
    await expect.poll(() => messagesOf(bob)).toContain("alice: bye from one");

    const conversation = [
      "bob: hello from two",
      "alice: hello from one",
      "bob: bye from two",
      "alice: bye from one",
    ];
    await expect.poll(() => messagesOf(bob)).toEqual(["* bob joined lobby", ...conversation]);
    // Polled too: bob's page may show alice's line (through Redis) before her own page does.
    await expect
      .poll(() => messagesOf(alice))
      .toEqual(["* alice joined lobby", "* bob joined lobby", ...conversation]);

    // Each process counts only its own members' room.
    for (const p of [one, two])
      expect(await (await fetch(`${p.url}/health`)).json()).toEqual({ status: "ok", rooms: 1 });

    // bob leaves: alice, on the other process, hears it.
    await bob.click("#leave");
    await expect
      .poll(() => messagesOf(alice))
      .toEqual(["* alice joined lobby", "* bob joined lobby", ...conversation, "* bob left"]);

    // bob back, then his process stops: its shutdown closes bob with 1001, and the "left" published
    // then still reaches alice through Redis before the process lets go of Redis and exits by itself
    // (nothing left open).
    await bob.click("#connect");
    const before = ["* alice joined lobby", "* bob joined lobby", ...conversation, "* bob left"];
    await expect.poll(() => messagesOf(alice)).toEqual([...before, "* bob joined lobby"]);
    two.child.kill("SIGTERM");
    expect(await within(two.exited, 10_000, "process two to exit"), two.output()).toBe(0);
    await expect.poll(() => bob.locator("#status").textContent()).toBe("closed (1001: Server shutting down)");
    await expect.poll(() => messagesOf(alice)).toEqual([...before, "* bob joined lobby", "* bob left"]);
    await context.close();
    one.child.kill("SIGTERM");
    expect(await within(one.exited, 10_000, "process one to exit"), one.output()).toBe(0);
  });

  it("when Redis restarts, the members get a gap line, and the room works again", async () => {
    const redis = await startRedisServer();
    const reported: string[] = [];
    const options = {
      host: "127.0.0.1",
      port: 0,
      redisUrl: redis.url,
      onError: (_: unknown, kind: string) => reported.push(kind),
    };
    const chat = await startChat(options);
    onCleanup(() => chat.stop(0));
    const other = await startChat(options);
    onCleanup(() => other.stop(0));
    const ws = (c: { url: string }, name: string) =>
      new WsClient(`${c.url.replace(/^http/, "ws")}/chat/lobby?name=${name}`, ["chat.v2"]);
    const events = (client: WsClient) =>
      client.messages.map((m) => JSON.parse(m.data.toString()) as ChatEvent);
    const alice = ws(chat, "alice");
    await until(() => events(alice).length === 1, 5000, "alice's join");
    const bob = ws(other, "bob");
    await until(() => events(alice).length === 2, 5000, "bob's join at alice");
    await redis.restart();
    await until(() => events(alice).some((e) => e.type === "gap"), 10_000, "the gap line");
    expect(events(alice).filter((e) => e.type === "gap")).toEqual([{ type: "gap", room: "lobby" }]);
    // Once both processes have subscribed again, a line crosses as before.
    await until(() => events(bob).some((e) => e.type === "gap"), 10_000, "the gap line at bob");
    await bob.send("still here");
    await until(() => events(alice).some((e) => e.type === "message"), 10_000, "bob's line at alice");
    expect(events(alice).filter((e) => e.type === "message")).toEqual([
      { type: "message", room: "lobby", name: "bob", text: "still here" },
    ]);
    // The lost connections were reported as the backplane's, not as failures of the chat.
    expect(reported.length).toBeGreaterThan(0);
    expect(new Set(reported)).toEqual(new Set(["pubsub"]));
  });
});
