/**
 * Headless Chromium opening WebSockets over HTTP/2 (RFC 8441): the page is loaded from sockway's
 * https origin on `listen({ tls, http2: true })`, so an h2 connection exists, and its WebSockets go on
 * that connection as extended CONNECT streams. Proved on both sides: the server sees HTTP/2, ALPN h2 and
 * the page's own h2 session; the browser's DevTools protocol reports a handshake status of 200, not 101.
 */
import type { Http2ServerRequest, Http2Session } from "node:http2";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Application, createApp, permessageDeflate, WebSockets } from "../../src/index.js";
import { selfSignedCert } from "../helpers/tls.js";
import { useChromium } from "./browser.js";

const TIMEOUT = 60_000;
const browser = useChromium(TIMEOUT, ["--ignore-certificate-errors"]);
const tls = selfSignedCert("IP:127.0.0.1,DNS:localhost");

const PAGE = "<!doctype html><title>h2 page</title><p>h2</p>";

interface Seen {
  httpVersion: string;
  alpn: string | false | null;
  session: Http2Session | undefined;
  extensions: string | undefined;
}

/** The page opens `count` WebSockets and echoes text, binary and 1 MiB on each. */
async function runPage(origin: string, count: number) {
  return await browser()
    .newContext({ ignoreHTTPSErrors: true })
    .then(async (context) => {
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send("Network.enable");
      const statuses: number[] = [];
      cdp.on("Network.webSocketHandshakeResponseReceived", (event) => {
        statuses.push(event.response.status);
      });
      const response = await page.goto(`${origin}/`);
      const pageProtocol = await page.evaluate(
        () =>
          // The DOM's types are not in this project's lib: the navigation entry, as the page sees it.
          (performance.getEntriesByType("navigation" as never)[0] as unknown as { nextHopProtocol: string })
            .nextHopProtocol,
      );
      const results = await page.evaluate(
        async ({ url, count }) => {
          const one = (i: number) =>
            new Promise<{ text: string; binary: number[]; bigOk: boolean; extensions: string; code: number }>(
              (resolve, reject) => {
                const ws = new WebSocket(url);
                ws.binaryType = "arraybuffer";
                const got: unknown[] = [];
                const big = new Uint8Array(1024 * 1024);
                for (let k = 0; k < big.length; k++) big[k] = (k * 31 + i) & 0xff;
                ws.onerror = () => reject(new Error(`socket ${i} failed`));
                ws.onopen = () => {
                  ws.send(`hello ${i}`);
                  ws.send(new Uint8Array([i, 1, 2]));
                  ws.send(big);
                };
                ws.onmessage = (e) => {
                  got.push(e.data);
                  if (got.length === 3) ws.close(1000, "done");
                };
                ws.onclose = (e) => {
                  const back = new Uint8Array(got[2] as ArrayBuffer);
                  let same = back.length === big.length;
                  for (let k = 0; same && k < big.length; k++) same = back[k] === big[k];
                  resolve({
                    text: got[0] as string,
                    binary: [...new Uint8Array(got[1] as ArrayBuffer)],
                    bigOk: same,
                    extensions: ws.extensions,
                    code: e.code,
                  });
                };
              },
            );
          return Promise.all(Array.from({ length: count }, (_, i) => one(i)));
        },
        { url: `${origin.replace("https:", "wss:")}/echo`, count },
      );
      await context.close();
      return { status: response?.status(), pageProtocol, results, statuses };
    });
}

describe.each([{ deflate: false }, { deflate: true }])(
  "Chromium ↔ sockway over HTTP/2 (deflate: $deflate)",
  { timeout: TIMEOUT },
  ({ deflate }) => {
    let app: Application;
    let origin: string;
    const seen: Seen[] = [];
    const pageSessions: Http2Session[] = [];

    beforeAll(async () => {
      app = createApp()
        .install(WebSockets, {
          keepRequest: true,
          extensions: deflate ? [permessageDeflate({ threshold: 0 })] : [],
        })
        .routing((r) => {
          r.get("/", (call) => {
            const req = call.request as Http2ServerRequest;
            if (call.httpVersion === "2.0") pageSessions.push(req.stream.session as Http2Session);
            call.respond(200, PAGE, { "Content-Type": "text/html; charset=utf-8" });
          });
          r.webSocket("/echo", async (s) => {
            const req = s.call.request as Http2ServerRequest;
            seen.push({
              httpVersion: s.call.httpVersion,
              alpn: (req.socket as TLSSocket).alpnProtocol,
              session: s.call.httpVersion === "2.0" ? (req.stream.session as Http2Session) : undefined,
              extensions: s.extensions.map((e) => e.name).join(", ") || undefined,
            });
            for await (const m of s.incoming) await s.send(m);
          });
        });
      const { port } = await app.listen({ tls, http2: true, host: "127.0.0.1", port: 0 });
      origin = `https://127.0.0.1:${port}`;
    }, TIMEOUT);

    afterAll(async () => {
      await app?.stop({ grace: 1000 });
    }, TIMEOUT);

    it("opens four WebSockets as streams of the page's h2 connection and echoes text, binary and 1 MiB", async () => {
      const run = await runPage(origin, 4);
      expect(run.status).toBe(200);
      expect(run.pageProtocol).toBe("h2");
      expect(run.results).toHaveLength(4);
      run.results.forEach((r, i) => {
        expect(r.text).toBe(`hello ${i}`);
        expect(r.binary).toEqual([i, 1, 2]);
        expect(r.bigOk).toBe(true);
        expect(r.code).toBe(1000);
        if (deflate) expect(r.extensions).toMatch(/^permessage-deflate/);
        else expect(r.extensions).toBe("");
      });
      // Browser side: every handshake was answered 200 (an h2 CONNECT), none 101.
      expect(run.statuses).toEqual([200, 200, 200, 200]);
      // Server side: HTTP/2, ALPN h2, on the h2 session that served the page.
      expect(seen).toHaveLength(4);
      expect(pageSessions).toHaveLength(1);
      for (const s of seen) {
        expect(s.httpVersion).toBe("2.0");
        expect(s.alpn).toBe("h2");
        expect(s.session).toBe(pageSessions[0]);
        expect(s.extensions).toBe(deflate ? "permessage-deflate" : undefined);
      }
    });
  },
);
