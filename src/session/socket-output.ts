import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";

/** Pieces at least this large are written as they are; smaller ones are copied together. */
const LARGE_PIECE = 16 * 1024;
/**
 * While earlier writes are still queued in the socket (the peer reads slowly), smaller output waits in
 * the session until there is this much of it, so the socket never holds one write per tiny frame.
 */
export const MIN_QUEUED_WRITE = 16 * 1024;

/**
 * Writes frames' buffers to the socket with few writes: runs of small pieces are copied into one
 * buffer, large pieces go as they are (corked together). Each write costs the socket a request object,
 * so this bounds the socket's own overhead by bytes, not by frame count.
 */
export function writePieces(socket: Duplex, pieces: readonly Buffer[]): void {
  const n = pieces.length;
  if (n === 0) return;
  if (n === 1) {
    socket.write(pieces[0]!);
    return;
  }
  let total = 0;
  let large = false;
  for (let i = 0; i < n; i++) {
    const length = pieces[i]!.length;
    total += length;
    if (length >= LARGE_PIECE) large = true;
  }
  if (!large) {
    socket.write(Buffer.concat(pieces as Buffer[], total));
    return;
  }
  socket.cork();
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (pieces[i]!.length < LARGE_PIECE) continue;
    writeRun(socket, pieces, start, i);
    socket.write(pieces[i]!);
    start = i + 1;
  }
  writeRun(socket, pieces, start, n);
  socket.uncork();
}

function writeRun(socket: Duplex, pieces: readonly Buffer[], start: number, end: number): void {
  if (end - start === 1) socket.write(pieces[start]!);
  else if (end > start) socket.write(Buffer.concat(pieces.slice(start, end) as Buffer[]));
}

/** RST_STREAM's CANCEL (RFC 9113 §7). */
const H2_CANCEL = 0x8;

/**
 * Destroys the transport without a closing handshake. An HTTP/2 stream (RFC 8441) is reset with CANCEL,
 * as TCP is reset: a bare destroy() would reset it with NO_ERROR, which reads as a clean end.
 */
export function abortTransport(socket: Duplex): void {
  const stream = socket as Duplex & { close?: (code: number) => void; rstCode?: number };
  if ("rstCode" in stream && typeof stream.close === "function" && !socket.destroyed) stream.close(H2_CANCEL);
  socket.destroy();
}
