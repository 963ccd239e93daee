import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import { AppError } from "../protocol/index.js";
import {
  type ClusterAdapterOptions,
  ClusterRelay,
  type ClusterRelayOptions,
  clusterAdapter,
  type PubSubAdapter,
} from "../pubsub/index.js";
import type { Application } from "./application.js";

// The adapter and relay are the pub/sub layer's; the public surface reaches them through here.
export {
  type ClusterAdapterOptions,
  ClusterError,
  type ClusterErrorCode,
  ClusterRelay,
  type ClusterRelayOptions,
  clusterAdapter,
  type RelayChannel,
} from "../pubsub/index.js";

/** Control messages between runCluster's primary and its workers (pub/sub has its own, see ClusterRelay). */
const CONTROL = "sockway.cluster.control";
type Control = { [CONTROL]: "started" } | { [CONTROL]: "stop"; grace: number };
const SLOT_ENV = "SOCKWAY_CLUSTER_SLOT";

/** What `start` is given in each worker. */
export interface WorkerContext {
  /** The worker's place, 0 to `workers - 1`; a replacement keeps the slot of the worker it replaces. */
  readonly slot: number;
  /** node:cluster's id of this worker (new for each replacement). */
  readonly workerId: number;
  /** The pub/sub adapter across the workers: `app.install(PubSub, { adapter: context.adapter })`. */
  readonly adapter: PubSubAdapter;
}

export type ClusterEvent =
  | { type: "fork"; slot: number; pid: number | undefined }
  | { type: "started"; slot: number; pid: number | undefined }
  /** `expected`: it exited because the cluster is stopping. */
  | {
      type: "exit";
      slot: number;
      pid: number | undefined;
      code: number | null;
      signal: string | null;
      expected: boolean;
    }
  | { type: "restart"; slot: number; delay: number }
  /** More than `maxRestarts` within `restartWindow`: the cluster stops (exit code 1). */
  | { type: "restart-limit"; restarts: number; window: number }
  /** A worker killed: it did not start within `startTimeout`, or did not stop within `killTimeout`. */
  | {
      type: "kill";
      slot: number;
      pid: number | undefined;
      reason: "start-timeout" | "stop-timeout" | "forced";
    }
  | { type: "stopping"; reason: ClusterStopReason };

export type ClusterStopReason = "stop" | "signal" | "restart-limit";

export interface ClusterOptions {
  /**
   * Runs in each worker: builds the application, installs `PubSub` with `context.adapter`, and listens
   * (node:cluster shares the port). The cluster stops the application (`app.stop`) when it shuts down.
   * A worker whose `start` throws exits with code 1 and is restarted like a crash.
   */
  start: (context: WorkerContext) => Application | Promise<Application>;
  /** Worker processes. Default `os.availableParallelism()`. */
  workers?: number;
  /**
   * node:cluster's IPC serialization. "json" (default): measured faster for publications up to a few
   * KiB (bytes go as base64); "advanced": faster for large binary ones. Both carry bytes intact.
   */
  serialization?: "json" | "advanced";
  /** Most restarts of crashed workers within `restartWindow`; one more stops the cluster. Default 10. */
  maxRestarts?: number;
  /** The window for `maxRestarts`, in ms. Default 60,000. */
  restartWindow?: number;
  /** Delay before the first restart of a slot; doubled for each restart of that slot within the window. Default 100 ms. */
  restartDelay?: number;
  /** The longest restart delay. Default 10,000 ms. */
  maxRestartDelay?: number;
  /** A worker whose `start` has not resolved after this many ms is killed (and counts as a crash). Default 30,000. */
  startTimeout?: number;
  /** `app.stop({ grace })` in each worker: how long sessions get for their closing handshake (1001). Default 5000 ms. */
  stopGrace?: number;
  /** A worker still running this many ms after it was asked to stop is killed (SIGKILL). Default stopGrace + 5000. */
  killTimeout?: number;
  /**
   * Signals the primary stops the cluster on (a second one kills the workers at once). Workers stop
   * gracefully on them too (a terminal's Ctrl-C reaches the whole group). Default ["SIGTERM", "SIGINT"];
   * false: none (call `stop()`).
   */
  signals?: readonly NodeJS.Signals[] | false;
  /** Pub/sub limits in the primary (per-worker backlog, count timeout). */
  relay?: ClusterRelayOptions;
  /** Pub/sub limits in the workers. */
  adapter?: ClusterAdapterOptions;
  /** What happens to workers. Default: unexpected exits and the restart limit are logged to stderr. */
  onEvent?: (event: ClusterEvent) => void;
}

export interface ClusterPrimary {
  readonly isPrimary: true;
  /** Resolves once every slot has a worker whose `start` resolved; rejects if the cluster stops first. */
  readonly ready: Promise<void>;
  /** Resolves when every worker has exited after a stop, with why it stopped. */
  readonly done: Promise<ClusterStopReason>;
  /** Pids of the workers now running. */
  pids(): number[];
  /** The relay carrying pub/sub between the workers. */
  readonly relay: ClusterRelay;
  /** Stops every worker gracefully (each one's `app.stop`), killing those left after `killTimeout`. */
  stop(): Promise<void>;
}

export interface ClusterWorker {
  readonly isPrimary: false;
  readonly app: Application;
  /** Stops this worker's application and exits the process. */
  stop(): Promise<never>;
}

const defaultOnEvent = (event: ClusterEvent): void => {
  if (event.type === "exit" && !event.expected)
    console.error(
      `sockway cluster: worker ${event.pid} (slot ${event.slot}) exited unexpectedly (${event.signal ?? `code ${event.code}`})`,
    );
  else if (event.type === "restart-limit")
    console.error(
      `sockway cluster: ${event.restarts} restarts within ${event.window} ms (maxRestarts): stopping`,
    );
};

/**
 * Runs an application on every core of one machine: `N` worker processes (node:cluster) share one
 * port, and pub/sub reaches subscribers on every worker (`clusterAdapter` in the workers, a
 * `ClusterRelay` in the primary). Call it at the top of the entry script: in the primary it forks the
 * workers (which run the same script) and supervises them; in a worker it calls `start`.
 *
 *   const c = await runCluster({ workers: 4, start: async ({ adapter }) => {
 *     const app = createApp().install(WebSockets).install(PubSub, { adapter });
 *     app.routing(...);
 *     await app.listen({ port: 8080 });
 *     return app;
 *   }});
 *   if (c.isPrimary) await c.ready;
 *
 * Connections are handed out by the primary, round-robin (node:cluster's default on Linux). SO_REUSEPORT
 * (listen's `reusePort`, Node >= 22.12 / 23.1) is not used: the kernel spreads connections by a hash of
 * their addresses, not by load, a worker blocked or being restarted still gets its share (its queued
 * connections are reset when it dies), and it does not exist on Node 20. The primary's extra hop costs
 * once per connection, not per message, which for long-lived WebSockets is small.
 */
export async function runCluster(options: ClusterOptions): Promise<ClusterPrimary | ClusterWorker> {
  if (typeof options?.start !== "function")
    throw new AppError("INVALID_OPTION", "runCluster: start must be a function");
  return cluster.isPrimary ? runPrimary(options) : runWorker(options);
}

function count(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min)
    throw new AppError(
      "INVALID_OPTION",
      `runCluster option ${name} must be an integer >= ${min}, got ${value}`,
    );
  return value;
}

interface Slot {
  worker: Worker | undefined;
  /** Restarts of this slot within the window (the backoff's exponent). */
  restarts: number[];
  timer: NodeJS.Timeout | undefined;
  started: boolean;
}

function runPrimary(options: ClusterOptions): ClusterPrimary {
  const workers = count("workers", options.workers, availableParallelism());
  const maxRestarts = count("maxRestarts", options.maxRestarts, 10, 0);
  const restartWindow = count("restartWindow", options.restartWindow, 60_000);
  const restartDelay = count("restartDelay", options.restartDelay, 100, 0);
  const maxRestartDelay = count("maxRestartDelay", options.maxRestartDelay, 10_000, 0);
  const startTimeout = count("startTimeout", options.startTimeout, 30_000);
  const stopGrace = count("stopGrace", options.stopGrace, 5000, 0);
  const killTimeout = count("killTimeout", options.killTimeout, stopGrace + 5000);
  const serialization = options.serialization ?? "json";
  if (serialization !== "json" && serialization !== "advanced")
    throw new AppError("INVALID_OPTION", `runCluster option serialization: "json" or "advanced"`);
  const signals = options.signals === false ? [] : (options.signals ?? ["SIGTERM", "SIGINT"]);
  const onEvent = options.onEvent ?? defaultOnEvent;
  const emit = (event: ClusterEvent): void => {
    try {
      onEvent(event);
    } catch {
      // A logging hook that throws must not take the supervisor down.
    }
  };

  const relay = new ClusterRelay(options.relay);
  cluster.setupPrimary({ serialization });
  const slots: Slot[] = Array.from({ length: workers }, () => ({
    worker: undefined,
    restarts: [],
    timer: undefined,
    started: false,
  }));
  /** Every restart within the window, all slots: what maxRestarts limits. */
  const restarts: number[] = [];
  let stopping: Promise<void> | undefined;
  let stopReason: ClusterStopReason = "stop";
  let resolveDone!: (reason: ClusterStopReason) => void;
  const done = new Promise<ClusterStopReason>((resolve) => {
    resolveDone = resolve;
  });
  let resolveReady!: () => void;
  let rejectReady!: (error: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {}); // rejecting it must not be an unhandled rejection for a caller who ignores it

  const fork = (index: number): void => {
    const slot = slots[index]!;
    slot.timer = undefined;
    const worker = cluster.fork({ [SLOT_ENV]: String(index) });
    slot.worker = worker;
    relay.add(worker);
    const pid = worker.process.pid;
    emit({ type: "fork", slot: index, pid });
    let expected = false;
    const startTimer = setTimeout(() => {
      emit({ type: "kill", slot: index, pid, reason: "start-timeout" });
      worker.process.kill("SIGKILL");
    }, startTimeout);
    worker.on("message", (m: unknown) => {
      if ((m as Partial<Record<typeof CONTROL, string>>)?.[CONTROL] !== "started") return;
      clearTimeout(startTimer);
      emit({ type: "started", slot: index, pid });
      if (!slot.started) {
        slot.started = true;
        if (slots.every((s) => s.started)) resolveReady();
      }
    });
    // Errors on the channel come with 'disconnect'/'exit' too; without a listener they would throw.
    worker.on("error", () => {});
    worker.once("exit", (code, signal) => {
      clearTimeout(startTimer);
      if (slot.worker === worker) slot.worker = undefined;
      expected = stopping !== undefined;
      emit({ type: "exit", slot: index, pid, code, signal, expected });
      if (!expected) crashed(index);
      else if (slots.every((s) => s.worker === undefined)) finished();
    });
  };

  const crashed = (index: number): void => {
    const now = Date.now();
    const prune = (list: number[]) => {
      while (list.length > 0 && list[0]! <= now - restartWindow) list.shift();
    };
    prune(restarts);
    const slot = slots[index]!;
    prune(slot.restarts);
    if (restarts.length >= maxRestarts) {
      emit({ type: "restart-limit", restarts: restarts.length, window: restartWindow });
      process.exitCode = 1;
      void stop("restart-limit");
      return;
    }
    const delay = Math.min(maxRestartDelay, restartDelay * 2 ** slot.restarts.length);
    restarts.push(now);
    slot.restarts.push(now);
    emit({ type: "restart", slot: index, delay });
    slot.timer = setTimeout(() => fork(index), delay);
  };

  const finished = (): void => {
    for (const signal of signals) process.off(signal, onSignal);
    resolveDone(stopReason);
  };

  const stop = (reason: ClusterStopReason): Promise<void> => {
    if (stopping !== undefined) return stopping;
    stopReason = reason;
    emit({ type: "stopping", reason });
    rejectReady(
      new AppError("INVALID_OPTION", `the cluster stopped (${reason}) before every worker started`),
    );
    for (const slot of slots) {
      clearTimeout(slot.timer);
      slot.timer = undefined;
    }
    const live = slots.flatMap((s, index) => (s.worker ? [{ worker: s.worker, index }] : []));
    const message: Control = { [CONTROL]: "stop", grace: stopGrace };
    for (const { worker, index } of live) {
      worker.send(message, () => {}); // a worker already gone answers with its 'exit'
      const timer = setTimeout(() => {
        emit({ type: "kill", slot: index, pid: worker.process.pid, reason: "stop-timeout" });
        worker.process.kill("SIGKILL");
      }, killTimeout);
      worker.once("exit", () => clearTimeout(timer));
    }
    stopping = done.then(() => {});
    if (live.length === 0) finished();
    return stopping;
  };

  const onSignal = (): void => {
    if (stopping === undefined) return void stop("signal");
    // A second signal: the operator does not want to wait for the grace period.
    for (const [index, slot] of slots.entries())
      if (slot.worker) {
        emit({ type: "kill", slot: index, pid: slot.worker.process.pid, reason: "forced" });
        slot.worker.process.kill("SIGKILL");
      }
  };
  for (const signal of signals) process.on(signal, onSignal);

  for (let i = 0; i < workers; i++) fork(i);

  return {
    isPrimary: true,
    ready,
    done,
    relay,
    pids: () => slots.flatMap((s) => (s.worker?.process.pid !== undefined ? [s.worker.process.pid] : [])),
    stop: () => stop("stop"),
  };
}

async function runWorker(options: ClusterOptions): Promise<ClusterWorker> {
  const worker = cluster.worker!;
  const context: WorkerContext = {
    slot: Number(process.env[SLOT_ENV] ?? 0),
    workerId: worker.id,
    adapter: clusterAdapter(options.adapter),
  };
  let app: Application | undefined;
  let stopping: Promise<never> | undefined;
  const stop = (grace?: number): Promise<never> => {
    stopping ??= (async () => {
      try {
        await app?.stop(grace === undefined ? {} : { grace });
      } finally {
        // Whatever else the application left running (timers, clients), the worker is done.
        process.exit(0);
      }
    })();
    return stopping;
  };
  // Until start resolves, a stop request ends the worker at once: there are no sessions yet.
  const onControl = (m: unknown): void => {
    const c = m as Partial<Control>;
    if (c?.[CONTROL] === "stop") void stop((c as { grace: number }).grace);
  };
  process.on("message", onControl);
  const signals = options.signals === false ? [] : (options.signals ?? ["SIGTERM", "SIGINT"]);
  for (const signal of signals) process.on(signal, () => void stop(options.stopGrace));
  try {
    app = await options.start(context);
  } catch (error) {
    console.error(`sockway cluster: start failed in worker ${process.pid}:`, error);
    process.exit(1);
  }
  if (typeof app?.stop !== "function") {
    console.error(`sockway cluster: start must return the Application (worker ${process.pid})`);
    process.exit(1);
  }
  // A stop asked for while starting has exited the process by now (there were no sessions).
  if (stopping === undefined) process.send?.({ [CONTROL]: "started" }, () => {});
  return { isPrimary: false, app, stop: () => stop(options.stopGrace) };
}
