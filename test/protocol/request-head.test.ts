/**
 * sockway's own reader for WebSocket upgrade heads: what it accepts it must read exactly as node:http
 * does (checked against node:http's parser on the same bytes), and anything unusual is left to node:http.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findHeadEnd, MAX_UPGRADE_HEAD_LINES, readUpgradeHead } from "../../src/protocol/index.js";

const BASE = [
  "GET /chat?room=1 HTTP/1.1",
  "Host: 127.0.0.1:8080",
  "Upgrade: websocket",
  "Connection: Upgrade",
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
  "Sec-WebSocket-Version: 13",
];
const head = (...lines: string[]) => [...BASE, ...lines].join("\r\n");

// ---- node:http's reading of the same bytes -----------------------------------------------------------

let server: Server;
let port = 0;
const waiting = new Map<string, (req: IncomingMessage | undefined) => void>();

beforeAll(async () => {
  server = createServer((req, res) => {
    res.end();
    waiting.get(req.headers["x-id"] as string)?.(req);
  });
  server.on("upgrade", (req: IncomingMessage, socket) => {
    socket.destroy();
    waiting.get(req.headers["x-id"] as string)?.(req);
  });
  server.on("clientError", (_error, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

let ids = 0;
/** What node:http makes of `text` + CRLF CRLF: its request, or undefined if it refused the bytes. */
function nodeReads(text: string): Promise<IncomingMessage | undefined> {
  const id = `id${++ids}`;
  // The id header goes first after the request line so that it is read whatever follows it.
  const lines = text.split("\r\n");
  lines.splice(1, 0, `X-Id: ${id}`);
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1", () =>
      socket.write(Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1")),
    );
    const timer = setTimeout(() => finish(undefined), 2000);
    const finish = (req: IncomingMessage | undefined) => {
      clearTimeout(timer);
      waiting.delete(id);
      socket.destroy();
      resolve(req);
    };
    waiting.set(id, finish);
    socket.on("close", () => setTimeout(() => waiting.get(id) && finish(undefined), 50));
    socket.on("error", () => {});
  });
}

async function expectSameAsNode(text: string): Promise<void> {
  const ours = readUpgradeHead(text);
  expect(ours, "accepted by sockway's reader").toBeDefined();
  // Given the bytes too, long values are cut from them instead of the text: the same strings.
  expect(readUpgradeHead(text, Buffer.from(text, "latin1"))).toEqual(ours);
  const req = await nodeReads(text);
  expect(req, "accepted by node:http").toBeDefined();
  const { "x-id": _id, ...nodeHeaders } = req!.headers;
  expect(ours!.method).toBe(req!.method);
  expect(ours!.url).toBe(req!.url);
  expect(ours!.httpVersion).toBe(req!.httpVersion);
  expect(ours!.headers).toEqual(nodeHeaders);
  expect((req as { upgrade?: boolean }).upgrade, "node:http sees an upgrade too").toBe(true);
}

// ---- tests ---------------------------------------------------------------------------------------------

describe("findHeadEnd", () => {
  it("finds the blank line, resuming a search from an offset without missing a split CRLF CRLF", () => {
    const bytes = Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\nrest");
    expect(findHeadEnd(bytes)).toBe(bytes.length - 4);
    expect(findHeadEnd(bytes, bytes.length - 5)).toBe(bytes.length - 4);
    expect(findHeadEnd(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n"))).toBe(-1);
  });

  it.each([
    ["LF LF", "GET / HTTP/1.1\nHost: x\n\n"],
    ["CRLF LF", "GET / HTTP/1.1\r\nHost: x\r\n\n"],
    ["LF CRLF", "GET / HTTP/1.1\r\nHost: x\n\r\n"],
    ["a request line ending in a bare LF, the rest not sent yet", "GET / HTTP/1.1\n"],
  ])("gives up at once (0) on a bare LF before any CRLF CRLF: %s", (_what, text) => {
    expect(findHeadEnd(Buffer.from(text))).toBe(0);
  });

  it("finds a bare LF in the bytes appended since the last search", () => {
    const bytes = Buffer.from("GET / HTTP/1.1\r\nHost: x\n");
    expect(findHeadEnd(bytes.subarray(0, 20))).toBe(-1);
    expect(findHeadEnd(bytes, 20)).toBe(0);
    // A CR at the end of one read and its LF at the start of the next is no bare LF.
    expect(findHeadEnd(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n"), 24)).toBe(-1);
  });
});

describe("readUpgradeHead: what it accepts reads as node:http reads it", () => {
  it("a browser's upgrade request", async () => {
    await expectSameAsNode(
      head(
        "Origin: http://127.0.0.1:8080",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Protocol: chat.v1, chat.v2",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
        "Cookie: a=1; b=2",
      ),
    );
  });

  it("mixed-case names, spaces and tabs around values, empty values, obs-text, absolute-form target", async () => {
    await expectSameAsNode(
      head(
        "x-MiXeD:  a  ",
        "X-Tabs:\tb\t",
        "X-Empty:",
        "X-Latin: caf\xe9",
        "X-Long-Latin: caf\xe9 au lait, cr\xe8me br\xfbl\xe9e ",
        "X-Colon: a:b: c",
      ).replace("/chat?room=1", "http://example.com/chat?x=%20#frag"),
    );
  });

  const nameChar = fc.constantFrom(..."abcXYZ019!#$%&'*+-.^_`|~");
  const valueChar = fc.constantFrom(...'aZ9 \t!"#:;,=~\x80\xe9\xff');
  const field = fc.record({
    name: fc.string({ unit: nameChar, minLength: 1, maxLength: 8 }).map((n) => `X-${n}`),
    value: fc.string({ unit: valueChar, maxLength: 12 }),
    before: fc.constantFrom("", " ", "\t", "  "),
  });

  it("property: random extra fields (names, values, whitespace) read the same as node:http", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(field, { maxLength: 8, selector: (f) => f.name.toLowerCase() }),
        async (fields) => {
          const text = head(...fields.map((f) => `${f.name}:${f.before}${f.value}`));
          await expectSameAsNode(text);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("readUpgradeHead: anything unusual is left to node:http", () => {
  it.each([
    ["a method other than GET", head().replace("GET ", "POST ")],
    ["HTTP/1.0", head().replace("HTTP/1.1", "HTTP/1.0")],
    ["HTTP/2.0", head().replace("HTTP/1.1", "HTTP/2.0")],
    ["an empty target", head().replace("/chat?room=1", "")],
    ["a target with a character outside RFC 3986", head().replace("/chat", "/ch|at")],
    ["a target with a space", head().replace("/chat", "/ch at")],
    ["a target with obs-text", head().replace("/chat", "/caf\xe9")],
    ["two spaces after the method", head().replace("GET ", "GET  ")],
    ["a folded header line", head("X-A: 1", " continued")],
    ["a header line without a colon", head("X-A 1")],
    ["a space before the colon", head("X-A : 1")],
    ["an empty header name", head(": 1")],
    ["a bare LF inside a header value", head("X-A: 1\nX-B: 2")],
    ["a bare CR inside a header value", head("X-A: 1\rX-B: 2")],
    ["DEL in a header value", head("X-A: 1\x7f")],
    ["NUL in a header value", head("X-A: 1\0")],
    ["a repeated header", head("X-A: 1", "x-a: 2")],
    ["a repeated Sec-WebSocket-Key", head("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==")],
    ["Content-Length", head("Content-Length: 0")],
    ["Transfer-Encoding", head("Transfer-Encoding: chunked")],
    ["a __proto__ header", head("__proto__: x")],
    ["no Upgrade: websocket", head().replace("Upgrade: websocket", "Upgrade: h2c")],
    ["no Connection: upgrade", head().replace("Connection: Upgrade", "Connection: keep-alive")],
    ["a request line with a bare LF", head().replace(" HTTP/1.1\r\n", " HTTP/1.1\n")],
  ])("%s", (_what, text) => {
    expect(readUpgradeHead(text)).toBeUndefined();
  });

  it(`more than ${MAX_UPGRADE_HEAD_LINES} header lines`, () => {
    const extra = Array.from({ length: MAX_UPGRADE_HEAD_LINES - BASE.length + 2 }, (_, i) => `X-${i}: v`);
    expect(readUpgradeHead(head(...extra))).toBeUndefined();
    expect(readUpgradeHead(head(...extra.slice(0, -1)))).toBeDefined();
  });

  it("property: no input makes it throw, and whatever it accepts is a GET with both upgrade tokens", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), fc.nat(300), (noise, at) => {
        const base = head();
        const text = base.slice(0, at % base.length) + noise + base.slice(at % base.length);
        const read = readUpgradeHead(text);
        if (read) {
          expect(read.method).toBe("GET");
          expect(read.headers.upgrade?.toLowerCase()).toContain("websocket");
        }
      }),
      { numRuns: 500 },
    );
  });
});
