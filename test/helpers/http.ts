import { connect, type Socket } from "node:net";
import { onCleanup } from "./cleanup.js";
import { delay, within } from "./wait.js";

export interface RawResponse {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

/** Parses an HTTP/1.1 response (Content-Length, chunked, or read-to-end bodies). */
export function parseResponse(bytes: Buffer): RawResponse {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`incomplete HTTP response: ${JSON.stringify(bytes.toString("latin1"))}`);
  const [statusLine = "", ...lines] = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = bytes.subarray(end + 4);
  if (headers["transfer-encoding"]?.toLowerCase() === "chunked") body = dechunk(body);
  else if (headers["content-length"] !== undefined)
    body = body.subarray(0, Number(headers["content-length"]));
  return { status: Number(match[1]), headers, body: body.toString("utf8") };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const lineEnd = data.indexOf("\r\n", pos);
    if (lineEnd < 0) break;
    const size = Number.parseInt(data.subarray(pos, lineEnd).toString("latin1"), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Opens a TCP connection to the server on 127.0.0.1, registered for cleanup. */
export function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    onCleanup(() => socket.destroy());
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/**
 * Sends `request` byte for byte (no client-side normalization of the path) and reads the response until
 * the server closes the connection, or until a complete Content-Length or chunked response has arrived.
 */
export async function rawRequest(port: number, request: string | Buffer, ms = 3000): Promise<RawResponse> {
  return parseResponse((await exchange(port, request, ms)).bytes);
}

/**
 * Like `rawRequest`, and also tells whether the server closed the connection (FIN) within `ms` of
 * the complete response.
 */
export async function requestAndWaitForClose(
  port: number,
  request: string,
  ms = 500,
): Promise<{ response: RawResponse; closedByServer: boolean }> {
  const { bytes, ended } = await exchange(port, request, 3000, false);
  const closedByServer = await Promise.race([ended.then(() => true), delay(ms).then(() => false)]);
  return { response: parseResponse(bytes), closedByServer };
}

async function exchange(
  port: number,
  request: string | Buffer,
  ms: number,
  destroy = true,
): Promise<{ bytes: Buffer; ended: Promise<void> }> {
  const socket = await openSocket(port);
  const ended = new Promise<void>((resolve) => socket.once("end", resolve));
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    const check = () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = all.subarray(0, end).toString("latin1");
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (length && all.length >= end + 4 + Number(length[1])) resolve(all);
      const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
      if (chunked && all.subarray(end).includes("\r\n0\r\n\r\n")) resolve(all);
    };
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      check();
    });
    socket.on("end", () => resolve(Buffer.concat(chunks)));
    socket.on("error", reject);
  });
  socket.write(request);
  const bytes = await within(done, ms, "an HTTP response");
  if (destroy) socket.destroy();
  return { bytes, ended };
}

/** A well-formed request: `request(port, "GET", "/path", { Header: "value" })`. */
export function request(
  port: number,
  method: string,
  path: string,
  headers: Readonly<Record<string, string>> = {},
  body = "",
): Promise<RawResponse> {
  let head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (body !== "") head += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  return rawRequest(port, `${head}\r\n${body}`);
}

/** The headers of a valid WebSocket opening handshake (RFC 6455 §4.1), for tests that vary one of them. */
export function upgradeHeaders(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  return {
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    ...extra,
  };
}

/** Sends an upgrade request (GET, valid headers unless overridden or removed with `undefined`). */
export function upgradeRequest(
  port: number,
  path: string,
  overrides: Readonly<Record<string, string | undefined>> = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = upgradeHeaders();
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete headers[name];
    else headers[name] = value;
  }
  let head = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return rawRequest(port, `${head}\r\n`);
}
