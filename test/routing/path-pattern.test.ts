import { describe, expect, expectTypeOf, it } from "vitest";
import {
  type JoinedPath,
  joinPaths,
  type PathParams,
  type PatternSegment,
  parsePattern,
  RoutePatternError,
} from "../../src/routing/index.js";

describe("parsePattern", () => {
  const cases: ReadonlyArray<[pattern: string, segments: PatternSegment[], paramNames: string[]]> = [
    ["/", [], []],
    ["", [], []],
    ["/chat", [{ kind: "static", value: "chat" }], []],
    ["chat", [{ kind: "static", value: "chat" }], []],
    ["/chat/", [{ kind: "static", value: "chat" }], []],
    [
      "/chat/{room}",
      [
        { kind: "static", value: "chat" },
        { kind: "param", name: "room" },
      ],
      ["room"],
    ],
    [
      "/files/{name?}",
      [
        { kind: "static", value: "files" },
        { kind: "optional", name: "name" },
      ],
      ["name"],
    ],
    ["/a/*/b", [{ kind: "static", value: "a" }, { kind: "wildcard" }, { kind: "static", value: "b" }], []],
    [
      "/static/{path...}",
      [
        { kind: "static", value: "static" },
        { kind: "tail", name: "path" },
      ],
      ["path"],
    ],
    [
      "/{_a}/{B9}/{c_1?}",
      [
        { kind: "param", name: "_a" },
        { kind: "param", name: "B9" },
        { kind: "optional", name: "c_1" },
      ],
      ["_a", "B9", "c_1"],
    ],
    ["/hello%20world", [{ kind: "static", value: "hello world" }], []],
    ["/a%2Fb", [{ kind: "static", value: "a/b" }], []],
  ];

  it.each(cases)("parses %j into its segments", (pattern, segments, paramNames) => {
    expect(parsePattern(pattern)).toEqual({ pattern, segments, paramNames });
  });

  const invalid: ReadonlyArray<[pattern: string, problem: string]> = [
    ["/a//b", "empty segment (double slash)"],
    ["//", "empty segment (double slash)"],
    ["/chat/{}", 'empty parameter name in segment "{}"'],
    ["/chat/{?}", 'empty parameter name in segment "{?}"'],
    ["/chat/{...}", 'empty parameter name in segment "{...}"'],
    [
      "/chat/{9room}",
      'invalid parameter name "9room" in segment "{9room}" (names match [A-Za-z_][A-Za-z0-9_]*)',
    ],
    [
      "/chat/{ro-om}",
      'invalid parameter name "ro-om" in segment "{ro-om}" (names match [A-Za-z_][A-Za-z0-9_]*)',
    ],
    [
      "/chat/{ro.om}",
      'invalid parameter name "ro.om" in segment "{ro.om}" (names match [A-Za-z_][A-Za-z0-9_]*)',
    ],
    [
      "/chat/{room??}",
      'invalid parameter name "room?" in segment "{room??}" (names match [A-Za-z_][A-Za-z0-9_]*)',
    ],
    ["/{id}/x/{id}", 'duplicate parameter name "id"'],
    ["/{id}/{id?}", 'duplicate parameter name "id"'],
    ["/{id}/{id...}", 'duplicate parameter name "id"'],
    ["/files/{name?}/raw", 'optional parameter "{name?}" must be the last segment'],
    ["/static/{path...}/raw", 'tail parameter "{path...}" must be the last segment'],
    ["/{a?}/{b...}", 'optional parameter "{a?}" must be the last segment'],
    ["/chat/{room", 'unbalanced or nested braces in segment "{room"'],
    ["/chat/room}", 'unbalanced or nested braces in segment "room}"'],
    ["/chat/}room{", 'unbalanced or nested braces in segment "}room{"'],
    ["/chat/{{room}}", 'unbalanced or nested braces in segment "{{room}}"'],
    ["/chat/{a}{b}", 'unbalanced or nested braces in segment "{a}{b}"'],
    ["/chat/x{room}", 'parameter in segment "x{room}" must span the whole segment (no prefix or suffix)'],
    [
      "/chat/{room}.json",
      'parameter in segment "{room}.json" must span the whole segment (no prefix or suffix)',
    ],
    ["/a*b", '"*" must be a whole segment in "a*b"'],
    ["/a/**", '"*" must be a whole segment in "**"'],
    ["/chat?x=1", '"?" and "#" are not allowed in literal segment "chat?x=1"'],
    ["/chat#top", '"?" and "#" are not allowed in literal segment "chat#top"'],
    ["/bad%E0%A4%A", 'malformed percent-encoding in segment "bad%E0%A4%A"'],
  ];

  it.each(invalid)("rejects %j: %s", (pattern, problem) => {
    let thrown: unknown;
    try {
      parsePattern(pattern);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RoutePatternError);
    const error = thrown as RoutePatternError;
    expect(error.code).toBe("ROUTE_PATTERN_INVALID");
    expect(error.name).toBe("RoutePatternError");
    expect(error.pattern).toBe(pattern);
    expect(error.message).toBe(`Invalid route pattern ${JSON.stringify(pattern)}: ${problem}`);
  });
});

describe("joinPaths", () => {
  const cases: ReadonlyArray<[prefix: string, path: string, joined: string]> = [
    ["/chat", "/{room}", "/chat/{room}"],
    ["/chat/", "/{room}", "/chat/{room}"],
    ["/chat", "{room}", "/chat/{room}"],
    ["chat", "room", "/chat/room"],
    ["/chat//", "//{room}//", "/chat/{room}"],
    ["", "", "/"],
    ["/", "/", "/"],
    ["/", "", "/"],
    ["", "/chat", "/chat"],
    ["/", "/chat", "/chat"],
    ["/chat", "", "/chat"],
    ["/chat", "/", "/chat"],
    ["/a/b", "/c/d", "/a/b/c/d"],
  ];

  it.each(cases)("joins %j and %j into %j", (prefix, path, joined) => {
    expect(joinPaths(prefix, path)).toBe(joined);
  });

  it("returns the joined literal type", () => {
    const joined = joinPaths("/chat/", "/{room}");
    expectTypeOf(joined).toEqualTypeOf<"/chat/{room}">();
    expect(joined).toBe("/chat/{room}");
  });
});

describe("JoinedPath (type level)", () => {
  it("mirrors joinPaths for literals", () => {
    expectTypeOf<JoinedPath<"/chat", "/{room}">>().toEqualTypeOf<"/chat/{room}">();
    expectTypeOf<JoinedPath<"/chat//", "//{room}/">>().toEqualTypeOf<"/chat/{room}">();
    expectTypeOf<JoinedPath<"", "">>().toEqualTypeOf<"/">();
    expectTypeOf<JoinedPath<"/", "/">>().toEqualTypeOf<"/">();
    expectTypeOf<JoinedPath<"/chat", "">>().toEqualTypeOf<"/chat">();
    expectTypeOf<JoinedPath<"", "chat">>().toEqualTypeOf<"/chat">();
  });

  it("degrades to string when either side is not a literal", () => {
    expectTypeOf<JoinedPath<string, "/{room}">>().toEqualTypeOf<string>();
    expectTypeOf<JoinedPath<"/chat", string>>().toEqualTypeOf<string>();
  });
});

describe("PathParams (type level)", () => {
  it("has no keys for a pattern without parameters", () => {
    expectTypeOf<PathParams<"/">>().toEqualTypeOf<Record<never, never>>();
    expectTypeOf<PathParams<"/chat/*/x">>().toEqualTypeOf<Record<never, never>>();
  });

  it("makes {name} a required string", () => {
    expectTypeOf<PathParams<"/chat/{room}">>().toEqualTypeOf<{ room: string }>();
    expectTypeOf<PathParams<"/{a}/x/{b}">>().toEqualTypeOf<{ a: string; b: string }>();
  });

  it("makes {name?} an optional key", () => {
    expectTypeOf<PathParams<"/chat/{room}/{id?}">>().toEqualTypeOf<{ room: string; id?: string }>();
    expectTypeOf<PathParams<"/files/{name?}">>().toEqualTypeOf<{ name?: string }>();
  });

  it("makes {name...} a required string", () => {
    expectTypeOf<PathParams<"/static/{rest...}">>().toEqualTypeOf<{ rest: string }>();
    expectTypeOf<PathParams<"/{a}/*/{rest...}">>().toEqualTypeOf<{ a: string; rest: string }>();
  });

  it("composes with JoinedPath for nested routes", () => {
    expectTypeOf<PathParams<JoinedPath<"/chat/{room}", "/{id?}">>>().toEqualTypeOf<{
      room: string;
      id?: string;
    }>();
  });

  it("degrades to a string record for non-literal patterns", () => {
    expectTypeOf<PathParams<string>>().toEqualTypeOf<Record<string, string | undefined>>();
    expectTypeOf<PathParams<`/chat/${string}`>>().toEqualTypeOf<Record<string, string | undefined>>();
  });
});
