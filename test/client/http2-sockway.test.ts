/**
 * The HTTP/2 client (`connect(url, { http2 })`) against sockway's own HTTP/2 server
 * (`listen({ tls, http2 })`): echo, permessage-deflate, many WebSockets on one connection, refusals.
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { pooledHttp2Connections } from "../../src/client/http2.js";
import {
  type ApplicationCall,
  CloseReason,
  connect,
  createApp,
  type DefaultWebSocketSession,
  HandshakeError,
  permessageDeflate,
  WebSockets,
} from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { selfSignedCert } from "../helpers/tls.js";
import { until, within } from "../helpers/wait.js";

afterEach(cleanup);

let key: Buffer;
let cert: Buffer;

beforeAll(() => {
  ({ key, cert } = selfSignedCert("DNS:localhost,IP:127.0.0.1"));
});

type ServerSession = DefaultWebSocketSession<ApplicationCall, unknown>;

/** A sockway app on HTTP/2 + HTTP/1.1 (TLS), whose /echo sessions are recorded with their h2 session. */
async function sockwayH2(deflate = false) {
  const sessions: ServerSession[] = [];
  const h2Sessions = new Set<unknown>();
  const app = createApp().install(WebSockets, {
    pingPeriod: 0,
    keepRequest: true,
    ...(deflate ? { extensions: [permessageDeflate({ threshold: 0 })] } : {}),
  });
  app.routing((r) => {
    r.webSocket("/echo", async (s) => {
      sessions.push(s);
      const stream = (s.call.request as unknown as { stream?: { session: unknown } }).stream;
      if (stream !== undefined) h2Sessions.add(stream.session);
      for await (const m of s.incoming) await s.send(m);
    });
    r.webSocket("/private", { beforeUpgrade: (call) => call.reject(403, "no entry\n") }, async () => {});
  });
  const { port } = await app.listen({ host: "127.0.0.1", port: 0, tls: { key, cert }, http2: true });
  onCleanup(() => app.stop({ grace: 0 }));
  return { url: `wss://127.0.0.1:${port}`, sessions, h2Sessions };
}

const options = () => ({ http2: true, tls: { ca: cert }, pingPeriod: 0 }) as const;

describe("connect over HTTP/2 against sockway's server", () => {
  it("echoes text, binary and 1 MiB on an HTTP/2 stream, and closes 1000 both ways", async () => {
    const { url, sessions, h2Sessions } = await sockwayH2();
    const big = Buffer.alloc(1024 * 1024, 7);
    const got = await within(
      connect(`${url}/echo`, options(), async (s) => {
        expect(s.call.httpVersion).toBe("2.0");
        await s.send("héllo");
        await s.send(new Uint8Array([1, 2, 3]));
        await s.send(big);
        const out: string[] = [];
        for await (const m of s.incoming) {
          out.push(m.type === "text" ? m.text : `${m.data.length}:${m.data[0]}`);
          if (out.length === 3) break;
        }
        return out;
      }),
      5000,
      "the echo",
    );
    expect(got).toEqual(["héllo", "3:1", `${big.length}:7`]);
    expect(sessions[0]!.call.httpVersion).toBe("2.0");
    expect(h2Sessions.size).toBe(1);
    expect(await within(sessions[0]!.closeReason, 5000, "server close")).toEqual(new CloseReason(1000, ""));
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("with permessage-deflate", async () => {
    const { url, sessions } = await sockwayH2(true);
    const text = "deflate over h2 ".repeat(20_000);
    const s = await within(
      connect(`${url}/echo`, { ...options(), permessageDeflate: true }),
      5000,
      "connect",
    );
    onCleanup(() => s.terminate());
    expect(s.extensions.map((e) => e.name)).toEqual(["permessage-deflate"]);
    expect(sessions[0]!.extensions.map((e) => e.name)).toEqual(["permessage-deflate"]);
    await s.send(text);
    for await (const m of s.incoming) {
      expect(m.type === "text" && m.text).toBe(text);
      break;
    }
    await s.close();
    expect((await within(s.closeReason, 5000, "close")).code).toBe(1000);
  });

  it("100 WebSockets on one HTTP/2 connection (the server sees one h2 session)", async () => {
    const { url, sessions, h2Sessions } = await sockwayH2();
    const clients = await within(
      Promise.all(Array.from({ length: 100 }, () => connect(`${url}/echo`, options()))),
      10_000,
      "100 connects",
    );
    for (const c of clients) onCleanup(() => c.terminate());
    expect(pooledHttp2Connections()).toBe(1);
    expect(sessions).toHaveLength(100);
    expect(h2Sessions.size).toBe(1);
    await Promise.all(
      clients.map(async (c, i) => {
        await c.send(`n${i}`);
        for await (const m of c.incoming) {
          expect(m.type === "text" && m.text).toBe(`n${i}`);
          break;
        }
      }),
    );
    await Promise.all(clients.map((c) => c.close()));
    await within(Promise.all(sessions.map((s) => s.closeReason)), 5000, "server sessions closed");
    await until(() => pooledHttp2Connections() === 0, 5000, "the pool to empty");
  });

  it("a refusal from beforeUpgrade arrives as the stream's status, with its body", async () => {
    const { url } = await sockwayH2();
    const error = (await connect(`${url}/private`, options()).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect([error.code, error.status]).toEqual(["UNEXPECTED_STATUS", 403]);
    expect(error.body.toString()).toBe("no entry\n");
  });
});
