/**
 * Route path patterns: parsing, validation and joining of nested route paths.
 *
 * Grammar (segments are always whole; no prefix/suffix around a parameter):
 *   literal      a static segment, compared after percent-decoding
 *   {name}       exactly one non-empty segment, captured
 *   {name?}      an optional last segment, captured when present
 *   *            exactly one non-empty segment, not captured
 *   {name...}    zero or more remaining segments, captured joined with "/"; last only
 */

export type PatternSegment =
  | { readonly kind: "static"; readonly value: string }
  | { readonly kind: "param"; readonly name: string }
  | { readonly kind: "wildcard" }
  | { readonly kind: "optional"; readonly name: string }
  | { readonly kind: "tail"; readonly name: string };

export interface ParsedPattern {
  /** The pattern exactly as given. */
  readonly pattern: string;
  /** Segments after the leading slash; empty for the root "/". */
  readonly segments: readonly PatternSegment[];
  /** Names of all captured parameters, in pattern order. */
  readonly paramNames: readonly string[];
}

/** Thrown when a route is defined with a pattern that does not follow the grammar above. */
export class RoutePatternError extends Error {
  readonly code = "ROUTE_PATTERN_INVALID";
  readonly pattern: string;

  constructor(pattern: string, problem: string) {
    super(`Invalid route pattern ${JSON.stringify(pattern)}: ${problem}`);
    this.name = "RoutePatternError";
    this.pattern = pattern;
  }
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const WILDCARD: PatternSegment = { kind: "wildcard" };

/**
 * Parses and validates a pattern. The leading slash is optional ("chat" ≡ "/chat", as in Ktor's
 * relative routes) and one trailing slash is ignored, mirroring how request paths are matched.
 * Throws `RoutePatternError` naming the pattern and the problem.
 */
export function parsePattern(pattern: string): ParsedPattern {
  const body = pattern.startsWith("/") ? pattern.slice(1) : pattern;
  const rawSegments = body === "" ? [] : body.split("/");
  if (rawSegments.length > 1 && rawSegments[rawSegments.length - 1] === "") rawSegments.pop();

  const segments: PatternSegment[] = [];
  const paramNames: string[] = [];
  const last = rawSegments.length - 1;
  for (const [index, raw] of rawSegments.entries()) {
    const segment = parseSegment(pattern, raw);
    if ((segment.kind === "optional" || segment.kind === "tail") && index !== last) {
      const what = segment.kind === "optional" ? "optional parameter" : "tail parameter";
      throw new RoutePatternError(pattern, `${what} "${raw}" must be the last segment`);
    }
    if (segment.kind !== "static" && segment.kind !== "wildcard") {
      if (paramNames.includes(segment.name)) {
        throw new RoutePatternError(pattern, `duplicate parameter name "${segment.name}"`);
      }
      paramNames.push(segment.name);
    }
    segments.push(segment);
  }
  return { pattern, segments, paramNames };
}

function parseSegment(pattern: string, raw: string): PatternSegment {
  if (raw === "") throw new RoutePatternError(pattern, "empty segment (double slash)");
  if (raw === "*") return WILDCARD;

  const opens = countChar(raw, "{");
  const closes = countChar(raw, "}");
  if (opens === 0 && closes === 0) return parseStatic(pattern, raw);
  if (opens !== 1 || closes !== 1 || raw.indexOf("{") > raw.indexOf("}")) {
    throw new RoutePatternError(pattern, `unbalanced or nested braces in segment "${raw}"`);
  }
  if (!raw.startsWith("{") || !raw.endsWith("}")) {
    throw new RoutePatternError(
      pattern,
      `parameter in segment "${raw}" must span the whole segment (no prefix or suffix)`,
    );
  }

  const inner = raw.slice(1, -1);
  let kind: "param" | "optional" | "tail" = "param";
  let name = inner;
  if (inner.endsWith("...")) {
    kind = "tail";
    name = inner.slice(0, -3);
  } else if (inner.endsWith("?")) {
    kind = "optional";
    name = inner.slice(0, -1);
  }
  if (name === "") throw new RoutePatternError(pattern, `empty parameter name in segment "${raw}"`);
  if (!PARAM_NAME.test(name)) {
    throw new RoutePatternError(
      pattern,
      `invalid parameter name "${name}" in segment "${raw}" (names match [A-Za-z_][A-Za-z0-9_]*)`,
    );
  }
  return { kind, name };
}

function parseStatic(pattern: string, raw: string): PatternSegment {
  // "*" inside a literal would look like a glob but match literally; reject the ambiguity.
  if (raw.includes("*")) throw new RoutePatternError(pattern, `"*" must be a whole segment in "${raw}"`);
  // Matched paths never contain a query or fragment, so such a literal could never match.
  if (raw.includes("?") || raw.includes("#")) {
    throw new RoutePatternError(pattern, `"?" and "#" are not allowed in literal segment "${raw}"`);
  }
  // Request segments are compared decoded, so literals are decoded too ("a%20b" ≡ "a b").
  try {
    return { kind: "static", value: decodeURIComponent(raw) };
  } catch {
    throw new RoutePatternError(pattern, `malformed percent-encoding in segment "${raw}"`);
  }
}

function countChar(text: string, char: string): number {
  let count = 0;
  for (const c of text) if (c === char) count++;
  return count;
}

type TrimLeadingSlashes<S extends string> = S extends `/${infer Rest}` ? TrimLeadingSlashes<Rest> : S;
type TrimTrailingSlashes<S extends string> = S extends `${infer Rest}/` ? TrimTrailingSlashes<Rest> : S;
type TrimSlashes<S extends string> = TrimTrailingSlashes<TrimLeadingSlashes<S>>;
type JoinTrimmed<A extends string, B extends string> = A extends ""
  ? B extends ""
    ? "/"
    : `/${B}`
  : B extends ""
    ? `/${A}`
    : `/${A}/${B}`;

/** The literal type `joinPaths(prefix, path)` returns; plain `string` when either side is not a literal. */
export type JoinedPath<Prefix extends string, Path extends string> = string extends Prefix
  ? string
  : string extends Path
    ? string
    : JoinTrimmed<TrimSlashes<Prefix>, TrimSlashes<Path>>;

/**
 * Joins a parent route's path and a nested path: slashes at the seam and at the ends are trimmed,
 * empty parts vanish, and the result always starts with "/" ("/chat" + "/{room}" → "/chat/{room}",
 * "" + "" → "/"). It does not validate; `parsePattern` does that when the route is added.
 */
export function joinPaths<Prefix extends string, Path extends string>(
  prefix: Prefix,
  path: Path,
): JoinedPath<Prefix, Path> {
  const parts = [trimSlashes(prefix), trimSlashes(path)].filter((part) => part !== "");
  return `/${parts.join("/")}` as JoinedPath<Prefix, Path>;
}

function trimSlashes(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && text[start] === "/") start++;
  while (end > start && text[end - 1] === "/") end--;
  return text.slice(start, end);
}
