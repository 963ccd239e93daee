import {
  type Application,
  createApp,
  type ErrorKind,
  type Route,
  WebSockets,
  type WebSocketsOptions,
} from "../../src/index.js";
import { onCleanup } from "./cleanup.js";

export interface ReportedError {
  error: unknown;
  kind: ErrorKind;
}

export interface StartedApp {
  app: Application;
  /** http://127.0.0.1:port */
  url: string;
  /** ws://127.0.0.1:port */
  wsUrl: string;
  port: number;
  /** What the application reported to its error hook, in order. */
  errors: ReportedError[];
}

/**
 * Creates an app, installs WebSockets with `options`, defines the routes, listens on 127.0.0.1:0, and
 * registers `app.stop({ grace: 0 })` for cleanup. The error hook records into `errors` (no console noise).
 */
export async function startApp(
  build: (route: Route<"">) => void,
  options: WebSocketsOptions = {},
): Promise<StartedApp> {
  const errors: ReportedError[] = [];
  const app = createApp()
    .install(WebSockets, options)
    .onError((error, kind) => errors.push({ error, kind }));
  app.routing(build);
  const { url, port } = await app.listen({ host: "127.0.0.1", port: 0 });
  onCleanup(() => app.stop({ grace: 0 }));
  return { app, url, wsUrl: url.replace(/^http/, "ws"), port, errors };
}
