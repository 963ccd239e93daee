import {
  type Application,
  createApp,
  type ErrorKind,
  PubSub,
  type PubSubOptions,
  type Route,
  WebSockets,
  type WebSocketsOptions,
} from "../../src/index.js";
import { onCleanup } from "../helpers/cleanup.js";

export interface PubSubApp {
  app: Application;
  wsUrl: string;
  port: number;
  errors: Array<{ error: unknown; kind: ErrorKind }>;
}

/**
 * An app with WebSockets (and PubSub when `pubsub` is given), the routes `build` defines (it gets the
 * app, for routes that publish), listening on 127.0.0.1:0 and stopped at cleanup.
 */
export async function startPubSub(
  build: (route: Route<"">, app: Application) => void,
  pubsub?: PubSubOptions,
  ws: WebSocketsOptions = {},
): Promise<PubSubApp> {
  const errors: PubSubApp["errors"] = [];
  const app = createApp()
    .install(WebSockets, ws)
    .onError((error, kind) => errors.push({ error, kind }));
  if (pubsub) app.install(PubSub, pubsub);
  app.routing((r) => build(r, app));
  const { url, port } = await app.listen({ port: 0 });
  onCleanup(() => app.stop({ grace: 0 }));
  return { app, wsUrl: url.replace(/^http/, "ws"), port, errors };
}
