/**
 * Which web pages may open chat sockets. Without a check, any website a visitor has open could connect
 * to the chat in their name (cross-site WebSocket hijacking): browsers send the page's Origin with
 * every WebSocket handshake, and the server refuses (403) origins it does not serve.
 *
 * The allowed origins are derived from the address the server listens on, not from the request's Host
 * header: a Host check passes a DNS-rebinding attacker, whose page and Host both name the attacker's
 * domain. Behind a proxy or under another name, CHAT_ORIGINS lists the public origins instead.
 */
import { networkInterfaces } from "node:os";

/** Origins of pages served from `host:port` over http: loopback names are interchangeable. */
export function originsFor(host: string, port: number): string[] {
  const hosts = new Set<string>();
  const unbracketed = host.replace(/^\[(.*)\]$/, "$1");
  if (unbracketed === "" || unbracketed === "0.0.0.0" || unbracketed === "::") {
    // Every address of this machine serves the page.
    for (const list of Object.values(networkInterfaces()))
      for (const info of list ?? []) hosts.add(info.address.replace(/%.*$/, ""));
    hosts.add("localhost");
  } else {
    hosts.add(unbracketed);
  }
  if (hosts.has("127.0.0.1") || hosts.has("::1") || hosts.has("localhost")) {
    hosts.add("127.0.0.1");
    hosts.add("::1");
    hosts.add("localhost");
  }
  // Browsers leave the default port out of Origin.
  const suffix = port === 80 ? "" : `:${port}`;
  return [...hosts].map((h) => `http://${h.includes(":") ? `[${h}]` : h.toLowerCase()}${suffix}`);
}

/**
 * CHAT_ORIGINS: comma-separated origins ("https://chat.example.com, https://example.org"), which
 * replace the derived ones. Each must be a bare origin (scheme, host, optional port); it is compared
 * in the form browsers send (lower case, default port left out).
 */
export function parseOrigins(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((origin) => {
      let url: URL | undefined;
      try {
        url = new URL(origin);
      } catch {
        url = undefined;
      }
      const bare = url !== undefined && url.origin !== "null" && `${url.origin}/` === url.href;
      if (!bare || /\/$/.test(origin))
        throw new Error(
          `CHAT_ORIGINS: ${JSON.stringify(origin)} is not an origin like https://chat.example.com`,
        );
      return url!.origin;
    });
}
