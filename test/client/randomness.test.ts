/**
 * The client's randomness: handshake keys and masking keys come from one pool of CSPRNG bytes filled
 * in bulk; every byte must be handed out once. Hundreds of connections (several refills of the pool)
 * over in-memory streams, each answered by a scripted server that reads the key and the mask of the
 * first frame.
 */
import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { connectOver } from "../../src/client/index.js";
import { computeAccept } from "../../src/protocol/index.js";
import { memoryPair } from "../../src/testing/memory-pair.js";

/** Opens one connection and returns its handshake key and the masking key of its first frame. */
async function keyAndMask(): Promise<{ key: string; mask: string }> {
  const [clientEnd, serverEnd] = memoryPair();
  let received = Buffer.alloc(0);
  let key: string | undefined;
  const mask = new Promise<string>((resolve) => {
    serverEnd.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (key === undefined) {
        const end = received.indexOf("\r\n\r\n");
        if (end < 0) return;
        key = /sec-websocket-key: *(\S+)/i.exec(received.toString("latin1", 0, end))?.[1] ?? "";
        received = received.subarray(end + 4);
        serverEnd.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAccept(key)}\r\n\r\n`,
        );
      }
      // A masked frame of up to 125 bytes: 2 header bytes, then the 4-byte key.
      if (received.length >= 6) resolve(received.subarray(2, 6).toString("hex"));
    });
  });
  const session = await connectOver(clientEnd, "ws://sockway.test/", { pingPeriod: 0 });
  await session.send("x");
  const m = await mask;
  session.terminate();
  return { key: key!, mask: m };
}

describe("the client's random bytes", () => {
  it("give every connection its own 16-byte key and its own masking keys, across refills", async () => {
    const seen: Array<{ key: string; mask: string }> = [];
    for (let i = 0; i < 300; i++) seen.push(await keyAndMask());
    const keys = new Set(seen.map((s) => s.key));
    expect(keys.size).toBe(seen.length);
    for (const key of keys) expect(Buffer.from(key, "base64")).toHaveLength(16);
    // 300 random 32-bit keys: a repeat has odds of about 1 in 100,000; a byte handed out twice repeats.
    expect(new Set(seen.map((s) => s.mask)).size).toBe(seen.length);
    // A key's bytes are never a connection's masking key too.
    const keyHex = seen.map((s) => Buffer.from(s.key, "base64").toString("hex")).join(" ");
    for (const s of seen) expect(keyHex.includes(s.mask)).toBe(false);
  });
});
