/**
 * A scripted HTTP/WebSocket server on a raw TCP socket, for client tests that need a server to answer
 * what no real server would: each request head is parsed and handed to the test, which writes the answer.
 */
import { createServer, type Server, type Socket } from "node:net";
import {
  computeAccept,
  encodeFrame,
  type FrameHeader,
  FrameParser,
  type FrameSink,
} from "../../src/protocol/index.js";
import { onCleanup } from "../helpers/cleanup.js";

export interface ScriptedRequest {
  /** The request line, e.g. "GET /path HTTP/1.1". */
  line: string;
  /** Header names in lower case; repeated ones joined with ", ". */
  headers: Record<string, string>;
  socket: Socket;
  /** Bytes that came after the head. */
  rest: Buffer;
}

export interface ScriptedServer {
  server: Server;
  port: number;
  /** ws://127.0.0.1:port */
  url: string;
  requests: ScriptedRequest[];
}

export async function scriptedServer(onRequest: (req: ScriptedRequest) => void): Promise<ScriptedServer> {
  const requests: ScriptedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      const lines = buffered.subarray(0, end).toString("latin1").split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        const name = l.slice(0, i).trim().toLowerCase();
        const value = l.slice(i + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      const req = { line: lines[0]!, headers, socket, rest: buffered.subarray(end + 4) };
      requests.push(req);
      onRequest(req);
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as { port: number }).port;
  return { server, port, url: `ws://127.0.0.1:${port}`, requests };
}

/** A 101 answer to `req` with the right accept, plus `extra` header lines (or replacements: null drops one). */
export function switching(req: ScriptedRequest, extra: Record<string, string | null> = {}): string {
  const headers: Record<string, string | null> = {
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Accept": computeAccept(req.headers["sec-websocket-key"] ?? ""),
    ...extra,
  };
  let head = "HTTP/1.1 101 Switching Protocols\r\n";
  for (const [name, value] of Object.entries(headers)) if (value !== null) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}

/** An unmasked server frame. */
export function serverFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  const out = encodeFrame(opcode, Buffer.from(payload), { fin });
  return Array.isArray(out) ? Buffer.concat(out) : (out as Buffer);
}

export interface SeenFrame {
  opcode: number;
  fin: boolean;
  masked: boolean;
  payload: Buffer;
}

/** Parses the frames a client sends on `socket` (starting with `rest`), into `frames`. */
export function readFrames(socket: Socket, rest: Buffer): SeenFrame[] {
  const frames: SeenFrame[] = [];
  let header: FrameHeader | undefined;
  let parts: Buffer[] = [];
  const sink: FrameSink = {
    onHeader(h) {
      header = { ...h };
      parts = [];
      return true;
    },
    onPayload(chunk) {
      parts.push(Buffer.from(chunk));
      return true;
    },
    onFrameEnd() {
      frames.push({
        opcode: header!.opcode,
        fin: header!.fin,
        masked: header!.masked,
        payload: Buffer.concat(parts),
      });
      return true;
    },
    onHeaderError() {},
  };
  const parser = new FrameParser(sink);
  if (rest.length > 0) parser.push(rest);
  socket.on("data", (chunk: Buffer) => parser.push(chunk));
  return frames;
}
