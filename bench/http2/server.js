// @ts-check
/**
 * The server of the HTTP/2 benchmark: sockway on `listen({ tls, http2: true })` (HTTP/1.1 on the same
 * port), an echo route at /echo, a self-signed certificate made at start. Prints `READY <port>`; exits
 * when stdin closes.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const dist = process.env.BENCH_SOCKWAY_DIST ?? fileURLToPath(new URL("../../dist/src", import.meta.url));
const { createApp, WebSockets } = await import(pathToFileURL(`${dist}/index.js`).href);

const dir = mkdtempSync(join(tmpdir(), "sockway-bench-tls-"));
execFileSync(
  "openssl",
  ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"].concat([
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-keyout",
    join(dir, "k.pem"),
    "-out",
    join(dir, "c.pem"),
  ]),
  { stdio: "ignore" },
);
const tls = { key: readFileSync(join(dir, "k.pem")), cert: readFileSync(join(dir, "c.pem")) };
rmSync(dir, { recursive: true, force: true });

const app = createApp()
  .install(WebSockets, { pingPeriod: 0 })
  .onError(() => {})
  .routing((/** @type {any} */ r) =>
    r.webSocket("/echo", async (/** @type {any} */ session) => {
      for await (const frame of session.incoming) await session.send(frame);
    }),
  );
const { port } = await app.listen({ tls, http2: { maxConcurrentStreams: 1000 }, host: "127.0.0.1", port: 0 });
console.log(`READY ${port}`);
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
