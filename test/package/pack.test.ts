/**
 * The package as a user gets it from a registry: `npm pack` into a temp dir, the tarball's file list,
 * then the tarball installed (offline, no scripts) into a scratch project where every subpath export is
 * imported by node in ESM and typechecked by tsc with `moduleResolution: NodeNext`.
 *
 * dist is rebuilt first (`npm run build`) only when it is stale: a source newer than its output or a
 * missing output; dist/src is removed first only when it holds an output without a source. `npm pack
 * --ignore-scripts` then packs it as is (a real `npm pack`/`publish` runs `prepack`: clean, then build).
 */
import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const repo = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const tsc = join(repo, "node_modules/typescript/bin/tsc");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

/** Each subpath export, with an export it must have (a value, so node can check it at run time). */
const SUBPATHS: Record<string, string> = {
  sockway: "createApp",
  "sockway/client": "connect",
  "sockway/testing": "testApplication",
  "sockway/redis": "redisAdapter",
  "sockway/cluster": "runCluster",
};

const ALWAYS = ["CHANGELOG.md", "LICENSE", "README.md", "package.json"];

interface PackageJson {
  name: string;
  license: string;
  exports: Record<string, string | { types?: string; import?: string }>;
}

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, out);
    else out.push(path);
  }
  return out;
}

/** src/**\/*.ts (not .d.ts), as paths relative to src without the extension. */
function sourceModules(): string[] {
  return walk(join(repo, "src"))
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
    .map((f) => relative(join(repo, "src"), f).replace(/\.ts$/, ""))
    .sort();
}

/** "fresh": every module has a newer .js and .d.ts; "stale": some do not; "orphans": an output has no source. */
function distState(): "fresh" | "stale" | "orphans" {
  const dist = join(repo, "dist/src");
  const modules = sourceModules();
  const known = new Set(modules);
  const orphans = walk(dist)
    .filter((f) => f.endsWith(".js"))
    .some((f) => !known.has(relative(dist, f).replace(/\.js$/, "")));
  if (orphans) return "orphans";
  const config = statSync(join(repo, "tsconfig.json")).mtimeMs;
  for (const m of modules) {
    const src = statSync(join(repo, "src", `${m}.ts`)).mtimeMs;
    for (const ext of [".js", ".d.ts"]) {
      const out = join(dist, m + ext);
      if (!existsSync(out)) return "stale";
      const built = statSync(out).mtimeMs;
      if (built < src || built < config) return "stale";
    }
  }
  return "fresh";
}

let tmp = "";
let files: string[] = [];
let tarball = "";
let scratch = "";
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as PackageJson;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "sockway-pack-"));
  const state = distState();
  // Outputs of deleted sources would be packed: only then is dist/src removed before the build.
  if (state === "orphans") rmSync(join(repo, "dist/src"), { recursive: true, force: true });
  if (state !== "fresh") await run(npm, ["run", "build"], { cwd: repo, timeout: 45_000 });
  const packed = await run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], {
    cwd: repo,
    timeout: 20_000,
  });
  const [info] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
  files = info.files.map((f) => f.path).sort();
  tarball = join(tmp, info.filename);

  scratch = join(tmp, "app");
  mkdirSync(scratch);
  writeFileSync(
    join(scratch, "package.json"),
    JSON.stringify({ name: "scratch", version: "0.0.0", private: true, type: "module" }),
  );
  await run(
    npm,
    ["install", tarball, "--offline", "--no-audit", "--no-fund", "--ignore-scripts", "--no-package-lock"],
    { cwd: scratch, timeout: 30_000 },
  );
}, 90_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("holds LICENSE, README, CHANGELOG, package.json and dist/src with .js and .d.ts of every module", () => {
    for (const f of ALWAYS) expect(files).toContain(f);
    for (const m of sourceModules()) {
      expect(files).toContain(`dist/src/${m}.js`);
      expect(files).toContain(`dist/src/${m}.d.ts`);
    }
  });

  it("holds nothing else: no tests, examples, bench, sources, caches, declaration maps or stale outputs", () => {
    const stray = files.filter((f) => !ALWAYS.includes(f) && !f.startsWith("dist/src/"));
    expect(stray).toEqual([]);
    const allowed = /\.(js|d\.ts|js\.map)$/;
    expect(files.filter((f) => !allowed.test(f) && !ALWAYS.includes(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith(".d.ts.map"))).toEqual([]);
    expect(
      files.filter((f) => /(^|\/)(test|bench|examples|\.cache|coverage|node_modules)\//.test(f)),
    ).toEqual([]);
    const known = new Set(sourceModules());
    const stale = files
      .filter((f) => f.startsWith("dist/src/") && f.endsWith(".js"))
      .filter((f) => !known.has(f.slice("dist/src/".length, -".js".length)));
    expect(stale).toEqual([]);
  });

  it("is MIT, with the license text", () => {
    expect(pkg.license).toBe("MIT");
    const text = readFileSync(join(scratch, "node_modules/sockway/LICENSE"), "utf8");
    expect(text).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the sockway authors\n/);
    expect(text).toContain('THE SOFTWARE IS PROVIDED "AS IS"');
  });

  it("exports exactly the tested subpaths, each with types and import conditions to files in the tarball", () => {
    const subpaths = Object.keys(pkg.exports).filter((k) => k !== "./package.json");
    expect(subpaths.map((k) => (k === "." ? "sockway" : `sockway/${k.slice(2)}`)).sort()).toEqual(
      Object.keys(SUBPATHS).sort(),
    );
    for (const k of subpaths) {
      const target = pkg.exports[k];
      expect(typeof target, k).toBe("object");
      const { types, import: js } = target as { types?: string; import?: string };
      expect(Object.keys(target as object)[0], `${k}: "types" comes first`).toBe("types");
      expect(files, k).toContain(types?.replace(/^\.\//, ""));
      expect(files, k).toContain(js?.replace(/^\.\//, ""));
    }
  });
});

describe("installed from the tarball", () => {
  it("imports every subpath in ESM with node, and the subpaths share the main entry's modules", async () => {
    const script = `
      const expected = ${JSON.stringify(SUBPATHS)};
      const main = await import("sockway");
      for (const [spec, name] of Object.entries(expected)) {
        const mod = await import(spec);
        if (typeof mod[name] !== "function") throw new Error(spec + " has no function " + name);
        if (mod[name] !== main[name]) throw new Error(spec + "'s " + name + " is not the main entry's");
      }
      try {
        await import("sockway/dist/src/index.js");
        throw new Error("a deep import resolved");
      } catch (e) {
        if (e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
      }
      const { createApp, WebSockets } = await import("sockway");
      const { testApplication } = await import("sockway/testing");
      const app = createApp().install(WebSockets);
      app.routing((r) => r.webSocket("/echo", async (s) => {
        for await (const f of s.incoming) if (f.type === "text") await s.send(f.text);
      }));
      await testApplication(app, async ({ client }) => {
        await client.webSocket("/echo", {}, async (s) => { await s.send("hi"); await s.expectText("hi"); });
      });
      console.log("ok");
    `;
    writeFileSync(join(scratch, "check.mjs"), script);
    const { stdout } = await run(process.execPath, ["check.mjs"], { cwd: scratch, timeout: 15_000 });
    expect(stdout.trim()).toBe("ok");
  });

  it("typechecks a file importing every subpath with moduleResolution NodeNext", async () => {
    writeFileSync(
      join(scratch, "check.ts"),
      `import { createApp, PubSub, WebSockets } from "sockway";
import { type ClientSession, connect } from "sockway/client";
import { runCluster, clusterAdapter, ClusterError, type ClusterOptions } from "sockway/cluster";
import { type RedisAdapter, RedisAdapterError, redisAdapter } from "sockway/redis";
import { testApplication, type TestSession } from "sockway/testing";

const app = createApp().install(WebSockets, { pingPeriod: 30_000 });
app.routing((r) =>
  r.webSocket("/rooms/{room}", async (session) => {
    const room: string = session.call.parameters.room; // typed from the pattern
    await session.send(room);
  }),
);
export const open: (url: string) => Promise<ClientSession> = (url) => connect(url, { protocols: ["v1"] });
export const options: ClusterOptions = {
  workers: 2,
  start: async ({ adapter }) => createApp().install(WebSockets).install(PubSub, { adapter }),
};
export const adapters = [clusterAdapter, redisAdapter] as const;
export const errors = [ClusterError, RedisAdapterError] as const;
export type Redis = RedisAdapter;
export const started = runCluster(options);
export const tested: Promise<number> = testApplication(app, async ({ client }) => {
  const s: TestSession = await client.webSocket("/rooms/a");
  await s.expectText("a");
  await s.close();
  return 1;
});
// The types are the package's, not any: a wrong call does not compile.
// @ts-expect-error start is required
runCluster({ workers: 2 });
`,
    );
    writeFileSync(
      join(scratch, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2023"],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ["node"],
          typeRoots: [join(repo, "node_modules/@types")],
        },
        files: ["check.ts"],
      }),
    );
    const result = await run(process.execPath, [tsc, "-p", "tsconfig.json"], {
      cwd: scratch,
      timeout: 40_000,
    }).catch((e: { stdout?: string; stderr?: string }) => e);
    expect(`${result.stdout ?? ""}${result.stderr ?? ""}`).toBe("");
  }, 45_000);
});
