import { createApp, WebSockets } from "../../src/index.js";

/** The WebSocket side shared by the attach examples: an echo per room, on /ws/{room}. */
export function createWebSocketApp() {
  const app = createApp().install(WebSockets, { pingPeriod: 30_000 });
  app.routing((r) => {
    r.webSocket("/ws/{room}", async (session) => {
      const room = session.call.parameters.room;
      for await (const frame of session.incoming) {
        if (frame.type === "text") await session.send(`${room}: ${frame.text}`);
      }
    });
  });
  return app;
}
