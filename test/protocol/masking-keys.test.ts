/**
 * Client masking keys come from a pool filled in bulk: small for a short connection, growing to 1,024
 * keys per call to the random source for a long one; every frame gets the next four bytes.
 */
import { randomFillSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Connection } from "../../src/protocol/index.js";

describe("client masking keys", () => {
  it("draws 16 keys first, doubles on each refill up to 1,024, and uses each key once", () => {
    const fills: number[] = [];
    const conn = new Connection({
      side: "client",
      randomFill: (target) => {
        fills.push(target.length);
        randomFillSync(target);
      },
    });
    expect(fills).toEqual([]); // nothing drawn before the first frame
    const keys: string[] = [];
    for (let i = 0; i < 5000; i++) {
      conn.sendText("x");
      const frame = Buffer.concat(conn.takeOutput());
      expect(frame[1]! & 0x80).toBe(0x80);
      keys.push(frame.subarray(2, 6).toString("hex"));
    }
    expect(fills.slice(0, 7)).toEqual([64, 128, 256, 512, 1024, 2048, 4096]);
    expect(fills.slice(7).every((n) => n === 4096)).toBe(true);
    // 16 + 32 + ... + 1024 = 2032 keys from the first seven draws, then 1,024 per draw.
    expect(fills.length).toBe(7 + Math.ceil((5000 - 2032) / 1024));
    expect(new Set(keys).size).toBeGreaterThan(4990); // random 32-bit keys: collisions are rare
  });
});
