import { resolve, sep } from "node:path";
import type { HttpCall } from "./call.js";

/**
 * Serves `relative` from inside `directory`. The route tree has already percent-decoded the segments;
 * anything that resolves outside the directory (`..`, absolute paths, NUL bytes) is a 404.
 */
export function serveStaticFile(call: HttpCall, directory: string, relative: string): Promise<void> | void {
  const root = resolve(directory);
  if (relative.includes("\0")) return call.respondText("Not Found", 404);
  const target = resolve(root, relative === "" ? "index.html" : relative);
  if (target !== root && !target.startsWith(root + sep)) return call.respondText("Not Found", 404);
  return call.respondFile(target);
}
