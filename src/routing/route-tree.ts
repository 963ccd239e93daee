/**
 * A segment trie of route patterns. Lookup walks the request's segments once per matching branch,
 * so its cost follows the path's length (and the number of matches), not the number of routes.
 */

import { type ParsedPattern, parsePattern } from "./path-pattern.js";
import { splitRequestPath } from "./request-path.js";

export interface RouteMatch<H> {
  readonly value: H;
  /** Decoded captures; an absent optional parameter has no key, a tail is "" when empty. */
  readonly params: Readonly<Record<string, string>>;
  /** The pattern as it was passed to `add`. */
  readonly pattern: string;
}

interface RouteEntry<H> {
  readonly value: H;
  readonly parsed: ParsedPattern;
}

class TrieNode<H> {
  readonly statics = new Map<string, TrieNode<H>>();
  param: TrieNode<H> | undefined;
  wildcard: TrieNode<H> | undefined;
  /** Patterns that end at this node. */
  readonly exact: RouteEntry<H>[] = [];
  /** Patterns whose last segment, below this node, is `{name?}`; leaves, so kept as lists. */
  readonly optional: RouteEntry<H>[] = [];
  /** Patterns whose last segment, below this node, is `{name...}`. */
  readonly tail: RouteEntry<H>[] = [];
}

export class RouteTree<H> {
  readonly #root = new TrieNode<H>();
  readonly #values: H[] = [];

  /** Adds a value under a pattern (validated by `parsePattern`, which throws `RoutePatternError`). */
  add(pattern: string, value: H): void {
    const parsed = parsePattern(pattern);
    const entry: RouteEntry<H> = { value, parsed };
    this.#values.push(value);
    let node = this.#root;
    for (const segment of parsed.segments) {
      switch (segment.kind) {
        case "static": {
          let child = node.statics.get(segment.value);
          if (child === undefined) {
            child = new TrieNode<H>();
            node.statics.set(segment.value, child);
          }
          node = child;
          break;
        }
        case "param":
          node = node.param ??= new TrieNode<H>();
          break;
        case "wildcard":
          node = node.wildcard ??= new TrieNode<H>();
          break;
        case "optional":
          node.optional.push(entry);
          return;
        case "tail":
          node.tail.push(entry);
          return;
      }
    }
    node.exact.push(entry);
  }

  /** Whether any value added satisfies `predicate`, whatever its pattern. */
  some(predicate: (value: H) => boolean): boolean {
    return this.#values.some(predicate);
  }

  /**
   * Every value whose pattern matches the URL path (no query), most specific first: compared segment by
   * segment, static > {param} > * > {optional?} > {tail...}, and a pattern that ends at the path's end
   * beats one that continues with an empty optional or tail; ties keep insertion order.
   * Throws `RoutePathError` when the path has a malformed percent-escape.
   */
  match(path: string): RouteMatch<H>[] {
    const segments = splitRequestPath(path);
    const matches: RouteMatch<H>[] = [];
    collect(this.#root, segments, 0, matches);
    return matches;
  }
}

// Depth-first in precedence order, which yields matches already sorted; recursion depth is bounded
// by the deepest pattern, not by the request path.
function collect<H>(
  node: TrieNode<H>,
  segments: readonly string[],
  depth: number,
  out: RouteMatch<H>[],
): void {
  if (depth === segments.length) {
    for (const entry of node.exact) out.push(toMatch(entry, segments));
    for (const entry of node.optional) out.push(toMatch(entry, segments));
    for (const entry of node.tail) out.push(toMatch(entry, segments));
    return;
  }
  const segment = segments[depth]!;
  const staticChild = node.statics.get(segment);
  if (staticChild !== undefined) collect(staticChild, segments, depth + 1, out);
  // An empty segment ("//") is not a value for a single-segment parameter or wildcard.
  if (segment !== "") {
    if (node.param !== undefined) collect(node.param, segments, depth + 1, out);
    if (node.wildcard !== undefined) collect(node.wildcard, segments, depth + 1, out);
    if (depth === segments.length - 1) {
      for (const entry of node.optional) out.push(toMatch(entry, segments));
    }
  }
  for (const entry of node.tail) out.push(toMatch(entry, segments));
}

/** Shared by every match of a route without parameters. */
const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze(Object.create(null));

function toMatch<H>(entry: RouteEntry<H>, segments: readonly string[]): RouteMatch<H> {
  if (entry.parsed.paramNames.length === 0)
    return { value: entry.value, params: NO_PARAMS, pattern: entry.parsed.pattern };
  // Null prototype: a parameter may legally be named "__proto__" or "constructor".
  const params: Record<string, string> = Object.create(null);
  for (const [index, segment] of entry.parsed.segments.entries()) {
    switch (segment.kind) {
      case "param":
        params[segment.name] = segments[index]!;
        break;
      case "optional": {
        const value = segments[index];
        if (value !== undefined) params[segment.name] = value;
        break;
      }
      case "tail":
        params[segment.name] = segments.slice(index).join("/");
        break;
    }
  }
  return { value: entry.value, params, pattern: entry.parsed.pattern };
}
