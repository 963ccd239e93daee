import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  acceptResponseHead,
  computeAccept,
  type ExtensionOffer,
  errorResponse,
  formatExtensions,
  generateKey,
  HandshakeError,
  type HandshakeErrorCode,
  hasToken,
  isSafeHeaderValue,
  isToken,
  parseExtensions,
  parseTokenList,
  type UpgradeRequestLike,
  validateUpgradeRequest,
  validateUpgradeResponse,
  WEBSOCKET_GUID,
} from "../../src/protocol/index.js";
import { counterFill } from "./helpers.js";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

type Headers = Record<string, string | string[] | undefined>;

function request(headers: Headers = {}, overrides: Partial<UpgradeRequestLike> = {}): UpgradeRequestLike {
  return {
    method: "GET",
    httpVersion: "1.1",
    headers: {
      host: "server.example.com",
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": KEY,
      "sec-websocket-version": "13",
      ...headers,
    },
    ...overrides,
  };
}

describe("RFC 6455 §4.2.2 Sec-WebSocket-Accept", () => {
  it("computeAccept of the RFC's example key gives the RFC's answer", () => {
    expect(WEBSOCKET_GUID).toBe("258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    expect(computeAccept(KEY)).toBe(ACCEPT);
  });

  it("generateKey encodes 16 random bytes that validate as a key", () => {
    const key = generateKey(counterFill());
    expect(key).toBe(Buffer.from(Array.from({ length: 16 }, (_, i) => i + 1)).toString("base64"));
    expect(validateUpgradeRequest(request({ "sec-websocket-key": key })).ok).toBe(true);
  });
});

describe("RFC 6455 §4.2.1 validating the opening handshake", () => {
  it("accepts the RFC's example request", () => {
    const result = validateUpgradeRequest(
      request({ "sec-websocket-protocol": "chat, superchat", origin: "http://example.com" }),
    );
    expect(result).toEqual({
      ok: true,
      value: { key: KEY, protocols: ["chat", "superchat"], extensions: [] },
    });
  });

  const rejections: ReadonlyArray<
    [name: string, req: UpgradeRequestLike, code: HandshakeErrorCode, status: number, headers: Headers]
  > = [
    ["method POST", request({}, { method: "POST" }), "METHOD_NOT_GET", 405, { Allow: "GET" }],
    ["method lowercase get", request({}, { method: "get" }), "METHOD_NOT_GET", 405, { Allow: "GET" }],
    ["no method", request({}, { method: undefined }), "METHOD_NOT_GET", 405, { Allow: "GET" }],
    ["HTTP/1.0", request({}, { httpVersion: "1.0" }), "HTTP_VERSION", 400, {}],
    ["HTTP/0.9", request({}, { httpVersion: "0.9" }), "HTTP_VERSION", 400, {}],
    [
      "Upgrade missing",
      request({ upgrade: undefined }),
      "UPGRADE_HEADER",
      426,
      { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Version": "13" },
    ],
    [
      "Upgrade: h2c",
      request({ upgrade: "h2c" }),
      "UPGRADE_HEADER",
      426,
      { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Version": "13" },
    ],
    ["Connection missing", request({ connection: undefined }), "CONNECTION_HEADER", 400, {}],
    ["Connection: keep-alive only", request({ connection: "keep-alive" }), "CONNECTION_HEADER", 400, {}],
    ["key missing", request({ "sec-websocket-key": undefined }), "KEY_MISSING", 400, {}],
    ["key of 15 bytes", request({ "sec-websocket-key": "AAAAAAAAAAAAAAAAAAAA" }), "KEY_INVALID", 400, {}],
    ["key of 17 bytes", request({ "sec-websocket-key": "AAAAAAAAAAAAAAAAAAAAAAA=" }), "KEY_INVALID", 400, {}],
    [
      "key with bad chars",
      request({ "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZ*==" }),
      "KEY_INVALID",
      400,
      {},
    ],
    [
      "key with stray bits",
      request({ "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZR==" }),
      "KEY_INVALID",
      400,
      {},
    ],
    ["key empty", request({ "sec-websocket-key": "" }), "KEY_INVALID", 400, {}],
    ["key as array", request({ "sec-websocket-key": [KEY, KEY] }), "KEY_INVALID", 400, {}],
    [
      "version 8",
      request({ "sec-websocket-version": "8" }),
      "VERSION_UNSUPPORTED",
      426,
      { "Sec-WebSocket-Version": "13" },
    ],
    [
      "version missing",
      request({ "sec-websocket-version": undefined }),
      "VERSION_UNSUPPORTED",
      426,
      { "Sec-WebSocket-Version": "13" },
    ],
    ["protocol not a token", request({ "sec-websocket-protocol": "chat, a b" }), "HEADER_SYNTAX", 400, {}],
    ["extensions malformed", request({ "sec-websocket-extensions": "x;" }), "HEADER_SYNTAX", 400, {}],
  ];

  it.each(rejections)("rejects %s", (_name, req, code, status, headers) => {
    const result = validateUpgradeRequest(req);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toBeInstanceOf(HandshakeError);
    expect({ code: result.error.code, status: result.error.status, headers: result.error.headers }).toEqual({
      code,
      status,
      headers,
    });
  });

  it.each([
    ["Upgrade: WebSocket", { upgrade: "WebSocket" }],
    ["Upgrade list", { upgrade: "h2c, websocket" }],
    ["Connection: keep-alive, Upgrade", { connection: "keep-alive, Upgrade" }],
    ["Connection: UPGRADE", { connection: "UPGRADE" }],
    ["Connection repeated", { connection: ["keep-alive", "upgrade"] }],
    ["key with surrounding spaces", { "sec-websocket-key": `  ${KEY} ` }],
    ["version with spaces", { "sec-websocket-version": " 13 " }],
  ])("accepts %s", (_name, headers) => {
    const result = validateUpgradeRequest(request(headers));
    expect(result.ok && result.value.key).toBe(KEY);
  });

  it("accepts HTTP/2.0 and later", () => {
    expect(validateUpgradeRequest(request({}, { httpVersion: "2.0" })).ok).toBe(true);
  });

  it("returns protocols in the client's order, with OWS and empty elements skipped", () => {
    const result = validateUpgradeRequest(request({ "sec-websocket-protocol": " v2.chat ,\tv1.chat,,  x " }));
    expect(result.ok && result.value.protocols).toEqual(["v2.chat", "v1.chat", "x"]);
  });
});

describe("RFC 7230 §7 token lists", () => {
  it.each([
    [undefined, []],
    ["", []],
    ["a", ["a"]],
    [" a , b ", ["a", "b"]],
    [",,a,,", ["a"]],
    [
      ["a, b", "c"],
      ["a", "b", "c"],
    ],
    ["a b", undefined],
    ["a;b", undefined],
    ['"a"', undefined],
  ])("parseTokenList(%j) is %j", (value, expected) => {
    expect(parseTokenList(value)).toEqual(expected);
  });

  it("hasToken compares case-insensitively and is false on a malformed list", () => {
    expect([hasToken("Keep-Alive, UPGRADE", "upgrade"), hasToken("upgrades", "upgrade")]).toEqual([
      true,
      false,
    ]);
    expect(hasToken("upgrade, a b", "upgrade")).toBe(false);
  });

  it("hasToken: only SP and HTAB surround elements (RFC 9110 §5.6.3); NBSP, CR or VT make a list malformed", () => {
    expect(hasToken(" \tWebSocket\t ,", "websocket")).toBe(true);
    expect(hasToken(["keep-alive", "Upgrade"], "upgrade")).toBe(true);
    for (const ws of ["\xa0", "\r", "\v", "\f"]) expect(hasToken(`websocket${ws}`, "websocket")).toBe(false);
    // "^" | 0x20 is "~": only A-Z fold.
    expect(hasToken("^", "~")).toBe(false);
    // The token asked for is folded too.
    expect(hasToken("websocket", "WebSocket")).toBe(true);
  });

  it("property: hasToken answers as searching parseTokenList's result does", () => {
    const unit = fc.constantFrom(..."aAbBwWsS ,\t~^/\xa0\xe9");
    fc.assert(
      fc.property(
        fc.string({ unit, maxLength: 16 }),
        fc.constantFrom("a", "ab", "ws", "~", "ba"),
        (value, token) => {
          const list = parseTokenList(value);
          const expected = list?.some((t) => t.toLowerCase() === token) ?? false;
          expect(hasToken(value, token)).toBe(expected);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it.each([
    ["chat", true],
    ["!#$%&'*+-.^_`|~09AZaz", true],
    ["", false],
    ["a b", false],
    ["a/b", false],
    ["é", false],
    ["a\r\n", false],
  ])("isToken(%j) is %s", (value, expected) => {
    expect(isToken(value)).toBe(expected);
  });
});

describe("RFC 6455 §9.1 Sec-WebSocket-Extensions grammar", () => {
  const pmd = (params: ExtensionOffer["params"] = []): ExtensionOffer => ({
    name: "permessage-deflate",
    params,
  });

  it.each<[string, string | string[] | undefined, ExtensionOffer[] | undefined]>([
    ["absent", undefined, []],
    ["empty", "", []],
    ["one token", "permessage-deflate", [pmd()]],
    [
      "param without value",
      "permessage-deflate; client_max_window_bits",
      [pmd([["client_max_window_bits", true]])],
    ],
    [
      "param with token value",
      "permessage-deflate;server_max_window_bits=10",
      [pmd([["server_max_window_bits", "10"]])],
    ],
    [
      "quoted value",
      'permessage-deflate; server_max_window_bits="10"',
      [pmd([["server_max_window_bits", "10"]])],
    ],
    ["quoted value with escapes", 'x; a="\\1\\0"', [{ name: "x", params: [["a", "10"]] }]],
    [
      "OWS around = and ;",
      "x ; a = 1 ;b",
      [
        {
          name: "x",
          params: [
            ["a", "1"],
            ["b", true],
          ],
        },
      ],
    ],
    [
      "several offers in order",
      "permessage-deflate; client_max_window_bits, permessage-deflate, x-webkit",
      [pmd([["client_max_window_bits", true]]), pmd(), { name: "x-webkit", params: [] }],
    ],
    [
      "empty elements",
      " , a ,, b , ",
      [
        { name: "a", params: [] },
        { name: "b", params: [] },
      ],
    ],
    [
      "repeated header lines",
      ["a", "b; c"],
      [
        { name: "a", params: [] },
        { name: "b", params: [["c", true]] },
      ],
    ],
    ["quoted value with a space", 'x; a="1 0"', undefined],
    ["quoted value with an escaped quote", 'x; a="1\\"0"', undefined],
    ["empty quoted value", 'x; a=""', undefined],
    ["unterminated quote", 'x; a="10', undefined],
    ["escape at the end", 'x; a="10\\', undefined],
    ["missing param name", "x; =1", undefined],
    ["trailing semicolon", "x;", undefined],
    ["missing value", "x; a=", undefined],
    ["leading semicolon", "; x", undefined],
    ["trailing garbage", "x; a=1 b", undefined],
    ["garbage after quoted value", 'x; a="1"2', undefined],
    ["space inside a name", "per message", undefined],
    ["non-token name", "x/y", undefined],
  ])("%s", (_name, value, expected) => {
    expect(parseExtensions(value)).toEqual(expected);
  });

  it("formatExtensions writes name; param; param=value, joined with commas", () => {
    const list: ExtensionOffer[] = [
      pmd([
        ["server_no_context_takeover", true],
        ["client_max_window_bits", "12"],
      ]),
      { name: "x", params: [] },
    ];
    const text = formatExtensions(list);
    expect(text).toBe("permessage-deflate; server_no_context_takeover; client_max_window_bits=12, x");
    expect(parseExtensions(text)).toEqual(list);
    expect(formatExtensions([])).toBe("");
  });
});

describe("RFC 6455 §4.2.2 the server's response", () => {
  it("acceptResponseHead without options is the bare 101 response", () => {
    expect(acceptResponseHead(KEY)).toBe(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`,
    );
  });

  it("acceptResponseHead adds protocol, extensions and extra headers in that order", () => {
    const head = acceptResponseHead(KEY, {
      protocol: "chat",
      extensions: "permessage-deflate; server_no_context_takeover",
      headers: { "X-Trace": "abc" },
    });
    expect(head.split("\r\n")).toEqual([
      "HTTP/1.1 101 Switching Protocols",
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Accept: ${ACCEPT}`,
      "Sec-WebSocket-Protocol: chat",
      "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",
      "X-Trace: abc",
      "",
      "",
    ]);
  });

  it.each([
    ["a protocol that is not a token", { protocol: "chat v1" }],
    ["a protocol with CRLF", { protocol: "chat\r\nSet-Cookie: a=b" }],
    ["extensions with CRLF", { extensions: "x\r\nSet-Cookie: a=b" }],
    ["a header value with LF", { headers: { "X-A": "1\nSet-Cookie: a=b" } }],
    ["a header value with NUL", { headers: { "X-A": "1\0" } }],
    ["a header name that is not a token", { headers: { "X A": "1" } }],
  ])("acceptResponseHead rejects %s (no header injection)", (_name, options) => {
    expect(() => acceptResponseHead(KEY, options)).toThrow(TypeError);
  });

  it("isSafeHeaderValue rejects CR, LF and NUL only", () => {
    expect(["ok\t é", "a\rb", "a\nb", "a\0b"].map(isSafeHeaderValue)).toEqual([true, false, false, false]);
  });

  it("errorResponse is a complete response that closes the connection", () => {
    expect(errorResponse(426, "Upgrade Required", "né", { "Sec-WebSocket-Version": "13" })).toBe(
      "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 3\r\nSec-WebSocket-Version: 13\r\n\r\nné",
    );
    expect(() => errorResponse(400, "Bad Request", "", { "X-A": "\r\n" })).toThrow(TypeError);
  });
});

describe("RFC 6455 §4.1 validating the server's response (client side)", () => {
  const good = { upgrade: "websocket", connection: "Upgrade", "sec-websocket-accept": ACCEPT };

  it("accepts a correct response, with the chosen protocol and extensions", () => {
    const result = validateUpgradeResponse(
      101,
      { ...good, "sec-websocket-protocol": "chat", "sec-websocket-extensions": "permessage-deflate" },
      KEY,
      ["chat", "superchat"],
    );
    expect(result).toEqual({
      ok: true,
      value: { protocol: "chat", extensions: [{ name: "permessage-deflate", params: [] }] },
    });
    expect(validateUpgradeResponse(101, good, KEY, [])).toEqual({
      ok: true,
      value: { protocol: undefined, extensions: [] },
    });
  });

  it.each([
    ["status 200", 200, good, "UNEXPECTED_STATUS", "expected status 101, got 200"],
    [
      "no Upgrade",
      101,
      { ...good, upgrade: undefined },
      "UPGRADE_HEADER",
      "response lacks Upgrade: websocket",
    ],
    [
      "no Connection",
      101,
      { ...good, connection: "close" },
      "CONNECTION_HEADER",
      "response lacks Connection: Upgrade",
    ],
    [
      "a wrong accept",
      101,
      { ...good, "sec-websocket-accept": computeAccept("x") },
      "ACCEPT_MISMATCH",
      "Sec-WebSocket-Accept does not match",
    ],
    [
      "no accept",
      101,
      { ...good, "sec-websocket-accept": undefined },
      "ACCEPT_MISMATCH",
      "Sec-WebSocket-Accept does not match",
    ],
    [
      "an unoffered protocol",
      101,
      { ...good, "sec-websocket-protocol": "other" },
      "PROTOCOL_MISMATCH",
      "server chose unoffered subprotocol other",
    ],
    [
      "two protocols",
      101,
      { ...good, "sec-websocket-protocol": "chat, chat" },
      "PROTOCOL_MISMATCH",
      "server chose unoffered subprotocol chat, chat",
    ],
    [
      "malformed extensions",
      101,
      { ...good, "sec-websocket-extensions": "a;" },
      "HEADER_SYNTAX",
      "Sec-WebSocket-Extensions is malformed",
    ],
  ])("rejects %s", (_name, status, headers, code, message) => {
    const result = validateUpgradeResponse(status, headers, KEY, ["chat"]);
    expect(result.ok ? undefined : [result.error.code, result.error.status, result.error.message]).toEqual([
      code,
      status,
      message,
    ]);
  });

  it("with requireProtocol, rejects a response that picks none of the offered subprotocols", () => {
    const result = validateUpgradeResponse(101, good, KEY, ["chat"], true);
    expect(result.ok ? undefined : result.error.code).toBe("PROTOCOL_MISMATCH");
    expect(validateUpgradeResponse(101, good, KEY, [], true).ok).toBe(true);
    expect(validateUpgradeResponse(101, good, KEY, ["chat"], false).ok).toBe(true);
  });
});
