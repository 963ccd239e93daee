/**
 * Chat rooms over WebSockets: open http://127.0.0.1:8080/ in two browser tabs.
 *   npm start            (PORT and HOST override the defaults; DEFLATE=0 turns compression off)
 * Each room is a path parameter (`/chat/{room}`); messages go to everyone in the same room.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createApp, permessageDeflate, WebSockets } from "../../src/index.js";
import { ChatRooms } from "./rooms.js";

const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? "127.0.0.1";
// The page lives beside the source; the built server runs from dist/examples/chat/.
const here = dirname(fileURLToPath(import.meta.url));
const publicDir = existsSync(resolve(here, "public"))
  ? resolve(here, "public")
  : resolve(here, "../../../examples/chat/public");

export interface ChatOptions {
  /** Negotiate permessage-deflate with clients that offer it (browsers do). Default true. */
  deflate?: boolean;
}

export function createChatApp(options: ChatOptions = {}, rooms = new ChatRooms()) {
  const app = createApp().install(WebSockets, {
    pingPeriod: 20_000,
    timeout: 10_000,
    maxFrameSize: 64 * 1024,
    extensions: options.deflate === false ? [] : [permessageDeflate({ threshold: 256 })],
  });
  app.routing((r) => {
    r.get("/", (call) => call.respondFile(resolve(publicDir, "index.html")));
    r.get("/health", (call) => call.respondJson({ status: "ok", rooms: rooms.size }));
    r.staticFiles("/static", publicDir);
    r.route("/chat", (r) => {
      r.webSocket(
        "/{room}",
        {
          protocol: "chat.v1",
          beforeUpgrade: (call) => {
            const name = (call.query.get("name") ?? "").trim().slice(0, 32);
            return name === "" ? call.reject(400, "name query parameter required\n") : { name };
          },
        },
        async (session) => {
          const room = session.call.parameters.room;
          const { name } = session.data;
          rooms.join(room, session);
          rooms.broadcast(room, `* ${name} joined ${room}`);
          try {
            for await (const frame of session.incoming) {
              if (frame.type === "text") rooms.broadcast(room, `${name}: ${frame.text.slice(0, 1000)}`);
            }
          } finally {
            rooms.leave(room, session);
            rooms.broadcast(room, `* ${name} left`);
          }
        },
      );
    });
  });
  return app;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const app = createChatApp({ deflate: process.env.DEFLATE !== "0" });
  const { url } = await app.listen({ port, host });
  console.log(`chat at ${url}/`);
  const stop = () => void app.stop({ grace: 2000 }).then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
