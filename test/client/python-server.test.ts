/**
 * The client against python-websockets' server (10.x, Debian's python3-websockets), run as a child
 * process (python_server.py): with permessage-deflate (its default) and without, echo, a fragmented
 * message, a subprotocol, and close codes both ways as the server reports them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloseReason, connect } from "../../src/index.js";
import { until, within } from "../helpers/wait.js";

// The python3 on PATH may be another one without the module; Debian's has python3-websockets.
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("./python_server.py", import.meta.url));

interface PythonServer {
  url: string;
  lines: Array<Record<string, unknown>>;
  child: ChildProcess;
}

async function startPython(compression: "deflate" | "none"): Promise<PythonServer> {
  const child = spawn(PYTHON, [SCRIPT, compression], { stdio: ["pipe", "pipe", "pipe"] });
  const lines: Array<Record<string, unknown>> = [];
  let buffered = "";
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  child.stdout!.setEncoding("utf8").on("data", (c: string) => {
    buffered += c;
    let i = buffered.indexOf("\n");
    while (i >= 0) {
      lines.push(JSON.parse(buffered.slice(0, i)) as Record<string, unknown>);
      buffered = buffered.slice(i + 1);
      i = buffered.indexOf("\n");
    }
  });
  await until(
    () => lines.length > 0 || child.exitCode !== null,
    15_000,
    `python_server.py ${compression} ${stderr}`,
  );
  const port = lines.shift()?.port;
  if (typeof port !== "number") throw new Error(`python_server.py did not start: ${stderr}`);
  return { url: `ws://127.0.0.1:${port}`, lines, child };
}

function stopPython(server: PythonServer | undefined): Promise<void> {
  if (!server || server.child.exitCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => server.child.once("exit", () => resolve()));
  server.child.stdin!.end();
  const timer = setTimeout(() => server.child.kill("SIGKILL"), 3000);
  return exited.finally(() => clearTimeout(timer));
}

describe.each([
  ["deflate", true],
  ["none", false],
] as const)("the client against python-websockets' server (compression %s)", (compression, deflate) => {
  let server: PythonServer | undefined;
  beforeAll(async () => {
    server = await startPython(compression);
  }, 20_000);
  afterAll(() => stopPython(server));

  const opened = (path: string) =>
    until(
      () => server!.lines.some((l) => l.event === "open" && l.path === path),
      5000,
      `the server's open event for ${path}`,
    ).then(() => server!.lines.find((l) => l.event === "open" && l.path === path)!);
  const closed = async () => {
    await until(() => server!.lines.some((l) => l.event === "closed"), 5000, "the server's closed event");
    const i = server!.lines.findIndex((l) => l.event === "closed");
    return server!.lines.splice(i, 1)[0]!;
  };

  it("echoes text and binary, offering a subprotocol; the server reports our 4000 'bye'", async () => {
    const result = await within(
      connect(
        `${server!.url}/echo`,
        { protocols: ["chat.v1"], permessageDeflate: deflate, maxFrameSize: 16 * 1024 * 1024 },
        async (session) => {
          expect(session.protocol).toBe("chat.v1");
          expect(session.extensions.map((e) => e.name)).toEqual(deflate ? ["permessage-deflate"] : []);
          const it = session.incoming[Symbol.asyncIterator]();
          const sent: Array<string | Buffer> = [
            "hi",
            "é".repeat(100_000),
            Buffer.alloc(3 * 1024 * 1024, 1),
            "",
          ];
          for (const m of sent) {
            await session.send(m);
            const got = (await within(it.next(), 5000, "an echo")).value!;
            if (typeof m === "string") expect(got.type === "text" && got.text).toBe(m);
            else expect([got.type, got.data.equals(m)]).toEqual(["binary", true]);
          }
          await session.close(4000, "bye");
          return (await session.closeReason).code;
        },
      ),
      20_000,
      "the conversation",
    );
    expect(result).toBe(4000);
    const open = await opened("/echo");
    expect(open.subprotocol).toBe("chat.v1");
    if (deflate) expect(String(open.extensions)).toContain("permessage-deflate");
    else expect(open.extensions).toBeNull();
    expect(await closed()).toMatchObject({ code: 4000, reason: "bye" });
  });

  it("reassembles the server's fragmented message", async () => {
    const text = await connect(
      `${server!.url}/fragments`,
      { permessageDeflate: deflate },
      async (session) => {
        for await (const m of session.incoming) return m.type === "text" ? m.text : "";
        return "";
      },
    );
    expect(text).toBe(`fragmented ${"ted ".repeat(999)}`);
    expect(await closed()).toMatchObject({ code: 1000 });
  });

  it("the server's close 4005 'py bye' ends the session with that reason", async () => {
    const session = await connect(`${server!.url}/close`, { permessageDeflate: deflate });
    await session.send("go");
    for await (const _ of session.incoming);
    expect(await within(session.closeReason, 5000, "closed")).toEqual(new CloseReason(4005, "py bye"));
    // What python received back: our echo of its code.
    expect(await closed()).toMatchObject({ code: 4005 });
  });
});
