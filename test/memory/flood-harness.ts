/**
 * Harness for the memory-bound tests: builds sockway, runs test/memory/flood-server.mjs in a child
 * process with `--expose-gc` (its heap is measured after a forced GC, alone), and opens hostile clients
 * over node:net that flood it with hand-built frames (independent of sockway's own serializer).
 */
import { type ChildProcess, execFile, fork } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const KiB = 1024;
export const MiB = 1024 * KiB;

const repo = fileURLToPath(new URL("../..", import.meta.url));
const serverScript = fileURLToPath(new URL("./flood-server.mjs", import.meta.url));

/** The child may not grow past this RSS: it is killed and the flood counts as "exceeded". */
export const RSS_CAP = 1024 * MiB;
/** V8 heap cap of the child (a crash is "exceeded" too). */
const OLD_SPACE_MIB = 512;

/**
 * The compiled sockway to test: `SOCKWAY_DIST` if set (e.g. /tmp/before-dist/src, an older build),
 * otherwise src/ compiled now into a fresh directory under .cache/ (never dist/, which others use).
 */
export async function sockwayDist(): Promise<{ dir: string; dispose: () => void }> {
  const given = process.env.SOCKWAY_DIST;
  if (given) return { dir: given, dispose: () => {} };
  mkdirSync(`${repo}.cache`, { recursive: true });
  const out = mkdtempSync(`${repo}.cache/memory-bounds-`);
  const tsc = `${repo}node_modules/typescript/bin/tsc`;
  try {
    await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { cwd: repo });
  } catch (error) {
    rmSync(out, { recursive: true, force: true });
    const e = error as { stdout?: string; stderr?: string };
    throw new Error(`building src/ failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
  return { dir: `${out}/src`, dispose: () => rmSync(out, { recursive: true, force: true }) };
}

/** What a running session says it buffers (`incomingCost` is undefined on builds without `incoming.cost`). */
export interface SessionReport {
  bufferedAmount: number;
  incomingCost: number | undefined;
}

export interface Measure {
  /** The server runs with --expose-gc. */
  gc: boolean;
  heapUsed: number;
  arrayBuffers: number;
  rss: number;
  /** Handlers running. */
  sessions: number;
  /** Broadcast sends refused with SEND_BUFFER_FULL so far. */
  sendFull: number;
  /** Error hook calls (other than a send to a peer that left), and the first of them. */
  errors: number;
  firstError: string;
  perSession: SessionReport[];
}

/** heapUsed + arrayBuffers: the JS heap and the ArrayBuffer (Buffer) memory outside it. */
export const heap = (m: Measure): number => m.heapUsed + m.arrayBuffers;

export interface FloodServer {
  port: number;
  /** Memory after a forced GC in the server; rejects if the server died (heap limit, RSS cap). */
  measure(): Promise<Measure>;
  /** Fills the sockets of room members but the first (see flood-server.mjs); false if they did not fill. */
  prime(): Promise<boolean>;
  /** Terminates every session; resolves once no handler is running any more. */
  terminateAll(): Promise<void>;
  /** Why the server died, if it did. */
  readonly death: string | undefined;
  stop(): void;
}

export interface FloodServerOptions {
  incomingBufferLimit?: number;
  outgoingHighWaterMark?: number;
  outgoingBufferLimit?: number;
  maxFrameSize?: number;
  deflate?: boolean;
}

/** Starts the flood server in a child process (`node --expose-gc`), watched against `RSS_CAP`. */
export function startFloodServer(dist: string, options: FloodServerOptions): Promise<FloodServer> {
  const child: ChildProcess = fork(serverScript, [], {
    execArgv: ["--expose-gc", `--max-old-space-size=${OLD_SPACE_MIB}`],
    env: { ...process.env, SOCKWAY_DIST: dist, FLOOD_OPTIONS: JSON.stringify(options) },
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  let death: string | undefined;
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-8000);
  });
  // Answers come back in the order asked.
  const waiting: Array<{ resolve: (m: never) => void; reject: (e: Error) => void }> = [];
  const ask = <T>(type: string): Promise<T> => {
    if (death !== undefined) return Promise.reject(new Error(`the server ${death}`));
    return new Promise<T>((resolve, reject) => {
      waiting.push({ resolve: resolve as (m: never) => void, reject });
      child.send({ type });
    });
  };
  let ready: ((port: number) => void) | undefined;
  child.on("message", (message: { type: string; port?: number }) => {
    if (message.type === "ready") ready?.(message.port!);
    else waiting.shift()?.resolve(message as never);
  });
  // The RSS watchdog: an unbounded server is stopped before it can eat the machine.
  const watchdog = setInterval(() => {
    const rss = rssOf(child.pid);
    if (rss > RSS_CAP && death === undefined) {
      death = `killed at RSS ${(rss / MiB).toFixed(0)} MiB (cap ${RSS_CAP / MiB} MiB)`;
      child.kill("SIGKILL");
    }
  }, 20);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      clearInterval(watchdog);
      const why = /FATAL ERROR[^\n]*/.exec(stderr)?.[0] ?? stderr.trim().split("\n").slice(-2).join(" | ");
      death ??= `exited (code ${code}, signal ${signal})${why ? `: ${why}` : ""}`;
      for (const w of waiting.splice(0)) w.reject(new Error(`the server ${death}`));
      resolve();
    }),
  );
  const server: FloodServer = {
    port: 0,
    get death() {
      return death;
    },
    measure: () => ask<Measure>("measure"),
    prime: async () => (await ask<{ primed: boolean }>("prime")).primed,
    async terminateAll() {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("handlers still running 3 s after terminate()")), 3000);
      });
      await Promise.race([ask("terminate"), late]).finally(() => clearTimeout(timer));
    },
    stop() {
      clearInterval(watchdog);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
  return new Promise<FloodServer>((resolve, reject) => {
    ready = (port) => {
      server.port = port;
      resolve(server);
    };
    void exited.then(() => reject(new Error(`the server ${death} before listening`)));
  });
}

/** Resident memory of a process (Linux /proc; 0 where it cannot be read). */
function rssOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, "latin1").split(" ")[1]);
    return pages * 4096;
  } catch {
    return 0;
  }
}

// ---- clients ------------------------------------------------------------------------------------

/** A masked client frame (RFC 6455 §5.2), built here rather than with sockway's serializer. */
export function maskedFrame(opcode: number, payload: Buffer, options: { rsv1?: boolean } = {}): Buffer {
  const len = payload.length;
  const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.alloc(headLen + 4 + len);
  out[0] = 0x80 | (options.rsv1 ? 0x40 : 0) | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  const mask = randomFillSync(Buffer.alloc(4));
  mask.copy(out, headLen);
  for (let i = 0; i < len; i++) out[headLen + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

/** As many copies of `frame` as fit in `size` bytes, in one buffer: one socket write of a flood. */
export function repeatFrames(frame: Buffer, size = 64 * KiB): Buffer {
  const n = Math.max(1, Math.floor(size / frame.length));
  return Buffer.concat(Array.from({ length: n }, () => frame));
}

/**
 * Opens `path` with a WebSocket handshake and returns the socket after the 101. With `read: false` the
 * client never reads again (the socket is paused: the kernel's buffers fill, then the server's).
 */
export function openClient(
  port: number,
  path: string,
  options: { read: boolean; extensions?: string },
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.setNoDelay(true);
    let head =
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    if (options.extensions) head += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`;
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      const status = got.subarray(0, end).toString("latin1");
      if (!status.startsWith("HTTP/1.1 101")) {
        socket.destroy();
        reject(new Error(`expected 101: ${status}`));
        return;
      }
      if (options.extensions && !/sec-websocket-extensions: permessage-deflate/i.test(status)) {
        socket.destroy();
        reject(new Error(`permessage-deflate was not negotiated: ${status}`));
        return;
      }
      if (options.read) socket.on("data", () => {});
      else socket.pause();
      resolve(socket);
    };
    socket.on("data", onData);
    socket.on("error", () => {}); // the server may reset us: the test reads the server's side
    socket.once("close", () => reject(new Error("closed during the handshake")));
    socket.once("connect", () => socket.write(`${head}\r\n`));
  });
}

export async function openClients(
  port: number,
  path: string,
  n: number,
  options: { read: boolean; extensions?: string },
): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let i = 0; i < n; i++) sockets.push(await openClient(port, path, options));
  return sockets;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Resolves on 'drain', or after `ms`, whichever comes first (the listener is removed either way). */
function drainOrTimeout(socket: Socket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(1, ms));
    socket.once("drain", done);
    socket.once("close", done);
  });
}

/**
 * Writes `chunk` over and over as fast as the socket accepts it for `ms`. Returns the bytes the kernel
 * took (what was written minus what is still in the socket's own buffer).
 */
export async function flood(socket: Socket, chunk: Buffer, ms: number): Promise<number> {
  const deadline = performance.now() + ms;
  let written = 0;
  while (!socket.destroyed && performance.now() < deadline) {
    const more = socket.write(chunk);
    written += chunk.length;
    if (more) await turn();
    else await drainOrTimeout(socket, deadline - performance.now());
  }
  return written - socket.writableLength;
}

/**
 * Writes `bytes` one byte per TCP write (no Nagle, each write waited for) for `ms` or until all are
 * written. Returns how many bytes went out.
 */
export async function trickle(socket: Socket, bytes: Buffer, ms: number): Promise<number> {
  const deadline = performance.now() + ms;
  let sent = 0;
  while (!socket.destroyed && sent < bytes.length && performance.now() < deadline) {
    await new Promise<void>((resolve) => socket.write(bytes.subarray(sent, sent + 1), () => resolve()));
    sent++;
    await turn();
  }
  return sent;
}
