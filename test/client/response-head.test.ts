/** connectOver's reader of a response head: status line, headers as node:http names them, malformed heads. */
import { describe, expect, it } from "vitest";
import { parseResponseHead } from "../../src/client/connect.js";

describe("parseResponseHead", () => {
  it("reads the status and the headers, names in lower case, repeats joined (set-cookie as a list)", () => {
    expect(
      parseResponseHead(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-A: 1\r\nx-a:  2 \r\nSet-Cookie: a=1\r\nset-cookie: b=2",
      ),
    ).toEqual({
      status: 101,
      headers: { upgrade: "websocket", "x-a": "1, 2", "set-cookie": ["a=1", "b=2"] },
    });
    expect(parseResponseHead("HTTP/1.0 404")).toEqual({ status: 404, headers: {} });
  });

  it("refuses a bad status line, a line without a name, and an empty line", () => {
    for (const head of [
      "",
      "HTTP/1.2 101",
      "HTTP/1.1 10",
      "HTTP/1.1 101x",
      "HTTP/1.1 101\r\n: x",
      "HTTP/1.1 101\r\nno colon",
      "HTTP/1.1 101\r\nno colon\r\nX: y",
      "HTTP/1.1 101\r\nA: b\r\n",
      // What node:http's parser refuses too (RFC 9112 §5, RFC 9110 §5.5): no space before the colon...
      "HTTP/1.1 101\r\nSec-WebSocket-Accept : x",
      // ...no folded or indented line, which would otherwise read as a header of its own...
      "HTTP/1.1 101\r\nX: a\r\n b",
      "HTTP/1.1 101\r\nX: a\r\n Sec-WebSocket-Accept: x",
      "HTTP/1.1 101\r\n\tSec-WebSocket-Accept: x",
      // ...names are tokens...
      "HTTP/1.1 101\r\nX A: 1",
      "HTTP/1.1 101\r\nX\u00e9: 1",
      // ...and values hold no bare LF or CR, no NUL or other control character.
      "HTTP/1.1 101\r\nX: 1\nSec-WebSocket-Accept: x",
      "HTTP/1.1 101\r\nX: 1\r2",
      "HTTP/1.1 101\r\nX: 1\u00002",
      "HTTP/1.1 101\r\nX: 1\u007f",
      "HTTP/1.1 101 Switching\u0000Protocols",
      " HTTP/1.1 101",
    ])
      expect(parseResponseHead(head), JSON.stringify(head)).toBeUndefined();
  });
});

describe("parseResponseHead, what it keeps", () => {
  it("trims only SP and HTAB around a value and keeps obs-text (latin1 bytes) in it", () => {
    expect(parseResponseHead("HTTP/1.1 101\r\nX:\t\u00a0\u00e9\u00ff\u00a0 \r\nY:")).toEqual({
      status: 101,
      headers: { x: "\u00a0\u00e9\u00ff\u00a0", y: "" },
    });
  });

  it("reads names an object already has (constructor, toString) as any other, and drops __proto__", () => {
    const parsed = parseResponseHead("HTTP/1.1 101\r\nConstructor: 1\r\ntoString: 2\r\n__proto__: 3");
    expect(parsed?.headers).toEqual({ constructor: "1", tostring: "2" });
    expect(Object.getPrototypeOf(parsed?.headers)).toBe(Object.prototype);
  });

  it("names the first of Sec-WebSocket-Accept, -Protocol and -Extensions that is repeated", () => {
    expect(parseResponseHead("HTTP/1.1 101\r\nX: 1\r\nx: 2")?.repeated).toBeUndefined();
    expect(
      parseResponseHead(
        "HTTP/1.1 101\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Extensions: x\r\nsec-websocket-extensions:",
      )?.repeated,
    ).toBe("sec-websocket-extensions");
  });
});
