import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createApp, WebSockets } from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { rawRequest, request } from "../helpers/http.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

describe("attach to an existing node:http server", () => {
  it("serves WebSocket routes while the server's own handler still answers HTTP", async () => {
    const server = createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "text/plain" }).end(`own handler: ${req.method} ${req.url}`);
    });
    const app = createApp()
      .install(WebSockets)
      .onError(() => {});
    app.routing((r) => {
      r.webSocket("/echo", async (session) => {
        for await (const frame of session.incoming) await session.send(frame);
      });
    });
    app.attach(server);
    onCleanup(() => new Promise((resolve) => server.close(resolve)));
    onCleanup(() => app.stop({ grace: 0 }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;

    const client = await WsClient.open(`ws://127.0.0.1:${port}/echo`);
    await client.send("through the attached server");
    expect(await client.nextText()).toBe("through the attached server");

    const page = await request(port, "GET", "/page");
    expect(page.status).toBe(200);
    expect(page.body).toBe("own handler: GET /page");
    // A plain GET to the WebSocket path belongs to the server's handler too.
    expect((await request(port, "GET", "/echo")).body).toBe("own handler: GET /echo");

    // An h2c upgrade attempt (curl --http2) is not ours to refuse: the server's handler answers it.
    const h2c = await rawRequest(
      port,
      "GET /page HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    expect([h2c.status, h2c.body]).toEqual([200, "own handler: GET /page"]);

    await app.stop({ grace: 1000 });
    expect(await client.closed).toEqual({ code: 1001, reason: "Server shutting down" });
  });
});
