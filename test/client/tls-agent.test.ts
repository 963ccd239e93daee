/**
 * wss:// (TLS options: a private CA, SNI, certificate failures) and the `agent` option, against
 * sockway's own server.
 */
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { Duplex } from "node:stream";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect, createApp, HandshakeError, WebSockets } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { selfSignedCert } from "../helpers/tls.js";
import { within } from "../helpers/wait.js";

afterEach(cleanup);

let key: Buffer;
let cert: Buffer;

beforeAll(() => {
  ({ key, cert } = selfSignedCert("DNS:localhost,IP:127.0.0.1"));
});

async function tlsEcho(): Promise<number> {
  const app = createApp().install(WebSockets, { pingPeriod: 0 });
  app.routing((r) =>
    r.webSocket("/echo", async (s) => {
      for await (const m of s.incoming) await s.send(m);
    }),
  );
  const { port } = await app.listen({ host: "127.0.0.1", port: 0, tls: { key, cert } });
  onCleanup(() => app.stop({ grace: 0 }));
  return port;
}

const roundTrip = (url: string, options: Parameters<typeof connect>[1]) =>
  within(
    connect(url, options, async (s) => {
      await s.send("secret");
      for await (const m of s.incoming) return m.type === "text" ? m.text : "";
      return "";
    }),
    5000,
    url,
  );

describe("wss://", () => {
  it("connects with the server's CA, by IP and by name (SNI)", async () => {
    const port = await tlsEcho();
    expect(await roundTrip(`wss://127.0.0.1:${port}/echo`, { tls: { ca: cert } })).toBe("secret");
    expect(await roundTrip(`wss://localhost:${port}/echo`, { tls: { ca: cert } })).toBe("secret");
    expect(await roundTrip(`https://localhost:${port}/echo`, { tls: { ca: cert } })).toBe("secret");
  });

  it("an untrusted certificate fails CONNECT_FAILED with the TLS error as cause; rejectUnauthorized: false connects", async () => {
    const port = await tlsEcho();
    const error = (await connect(`wss://127.0.0.1:${port}/echo`).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error.code).toBe("CONNECT_FAILED");
    expect((error.cause as NodeJS.ErrnoException).code).toBe("DEPTH_ZERO_SELF_SIGNED_CERT");
    expect(await roundTrip(`wss://127.0.0.1:${port}/echo`, { tls: { rejectUnauthorized: false } })).toBe(
      "secret",
    );
  });

  it("a name the certificate does not cover fails", async () => {
    const port = await tlsEcho();
    const error = (await connect(`wss://127.0.0.1:${port}/echo`, {
      tls: { ca: cert, servername: "elsewhere.test" },
    }).catch((e: unknown) => e)) as HandshakeError;
    expect(error.code).toBe("CONNECT_FAILED");
    expect((error.cause as NodeJS.ErrnoException).code).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
  });
});

describe("agent", () => {
  it("an http.Agent makes the connection for ws://", async () => {
    const { wsUrl } = await startApp(
      (r) =>
        r.webSocket("/echo", async (s) => {
          for await (const m of s.incoming) await s.send(m);
        }),
      { pingPeriod: 0 },
    );
    let made = 0;
    class CountingAgent extends HttpAgent {
      override createConnection(
        ...args: Parameters<HttpAgent["createConnection"]>
      ): Duplex | null | undefined {
        made++;
        return super.createConnection(...args);
      }
    }
    const agent = new CountingAgent();
    onCleanup(() => agent.destroy());
    expect(await roundTrip(`${wsUrl}/echo`, { agent })).toBe("secret");
    expect(made).toBe(1);
  });

  it("an https.Agent with its own CA makes the connection for wss://", async () => {
    const port = await tlsEcho();
    const agent = new HttpsAgent({ ca: cert });
    onCleanup(() => agent.destroy());
    expect(await roundTrip(`wss://localhost:${port}/echo`, { agent })).toBe("secret");
  });
});
