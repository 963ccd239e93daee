/**
 * The client's side of the opening handshake against a scripted server that answers what real servers
 * would not: RFC 6455 §4.1 response checks, RFC 7692 §7.1 checks of permessage-deflate's acceptance,
 * the request the client writes, redirects, the refusal body cap, and frames that arrive with the 101.
 */
import { createConnection } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  CloseReason,
  connect,
  connectOver,
  HANDSHAKE_ERROR_BODY_LIMIT,
  HandshakeError,
} from "../../src/index.js";
import { computeAccept, Opcode } from "../../src/protocol/index.js";
import { cleanup } from "../helpers/cleanup.js";
import { until, within } from "../helpers/wait.js";
import { readFrames, type ScriptedRequest, scriptedServer, serverFrame, switching } from "./helpers.js";

afterEach(cleanup);

async function failure(promise: Promise<unknown>): Promise<HandshakeError> {
  const error = await within(
    promise.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    "the handshake to fail",
  );
  expect(error).toBeInstanceOf(HandshakeError);
  return error as HandshakeError;
}

describe("the request", () => {
  it("is a GET with Upgrade, Connection, a fresh 16-byte key, version 13, protocols and the deflate offer", async () => {
    const server = await scriptedServer((req) =>
      req.socket.write(
        switching(req, {
          "Sec-WebSocket-Protocol": "b",
          "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits=12",
        }),
      ),
    );
    const s1 = await connect(`${server.url}/p/a?x=1`, {
      protocols: ["a", "b"],
      permessageDeflate: {
        clientNoContextTakeover: true,
        serverNoContextTakeover: true,
        serverMaxWindowBits: 15,
      },
    }).catch((e: unknown) => e);
    // server_no_context_takeover and server_max_window_bits were asked for, the answer left them out: that fails.
    expect((s1 as HandshakeError).code).toBe("EXTENSION_MISMATCH");
    const s2 = await connect(`${server.url}/p/a?x=1`, { protocols: ["a", "b"], permessageDeflate: true });
    expect(s2.protocol).toBe("b");
    s2.terminate();
    const [r1, r2] = server.requests as [ScriptedRequest, ScriptedRequest];
    expect(r1.line).toBe("GET /p/a?x=1 HTTP/1.1");
    expect(r1.headers.upgrade).toBe("websocket");
    expect(r1.headers.connection?.toLowerCase()).toContain("upgrade");
    expect(r1.headers["sec-websocket-version"]).toBe("13");
    expect(r1.headers.host).toBe(`127.0.0.1:${server.port}`);
    expect(r1.headers["sec-websocket-protocol"]).toBe("a, b");
    expect(r1.headers["sec-websocket-extensions"]).toBe(
      "permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=15; client_max_window_bits",
    );
    expect(r2.headers["sec-websocket-extensions"]).toBe("permessage-deflate; client_max_window_bits");
    for (const r of [r1, r2]) expect(Buffer.from(r.headers["sec-websocket-key"]!, "base64").length).toBe(16);
    expect(r1.headers["sec-websocket-key"]).not.toBe(r2.headers["sec-websocket-key"]);
  });

  it("sends the URL's user information as Basic Authorization", async () => {
    const server = await scriptedServer((req) => req.socket.write(switching(req)));
    const session = await connect(`ws://us%20er:p%40ss@127.0.0.1:${server.port}/`);
    session.terminate();
    expect(server.requests[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from("us er:p@ss").toString("base64")}`,
    );
  });
});

describe("RFC 6455 §4.1: the client fails the connection unless the response is right", () => {
  it.each<[string, Record<string, string | null>, string, string[]?]>([
    [
      "a wrong Sec-WebSocket-Accept",
      { "Sec-WebSocket-Accept": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
      "ACCEPT_MISMATCH",
    ],
    ["no Sec-WebSocket-Accept", { "Sec-WebSocket-Accept": null }, "ACCEPT_MISMATCH"],
    ["Upgrade other than websocket", { Upgrade: "h2c" }, "UPGRADE_HEADER"],
    ["no Connection: Upgrade", { Connection: "keep-alive" }, "CONNECTION_HEADER"],
    ["a subprotocol not offered", { "Sec-WebSocket-Protocol": "c" }, "PROTOCOL_MISMATCH", ["a", "b"]],
    ["a subprotocol when none was offered", { "Sec-WebSocket-Protocol": "a" }, "PROTOCOL_MISMATCH", []],
    ["no subprotocol when one is required", {}, "PROTOCOL_MISMATCH", ["a"]],
    ["an extension not offered", { "Sec-WebSocket-Extensions": "permessage-deflate" }, "EXTENSION_MISMATCH"],
    ["a malformed extension header", { "Sec-WebSocket-Extensions": "a;;" }, "HEADER_SYNTAX"],
  ])("%s", async (_name, headers, code, protocols = []) => {
    const server = await scriptedServer((req) => req.socket.write(switching(req, headers)));
    const error = await failure(connect(server.url, { protocols }));
    expect([error.code, error.status]).toEqual([code, 101]);
    expect(error.headers.upgrade).toBeDefined();
  });

  it("requireProtocol: false accepts a server that picks none of the offered subprotocols", async () => {
    const server = await scriptedServer((req) => req.socket.write(switching(req)));
    const session = await connect(server.url, { protocols: ["a"], requireProtocol: false });
    expect(session.protocol).toBeUndefined();
    session.terminate();
  });

  it("a 200 answer rejects UNEXPECTED_STATUS with its headers and body; the body is capped", async () => {
    const big = "x".repeat(HANDSHAKE_ERROR_BODY_LIMIT * 4);
    const server = await scriptedServer((req) => {
      const body = req.line.includes("/big") ? big : "plain http here";
      req.socket.end(
        `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    });
    const small = await failure(connect(`${server.url}/small`));
    expect([small.code, small.status, small.body.toString(), small.bodyTruncated]).toEqual([
      "UNEXPECTED_STATUS",
      200,
      "plain http here",
      false,
    ]);
    expect(small.headers["content-type"]).toBe("text/plain");
    expect(small.headers["set-cookie"]).toBe("a=1, b=2");
    const capped = await failure(connect(`${server.url}/big`));
    expect([capped.body.length, capped.bodyTruncated]).toEqual([HANDSHAKE_ERROR_BODY_LIMIT, true]);
  });

  it("a chunked refusal body that never ends is cut at the cap, not waited for", async () => {
    const server = await scriptedServer((req) => {
      req.socket.write("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n");
      const chunk = "y".repeat(4096);
      for (let i = 0; i < 8; i++) req.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      // ...and never the last chunk.
    });
    const error = await failure(connect(server.url, { handshakeTimeout: 3000 }));
    expect([error.code, error.status, error.body.length, error.bodyTruncated]).toEqual([
      "UNEXPECTED_STATUS",
      403,
      HANDSHAKE_ERROR_BODY_LIMIT,
      true,
    ]);
  });
});

describe("RFC 7692 §7.1: the client checks the server's permessage-deflate acceptance", () => {
  it.each<[string, string, object?]>([
    ["an unknown parameter", "permessage-deflate; x_foo"],
    ["a parameter given twice", "permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
    ["a value on server_no_context_takeover", "permessage-deflate; server_no_context_takeover=1"],
    ["server_max_window_bits out of range (7)", "permessage-deflate; server_max_window_bits=7"],
    ["server_max_window_bits out of range (16)", "permessage-deflate; server_max_window_bits=16"],
    ["server_max_window_bits with a leading zero", "permessage-deflate; server_max_window_bits=010"],
    ["server_max_window_bits without a value", "permessage-deflate; server_max_window_bits"],
    ["client_max_window_bits without a value", "permessage-deflate; client_max_window_bits"],
    [
      "client_max_window_bits when we did not offer it",
      "permessage-deflate; client_max_window_bits=10",
      { clientMaxWindowBits: false },
    ],
    [
      "client_max_window_bits larger than we offered",
      "permessage-deflate; client_max_window_bits=12",
      { clientMaxWindowBits: 10 },
    ],
    [
      "server_max_window_bits larger than we asked for",
      "permessage-deflate; server_max_window_bits=12",
      { serverMaxWindowBits: 10 },
    ],
    [
      "server_max_window_bits asked for and not in the answer",
      "permessage-deflate",
      { serverMaxWindowBits: 10 },
    ],
    [
      "server_no_context_takeover asked for and not in the answer",
      "permessage-deflate",
      { serverNoContextTakeover: true },
    ],
    ["two permessage-deflate acceptances", "permessage-deflate, permessage-deflate"],
    ["another extension beside it", "permessage-deflate, x-webkit-deflate-frame"],
  ])("fails on %s", async (_name, header, deflate = {}) => {
    const server = await scriptedServer((req) =>
      req.socket.write(switching(req, { "Sec-WebSocket-Extensions": header })),
    );
    const error = await failure(connect(server.url, { permessageDeflate: deflate }));
    expect(error.code).toBe("EXTENSION_MISMATCH");
  });

  it.each<[string, string, object?]>([
    ["a bare acceptance", "permessage-deflate"],
    ["server_no_context_takeover we did not ask for", "permessage-deflate; server_no_context_takeover"],
    ["client_no_context_takeover we did not offer", "permessage-deflate; client_no_context_takeover"],
    ["server_max_window_bits we did not ask for", "permessage-deflate; server_max_window_bits=8"],
    ["client_max_window_bits=8 (we then send uncompressed)", "permessage-deflate; client_max_window_bits=8"],
    ["parameters in upper case", "Permessage-Deflate; Server_No_Context_Takeover"],
  ])("accepts %s", async (_name, header, deflate = {}) => {
    const server = await scriptedServer((req) =>
      req.socket.write(switching(req, { "Sec-WebSocket-Extensions": header })),
    );
    const session = await connect(server.url, { permessageDeflate: deflate });
    expect(session.extensions.length).toBe(1);
    session.terminate();
  });

  it("limited to a window of 8 (which zlib cannot produce), the client sends without RSV1", async () => {
    let frames: ReturnType<typeof readFrames> = [];
    const server = await scriptedServer((req) => {
      req.socket.write(
        switching(req, { "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits=8" }),
      );
      frames = readFrames(req.socket, req.rest);
    });
    const session = await connect(server.url, { permessageDeflate: { threshold: 0 } });
    await session.send("a".repeat(5000));
    await until(() => frames.length === 1, 2000, "the frame");
    expect(frames[0]!.payload.toString()).toBe("a".repeat(5000));
    expect(frames[0]!.masked).toBe(true);
    session.terminate();
  });
});

describe("frames on the client side", () => {
  it("frames that arrive in the same read as the 101 are delivered; every frame we send is masked", async () => {
    let frames: ReturnType<typeof readFrames> = [];
    const server = await scriptedServer((req) => {
      req.socket.write(Buffer.concat([Buffer.from(switching(req)), serverFrame(Opcode.Text, "early")]));
      frames = readFrames(req.socket, req.rest);
    });
    const session = await connect(server.url);
    const it = session.incoming[Symbol.asyncIterator]();
    const first = (await within(it.next(), 2000, "the early message")).value!;
    expect(first.type === "text" && first.text).toBe("early");
    await session.send("x");
    await session.send(Buffer.alloc(70_000));
    await session.send({ type: "ping" } as never).catch(() => {}); // not a frame: rejected, nothing sent
    void session.close(4000, "done");
    await until(() => frames.length === 3, 2000, "three frames");
    expect(frames.map((f) => [f.opcode, f.masked])).toEqual([
      [Opcode.Text, true],
      [Opcode.Binary, true],
      [Opcode.Close, true],
    ]);
    expect(frames[1]!.payload.equals(Buffer.alloc(70_000))).toBe(true);
  });

  it("a masked frame from the server fails the connection with 1002", async () => {
    let frames: ReturnType<typeof readFrames> = [];
    const server = await scriptedServer((req) => {
      frames = readFrames(req.socket, req.rest);
      req.socket.write(switching(req));
      // Masked with key 01 02 03 04: servers must not mask (§5.1).
      const payload = Buffer.from("hi");
      const key = [1, 2, 3, 4];
      const masked = payload.map((b, i) => b ^ key[i % 4]!);
      req.socket.write(Buffer.from([0x81, 0x80 | payload.length, ...key, ...masked]));
    });
    const session = await connect(server.url, { timeout: 500 });
    const reason = await within(session.closeReason, 3000, "the failure");
    expect(reason.code).toBe(1002);
    await until(() => frames.length === 1, 2000, "our Close");
    expect([frames[0]!.opcode, frames[0]!.payload.readUInt16BE(0)]).toEqual([Opcode.Close, 1002]);
  });

  it("waits for the server to end TCP after the closing handshake, then ends its side (§7.1.1)", async () => {
    let ended = false;
    let frames: ReturnType<typeof readFrames> = [];
    let sock: ScriptedRequest["socket"] | undefined;
    const server = await scriptedServer((req) => {
      sock = req.socket;
      req.socket.write(switching(req));
      req.socket.on("end", () => {
        ended = true;
      });
      frames = readFrames(req.socket, req.rest);
    });
    const session = await connect(server.url, { timeout: 5000 });
    void session.close(1000);
    await until(() => frames.length === 1, 2000, "our Close");
    sock!.write(serverFrame(Opcode.Close, Buffer.from([0x03, 0xe8])));
    await until(() => session.state === "draining", 2000, "draining");
    expect(ended).toBe(false); // the client does not end TCP first
    sock!.end();
    expect(await within(session.closeReason, 2000, "closed")).toEqual(new CloseReason(1000, ""));
    await until(() => ended, 2000, "the client's FIN");
  });
});

describe("redirects", () => {
  /** A server that redirects /start to `location`, and answers 101 elsewhere. */
  async function redirecting(location: (port: number) => string, status = 302) {
    const server = await scriptedServer((req) => {
      if (req.line.startsWith("GET /start") || req.line.startsWith("GET /loop")) {
        req.socket.end(
          `HTTP/1.1 ${status} Found\r\nLocation: ${location(server.port)}\r\nContent-Length: 0\r\n\r\n`,
        );
      } else {
        req.socket.write(switching(req));
      }
    });
    return server;
  }

  it("are not followed by default: UNEXPECTED_STATUS with the Location in headers", async () => {
    const server = await redirecting(() => "/end");
    const error = await failure(connect(`${server.url}/start`));
    expect([error.code, error.status, error.headers.location]).toEqual(["UNEXPECTED_STATUS", 302, "/end"]);
  });

  it.each([301, 302, 303, 307, 308])(
    "with followRedirects, %i is followed (relative Location); credentials kept on the same origin",
    async (status) => {
      const server = await redirecting(() => "/end", status);
      const session = await connect(`${server.url}/start`, {
        followRedirects: true,
        headers: { Authorization: "Bearer t", Cookie: "c=1" },
      });
      expect(session.call.url.pathname).toBe("/end");
      session.terminate();
      expect(server.requests.map((r) => [r.line, r.headers.authorization, r.headers.cookie])).toEqual([
        ["GET /start HTTP/1.1", "Bearer t", "c=1"],
        ["GET /end HTTP/1.1", "Bearer t", "c=1"],
      ]);
    },
  );

  it("a cross-origin redirect drops Authorization and Cookie; http: and https: URLs are taken as ws: and wss:", async () => {
    const target = await scriptedServer((req) => req.socket.write(switching(req)));
    const server = await redirecting(() => `http://localhost:${target.port}/there`);
    const session = await connect(`${server.url}/start`, {
      followRedirects: true,
      headers: { Authorization: "Bearer t", Cookie: "c=1", "X-Other": "kept" },
    });
    expect(session.call.url.href).toBe(`ws://localhost:${target.port}/there`);
    session.terminate();
    const r = target.requests[0]!;
    expect([r.headers.authorization, r.headers.cookie, r.headers["x-other"], r.headers.host]).toEqual([
      undefined,
      undefined,
      "kept",
      `localhost:${target.port}`,
    ]);
  });

  it("more than maxRedirects fails TOO_MANY_REDIRECTS", async () => {
    const server = await redirecting(() => "/loop");
    const error = await failure(connect(`${server.url}/start`, { followRedirects: true, maxRedirects: 3 }));
    expect([error.code, error.status]).toEqual(["TOO_MANY_REDIRECTS", 302]);
    expect(server.requests.length).toBe(4);
  });

  it("a redirect to another scheme fails INVALID_URL", async () => {
    const server = await redirecting(() => "ftp://127.0.0.1/x");
    const error = await failure(connect(`${server.url}/start`, { followRedirects: true }));
    expect(error.code).toBe("INVALID_URL");
  });
});

describe("RFC 6455 §11.3: Sec-WebSocket-Accept, -Protocol and -Extensions appear at most once in the response", () => {
  /** The 101 of `switching` with `lines` (whole header lines) added after its own headers. */
  const withLines = (req: ScriptedRequest, ...lines: string[]) =>
    switching(req).replace(/\r\n\r\n$/, `\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`);
  const viaConnectOver = (url: string, options: object) => {
    const { port } = new URL(url);
    return connectOver(createConnection(Number(port), "127.0.0.1"), url, options);
  };

  for (const [how, open] of [
    ["connect", connect],
    ["connectOver", viaConnectOver],
  ] as const) {
    it.each<[string, (req: ScriptedRequest) => string, object?]>([
      [
        "Sec-WebSocket-Accept twice, the same",
        (req) =>
          withLines(req, `Sec-WebSocket-Accept: ${computeAccept(req.headers["sec-websocket-key"] ?? "")}`),
      ],
      [
        "Sec-WebSocket-Protocol twice",
        (req) => withLines(req, "Sec-WebSocket-Protocol: b", "Sec-WebSocket-Protocol: b"),
        { protocols: ["a", "b"] },
      ],
      [
        "Sec-WebSocket-Extensions twice",
        (req) =>
          withLines(
            req,
            "Sec-WebSocket-Extensions: permessage-deflate",
            "Sec-WebSocket-Extensions: permessage-deflate",
          ),
        { permessageDeflate: true },
      ],
      [
        // Joined, this would read as one acceptance: "permessage-deflate, ".
        "Sec-WebSocket-Extensions, then an empty one",
        (req) => withLines(req, "Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Extensions:"),
        { permessageDeflate: true },
      ],
    ])(`${how} fails on %s`, async (_name, answer, options = {}) => {
      const server = await scriptedServer((req) => req.socket.write(answer(req)));
      const error = await failure(open(server.url, options));
      expect([error.code, error.status]).toEqual(["HEADER_SYNTAX", 101]);
      expect(error.message).toMatch(/more than once/);
    });
  }
});
