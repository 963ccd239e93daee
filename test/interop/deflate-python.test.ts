/**
 * Interop with python-websockets 10.4 (Debian's python3-websockets) with compression ON: the client
 * offers permessage-deflate by default; deflate_client.py runs a conversation against a sockway echo route
 * and reports what it negotiated and what came back.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { PermessageDeflateOptions } from "../../src/index.js";
import {
  type DeflateApp,
  noisyBytes,
  runCleanup,
  startDeflateApp,
  within,
} from "../extensions/deflate-helpers.js";

// The python3 on PATH may lack the websockets module; Debian's has python3-websockets 10.4.
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("./deflate_client.py", import.meta.url));
const MiB = 1024 * 1024;

interface Digest {
  type: "text" | "binary";
  length: number;
  sha256: string;
}

interface Report {
  request_extensions: string | null;
  response_extensions: string | null;
  extensions: Array<{
    name: string;
    remote_no_context_takeover: boolean;
    local_no_context_takeover: boolean;
    remote_max_window_bits: number;
    local_max_window_bits: number;
  }>;
  results: Array<{ label: string; sent: Digest; received: Digest; equal: boolean }>;
  close_code: number;
}

const children = new Set<ChildProcess>();

afterEach(async () => {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
  await runCleanup();
});

function runClient(url: string, mode: "default" | "tuned"): Promise<Report> {
  const child = spawn(PYTHON, [SCRIPT, url, mode], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const done = new Promise<Report>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      children.delete(child);
      if (code !== 0) reject(new Error(`deflate_client.py exited with ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout) as Report);
    });
  });
  return within(done, 40_000, `deflate_client.py ${mode}`);
}

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");
const text = (s: string): Digest => ({ type: "text", length: Buffer.byteLength(s), sha256: sha256(s) });
const binary = (b: Buffer): Digest => ({ type: "binary", length: b.length, sha256: sha256(b) });

/** What deflate_client.py sends, computed independently here. */
const EXPECTED: Array<[label: string, digest: Digest]> = [
  ["text", text("hello from python ✓ 😀")],
  ["binary", binary(Buffer.from(Array.from({ length: 256 }, (_, i) => i)))],
  ["empty text", text("")],
  ["empty binary", binary(Buffer.alloc(0))],
  ["large text", text("sockway deflate ✓ ".repeat(100_000))],
  ["large binary", binary(noisyBytes(300_000, 1))],
  ["repeated text", text("hello from python ✓ 😀")],
];

async function converse(
  deflate: PermessageDeflateOptions,
  mode: "default" | "tuned",
): Promise<{ app: DeflateApp; report: Report }> {
  const app = await startDeflateApp(deflate, { maxFrameSize: 4 * MiB });
  const report = await runClient(`${app.wsUrl}/echo`, mode);
  return { app, report };
}

function checkConversation(app: DeflateApp, report: Report): void {
  expect(report.results.map((r) => r.label)).toEqual(EXPECTED.map(([label]) => label));
  for (const [i, [label, digest]] of EXPECTED.entries()) {
    const result = report.results[i]!;
    expect({ label, sent: result.sent }).toEqual({ label, sent: digest });
    expect({ label, received: result.received, equal: result.equal }).toEqual({
      label,
      received: digest,
      equal: true,
    });
  }
  expect(report.close_code).toBe(1000);
  // What the server's handler received, byte for byte.
  const received = app.sessions[0]!.received;
  expect(received.map((m) => ({ type: m.type, length: m.data.length, sha256: sha256(m.data) }))).toEqual(
    EXPECTED.map(([, digest]) => digest),
  );
  // python-websockets compresses every data message; sockway (threshold 0) compresses every echo.
  expect(app.codecCalls).toEqual({ decode: EXPECTED.length, encode: EXPECTED.length });
  expect(app.errors).toEqual([]);
}

describe("python-websockets 10.4 ↔ sockway with permessage-deflate", { timeout: 60_000 }, () => {
  it("negotiates permessage-deflate from the library's default offer and round-trips every message", async () => {
    const { app, report } = await converse({ threshold: 0 }, "default");
    expect(report.request_extensions).toBe("permessage-deflate; client_max_window_bits");
    expect(report.response_extensions).toBe("permessage-deflate");
    expect(report.extensions).toEqual([
      {
        name: "permessage-deflate",
        remote_no_context_takeover: false,
        local_no_context_takeover: false,
        remote_max_window_bits: 15,
        local_max_window_bits: 15,
      },
    ]);
    expect(app.sessions[0]!.session.extensions).toEqual([{ name: "permessage-deflate", params: [] }]);
    checkConversation(app, report);
  });

  it("accepts an offer with every parameter and both sides honour it", async () => {
    const { app, report } = await converse({ threshold: 0 }, "tuned");
    expect(report.request_extensions).toBe(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
    );
    expect(report.response_extensions).toBe(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
    );
    expect(report.extensions).toEqual([
      {
        name: "permessage-deflate",
        remote_no_context_takeover: true,
        local_no_context_takeover: true,
        remote_max_window_bits: 10,
        local_max_window_bits: 11,
      },
    ]);
    checkConversation(app, report);
  });

  it("limits python's window when the server asks for it (client_max_window_bits=9, server window 9)", async () => {
    const { app, report } = await converse(
      { threshold: 0, clientMaxWindowBits: 9, serverMaxWindowBits: 9 },
      "default",
    );
    expect(report.response_extensions).toBe(
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
    );
    expect(report.extensions[0]).toMatchObject({ remote_max_window_bits: 9, local_max_window_bits: 9 });
    checkConversation(app, report);
  });
});
