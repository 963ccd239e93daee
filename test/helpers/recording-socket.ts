import type { Buffer } from "node:buffer";
import { Duplex } from "node:stream";

/** A duplex that records what a session writes and never produces data of its own. */
export function recordingSocket(): { socket: Duplex; written: Buffer[] } {
  const written: Buffer[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      written.push(chunk);
      done();
    },
  });
  return { socket, written };
}
