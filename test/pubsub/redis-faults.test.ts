import { Buffer } from "node:buffer";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup } from "../helpers/cleanup.js";
import { startRedisServer } from "../helpers/redis-server.js";
import { delay, until } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import {
  adminClient,
  CLIENT_KINDS,
  type ClientKind,
  codes,
  guardUnhandledRejections,
  startRedisApp,
} from "./redis-harness.js";

afterEach(cleanup);
guardUnhandledRejections();

/** Delivery must be back this soon after the fault (the test clients retry every 20 to 200 ms). */
const RESUME_WITHIN = 5000;

type Fault = "CLIENT KILL TYPE pubsub" | "redis-server restart" | "client-output-buffer-limit";
const FAULTS: Fault[] = ["CLIENT KILL TYPE pubsub", "redis-server restart", "client-output-buffer-limit"];

/** Sequence numbers of the text messages a client got, in order. */
const seqs = (c: WsClient): number[] =>
  c.messages
    .filter((m) => !m.isBinary && /^\d+$/.test(m.data.toString()))
    .map((m) => Number(m.data.toString()));

function strictlyIncreasing(values: number[]): boolean {
  return values.every((v, i) => i === 0 || v > values[i - 1]!);
}

describe.each(CLIENT_KINDS)("Redis adapter under faults (%s)", (kind: ClientKind) => {
  it.each(FAULTS)(
    "%s during a burst: delivery resumes in time, gap signalled, no duplicates",
    async (fault) => {
      const server = await startRedisServer();
      const admin = await adminClient(server.url);
      const a = await startRedisApp(kind, server.url);
      const b = await startRedisApp(kind, server.url);
      const a1 = await WsClient.open(`${a.wsUrl}/t/room`);
      const a2 = await WsClient.open(`${a.wsUrl}/t/bulk`);
      const b1 = await WsClient.open(`${b.wsUrl}/t/room`);
      for (const c of [a1, a2, b1]) await c.nextText();

      // B publishes a numbered message every couple of milliseconds for the whole test.
      let seq = 0;
      let publishing = true;
      const publisher = (async () => {
        while (publishing) {
          b.app.publish("room", String(seq++));
          await delay(2);
        }
      })();
      try {
        await until(() => seqs(a1).length >= 50, 3000, "the burst to flow");
        const faultAt = Date.now();
        if (fault === "CLIENT KILL TYPE pubsub") {
          expect(await admin.sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"])).toBeGreaterThanOrEqual(2);
        } else if (fault === "redis-server restart") {
          await server.restart();
        } else {
          await admin.CONFIG_SET("client-output-buffer-limit", "pubsub 64kb 32kb 1");
          // One message over the 64 KiB hard limit: Redis kills the subscriber connection it is queued for (A's).
          b.app.publish("bulk", Buffer.alloc(200 * 1024, 7));
          await until(() => a.gaps.length > 0, RESUME_WITHIN, "the gap after the kill");
          await admin.CONFIG_SET("client-output-buffer-limit", "pubsub 32mb 8mb 60");
          expect(server.log()).toMatch(/closed ASAP for overcoming of output buffer limits/);
        }
        await until(() => a.gaps.length > 0, RESUME_WITHIN, "a gap on A");
        const gapAt = Date.now();
        const seqAtGap = seq;
        await until(() => seqs(a1).some((s) => s >= seqAtGap), RESUME_WITHIN, "delivery to resume on A");
        const resumedAfter = Date.now() - faultAt;
        expect(resumedAfter).toBeLessThan(RESUME_WITHIN);
        expect(gapAt - faultAt).toBeLessThan(RESUME_WITHIN);
        const reason = fault === "redis-server restart" ? "restarted" : "reconnected";
        expect(a.gaps.map((g) => [g.topic, g.reason]).sort()).toEqual(
          [
            ["bulk", reason],
            ["room", reason],
          ].sort(),
        );
        expect(a.gaps.every((g) => g.subscribers.size === 1)).toBe(true);
        // B's subscriber had nothing of "bulk" queued, so only the other faults reach it.
        if (fault !== "client-output-buffer-limit")
          await until(() => b.gaps.length > 0, RESUME_WITHIN, "a gap on B");
        else expect(b.gaps).toEqual([]);
      } finally {
        publishing = false;
        await publisher;
      }
      // Everything B published after the fault settles; then the counts are final.
      await until(() => b.adapter.stats.pendingBytes === 0, 3000, "B's publications acknowledged");
      const got = seqs(a1);
      expect(strictlyIncreasing(got)).toBe(true); // in order, and never twice
      expect(got.length).toBeGreaterThan(50);
      // The publishing node: every message exactly once, from local delivery (the echo is dropped).
      // The last ones may still be on their way over TCP: wait for as many as were published.
      await until(() => seqs(b1).length >= seq, 3000, "B's own last publications to reach b1").catch(
        () => {},
      );
      expect(seqs(b1)).toEqual(Array.from({ length: seq }, (_, i) => i));
      const allowed = new Set(["SUBSCRIBER_DOWN", "REDIS_UNAVAILABLE", "PUBLISH_FAILED", "SUBSCRIBE_FAILED"]);
      expect(codes([...a.errors, ...b.errors]).filter((c) => !allowed.has(c))).toEqual([]);
      // Both nodes hold their topic channels again.
      expect((await admin.PUBSUB_NUMSUB("sockway:t:room"))["sockway:t:room"]).toBe(2);
    },
  );
});
