/**
 * Pub/sub across node:cluster workers (runCluster + clusterAdapter + ClusterRelay), without Redis. The
 * cluster runs from the compiled sockway in a child process (test/pubsub/cluster-app.mjs); clients
 * tell the workers apart by the pid each connection is greeted with.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ClusterRelay } from "../../src/index.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { startRedisServer } from "../helpers/redis-server.js";
import { until, within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";
import { sockwayDist } from "../memory/flood-harness.js";
import { adminClient } from "./redis-harness.js";

const script = fileURLToPath(new URL("./cluster-app.mjs", import.meta.url));
let dist: { dir: string; dispose: () => void };

beforeAll(async () => {
  dist = await sockwayDist();
}, 180_000);
afterAll(() => dist?.dispose());
afterEach(cleanup);

interface Report {
  type: string;
  at?: number;
  port?: number;
  reason?: string;
  cpu?: { user: number; system: number };
  elapsed?: number;
  event?: { type: string; slot?: number; pid?: number; delay?: number; expected?: boolean; code?: number };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Starts a cluster's primary; every process it forks is SIGKILLed in cleanup, whatever the test did. */
async function startCluster(options: Record<string, unknown>, env: Record<string, string> = {}) {
  const reports: Report[] = [];
  let stderr = "";
  const primary = fork(script, [], {
    env: {
      ...process.env,
      SOCKWAY_DIST: dist.dir,
      CLUSTER_OPTIONS: JSON.stringify({ signals: ["SIGTERM", "SIGINT"], ...options }),
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  primary.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  primary.on("message", (m: Report) => reports.push(m));
  const forked = () => reports.filter((r) => r.event?.type === "fork").map((r) => r.event!.pid!);
  onCleanup(() => {
    for (const pid of [primary.pid!, ...forked()]) if (alive(pid)) process.kill(pid, "SIGKILL");
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    primary.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const started = () => reports.filter((r) => r.event?.type === "started").length;
  const workers = (options.workers as number | undefined) ?? 2;
  if (env.CLUSTER_CRASH !== "1")
    await until(() => started() >= workers, 15_000, `${workers} workers started (stderr: ${stderr})`);
  const port = reports.find((r) => r.type === "listening")?.port;
  return { primary, reports, forked, exited, port, stderr: () => stderr };
}

interface Client {
  ws: WsClient;
  pid: number;
}

/** Opens clients on `topic` until `perWorker` are on each of `workers` workers (round-robin spreads them). */
async function clientsOnWorkers(port: number, topic: string, workers: number, perWorker: number) {
  const byPid = new Map<number, Client[]>();
  for (let attempt = 0; attempt < workers * perWorker * 4; attempt++) {
    const ws = await WsClient.open(`ws://127.0.0.1:${port}/ws?topic=${encodeURIComponent(topic)}`);
    const pid = Number((await ws.nextText()).split(" ")[1]);
    expect(await ws.nextText()).toBe("subscribed");
    const list = byPid.get(pid) ?? [];
    if (list.length < perWorker) list.push({ ws, pid });
    else ws.close();
    byPid.set(pid, list);
    if (byPid.size === workers && [...byPid.values()].every((l) => l.length === perWorker)) break;
  }
  expect(byPid.size).toBe(workers);
  return [...byPid.values()];
}

/** Sends a command and returns the answer's JSON (the next message on that client must be it). */
async function ask<T>(client: Client, command: string, answer: string, ms = 3000): Promise<T> {
  await client.ws.send(command);
  const text = await client.ws.nextText(ms);
  expect(text.startsWith(`${answer} `)).toBe(true);
  return JSON.parse(text.slice(answer.length + 1)) as T;
}

/** Waits until `client` holds `n` messages beyond those already read, and takes them. */
async function take(client: Client, n: number, ms = 15_000) {
  const ws = client.ws as unknown as { readIndex: number; messages: WsClient["messages"] };
  const from = ws.readIndex;
  await until(() => ws.messages.length >= from + n, ms, `${n} messages on ${client.pid}`);
  ws.readIndex = from + n;
  return ws.messages.slice(from, from + n);
}

describe.each(["json", "advanced"] as const)("cluster pub/sub (%s serialization)", (serialization) => {
  it("delivers one copy of each publication to every subscriber on every worker, bytes intact", async () => {
    const c = await startCluster({ workers: 2, serialization });
    const [onA, onB] = await clientsOnWorkers(c.port!, "room", 2, 2);
    const [a1, a2] = onA!;
    const [b1, b2] = onB!;
    // A topic only worker A has: B's adapter is never sent its publications.
    await a1!.ws.send("sub lonely");
    expect(await a1!.ws.nextText()).toBe("subscribed lonely");
    const bReceivedBefore = (await ask<{ received: number }>(b2!, "stats", "stats")).received;

    await a1!.ws.send("pub room from A é☃🎉");
    await b1!.ws.send("pub room from B");
    for (const x of [a1!, a2!, b1!, b2!]) {
      const got = (await take(x, 2)).map((m) => ({ text: m.data.toString("utf8"), binary: m.isBinary }));
      expect(got.sort((p, q) => p.text.localeCompare(q.text))).toEqual([
        { text: "from A é☃🎉", binary: false },
        { text: "from B", binary: false },
      ]);
    }
    const bytes = Buffer.alloc(70_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
    await a1!.ws.send(bytes);
    for (const x of [a2!, b1!, b2!]) {
      const [m] = await take(x, 1);
      expect(m!.isBinary).toBe(true);
      expect(m!.data.equals(bytes)).toBe(true);
    }
    await a1!.ws.send("pub lonely only A");
    await take(a1!, 1); // its own bytes: a publish without `except` reaches the publisher too
    expect(await a1!.ws.nextText()).toBe("only A");
    // Nothing extra arrived anywhere: each subscriber got one copy of each (greeting, subscribed, 3).
    for (const x of [a2!, b1!, b2!])
      expect(x.ws.messages.filter((m) => !m.data.toString().startsWith("stats ")).length).toBe(2 + 3);
    const bStats = await ask<{ received: number }>(b2!, "stats", "stats");
    expect(bStats.received - bReceivedBefore).toBe(2); // "from A" and the bytes, not "lonely"
  });

  it("keeps the order of 10,000 publications per publisher across workers", async () => {
    const c = await startCluster({ workers: 2, serialization });
    const [[a], [b]] = (await clientsOnWorkers(c.port!, "seq", 2, 1)) as [[Client], [Client]];
    const n = 10_000;
    const t0 = Date.now();
    await Promise.all([a.ws.send(`seq seq ${n} A`), b.ws.send(`seq seq ${n} B`)]);
    for (const x of [a, b]) {
      const next = { A: 0, B: 0 };
      for (const m of await take(x, 2 * n, 30_000)) {
        const [tag, i] = m.data.toString().split(" ") as ["A" | "B", string];
        expect(Number(i)).toBe(next[tag]);
        next[tag]++;
      }
      expect(next).toEqual({ A: n, B: n });
    }
    console.log(`cluster ${serialization}: 2 x ${n} publications to 2 workers in ${Date.now() - t0} ms`);
  }, 60_000);
});

describe("cluster supervision", () => {
  it("replaces a worker killed with SIGKILL, and the new one serves", async () => {
    const c = await startCluster({ workers: 2, restartDelay: 10 });
    const [[a], [b]] = (await clientsOnWorkers(c.port!, "r", 2, 1)) as [[Client], [Client]];
    process.kill(b.pid, "SIGKILL");
    expect((await b.ws.closed).code).toBe(1006);
    await until(() => c.forked().length === 3, 10_000, "a replacement forked");
    const replacement = c.forked()[2]!;
    expect(c.reports.some((r) => r.event?.type === "restart")).toBe(true);
    await until(
      () => c.reports.some((r) => r.event?.type === "started" && r.event.pid === replacement),
      10_000,
      "the replacement started",
    );
    const clients = await clientsOnWorkers(c.port!, "r", 2, 1);
    const pids = clients.map((l) => l[0]!.pid).sort();
    expect(pids).toEqual([a.pid, replacement].sort());
    // And it is part of the pub/sub: the survivor's publication reaches it.
    const onNew = clients.find((l) => l[0]!.pid === replacement)![0]!;
    await a.ws.send("pub r after restart");
    expect(await onNew.ws.nextText()).toBe("after restart");
  });

  it("holds the restart limit in a crash loop, backing off, and stops with exit code 1", async () => {
    const maxRestarts = 4;
    const c = await startCluster(
      { workers: 2, maxRestarts, restartWindow: 60_000, restartDelay: 50, maxRestartDelay: 400 },
      { CLUSTER_CRASH: "1" },
    );
    const exit = await within(c.exited, 20_000, "the primary's exit");
    expect(exit.code).toBe(1);
    expect(c.forked().length).toBe(2 + maxRestarts);
    expect(c.reports.some((r) => r.event?.type === "restart-limit")).toBe(true);
    const delays = c.reports.filter((r) => r.event?.type === "restart").map((r) => r.event!.delay!);
    // Per slot 50, 100, ... (two slots interleave); never more restarts than the limit.
    expect(delays.length).toBe(maxRestarts);
    expect(Math.max(...delays)).toBeGreaterThanOrEqual(100);
    const done = c.reports.find((r) => r.type === "done")!;
    expect(done.reason).toBe("restart-limit");
    // Not spinning: the primary's CPU time is a small part of its life (forks cost a few ms each).
    const cpuMs = (done.cpu!.user + done.cpu!.system) / 1000;
    expect(cpuMs).toBeLessThan(Math.max(300, done.elapsed! * 0.5));
    for (const pid of c.forked()) expect(alive(pid)).toBe(false);
  });

  for (const how of ["SIGTERM", "stop()"] as const)
    it(`${how} closes every client with 1001, and the primary and its workers exit`, async () => {
      const c = await startCluster({ workers: 2 });
      const clients = (await clientsOnWorkers(c.port!, "s", 2, 2)).flat();
      if (how === "SIGTERM") c.primary.kill("SIGTERM");
      else c.primary.send({ cmd: "stop" });
      const codes = await within(
        Promise.all(clients.map((x) => x.ws.closed.then((r) => r.code))),
        10_000,
        "every client closed",
      );
      expect(codes).toEqual([1001, 1001, 1001, 1001]);
      expect(await within(c.exited, 10_000, "the primary's exit")).toEqual({ code: 0, signal: null });
      for (const pid of c.forked()) expect(alive(pid)).toBe(false);
      expect(c.reports.find((r) => r.type === "done")?.reason).toBe(how === "SIGTERM" ? "signal" : "stop");
    });

  it("kills a worker that does not stop within killTimeout", async () => {
    const c = await startCluster({ workers: 2, stopGrace: 200, killTimeout: 600 });
    const [[a], [b]] = (await clientsOnWorkers(c.port!, "k", 2, 1)) as [[Client], [Client]];
    await a.ws.send("block 20000"); // its event loop never gets to the stop request
    expect(await a.ws.nextText()).toBe("blocking");
    const t0 = Date.now();
    c.primary.send({ cmd: "stop" });
    expect((await within(b.ws.closed, 5000, "b closed")).code).toBe(1001);
    expect(await within(c.exited, 10_000, "the primary's exit")).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(c.reports.some((r) => r.event?.type === "kill" && r.event.pid === a.pid)).toBe(true);
    expect(alive(a.pid)).toBe(false);
  });
});

describe("clusterSubscriberCount across workers", () => {
  it("counts every worker's subscribers, and answers partially when a worker does not answer", async () => {
    const c = await startCluster({ workers: 2 });
    const [onA, onB] = await clientsOnWorkers(c.port!, "n", 2, 3);
    onB!.pop()!.ws.close(); // 3 on A, 2 on B
    await until(
      async () => (await ask<{ count: number }>(onA![0]!, "count n 1000", "count")).count === 5,
      5000,
      "B's third subscriber gone",
    );
    expect(await ask(onA![0]!, "count n 1000", "count")).toEqual({ count: 5, nodes: 2, complete: true });
    expect(await ask(onB![0]!, "count n 1000", "count")).toEqual({ count: 5, nodes: 2, complete: true });
    expect(await ask(onA![0]!, "count nobody 1000", "count")).toEqual({ count: 0, nodes: 2, complete: true });

    await onB![0]!.ws.send("block 1500");
    expect(await onB![0]!.ws.nextText()).toBe("blocking");
    const t0 = Date.now();
    expect(await ask(onA![0]!, "count n 300", "count", 5000)).toEqual({
      count: 3,
      nodes: 1,
      complete: false,
    });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect(await onB![0]!.ws.nextText(5000)).toBe("unblocked");
  });
});

describe("clusterAdapter outside node:cluster", () => {
  async function child(): Promise<{ proc: ChildProcess; port: number }> {
    const proc = fork(script, [], {
      env: { ...process.env, SOCKWAY_DIST: dist.dir, CLUSTER_MODE: "plain" },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    onCleanup(() => proc.kill("SIGKILL"));
    const port = await within(
      new Promise<number>((resolve) =>
        proc.on("message", (m: Report) => m.type === "listening" && resolve(m.port!)),
      ),
      10_000,
      "the child listening",
    );
    return { proc, port };
  }

  it("relays through a ClusterRelay of this process; a lost channel leaves the child serving locally", async () => {
    const relay = new ClusterRelay();
    const [x, y] = await Promise.all([child(), child()]);
    relay.add(x.proc);
    relay.add(y.proc);
    const open = async (port: number) => {
      const ws = await WsClient.open(`ws://127.0.0.1:${port}/ws?topic=p`);
      const pid = Number((await ws.nextText()).split(" ")[1]);
      expect(await ws.nextText()).toBe("subscribed");
      return { ws, pid };
    };
    const onX = await open(x.port);
    const onX2 = await open(x.port);
    const onY = await open(y.port);
    expect(relay.interestIn("p")).toBe(2);
    await onY.ws.send("pub p through the relay");
    expect(await onX.ws.nextText()).toBe("through the relay");
    expect(await onX2.ws.nextText()).toBe("through the relay");

    x.proc.disconnect(); // the "primary" is gone for x
    await until(() => relay.size.workers === 1, 5000, "x removed from the relay");
    await onX.ws.send("pub p local only");
    expect(await onX2.ws.nextText()).toBe("local only");
    expect(await onX.ws.nextText()).toBe("local only");
    // A new topic and a topic's last subscriber leaving: both would tell the gone primary.
    const late = await WsClient.open(`ws://127.0.0.1:${x.port}/ws?topic=q`);
    await take({ ws: late, pid: 0 }, 2);
    late.close();
    await late.closed;
    await onX.ws.send("pub q nobody"); // a round trip through x after the unsubscribe
    expect(await ask<string[]>(onX, "errors", "errors")).toEqual(["pubsub:CLUSTER_DISCONNECTED"]);
    expect(x.proc.exitCode).toBe(null);
    expect(alive(x.proc.pid!)).toBe(true);
    // y got nothing of it, and was told nothing twice.
    await onY.ws.send("pub p after");
    await onX.ws.send("pub p still local");
    expect(await onX2.ws.nextText()).toBe("still local");
    await take(onY, 2); // "through the relay" and "after": its own
    expect(onY.ws.messages.map((m) => m.data.toString())).toEqual([
      `pid ${onY.pid}`,
      "subscribed",
      "through the relay",
      "after",
    ]);
  });
});

describe("cluster over Redis", () => {
  it("workers share topics through redisAdapter: one copy each, interest only, 1001 on stop", async () => {
    const redis = await startRedisServer();
    const admin = await adminClient(redis.url);
    const c = await startCluster({ workers: 2 }, { CLUSTER_REDIS_URL: redis.url });
    const [[a], [b]] = (await clientsOnWorkers(c.port!, "room", 2, 1)) as [[Client], [Client]];
    expect(a.pid).not.toBe(b.pid);
    await a.ws.send("pub room from a");
    await b.ws.send("pub room from b");
    const got = (client: Client) => take(client, 2).then((ms) => ms.map((m) => m.data.toString()).sort());
    expect(await got(a)).toEqual(["from a", "from b"]);
    expect(await got(b)).toEqual(["from a", "from b"]);
    // Both workers hold the topic's channel: two subscribers of it in Redis, and no relay involved.
    expect(await admin.pubSubNumSub("sockway:t:room")).toEqual({ "sockway:t:room": 2 });
    const stats = await ask<{ received: number }>(a, "stats", "stats");
    expect(stats.received).toBe(1);
    c.primary.kill("SIGTERM");
    const codes = await within(
      Promise.all([a, b].map((x) => x.ws.closed.then((r) => r.code))),
      10_000,
      "both clients closed",
    );
    expect(codes).toEqual([1001, 1001]);
    expect(await within(c.exited, 10_000, "the primary's exit")).toEqual({ code: 0, signal: null });
    await until(async () => (await admin.pubSubChannels("sockway:t:*")).length === 0, 5000, "channels gone");
  });
});
