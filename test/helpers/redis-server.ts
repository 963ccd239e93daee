/**
 * A real redis-server for the pub/sub tests: on a free 127.0.0.1 port, without persistence, in its own
 * temporary directory, registered for cleanup. It can be restarted on the same port (a new run_id) and
 * frozen (SIGSTOP) to stand for a Redis that stops answering. A missing redis-server fails the test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onCleanup } from "./cleanup.js";
import { within } from "./wait.js";

const BINARY =
  ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].find((p) => existsSync(p)) ?? "redis-server";

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:port */
  readonly url: string;
  /** Stops it (SIGKILL: nothing to save) and starts it again on the same port. */
  restart(): Promise<void>;
  /** Stops it; `start` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** The end of what the server logged (notice level), across restarts. */
  log(): string;
  /** SIGSTOP / SIGCONT: connections stay open, nothing is answered. */
  freeze(): void;
  thaw(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function launch(port: number, dir: string, log: { text: string }): Promise<ChildProcess> {
  const child = spawn(
    BINARY,
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--daemonize",
      "no",
      "--loglevel",
      "notice",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  return within(
    new Promise<ChildProcess>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output = (output + chunk.toString()).slice(-4000);
        log.text = (log.text + chunk.toString()).slice(-16_000);
        if (output.includes("Ready to accept connections")) resolve(child);
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("error", (error) =>
        reject(
          new Error(
            `cannot run redis-server (${BINARY}): ${error.message}; install it (apt-get install redis-server)`,
          ),
        ),
      );
      child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}:\n${output}`)));
    }),
    10_000,
    "redis-server to accept connections",
  ).catch((error: unknown) => {
    child.kill("SIGKILL");
    throw error;
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return within(
    new Promise<void>((resolve) => child.once("exit", () => resolve())),
    5000,
    "redis-server to exit",
  );
}

/** Starts a redis-server (retrying on another port if the one picked was taken meanwhile). */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "sockway-redis-"));
  const log = { text: "" };
  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir, log);
      break;
    } catch (error) {
      if (attempt >= 2 || !/Address already in use/.test(String(error))) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  const stop = async () => {
    const c = child;
    child = undefined;
    if (c === undefined) return;
    c.kill("SIGCONT");
    c.kill("SIGKILL");
    await exited(c);
  };
  const start = async () => {
    if (child === undefined) child = await launch(port, dir, log);
  };
  onCleanup(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    log: () => log.text,
    freeze: () => child?.kill("SIGSTOP"),
    thaw: () => child?.kill("SIGCONT"),
  };
}
