import {
  type Application,
  createApp,
  type ErrorKind,
  type Route,
  WebSockets,
  type WebSocketsOptions,
} from "../../src/index.js";
import { onCleanup } from "./cleanup.js";
import { selfSignedCert } from "./tls.js";

/** A certificate for 127.0.0.1 and localhost, made once for the test file that imports this. */
export const h2Tls = selfSignedCert("IP:127.0.0.1,DNS:localhost");

export type Http2Option = Exclude<Parameters<Application["listen"]>[0], undefined>["http2"];

/**
 * An app on `listen({ tls, http2 })` with WebSockets installed with `options` and the routes of
 * `build`; stopped by the test's cleanup. `errors` records the error hook's calls as [kind, error].
 */
export async function startH2(
  build: (route: Route<"">) => void,
  options: WebSocketsOptions = {},
  http2: Http2Option = true,
): Promise<{ app: Application; url: string; port: number; errors: Array<[ErrorKind, unknown]> }> {
  const errors: Array<[ErrorKind, unknown]> = [];
  const app = createApp()
    .install(WebSockets, options)
    .onError((error, kind) => errors.push([kind, error]));
  app.routing(build);
  const { url, port } = await app.listen({ tls: h2Tls, http2 });
  onCleanup(() => app.stop({ grace: 0 }));
  return { app, url, port, errors };
}

/** An echo route at /echo. */
export const echoRoute = (r: Route<"">) =>
  r.webSocket("/echo", async (s) => {
    for await (const m of s.incoming) await s.send(m);
  });
