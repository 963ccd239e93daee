import { Buffer } from "node:buffer";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type Application,
  createApp,
  DEFAULT_MAX_RESPONSE_BYTES,
  ExpectationError,
  type HttpCall,
  MemoryEnd,
  TestHostError,
  type TestTransport,
  testApplication,
  WebSockets,
} from "../../src/index.js";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "sockway-test-http-"));
  await writeFile(join(root, "index.html"), "<h1>home</h1>\n");
  await writeFile(join(root, "app.js"), "console.log(1);\n");
});
afterAll(() => rm(root, { recursive: true, force: true }));
afterEach(() => {
  vi.useRealTimers();
});

async function readBody(call: HttpCall): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of call.request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** HTTP routes of every kind the router has, next to a WebSocket route. */
function httpApp(): Application {
  return createApp()
    .install(WebSockets)
    .onError(() => {})
    .routing((r) => {
      r.get("/hello", (call) =>
        call.respondJson({
          name: call.query.get("name"),
          header: call.headers["x-test"] ?? null,
          memory: call.request.socket instanceof MemoryEnd,
        }),
      );
      r.post("/echo", async (call) => {
        const body = await readBody(call);
        call.respond(201, body, { "Content-Type": String(call.headers["content-type"] ?? "") });
      });
      r.get("/bytes/{n}", (call) => call.respond(200, Buffer.alloc(Number(call.parameters.n), 0x61)));
      // No Content-Length: the size is only known as the chunks arrive.
      r.get("/chunked/{n}", (call) => {
        const res = call.response as ServerResponse;
        res.writeHead(200, { "Content-Type": "application/octet-stream" });
        for (let left = Number(call.parameters.n); left > 0; left -= 64 * 1024)
          res.write(Buffer.alloc(Math.min(left, 64 * 1024), 0x62));
        res.end();
      });
      // Content-Length here is the size of the representation (RFC 9110 §8.6); no body follows.
      r.get("/status/{code}", (call) => {
        const res = call.response as ServerResponse;
        res.writeHead(Number(call.parameters.code), {
          "Content-Length": String(2 * DEFAULT_MAX_RESPONSE_BYTES),
        });
        res.end();
      });
      r.get("/boom", () => {
        throw new Error("boom");
      });
      r.get("/never", () => new Promise(() => {}));
      r.get("/hang-up", (call) => call.response.destroy());
      r.get("/short", (call) => {
        const res = call.response as ServerResponse;
        res.writeHead(200, { "Content-Length": "100" });
        res.write("only ten..", () => res.destroy());
      });
      r.get("/later", async (call) => {
        await new Promise((resolve) => setTimeout(resolve, 10_000));
        call.respondText("at last");
      });
      r.staticFiles("/static", root);
      r.webSocket("/ws", async () => {});
    });
}

for (const transport of ["memory", "tcp"] as TestTransport[]) {
  describe(`HTTP requests of the test client (${transport})`, () => {
    const run = (body: Parameters<typeof testApplication>[1], app = httpApp()) =>
      testApplication(app, body, { transport });

    it("GET reaches the route with its query and headers; the response is read whole", () =>
      run(async ({ client }) => {
        const res = await client.get("/hello?name=ada", { headers: { "X-Test": "yes" } });
        expect(res.status).toBe(200);
        expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
        expect(res.json()).toEqual({ name: "ada", header: "yes", memory: transport === "memory" });
        expect(res.text()).toBe(res.body.toString());
      }));

    it("POST sends a string or binary body", () =>
      run(async ({ client }) => {
        const text = await client.post("/echo", { body: "héllo", headers: { "Content-Type": "text/plain" } });
        expect(text.status).toBe(201);
        expect(text.text()).toBe("héllo");
        expect(text.headers["content-type"]).toBe("text/plain");
        const bytes = Buffer.from([0, 255, 13, 10, 13, 10, 1]);
        const binary = await client.request("/echo", { method: "post", body: bytes });
        expect(binary.body.equals(bytes)).toBe(true);
      }));

    it("HEAD gets the headers of the GET route and no body", () =>
      run(async ({ client }) => {
        const res = await client.head("/bytes/100");
        expect(res.status).toBe(200);
        expect(res.headers["content-length"]).toBe("100");
        expect(res.body.length).toBe(0);
      }));

    it("unknown paths, methods and a failing handler are answered as the app answers them", () =>
      run(async ({ client }) => {
        expect((await client.get("/nowhere")).status).toBe(404);
        const put = await client.request("/hello", { method: "PUT" });
        expect(put.status).toBe(405);
        expect(put.headers.allow).toBe("GET, HEAD");
        expect((await client.get("/ws")).status).toBe(426);
        const boom = await client.get("/boom");
        expect([boom.status, boom.text()]).toEqual([500, "Internal Server Error\n"]);
      }));

    it("static files are served, and a missing one is a 404", () =>
      run(async ({ client }) => {
        const page = await client.get("/static/");
        expect(page.text()).toBe("<h1>home</h1>\n");
        expect(page.headers["content-type"]).toMatch(/^text\/html/);
        expect((await client.get("/static/app.js")).text()).toBe("console.log(1);\n");
        expect((await client.get("/static/missing.css")).status).toBe(404);
        expect((await client.get("/static/..%2f..%2fetc%2fpasswd")).status).toBe(404);
      }));

    it("a body over maxResponseBytes fails with an ExpectationError, declared or chunked", () =>
      run(async ({ client }) => {
        expect(DEFAULT_MAX_RESPONSE_BYTES).toBe(1024 * 1024);
        const atCap = await client.get(`/bytes/${DEFAULT_MAX_RESPONSE_BYTES}`);
        expect(atCap.body.length).toBe(DEFAULT_MAX_RESPONSE_BYTES);
        const declared = client.get(`/bytes/${DEFAULT_MAX_RESPONSE_BYTES + 1}`);
        await expect(declared).rejects.toThrow(ExpectationError);
        await expect(declared).rejects.toThrow(
          /over maxResponseBytes \(1048576 bytes\): Content-Length 1048577/,
        );
        const chunked = client.get("/chunked/300000", { maxResponseBytes: 200_000 });
        await expect(chunked).rejects.toThrow(
          /GET \/chunked\/300000: the response body is over maxResponseBytes/,
        );
        expect((await client.get("/chunked/300000", { maxResponseBytes: 300_000 })).body.length).toBe(
          300_000,
        );
        await expect(client.get("/bytes/10", { maxResponseBytes: 0 })).rejects.toThrow(/Content-Length 10/);
      }));

    it("204 and 304 have no body, whatever their Content-Length says: not over maxResponseBytes", () =>
      run(async ({ client }) => {
        for (const status of [204, 304]) {
          const res = await client.get(`/status/${status}`);
          expect([res.status, res.body.length]).toEqual([status, 0]);
          expect(res.headers["content-length"]).toBe(String(2 * DEFAULT_MAX_RESPONSE_BYTES));
        }
      }));

    it("a connection closed before or during the answer fails the request", () =>
      run(async ({ client }) => {
        await expect(client.get("/hang-up")).rejects.toThrow(
          /^GET \/hang-up: the request failed: socket hang up$/,
        );
        const short = client.get("/short");
        await expect(short).rejects.toThrow(ExpectationError);
        await expect(short).rejects.toThrow(/^GET \/short: the server cut the response short$/);
      }));

    it("a request the server upgrades fails with a TestHostError pointing at client.webSocket", () =>
      run(async ({ client }) => {
        const upgraded = client.get("/ws", {
          headers: {
            Connection: "Upgrade",
            Upgrade: "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
          },
        });
        await expect(upgraded).rejects.toThrow(TestHostError);
        await expect(upgraded).rejects.toThrow(/switched protocols; open WebSockets with client.webSocket/);
      }));

    it("a request nobody answers fails after its timeout (real time)", () =>
      run(async ({ client }) => {
        const started = Date.now();
        const error = await client.get("/never", { timeout: 100 }).catch((e: Error) => e);
        expect(error).toBeInstanceOf(ExpectationError);
        expect((error as Error).message).toBe("GET /never: expected an answer, got none within 100 ms");
        expect(Date.now() - started).toBeGreaterThanOrEqual(90);
      }));

    it("a request still unanswered when the test returns is aborted and fails the test", async () => {
      let left: Promise<unknown> | undefined;
      const outcome = await run(async ({ client }) => {
        left = client.get("/never");
        void client.get("/never?dropped"); // nobody holds it: its rejection is no unhandled one
        await client.get("/hello"); // finished: not named
      }).catch((e: Error) => e);
      expect(outcome).toBeInstanceOf(TestHostError);
      expect((outcome as Error).message).toMatch(
        /2 requests were still waiting .*: GET \/never, GET \/never\?dropped \(await each/,
      );
      await expect(left).rejects.toThrow(/GET \/never: the test ended before the answer came/);
    });

    it("a request or a session started after the test returned is refused, not sent unwatched", async () => {
      let client: Parameters<Parameters<typeof testApplication>[1]>[0]["client"] | undefined;
      await run((context) => {
        client = context.client;
      });
      const late = client!.get("/hello");
      await expect(late).rejects.toThrow(TestHostError);
      await expect(late).rejects.toThrow(/^testApplication: GET \/hello: the test has ended/);
      await expect(client!.webSocket("/ws")).rejects.toThrow(/^testApplication: \/ws: the test has ended/);
    });

    it("a misused request is a TestHostError", () =>
      run(async ({ client }) => {
        await expect(client.get("hello")).rejects.toThrow(TestHostError);
        await expect(client.get("/hello", { maxResponseBytes: -1 })).rejects.toThrow(/maxResponseBytes/);
        await expect(client.request("/hello", { method: "GE T" })).rejects.toThrow(TestHostError);
        await expect(client.request("/hello", { method: "connect" })).rejects.toThrow(
          /^testApplication: CONNECT is not/,
        );
        await expect(client.get("/hello", { headers: { "X-Bad": "a\r\nb" } })).rejects.toThrow(TestHostError);
      }));

    it("works on an app without the WebSockets plugin", () =>
      run(
        async ({ client }) => {
          expect((await client.get("/")).text()).toBe("plain");
        },
        createApp().routing((r) => r.get("/", (call) => call.respondText("plain"))),
      ));
  });
}

describe("HTTP requests of the test client under fake timers (memory)", () => {
  it("a request is answered without moving the clock", async () => {
    vi.useFakeTimers();
    await testApplication(httpApp(), async ({ client }) => {
      expect((await client.get("/hello?name=x")).json()).toMatchObject({ name: "x", memory: true });
      expect((await client.post("/echo", { body: "abc" })).text()).toBe("abc");
      expect((await client.get("/static/app.js")).status).toBe(200);
    });
  });

  it("a handler waiting on a timer answers once the clock has moved", async () => {
    vi.useFakeTimers();
    await testApplication(httpApp(), async ({ client }) => {
      const res = client.get("/later");
      await vi.advanceTimersByTimeAsync(10_000);
      expect((await res).text()).toBe("at last");
    });
  });

  it("the timeout runs in real time: a request nobody answers fails without moving the clock", async () => {
    vi.useFakeTimers();
    await testApplication(httpApp(), async ({ client }) => {
      await expect(client.get("/later", { timeout: 50 })).rejects.toThrow(/got none within 50 ms/);
    });
  });
});
