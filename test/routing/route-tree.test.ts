import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RoutePathError, RoutePatternError, RouteTree, splitRequestPath } from "../../src/routing/index.js";

type Params = Record<string, string>;

/** A tree whose value is the pattern itself, so results read as the list of matching patterns. */
function treeOf(...patterns: string[]): RouteTree<string> {
  const tree = new RouteTree<string>();
  for (const pattern of patterns) tree.add(pattern, pattern);
  return tree;
}

/** Matches as [pattern, params] pairs; params copied to plain objects for readable diffs. */
function matchesOf(tree: RouteTree<string>, path: string): Array<[string, Params]> {
  return tree.match(path).map((m) => [m.pattern, { ...m.params }]);
}

describe("RouteTree segment kinds", () => {
  const cases: ReadonlyArray<[pattern: string, path: string, params: Params | null]> = [
    ["/", "/", {}],
    ["/", "", {}],
    ["/", "/chat", null],
    ["/chat", "/chat", {}],
    ["/chat", "/Chat", null],
    ["/chat", "/chat/x", null],
    ["/chat", "/", null],
    ["/chat/{room}", "/chat/lobby", { room: "lobby" }],
    ["/chat/{room}", "/chat", null],
    ["/chat/{room}", "/chat/a/b", null],
    ["/chat/{room}", "/chat//", null],
    ["/{a}/{b}", "//x", null],
    ["/{a}/{b}", "/x//y", null],
    ["/files/{name?}", "/files", {}],
    ["/files/{name?}", "/files/a.txt", { name: "a.txt" }],
    ["/files/{name?}", "/files/a/b", null],
    ["/files/{name?}", "/files//", null],
    ["/{name?}", "/", {}],
    ["/{name?}", "/x", { name: "x" }],
    ["/a/*/b", "/a/anything/b", {}],
    ["/a/*/b", "/a/b", null],
    ["/a/*/b", "/a//b", null],
    ["/a/*/b", "/a/x/y/b", null],
    ["/static/{path...}", "/static", { path: "" }],
    ["/static/{path...}", "/static/", { path: "" }],
    ["/static/{path...}", "/static/css/site.css", { path: "css/site.css" }],
    ["/static/{path...}", "/static/a//b", { path: "a//b" }],
    ["/static/{path...}", "/other/a", null],
    ["/{all...}", "/", { all: "" }],
    ["/{all...}", "/x/y/z", { all: "x/y/z" }],
    ["chat/{room}", "/chat/x", { room: "x" }],
    ["/hello%20world", "/hello world", {}],
    ["/hello%20world", "/hello%20world", {}],
  ];

  it.each(cases)("pattern %j against %j gives %j", (pattern, path, params) => {
    const expected = params === null ? [] : [[pattern, params]];
    expect(matchesOf(treeOf(pattern), path)).toEqual(expected);
  });

  it("captures every kind at once", () => {
    const tree = treeOf("/{org}/*/repos/{repo}/{rest...}");
    expect(matchesOf(tree, "/acme/x/repos/sockway/blob/main/README.md")).toEqual([
      ["/{org}/*/repos/{repo}/{rest...}", { org: "acme", repo: "sockway", rest: "blob/main/README.md" }],
    ]);
  });

  it("omits an absent optional parameter instead of setting it to undefined", () => {
    const [match] = treeOf("/files/{name?}").match("/files");
    expect(match).toBeDefined();
    expect(Object.keys(match!.params)).toEqual([]);
  });

  it("stores a parameter named __proto__ as an own key", () => {
    const [match] = treeOf("/{__proto__}").match("/x");
    expect(Object.entries(match!.params)).toEqual([["__proto__", "x"]]);
  });
});

describe("RouteTree trailing slash", () => {
  const cases: ReadonlyArray<[pattern: string, path: string, matches: boolean]> = [
    ["/chat", "/chat/", true],
    ["/chat/", "/chat", true],
    ["/chat/", "/chat/", true],
    ["/chat", "/chat//", false],
    ["/chat/{room}", "/chat/lobby/", true],
    ["/", "/", true],
    ["/", "//", false],
  ];

  it.each(cases)("pattern %j against %j matches: %j", (pattern, path, matches) => {
    expect(treeOf(pattern).match(path).length).toBe(matches ? 1 : 0);
  });
});

describe("RouteTree precedence", () => {
  it("orders static > {param} > * > {optional?} > {tail...} at one segment", () => {
    const tree = treeOf("/{tail...}", "/{opt?}", "/*", "/{param}", "/a");
    expect(matchesOf(tree, "/a")).toEqual([
      ["/a", {}],
      ["/{param}", { param: "a" }],
      ["/*", {}],
      ["/{opt?}", { opt: "a" }],
      ["/{tail...}", { tail: "a" }],
    ]);
  });

  it("decides by the first segment that differs", () => {
    const tree = treeOf("/{x}/b", "/a/{y}", "/{x}/{y}", "/a/b", "/*/b", "/{rest...}");
    expect(tree.match("/a/b").map((m) => m.pattern)).toEqual([
      "/a/b",
      "/a/{y}",
      "/{x}/b",
      "/{x}/{y}",
      "/*/b",
      "/{rest...}",
    ]);
  });

  it("puts a pattern ending at the path's end before an empty optional or tail", () => {
    const tree = treeOf("/files/{rest...}", "/files/{name?}", "/files");
    expect(matchesOf(tree, "/files")).toEqual([
      ["/files", {}],
      ["/files/{name?}", {}],
      ["/files/{rest...}", { rest: "" }],
    ]);
  });

  it("prefers a longer static prefix over an earlier tail", () => {
    const tree = treeOf("/{rest...}", "/static/{path...}", "/static/css/{file}");
    expect(tree.match("/static/css/site.css").map((m) => m.pattern)).toEqual([
      "/static/css/{file}",
      "/static/{path...}",
      "/{rest...}",
    ]);
  });

  it("keeps insertion order for ties of the same shape", () => {
    const tree = treeOf("/chat/{id}", "/chat/{room}", "/chat/{name}");
    expect(matchesOf(tree, "/chat/x")).toEqual([
      ["/chat/{id}", { id: "x" }],
      ["/chat/{room}", { room: "x" }],
      ["/chat/{name}", { name: "x" }],
    ]);
  });

  it("treats equivalent spellings of one pattern as ties", () => {
    const tree = treeOf("/chat/", "chat", "/chat");
    expect(tree.match("/chat").map((m) => m.pattern)).toEqual(["/chat/", "chat", "/chat"]);
  });
});

describe("RouteTree values", () => {
  it("keeps several values for one pattern in insertion order", () => {
    const tree = new RouteTree<number>();
    tree.add("/chat/{room}", 1);
    tree.add("/other", 99);
    tree.add("/chat/{room}", 2);
    tree.add("/chat/{room}", 3);
    expect(tree.match("/chat/x")).toEqual([
      { value: 1, params: { room: "x" }, pattern: "/chat/{room}" },
      { value: 2, params: { room: "x" }, pattern: "/chat/{room}" },
      { value: 3, params: { room: "x" }, pattern: "/chat/{room}" },
    ]);
  });

  it("gives each match its own params object", () => {
    const tree = new RouteTree<string>();
    tree.add("/{a}", "first");
    tree.add("/{a}", "second");
    const [first, second] = tree.match("/x");
    expect(first!.params).not.toBe(second!.params);
  });

  it("returns no matches from an empty tree", () => {
    expect(new RouteTree<string>().match("/anything")).toEqual([]);
  });

  it("rejects an invalid pattern on add and stays usable", () => {
    const tree = treeOf("/ok");
    expect(() => tree.add("/bad/{", "bad")).toThrow(RoutePatternError);
    expect(tree.match("/ok").map((m) => m.pattern)).toEqual(["/ok"]);
  });
});

describe("RouteTree percent-decoding", () => {
  const cases: ReadonlyArray<[pattern: string, path: string, params: Params]> = [
    ["/chat/{room}", "/chat/caf%C3%A9", { room: "café" }],
    ["/chat/{room}", "/chat/a%20b", { room: "a b" }],
    ["/chat/{room}", "/chat/a%2Fb", { room: "a/b" }],
    ["/chat/{room}", "/chat/a%2fb", { room: "a/b" }],
    ["/chat/{room}", "/chat/a+b", { room: "a+b" }],
    ["/chat/{room}", "/chat/%25", { room: "%" }],
    ["/files/{name?}", "/files/%2F", { name: "/" }],
    ["/static/{path...}", "/static/a%2Fb/c", { path: "a/b/c" }],
    ["/caf%C3%A9", "/caf%C3%A9", {}],
    ["/café", "/caf%C3%A9", {}],
    ["/a%2Fb", "/a%2Fb", {}],
  ];

  it.each(cases)("pattern %j against %j gives %j", (pattern, path, params) => {
    expect(matchesOf(treeOf(pattern), path)).toEqual([[pattern, params]]);
  });

  it("keeps an encoded slash inside one segment", () => {
    const tree = treeOf("/chat/{room}", "/chat/a/b");
    expect(matchesOf(tree, "/chat/a%2Fb")).toEqual([["/chat/{room}", { room: "a/b" }]]);
  });

  it("does not let an encoded slash match a literal slash", () => {
    expect(treeOf("/a/b").match("/a%2Fb")).toEqual([]);
  });
});

describe("RouteTree malformed paths", () => {
  const malformed: ReadonlyArray<[path: string, segment: string]> = [
    ["/x/%E0%A4%A", "%E0%A4%A"],
    ["/x/%", "%"],
    ["/x/%zz/y", "%zz"],
    ["/%C3", "%C3"],
    ["/x/%ED%A0%80", "%ED%A0%80"],
  ];

  it.each(malformed)("throws RoutePathError for %j", (path, segment) => {
    let thrown: unknown;
    try {
      treeOf("/x/{a}").match(path);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RoutePathError);
    const error = thrown as RoutePathError;
    expect(error.code).toBe("ROUTE_PATH_MALFORMED");
    expect(error.name).toBe("RoutePathError");
    expect(error.path).toBe(path);
    expect(error.message).toBe(
      `Malformed percent-encoding in segment ${JSON.stringify(segment)} of request path ${JSON.stringify(path)}`,
    );
    expect(error.cause).toBeInstanceOf(URIError);
  });

  it("throws even when no route could match", () => {
    expect(() => new RouteTree<string>().match("/%")).toThrow(RoutePathError);
  });
});

describe("splitRequestPath", () => {
  const cases: ReadonlyArray<[path: string, segments: string[]]> = [
    ["/", []],
    ["", []],
    ["//", [""]],
    ["/chat", ["chat"]],
    ["/chat/", ["chat"]],
    ["/chat//", ["chat", ""]],
    ["/a//b", ["a", "", "b"]],
    ["/a%2Fb/c", ["a/b", "c"]],
  ];

  it.each(cases)("splits %j into %j", (path, segments) => {
    expect(splitRequestPath(path)).toEqual(segments);
  });
});

describe("RouteTree properties", () => {
  // Literal text of any kind; "*" is left unescaped by encodeURIComponent, so escape it by hand.
  const encode = (segment: string) => encodeURIComponent(segment).replaceAll("*", "%2A");
  const segment = fc.string({ unit: "grapheme", minLength: 1, maxLength: 8 });
  const staticPath = fc
    .array(segment, { maxLength: 5 })
    .map((segments) => `/${segments.map(encode).join("/")}`);

  it("matches every added static path to exactly itself", () => {
    fc.assert(
      fc.property(fc.uniqueArray(staticPath, { minLength: 1, maxLength: 30 }), (paths) => {
        const tree = new RouteTree<string>();
        for (const path of paths) tree.add(path, path);
        for (const path of paths) {
          expect(tree.match(path).map((m) => m.value)).toEqual([path]);
        }
      }),
    );
  });

  it("decodes captured parameters back to the original text", () => {
    const tree = treeOf("/{a}/x/{b}/{rest...}");
    fc.assert(
      fc.property(segment, segment, fc.array(segment, { maxLength: 4 }), (a, b, rest) => {
        const path = `/${[a, "x", b, ...rest].map(encode).join("/")}`;
        expect(matchesOf(tree, path)).toEqual([["/{a}/x/{b}/{rest...}", { a, b, rest: rest.join("/") }]]);
      }),
    );
  });
});
