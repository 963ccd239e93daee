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
    ])
      expect(parseResponseHead(head), JSON.stringify(head)).toBeUndefined();
  });
});
