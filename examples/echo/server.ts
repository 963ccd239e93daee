/**
 * Echo server for conformance runs: every text and binary message comes back unchanged, on any path.
 *   PORT=9001 npm run example:echo
 * DEFLATE=1 turns on permessage-deflate (RFC 7692), compressing every message (threshold 0).
 */
import { createApp, permessageDeflate, WebSockets } from "../../src/index.js";

const port = Number(process.env.PORT ?? 9001);
const host = process.env.HOST ?? "127.0.0.1";

const app = createApp().install(WebSockets, {
  // Conformance suites send messages up to 16 MiB and wait with long pauses.
  maxFrameSize: 64 * 1024 * 1024,
  pingPeriod: 0,
  extensions: process.env.DEFLATE === "1" ? [permessageDeflate({ threshold: 0 })] : [],
});
app.routing((r) => {
  r.webSocket("/{path...}", async (session) => {
    for await (const frame of session.incoming) await session.send(frame);
  });
});

const { url } = await app.listen({ port, host });
console.log(`echo server at ${url.replace("http", "ws")}/`);
const stop = () => void app.stop({ grace: 2000 }).then(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
