/**
 * Interop with headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) with compression
 * ON: a page served by an HTTP route of the app opens `new WebSocket(...)`; Chromium offers
 * permessage-deflate, sockway accepts it, and text, ArrayBuffer and 1 MB messages round-trip.
 */
import type { Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import type { PermessageDeflateOptions } from "../../src/index.js";
import { type DeflateApp, onCleanup, runCleanup, startDeflateApp } from "../extensions/deflate-helpers.js";
import { useChromium } from "./browser.js";

const TIMEOUT = 60_000;
const MB = 1_000_000;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sockway deflate</title></head>
<body><p id="status">loaded</p></body></html>`;

const browser = useChromium(TIMEOUT);

afterEach(runCleanup);

/** An app with the echo routes of deflate-helpers plus the test page at GET /. */
async function startApp(deflate: PermessageDeflateOptions): Promise<DeflateApp> {
  const app = await startDeflateApp(deflate, { maxFrameSize: 4 * 1024 * 1024 });
  app.app.routing((r) => {
    r.get("/", (call) => call.respondText(PAGE, 200, "text/html; charset=utf-8"));
  });
  return app;
}

async function openPage(app: DeflateApp): Promise<Page> {
  const context = await browser().newContext();
  onCleanup(() => context.close());
  const page = await context.newPage();
  const response = await page.goto(`http://127.0.0.1:${app.port}/`);
  expect(response?.status()).toBe(200);
  expect(await page.title()).toBe("sockway deflate");
  return page;
}

interface PageResult {
  extensions: string;
  protocol: string;
  text: { type: string; equal: boolean; value: string };
  binary: { type: string; equal: boolean; length: number; bytes: number[] };
  large: { type: string; equal: boolean; length: number };
  repeated: { equal: boolean };
  closeCode: number;
  closeWasClean: boolean;
}

/** Runs the conversation inside the page; every comparison of data happens there, on the real objects. */
function converse(page: Page, wsUrl: string): Promise<PageResult> {
  return page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const inbox: Array<string | ArrayBuffer> = [];
    const waiters: Array<(m: string | ArrayBuffer) => void> = [];
    ws.onmessage = (event) => {
      const waiter = waiters.shift();
      if (waiter) waiter(event.data);
      else inbox.push(event.data);
    };
    const next = () =>
      new Promise<string | ArrayBuffer>((resolve, reject) => {
        const ready = inbox.shift();
        if (ready !== undefined) return resolve(ready);
        const timer = setTimeout(() => reject(new Error("no echo within 10 s")), 10_000);
        waiters.push((m) => {
          clearTimeout(timer);
          resolve(m);
        });
      });
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("WebSocket error during the handshake"));
    });

    const text = "hello from Chromium ✓ 😀 ".repeat(20);
    ws.send(text);
    const textEcho = await next();

    const bytes = new Uint8Array(256);
    for (let i = 0; i < 256; i++) bytes[i] = 255 - i;
    ws.send(bytes.buffer);
    const binaryEcho = await next();
    const binaryBytes = binaryEcho instanceof ArrayBuffer ? Array.from(new Uint8Array(binaryEcho)) : [];

    let large = "";
    const unit = "0123456789abcdefghijklmnopqrstuvwxyz✓";
    while (large.length < 1_000_000) large += `${unit}${large.length % 977}`;
    large = large.slice(0, 1_000_000);
    ws.send(large);
    const largeEcho = await next();

    ws.send(text);
    const repeatedEcho = await next();

    const closed = new Promise<{ code: number; wasClean: boolean }>((resolve) => {
      ws.onclose = (event) => resolve({ code: event.code, wasClean: event.wasClean });
    });
    ws.close(1000, "done");
    const close = await closed;
    return {
      extensions: ws.extensions,
      protocol: ws.protocol,
      text: {
        type: typeof textEcho,
        equal: textEcho === text,
        value: typeof textEcho === "string" ? textEcho.slice(0, 24) : "",
      },
      binary: {
        type: binaryEcho instanceof ArrayBuffer ? "arraybuffer" : typeof binaryEcho,
        equal: binaryBytes.length === 256 && binaryBytes.every((b, i) => b === bytes[i]),
        length: binaryBytes.length,
        bytes: binaryBytes.slice(0, 4),
      },
      large: {
        type: typeof largeEcho,
        equal: largeEcho === large,
        length: typeof largeEcho === "string" ? largeEcho.length : -1,
      },
      repeated: { equal: repeatedEcho === text },
      closeCode: close.code,
      closeWasClean: close.wasClean,
    };
  }, wsUrl);
}

describe("Chromium ↔ sockway with permessage-deflate", { timeout: TIMEOUT }, () => {
  it("negotiates permessage-deflate and round-trips text, an ArrayBuffer and a 1 MB string", async () => {
    const app = await startApp({ threshold: 0 });
    const page = await openPage(app);
    const result = await converse(page, `${app.wsUrl}/echo`);
    expect(result.extensions).toContain("permessage-deflate");
    expect(result.extensions).toBe("permessage-deflate");
    expect(result.protocol).toBe("");
    expect(result.text).toEqual({ type: "string", equal: true, value: "hello from Chromium ✓ 😀" });
    expect(result.binary).toEqual({
      type: "arraybuffer",
      equal: true,
      length: 256,
      bytes: [255, 254, 253, 252],
    });
    expect(result.large).toEqual({ type: "string", equal: true, length: MB });
    expect(result.repeated).toEqual({ equal: true });
    expect(result.closeCode).toBe(1000);
    expect(result.closeWasClean).toBe(true);

    const { session, received } = await app.session(0);
    expect(session.extensions).toEqual([{ name: "permessage-deflate", params: [] }]);
    expect(received.map((m) => [m.type, m.data.length])).toEqual([
      ["text", Buffer.byteLength("hello from Chromium ✓ 😀 ".repeat(20))],
      ["binary", 256],
      ["text", Buffer.byteLength(received[2]!.data.toString())],
      ["text", Buffer.byteLength("hello from Chromium ✓ 😀 ".repeat(20))],
    ]);
    expect(received[2]!.data.toString().length).toBe(MB);
    expect((await session.closeReason).code).toBe(1000);
    // Chromium compressed every message, and sockway (threshold 0) every echo.
    expect(app.codecCalls).toEqual({ decode: 4, encode: 4 });
    expect(app.errors).toEqual([]);
  });

  it("agrees on server_no_context_takeover and a 9-bit client window when the server asks for them", async () => {
    const app = await startApp({ threshold: 0, serverNoContextTakeover: true, clientMaxWindowBits: 9 });
    const page = await openPage(app);
    const result = await converse(page, `${app.wsUrl}/echo`);
    expect(result.extensions).toBe(
      "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
    );
    expect(result.text.equal).toBe(true);
    expect(result.binary.equal).toBe(true);
    expect(result.large).toEqual({ type: "string", equal: true, length: MB });
    expect(result.repeated.equal).toBe(true);
    expect(result.closeCode).toBe(1000);
    expect(app.codecCalls).toEqual({ decode: 4, encode: 4 });
    expect(app.errors).toEqual([]);
  });
});
