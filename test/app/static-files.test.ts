import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { rawRequest, request } from "../helpers/http.js";

afterEach(cleanup);

// root/
//   secret.txt        outside the served directory
//   public/hello.txt  served at /static/hello.txt
//   public/index.html served at /static/
let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "sockway-static-"));
  await mkdir(join(root, "public", "sub"), { recursive: true });
  await writeFile(join(root, "secret.txt"), "top secret");
  await writeFile(join(root, "public", "hello.txt"), "hello from a file");
  await writeFile(join(root, "public", "index.html"), "<h1>index</h1>");
  await writeFile(join(root, "public", "sub", "data.json"), '{"ok":true}');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const serve = () =>
  startApp((r) => {
    r.staticFiles("/static", join(root, "public"));
  });

/** A GET with the path written byte for byte (no client normalizes `..` or escapes away). */
const get = (port: number, path: string) =>
  rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);

describe("staticFiles", () => {
  it("serves a file with its content type and length", async () => {
    const { port } = await serve();
    const res = await request(port, "GET", "/static/hello.txt");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(res.headers["content-length"]).toBe("17");
    expect(res.body).toBe("hello from a file");
  });

  it("serves files in subdirectories and index.html for the directory itself", async () => {
    const { port } = await serve();
    const json = await request(port, "GET", "/static/sub/data.json");
    expect(json.status).toBe(200);
    expect(json.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(json.body).toBe('{"ok":true}');
    const index = await request(port, "GET", "/static/");
    expect(index.status).toBe(200);
    expect(index.body).toBe("<h1>index</h1>");
  });

  it("answers 404 for a missing file and for a directory", async () => {
    const { port } = await serve();
    expect((await get(port, "/static/nope.txt")).status).toBe(404);
    expect((await get(port, "/static/sub")).status).toBe(404);
  });

  it.each([
    ["an encoded slash", "/static/..%2fsecret.txt"],
    ["an encoded slash in upper case", "/static/..%2Fsecret.txt"],
    ["encoded dots", "/static/%2e%2e/secret.txt"],
    ["a literal dot-dot segment", "/static/../secret.txt"],
    ["a dot-dot after a subdirectory", "/static/sub/../../secret.txt"],
    ["a NUL byte", "/static/hello.txt%00.png"],
  ])("refuses traversal with %s with 404", async (_name, path) => {
    const { port } = await serve();
    const res = await get(port, path);
    expect(res.status).toBe(404);
    expect(res.body).not.toContain("top secret");
  });

  it("refuses an absolute path to a file outside the directory with 404", async () => {
    const { port } = await serve();
    const secret = join(root, "secret.txt");
    for (const path of [`/static/${encodeURIComponent(secret)}`, `/static/${secret}`]) {
      const res = await get(port, path);
      expect(res.status).toBe(404);
      expect(res.body).not.toContain("top secret");
    }
  });
});
