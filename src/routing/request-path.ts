/** Splitting and decoding of request paths before they are matched against the route tree. */

/** Thrown when a request path has a malformed percent-escape; the app answers 400 Bad Request. */
export class RoutePathError extends Error {
  readonly code = "ROUTE_PATH_MALFORMED";
  readonly path: string;

  constructor(path: string, segment: string, options?: ErrorOptions) {
    super(
      `Malformed percent-encoding in segment ${JSON.stringify(segment)} of request path ${JSON.stringify(path)}`,
      options,
    );
    this.name = "RoutePathError";
    this.path = path;
  }
}

/**
 * Splits a URL path (no query) into decoded segments: "/" and "" → [], "/chat/" → ["chat"]
 * (one trailing slash ignored), "//" → [""]. Each segment is decoded after splitting, so an
 * encoded "%2F" stays inside its segment. Throws `RoutePathError` on a malformed escape.
 */
export function splitRequestPath(path: string): string[] {
  const body = path.startsWith("/") ? path.slice(1) : path;
  if (body === "") return [];
  const segments = body.split("/");
  if (segments.length > 1 && segments[segments.length - 1] === "") segments.pop();
  for (let i = 0; i < segments.length; i++) {
    const raw = segments[i]!;
    if (!raw.includes("%")) continue;
    try {
      segments[i] = decodeURIComponent(raw);
    } catch (cause) {
      throw new RoutePathError(path, raw, { cause });
    }
  }
  return segments;
}
