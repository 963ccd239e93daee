/**
 * Interop with python-websockets 10.x (Debian's python3-websockets), driven as a child process that runs
 * a scripted conversation (python_client.py) and prints JSON lines of what it saw.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeOf, ECHO_PROTOCOL, type EchoServer, sha256, startEchoApp, within } from "./echo-app.js";

// The python3 on PATH may be a pyenv one without the module; Debian's has python3-websockets.
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("./python_client.py", import.meta.url));
const LARGE = 5 * 1024 * 1024;

type Line = Record<string, unknown>;

const children = new Set<ChildProcess>();

/** Runs one scenario of python_client.py; resolves with its exit code and parsed output lines. */
function runPython(
  scenario: string,
  url: string,
  protocols: string[] = [],
): Promise<{ code: number | null; lines: Line[]; stderr: string }> {
  const child = spawn(PYTHON, [SCRIPT, scenario, url, ...protocols], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const done = new Promise<{ code: number | null; lines: Line[]; stderr: string }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      children.delete(child);
      const lines = stdout
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Line);
      resolve({ code, lines, stderr });
    });
  });
  return within(done, 40_000, `python_client.py ${scenario}`);
}

function byEvent(lines: Line[], event: string): Line[] {
  return lines.filter((l) => l.event === event);
}

function message(lines: Line[], label: string): Line | undefined {
  return lines.find((l) => l.event === "message" && l.label === label);
}

describe("python-websockets ↔ sockway", () => {
  let server: EchoServer;
  let keepaliveServer: EchoServer;

  beforeAll(async () => {
    server = await startEchoApp({ maxFrameSize: 8 * 1024 * 1024 });
    keepaliveServer = await startEchoApp({ pingPeriod: 50, timeout: 300 });
  });
  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all([server.stop(), keepaliveServer.stop()]);
  });

  it("runs the whole conversation: echo (fragmented too), subprotocol, no extensions, ping/pong, close 4000 'bye'", async () => {
    const session = server.nextSession();
    const run = runPython("conversation", `${server.wsBase}/proto`, ["chat.v1", ECHO_PROTOCOL]);
    const s = await within(session, 10_000, "the session");
    const { code, lines, stderr } = await run;
    expect(stderr).toBe("");
    expect(code).toBe(0);

    // Handshake: the route's subprotocol, and no extension although the client offered permessage-deflate.
    expect(byEvent(lines, "open")).toEqual([
      {
        event: "open",
        subprotocol: ECHO_PROTOCOL,
        extensions: [],
        response_extensions: null,
        request_extensions: expect.stringContaining("permessage-deflate"),
      },
    ]);
    expect(s.protocol).toBe(ECHO_PROTOCOL);
    expect(s.extensions).toEqual([]);

    const text = "hello from python ✓ 😀";
    expect(message(lines, "text")).toMatchObject({ type: "text", text, sha256: sha256(text) });
    expect(message(lines, "binary")).toMatchObject({
      type: "binary",
      length: 256,
      hex: Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString("hex"),
    });
    expect(message(lines, "empty-text")).toMatchObject({ type: "text", length: 0, text: "" });
    expect(message(lines, "empty-binary")).toMatchObject({ type: "binary", length: 0, hex: "" });
    const largeBinary = message(lines, "large-binary");
    expect(largeBinary).toMatchObject({ type: "binary", length: LARGE });
    expect(largeBinary?.sha256).toBe(largeBinary?.sent_sha256);
    const largeText = "xyz✓".repeat(Math.floor(LARGE / 6));
    expect(message(lines, "large-text")).toMatchObject({
      type: "text",
      length: Buffer.byteLength(largeText),
      sha256: sha256(largeText),
    });
    expect(message(lines, "fragmented-text")).toMatchObject({ type: "text", text: "fragmented ✓" });
    expect(message(lines, "fragmented-binary")).toMatchObject({ type: "binary", hex: "000102ff" });
    expect(byEvent(lines, "pong")).toEqual([{ event: "pong", ok: true }]);
    expect(message(lines, "after-ping")).toMatchObject({ type: "text", text: "after ping" });

    // Client close 4000 "bye": the server reports it and echoes the code.
    expect(await within(closeOf(s), 5000, "the session's closeReason")).toEqual({
      code: 4000,
      message: "bye",
    });
    expect(byEvent(lines, "closed")).toEqual([{ event: "closed", code: 4000, reason: "" }]);
    expect(lines.map((l) => l.event)).not.toContain("error");
  });

  it("receives the server's close code and reason (4001 'done')", async () => {
    const session = server.nextSession();
    const run = runPython("server-close", `${server.wsBase}/close-on-text`);
    const s = await within(session, 10_000, "the session");
    const { code, lines, stderr } = await run;
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(byEvent(lines, "closed")).toEqual([
      { event: "closed", code: 4001, reason: "done", rcvd_code: 4001, rcvd_reason: "done" },
    ]);
    expect((await within(closeOf(s), 5000, "the session's closeReason")).code).toBe(4001);
  });

  it("answers the server's keepalive pings (pingPeriod 50 ms) and stays open", async () => {
    const session = keepaliveServer.nextSession();
    const run = runPython("keepalive", `${keepaliveServer.wsBase}/echo`);
    const s = await within(session, 10_000, "the session");
    const { code, lines, stderr } = await run;
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(message(lines, "after-idle")).toMatchObject({ type: "text", text: "still here" });
    expect(byEvent(lines, "closed")).toEqual([{ event: "closed", code: 1000, reason: "" }]);
    expect(await within(closeOf(s), 5000, "the session's closeReason")).toEqual({ code: 1000, message: "" });
  });

  it("is refused with 400 when it does not offer the route's subprotocol", async () => {
    const { code, lines } = await runPython("refused", `${server.wsBase}/proto`, ["chat.v1"]);
    expect(code).toBe(0);
    expect(lines).toEqual([{ event: "refused", status: 400 }]);
  });
});
