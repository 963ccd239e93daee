/**
 * A model-based property test of the session lifecycle (docs/architecture.md, "The lifecycle": the state
 * table is the specification).
 *
 * Each run starts an app (startApp) with a /health HTTP route and one WebSocket route whose handler is
 * driven by the test: it takes batches of operations from a queue the test fills. A scripted raw peer
 * (test/helpers/scripted-peer.ts: hand-made masked frames, no code shared with src/) connects, offering
 * permessage-deflate in the runs that have it (threshold 64). The run plays a generated scenario: groups of
 * local operations (one batch: the same event-loop turn unless one is awaited) and peer events (one TCP
 * write, then FIN or RST), each group followed by nothing (same turn), a turn, or an HTTP round trip.
 *
 * The model (`predict`) is small: the FIRST terminal event in model order decides how the session ends.
 * Model order: groups in sequence; inside a group, the local operations, then the peer's (the peer's bytes
 * are read in a later turn; the harness waits until the server has taken in a peer's deciding event).
 * Scenarios are restricted (`sanitize`) so that every event after it is, per the table, a no-op for the
 * outcome. From the deciding event the model predicts the Close frame the peer receives, closeReason,
 * which sends must resolve and be delivered or must reject, and what the error hook gets. The peer's
 * behaviour is fixed by the run's mode:
 * - echo: answers pings, and the server's Close at once (same code, reason "ack"); timeout 4 s, far longer
 *   than any echo run may take: each must end promptly (ECHO_PROMPT_MS), without the close timeout;
 * - silent: never answers the server's Close nor ends TCP (timeout 300 ms ends it);
 * - deadPing: answers nothing (pingPeriod 200 ms, timeout 200 ms) and there is no terminal step: the ping
 *   timeout ends the session with 1011 "Ping timeout".
 *
 * Checked in every run: it ends (closeReason, the handler's promise, every send/flush/close/stop promise,
 * each within a deadline; /health answers during and after the run; a watchdog thread kills the process
 * with the scenario if the event loop stops turning); the Close the peer gets and closeReason are the
 * model's; sends settle as the table says (accepted in open/replying, rejected with SessionError
 * SESSION_CLOSED or HANDLER_RETURNED after), the resolved ones arrive in order and before the server's
 * Close, nothing follows that Close; invalid close() rejects with UsageError and changes nothing;
 * flush() and close() resolve only after the sends before them; incoming yields what the peer sent, ends,
 * and is complete when the peer's Close/FIN/violation ended it; nothing is left behind (state closed, no
 * session timer, app.sessions empty, the server socket destroyed, the deflate codec closed and not used
 * after, no growth in active Timeouts).
 *
 * A failure prints fast-check's counterexample (the scenario as JSON) and everything that was wrong in
 * that run. LIFECYCLE_MODEL_SCENARIO='<the JSON>' replays just that scenario; LIFECYCLE_MODEL_STATS=1
 * prints what the runs exercised.
 */
import { request } from "node:http";
import type { Duplex } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import { constants, createInflateRaw } from "node:zlib";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  type CloseReason,
  type DefaultWebSocketSession,
  type MessageCodec,
  permessageDeflate,
  type ServerExtension,
  SessionError,
  UsageError,
} from "../../src/index.js";
import { type StartedApp, startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import {
  closePayload,
  deflateMessage,
  ECHO_REASON,
  OPCODE,
  type PeerFrame,
  peerFrame,
  ScriptedPeer,
} from "../helpers/scripted-peer.js";
import { delay, within } from "../helpers/wait.js";

afterEach(cleanup);

/** Fixed; LIFECYCLE_MODEL_SEED and LIFECYCLE_MODEL_RUNS override them to explore further. */
const SEED = Number(process.env.LIFECYCLE_MODEL_SEED ?? 0x50c4a7);
const NUM_RUNS = Number(process.env.LIFECYCLE_MODEL_RUNS ?? 120);
/** permessage-deflate threshold: sends of at least this many bytes are compressed. */
const THRESHOLD = 64;
/**
 * Echo mode: the session must end this soon after the deciding event; its timeout (close and drain waits)
 * is far longer. The one timer that may end an echo run is the 1 s wait after a failure (table: draining):
 * reads stop at a violation, so the peer's FIN that answers ours is never read.
 */
const ECHO_PROMPT_MS = 1500;
const ECHO_TIMEOUT = 4000;
const SILENT_TIMEOUT = 400;
/**
 * The server's Close goes out within one turn of the deciding event (behind compressions at most): it
 * must reach the peer this soon, well before any timer (the close timeout) could have sent it.
 */
const CLOSE_PROMPT_MS = { echo: 1000, silent: 200 } as const;
const DEAD_PING = { pingPeriod: 200, timeout: 200 };
/** Grace given to app.stop(): long in echo mode (the handshake completes at once), short otherwise. */
const GRACE = { echo: 2000, silent: 150, deadPing: 150 } as const;
/** Each run, all waits included, must be over within this. */
const RUN_DEADLINE_MS = 12_000;
const MAX_REASON = `${"é".repeat(61)}a`; // 123 bytes: the longest valid close reason
const LONG_REASON = `${"é".repeat(62)}`; // 124 bytes

/** `promise`, or a rejection after `ms` naming what was awaited, described when the time is up. */
function deadline<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what()}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Waits until `condition` holds, checking every 2 ms; rejects after `ms`, described then. */
async function waitUntil(condition: () => boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await delay(2);
  }
}

// ---- scenarios ------------------------------------------------------------------------------------

type Mode = "echo" | "silent" | "deadPing";
type BadClose = "code1005" | "code999" | "code1006" | "code1015" | "code5000" | "reason124";
/** Protocol violations (1002), and with deflate a compressed message that cannot be decoded (1007). */
type Violation = "rsv2" | "rsv3" | "unmasked" | "rsv1" | "rsv1Ping" | "corrupt";

type LocalOp =
  | { op: "send"; size: number; awaited: boolean }
  | { op: "flush"; awaited: boolean }
  | { op: "badClose"; bad: BadClose }
  | { op: "close"; code: number; reason: string }
  | { op: "terminate" }
  | { op: "return" }
  | { op: "throw" }
  | { op: "stop" };

type PeerOp =
  | { op: "text"; size: number; compressed: boolean }
  | { op: "close"; code: number | undefined; reason: string }
  | { op: "fin" }
  | { op: "rst" }
  | { op: "violation"; kind: Violation };

/** How the next group follows this one: same event-loop turn, next turn, or after an HTTP round trip. */
type Gap = "same" | "turn" | "http";

interface Group {
  local: LocalOp[];
  peer: PeerOp[];
  gap: Gap;
}

interface Scenario {
  mode: Mode;
  deflate: boolean;
  /**
   * The handler reads `incoming` (in a loop beside the one that runs the test's operations), and with
   * "answer" sends an answer to each message as soon as it has it (not awaited).
   */
  reads: "none" | "read" | "answer";
  /** Keepalive pings in echo mode (0: none); the peer answers them. */
  pingPeriod: number;
  groups: Group[];
}

const isTerminalLocal = (op: LocalOp): boolean =>
  op.op === "close" || op.op === "terminate" || op.op === "return" || op.op === "throw" || op.op === "stop";
const isTerminalPeer = (op: PeerOp): boolean => op.op !== "text";

const closeCode = fc.oneof(
  fc.constantFrom(1000, 1001, 1003, 1008, 1011, 1014),
  fc.integer({ min: 3000, max: 4999 }),
);
const closeReasonText = fc.constantFrom("", "bye", "ümlaut", MAX_REASON);
/** Small (sent as is), large (compressed with deflate), huge (compressing takes a while: a Close waits). */
const sendSize = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 8, max: THRESHOLD - 1 }) },
  { weight: 4, arbitrary: fc.integer({ min: THRESHOLD, max: 4000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 20_000, max: 60_000 }) },
);

const ordinaryLocal: fc.Arbitrary<LocalOp> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({ op: fc.constant("send" as const), size: sendSize, awaited: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("flush" as const), awaited: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("badClose" as const),
      bad: fc.constantFrom<BadClose>("code1005", "code999", "code1006", "code1015", "code5000", "reason124"),
    }),
  },
);
const terminalLocal: fc.Arbitrary<LocalOp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("close" as const), code: closeCode, reason: closeReasonText }),
  },
  { weight: 2, arbitrary: fc.constant({ op: "terminate" as const }) },
  { weight: 2, arbitrary: fc.constant({ op: "return" as const }) },
  { weight: 2, arbitrary: fc.constant({ op: "throw" as const }) },
  { weight: 2, arbitrary: fc.constant({ op: "stop" as const }) },
);
const anyLocal = fc.oneof({ weight: 3, arbitrary: ordinaryLocal }, { weight: 1, arbitrary: terminalLocal });

const peerTextOp = (deflate: boolean): fc.Arbitrary<PeerOp> =>
  fc.record({
    op: fc.constant("text" as const),
    size: fc.integer({ min: 6, max: 3000 }),
    compressed: deflate ? fc.boolean() : fc.constant(false),
  });
const terminalPeer = (deflate: boolean): fc.Arbitrary<PeerOp> =>
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .record({
          op: fc.constant("close" as const),
          code: fc.option(closeCode, { nil: undefined }),
          reason: closeReasonText,
        })
        .map((c) => (c.code === undefined ? { ...c, reason: "" } : c)),
    },
    { weight: 1, arbitrary: fc.constant({ op: "fin" as const }) },
    { weight: 1, arbitrary: fc.constant({ op: "rst" as const }) },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant("violation" as const),
        kind: deflate
          ? fc.constantFrom<Violation>("rsv2", "rsv3", "unmasked", "rsv1Ping", "corrupt", "corrupt")
          : fc.constantFrom<Violation>("rsv2", "rsv3", "unmasked", "rsv1", "rsv1Ping"),
      }),
    },
  );
const anyPeer = (deflate: boolean) =>
  fc.oneof({ weight: 3, arbitrary: peerTextOp(deflate) }, { weight: 1, arbitrary: terminalPeer(deflate) });

const gap = fc.constantFrom<Gap>("same", "turn", "http");

/**
 * Groups before the deciding one (no terminal events), the deciding group (a local terminal operation
 * with ordinary ones around it, or peer messages then a terminal peer event), and follow-up groups of
 * anything; `sanitize` then drops what the model does not allow after the deciding event.
 */
const scenario: fc.Arbitrary<Scenario> = fc
  .record({
    mode: fc.oneof(
      { weight: 6, arbitrary: fc.constant<Mode>("echo") },
      { weight: 3, arbitrary: fc.constant<Mode>("silent") },
      { weight: 2, arbitrary: fc.constant<Mode>("deadPing") },
    ),
    deflate: fc.boolean(),
    reads: fc.constantFrom<Scenario["reads"]>("none", "read", "answer"),
    pingPeriod: fc.constantFrom(0, 0, 40),
  })
  .chain((base) => {
    const ordinaryGroup = fc.record({
      local: fc.array(ordinaryLocal, { maxLength: 4 }),
      peer: fc.array(peerTextOp(base.deflate), { maxLength: 3 }),
      gap,
    });
    const deciding = fc.oneof(
      fc
        .record({
          pre: fc.array(ordinaryLocal, { maxLength: 4 }),
          op: terminalLocal,
          post: fc.array(anyLocal, { maxLength: 3 }),
          peer: fc.array(peerTextOp(base.deflate), { maxLength: 2 }),
          gap,
        })
        .map((d): Group => ({ local: [...d.pre, d.op, ...d.post], peer: d.peer, gap: d.gap })),
      fc
        .record({
          local: fc.array(ordinaryLocal, { maxLength: 4 }),
          pre: fc.array(peerTextOp(base.deflate), { maxLength: 3 }),
          op: terminalPeer(base.deflate),
          gap,
        })
        .map((d): Group => ({ local: d.local, peer: [...d.pre, d.op], gap: d.gap })),
    );
    const followUp = fc.record({
      local: fc.array(anyLocal, { maxLength: 4 }),
      peer: fc.array(anyPeer(base.deflate), { maxLength: 2 }),
      gap,
    });
    return fc
      .tuple(fc.array(ordinaryGroup, { maxLength: 3 }), deciding, fc.array(followUp, { maxLength: 3 }))
      .map(([pre, d, post]) =>
        sanitize({
          ...base,
          pingPeriod: base.mode === "echo" ? base.pingPeriod : 0,
          groups: [...pre, d, ...post],
        }),
      );
  });

/**
 * Restricts a generated scenario so that the model's prediction is unambiguous. In model order:
 * - deadPing mode: no terminal events at all (the ping timeout decides);
 * - before the deciding event: anything; the first terminal event decides;
 * - after it (follow-ups), only what the table makes a no-op for the outcome:
 *   local: send, flush, invalid close (UsageError, nothing sent), close() with a valid code, handler
 *   return or throw (once: the handler is gone after), app.stop() (once), terminate() (once, and only in a
 *   later group: the harness first waits until the peer has the server's Close or the socket is gone);
 *   peer, only after a local deciding event other than terminate(): text messages (skipped at run time
 *   once the peer has sent its Close), then FIN or RST (only in a later group, after the peer received
 *   the server's Close). Nothing from the peer after its own Close, FIN, RST or violation.
 * - echo and silent modes always have a deciding event (a handler return is appended if none).
 */
function sanitize(s: Scenario): Scenario {
  let decided: { side: "local" | "peer"; op: LocalOp | PeerOp } | undefined;
  let handlerGone = false;
  let stopped = false;
  let terminated = false;
  let peerDone = false;
  const groups: Group[] = [];
  for (const g of s.groups) {
    const deciderGroup = decided === undefined;
    const local: LocalOp[] = [];
    for (const op of g.local) {
      if (s.mode === "deadPing" && isTerminalLocal(op)) continue;
      if ((op.op === "return" || op.op === "throw") && handlerGone) continue;
      if (op.op === "stop" && stopped) continue;
      if (
        op.op === "terminate" &&
        (terminated || (decided !== undefined && (deciderGroup || local.length > 0)))
      )
        continue;
      if (decided === undefined && isTerminalLocal(op)) decided = { side: "local", op };
      if (op.op === "return" || op.op === "throw") handlerGone = true;
      if (op.op === "stop") stopped = true;
      if (op.op === "terminate") terminated = true;
      local.push(op);
    }
    const peer: PeerOp[] = [];
    for (const op of g.peer) {
      if (peerDone) break;
      if (s.mode === "deadPing" && isTerminalPeer(op)) continue;
      if (decided === undefined) {
        if (isTerminalPeer(op)) {
          decided = { side: "peer", op };
          peerDone = true;
        }
        peer.push(op);
        continue;
      }
      // A follow-up: only after a local deciding event other than terminate().
      if (decided.side === "peer" || decided.op.op === "terminate") break;
      if (op.op === "text") peer.push(op);
      else if ((op.op === "fin" || op.op === "rst") && !deciderGroup) {
        peer.push(op);
        peerDone = true;
      }
    }
    groups.push({ local, peer, gap: g.gap });
  }
  if (s.mode !== "deadPing" && decided === undefined)
    groups.push({ local: [{ op: "return" }], peer: [], gap: "turn" });
  return { ...s, groups };
}

// ---- the model ------------------------------------------------------------------------------------

/** Where an event is in model order: group, then local (0) before peer (1), then index. */
interface Position {
  group: number;
  side: 0 | 1;
  index: number;
}
const before = (a: Position, b: Position): boolean =>
  a.group !== b.group ? a.group < b.group : a.side !== b.side ? a.side < b.side : a.index < b.index;

type Decider =
  | { by: "local"; op: LocalOp; at: Position }
  | { by: "peer"; op: PeerOp; at: Position }
  | { by: "pingTimeout"; at: Position };

interface ExpectedClose {
  code: number;
  /** undefined: any reason (a violation's message). */
  reason: string | undefined;
}

interface Prediction {
  decider: Decider;
  /** The Close frame the peer must receive from the server; null: none. */
  serverClose: ExpectedClose | null;
  /** closeReason must be one of these ("violation": the reason the server put in its Close). */
  closeReasons: ExpectedClose[];
  /** Sends and flushes before the deciding event must resolve, and the sends be delivered. */
  gracefulBefore: boolean;
  /** Sends after the deciding event must reject with a SessionError. */
  rejectAfter: boolean;
  /** With `reads`, everything the peer sent before its deciding event is delivered to `incoming`. */
  incomingComplete: boolean;
  /** Error hook: the handler's thrown error (if it throws), one "protocol" error for a violation. */
  protocolErrors: number;
  /** Echo mode: nothing needs a timer, so the session ends promptly after the deciding event. */
  prompt: boolean;
  /**
   * What the peer receives of the sends that resolved: all of them, in order (before the server's Close
   * when it sends one), or a prefix of them (the connection is cut: terminate, RST).
   */
  delivered: "all" | "prefix";
}

function deciderOf(s: Scenario): Decider {
  for (let g = 0; g < s.groups.length; g++) {
    const grp = s.groups[g]!;
    for (let i = 0; i < grp.local.length; i++)
      if (isTerminalLocal(grp.local[i]!))
        return { by: "local", op: grp.local[i]!, at: { group: g, side: 0, index: i } };
    for (let i = 0; i < grp.peer.length; i++)
      if (isTerminalPeer(grp.peer[i]!))
        return { by: "peer", op: grp.peer[i]!, at: { group: g, side: 1, index: i } };
  }
  if (s.mode !== "deadPing") throw new Error("a scenario without a terminal event outside deadPing mode");
  return { by: "pingTimeout", at: { group: s.groups.length, side: 0, index: 0 } };
}

/** The Close the server sends for a local deciding operation (null for terminate()). */
function localClose(op: LocalOp): ExpectedClose | null {
  switch (op.op) {
    case "return":
      return { code: 1000, reason: "" };
    case "throw":
      return { code: 1011, reason: "Internal error" };
    case "close":
      return { code: op.code, reason: op.reason };
    case "stop":
      return { code: 1001, reason: "Server shutting down" };
    default:
      return null;
  }
}

function predict(s: Scenario): Prediction {
  const d = deciderOf(s);
  const followUps = s.groups.flatMap((g, gi) => [
    ...g.local.map((op, i) => ({ op: op.op, at: { group: gi, side: 0 as const, index: i } })),
    ...g.peer.map((op, i) => ({ op: op.op, at: { group: gi, side: 1 as const, index: i } })),
  ]);
  const after = followUps.filter((f) => before(d.at, f.at));
  // A reset (ours or the peer's) after the peer answered our Close may keep its answer from being read.
  const echoMayBeCut = after.some((f) => f.op === "terminate" || f.op === "rst");
  const base = {
    decider: d,
    protocolErrors: 0,
    prompt: s.mode === "echo",
    incomingComplete: false,
    delivered: "all" as "all" | "prefix",
  };
  if (d.by === "pingTimeout") {
    const close = { code: 1011, reason: "Ping timeout" };
    return { ...base, serverClose: close, closeReasons: [close], gracefulBefore: true, rejectAfter: true };
  }
  if (d.by === "local") {
    const close = localClose(d.op);
    if (close === null) {
      return {
        ...base,
        serverClose: null,
        closeReasons: [{ code: 1006, reason: "" }],
        gracefulBefore: false,
        rejectAfter: true,
        delivered: "prefix",
      };
    }
    // closeReason is the peer's answer when it answers (§7.1.5), ours otherwise.
    const answer = { code: close.code, reason: ECHO_REASON };
    const closeReasons = s.mode !== "echo" ? [close] : echoMayBeCut ? [answer, close] : [answer];
    return { ...base, serverClose: close, closeReasons, gracefulBefore: true, rejectAfter: true };
  }
  const op = d.op;
  switch (op.op) {
    case "close": {
      const code = op.code ?? 1005;
      return {
        ...base,
        serverClose: { code, reason: "" }, // the echo: same code, no reason
        closeReasons: [{ code, reason: op.reason }],
        gracefulBefore: true,
        rejectAfter: false, // replying: sends are accepted until the end of the turn
        incomingComplete: s.reads !== "none",
      };
    }
    case "violation": {
      const code = op.kind === "corrupt" ? 1007 : 1002;
      return {
        ...base,
        serverClose: { code, reason: undefined },
        closeReasons: [{ code, reason: undefined }],
        gracefulBefore: true,
        rejectAfter: false,
        incomingComplete: s.reads !== "none",
        protocolErrors: 1,
      };
    }
    case "fin":
      // No Close either way; what was handed to the connection is still written before our FIN (a
      // half-closed peer still reads), sends still waiting are rejected ("waiting sends reject").
      return {
        ...base,
        serverClose: null,
        closeReasons: [{ code: 1006, reason: "" }],
        gracefulBefore: false,
        rejectAfter: true,
        incomingComplete: s.reads !== "none",
      };
    default: // rst
      return {
        ...base,
        serverClose: null,
        closeReasons: [{ code: 1006, reason: "" }],
        gracefulBefore: false,
        rejectAfter: true,
        delivered: "prefix",
      };
  }
}

// ---- running a scenario ---------------------------------------------------------------------------

type Outcome = { ok: true } | { ok: false; error: unknown };

interface OpRecord {
  id: number;
  op: LocalOp;
  at: Position;
  /** The session's state just before and just after the call. */
  stateBefore: string;
  stateAfter: string;
  /** The handler had visibly returned (an earlier turn) when the operation was made. */
  handlerGoneEarlier: boolean;
  /** Operations after the deciding event had begun when this one was made. */
  followUpsStarted: boolean;
  /** What a send sent. */
  text: string | undefined;
  /** For the handler's answers: the index of the peer's message it answers. */
  answerTo: number | undefined;
  outcome: Outcome | undefined;
  /**
   * For a flush or close that resolved: the earlier sends (ids, in call order) still unsettled a turn
   * after it resolved (one turn: promise chains differ by a few microtasks; a send still compressing
   * when the Close was written does not settle that soon).
   */
  unsettledBefore: number[] | undefined;
  promise: Promise<unknown> | undefined;
  /** For app.stop(): how many sessions the app still listed when stop() resolved. */
  sessionsAtStop?: number;
}

interface CodecSpy {
  created: number;
  closed: number;
  usedAfterClose: string[];
}

/** A permessage-deflate extension whose codecs are counted, and whose close() and later use are seen. */
function spiedDeflate(spy: CodecSpy): ServerExtension {
  const inner = permessageDeflate({ threshold: THRESHOLD });
  return {
    name: inner.name,
    negotiate(offers) {
      const accepted = inner.negotiate(offers);
      if (!accepted) return undefined;
      return {
        response: accepted.response,
        createCodec: () => {
          const codec = accepted.createCodec();
          spy.created++;
          let closed = false;
          const use = (what: string) => {
            if (closed) spy.usedAfterClose.push(what);
          };
          const wrapped: MessageCodec = {
            decode: (data, maxSize, final) => {
              use("decode");
              return codec.decode(data, maxSize, final);
            },
            encode: (data) => {
              use("encode");
              return codec.encode(data);
            },
            releaseIdle: () => {
              use("releaseIdle");
              codec.releaseIdle?.();
            },
            close: () => {
              spy.closed++;
              closed = true;
              codec.close();
            },
          };
          return wrapped;
        },
      };
    },
  };
}

/** The text of local send #id, `size` bytes of ASCII (pseudo-random letters past 4 KB: slower to compress). */
function sendText(id: number, size: number): string {
  const head = `m${id}:`;
  const n = Math.max(0, size - head.length);
  if (size <= 4000) return head + "abcdefghij".repeat(Math.ceil(n / 10)).slice(0, n);
  const out = Buffer.allocUnsafe(n);
  let x = (id + 1) * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = 97 + ((x >>> 16) % 26);
  }
  return head + out.toString("latin1");
}
function peerText(id: number, size: number): string {
  const head = `p${id}:`;
  return head + "klmnopqrst".repeat(Math.ceil(size / 10)).slice(0, Math.max(0, size - head.length));
}

interface Batch {
  ops: Array<{ op: LocalOp; id: number }>;
  /** How many of `ops` the handler ran: it stops at a return or throw, the test runs the rest. */
  done: (ran: number) => void;
}

type Session = DefaultWebSocketSession;

/** One run: the app, the peer, the handler's queue, and what was observed. */
class Run {
  started!: StartedApp;
  peer!: ScriptedPeer;
  session: Session | undefined;
  serverSocket: Duplex | undefined;
  readonly spy: CodecSpy = { created: 0, closed: 0, usedAfterClose: [] };
  readonly records: OpRecord[] = [];
  readonly peerTexts: string[] = [];
  /** Where each of the peer's messages was sent, in model order. */
  readonly peerTextAt: Position[] = [];
  /** The deciding event's position (operations after it are follow-ups). */
  deciderAt: Position = { group: Number.MAX_SAFE_INTEGER, side: 0, index: 0 };
  readonly read: string[] = [];
  readError: unknown;
  /** When the reader saw the end of `incoming`: whether the handler had already returned. */
  readEnd: { handlerGone: boolean; state: string; followUpsStarted: boolean } | undefined;
  thrown: Error | undefined;
  /** The handler ran a return or throw operation (it is returning). */
  handlerGone = false;
  handlerGoneTurn = false;
  handlerSettled = false;
  followUpsStarted = false;
  stopped = false;
  closeReason: CloseReason | undefined;
  closeReasonAt = 0;
  settledAt = 0;
  private batches: Batch[] = [];
  private batchWaiter: ((b: Batch) => void) | undefined;
  private sessionWaiter: (() => void) | undefined;
  readonly sessionReady = new Promise<void>((resolve) => {
    this.sessionWaiter = resolve;
  });

  constructor(readonly s: Scenario) {}

  // -- the handler side --

  async handler(session: Session): Promise<void> {
    this.session = session;
    void session.closeReason.then((reason) => {
      this.closeReason = reason;
      this.closeReasonAt = Date.now();
    });
    this.sessionWaiter?.();
    if (this.s.reads !== "none") void this.readLoop(session);
    try {
      for (;;) {
        const batch = await this.takeBatch();
        let i = 0;
        for (; i < batch.ops.length; i++) {
          const { op, id } = batch.ops[i]!;
          if (op.op === "return" || op.op === "throw") {
            this.handlerGone = true;
            batch.done(i + 1);
            if (op.op === "return") return;
            this.thrown = new Error(`handler failed on purpose (operation #${id})`);
            throw this.thrown;
          }
          const p = this.exec(op, id);
          if (p !== undefined && "awaited" in op && op.awaited) await p.catch(() => {});
        }
        batch.done(i);
      }
    } finally {
      this.handlerSettled = true;
    }
  }

  private async readLoop(session: Session): Promise<void> {
    try {
      for await (const m of session.incoming) {
        const text = m.type === "text" ? m.text : `<binary ${m.data.length}>`;
        const index = this.read.push(text) - 1;
        if (this.s.reads === "answer") this.answer(index, text);
      }
      this.readEnd = {
        handlerGone: this.handlerGone,
        state: this.session!.state,
        followUpsStarted: this.followUpsStarted,
      };
    } catch (error) {
      this.readError = error;
    }
  }

  private takeBatch(): Promise<Batch> {
    const b = this.batches.shift();
    if (b) return Promise.resolve(b);
    return new Promise((resolve) => {
      this.batchWaiter = resolve;
    });
  }

  /** Hands a batch to the handler; resolves with how many operations it ran. */
  pushBatch(ops: Batch["ops"]): Promise<number> {
    return new Promise((resolve) => {
      const batch = { ops, done: resolve };
      const waiter = this.batchWaiter;
      this.batchWaiter = undefined;
      if (waiter) waiter(batch);
      else this.batches.push(batch);
    });
  }

  /** The handler answers message #index of the peer at once (a send, not awaited). */
  private answer(index: number, text: string): void {
    const session = this.session!;
    const answer = `a${index}:${text.slice(text.indexOf(":") + 1)}`;
    const rec: OpRecord = {
      id: -1,
      op: { op: "send", size: answer.length, awaited: false },
      at: { group: -1, side: 0, index: 0 }, // placed by the check (see `answerTo`)
      stateBefore: session.state,
      stateAfter: "",
      handlerGoneEarlier: this.handlerGoneTurn,
      followUpsStarted: this.followUpsStarted,
      text: answer,
      answerTo: index,
      outcome: undefined,
      unsettledBefore: undefined,
      promise: undefined,
    };
    this.records.push(rec);
    this.track(rec, session.send(answer));
    rec.stateAfter = session.state;
  }

  private track(rec: OpRecord, p: Promise<unknown>): void {
    rec.promise = p;
    p.then(
      () => {
        rec.outcome = { ok: true };
        if (rec.op.op !== "flush" && rec.op.op !== "close") return;
        const earlier = this.records.slice(0, this.records.indexOf(rec));
        setImmediate(() => {
          rec.unsettledBefore = earlier.filter((r) => r.op.op === "send" && !r.outcome).map((r) => r.id);
        });
      },
      (error: unknown) => {
        rec.outcome = { ok: false, error };
      },
    );
  }

  /** Performs one local operation on the session (from the handler, or from the test once it is gone). */
  exec(op: LocalOp, id: number): Promise<unknown> | undefined {
    const session = this.session!;
    if (before(this.deciderAt, this.positions[id]!)) this.followUpsStarted = true;
    const rec: OpRecord = {
      id,
      op,
      at: this.positions[id]!,
      stateBefore: session.state,
      stateAfter: "",
      handlerGoneEarlier: this.handlerGoneTurn,
      followUpsStarted: this.followUpsStarted,
      text: op.op === "send" ? sendText(id, op.size) : undefined,
      answerTo: undefined,
      outcome: undefined,
      unsettledBefore: undefined,
      promise: undefined,
    };
    this.records.push(rec);
    let p: Promise<unknown> | undefined;
    switch (op.op) {
      case "send":
        p = session.send(rec.text!);
        break;
      case "flush":
        p = session.flush();
        break;
      case "badClose":
        p =
          op.bad === "reason124"
            ? session.close(4000, LONG_REASON)
            : session.close(
                { code1005: 1005, code999: 999, code1006: 1006, code1015: 1015, code5000: 5000 }[op.bad],
                "x",
              );
        break;
      case "close":
        p = session.close(op.code, op.reason);
        break;
      case "terminate":
        session.terminate();
        break;
      case "stop": {
        this.stopped = true;
        const app = this.started.app;
        p = app.stop({ grace: GRACE[this.s.mode] }).then(() => {
          rec.sessionsAtStop = app.sessions.size;
        });
        break;
      }
      default:
        throw new Error(`${op.op} is run by the handler itself`);
    }
    rec.stateAfter = session.state;
    if (p !== undefined) this.track(rec, p);
    return p;
  }

  /** Model positions of the local operations, by id (ids count local operations in model order). */
  positions: Position[] = [];
}

/** GET /health on `port`: the server must answer 200 {"ok":true} within `ms`. */
function health(port: number, what: string, ms = 3000): Promise<void> {
  let req: ReturnType<typeof request> | undefined;
  const answer = new Promise<void>((resolve, reject) => {
    req = request(
      { host: "127.0.0.1", port, path: "/health", agent: false, headers: { connection: "close" } },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () =>
          res.statusCode === 200 && body === '{"ok":true}'
            ? resolve()
            : reject(new Error(`GET /health (${what}) answered ${res.statusCode} ${body}`)),
        );
      },
    );
    req.on("error", (error) => reject(new Error(`GET /health (${what}) failed: ${error.message}`)));
    req.end();
  });
  return within(answer, ms, `GET /health ${what}`).finally(() => req?.destroy());
}

/** The data messages the peer received, decompressed in order (the server keeps its context). */
async function receivedMessages(
  frames: readonly PeerFrame[],
): Promise<Array<{ text: string; rsv1: boolean }>> {
  const out: Array<{ text: string; rsv1: boolean }> = [];
  const inflater = createInflateRaw();
  const inflate = (payload: Buffer) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const onData = (chunk: Buffer) => chunks.push(chunk);
      inflater.on("data", onData);
      inflater.once("error", reject);
      inflater.write(Buffer.concat([payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]));
      inflater.flush(constants.Z_SYNC_FLUSH, () => {
        inflater.off("data", onData);
        inflater.off("error", reject);
        resolve(Buffer.concat(chunks));
      });
    });
  try {
    for (const f of frames) {
      if (f.opcode !== OPCODE.text && f.opcode !== OPCODE.binary) continue;
      const data = f.rsv1 ? await inflate(f.payload) : f.payload;
      out.push({ text: data.toString("utf8"), rsv1: f.rsv1 });
    }
  } finally {
    inflater.close();
  }
  return out;
}

const violationBytes = (kind: Violation): Buffer => {
  switch (kind) {
    case "rsv2":
      return peerFrame({ opcode: OPCODE.text, payload: "bad", rsv: 2 });
    case "rsv3":
      return peerFrame({ opcode: OPCODE.binary, payload: "bad", rsv: 1 });
    case "unmasked":
      return peerFrame({ opcode: OPCODE.text, payload: "bad", mask: false });
    case "rsv1":
      return peerFrame({ opcode: OPCODE.text, payload: "bad", rsv: 4 });
    case "rsv1Ping":
      return peerFrame({ opcode: OPCODE.ping, payload: "bad", rsv: 4 });
    case "corrupt": // RSV1 set, and not raw deflate data (a reserved block type)
      return peerFrame({ opcode: OPCODE.text, payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]), rsv: 4 });
  }
};

const describeError = (error: unknown): string =>
  error instanceof SessionError || error instanceof UsageError
    ? `${error.name}(${error.code})`
    : error instanceof Error
      ? `${error.name}: ${error.message}`
      : String(error);

const fmt = (c: ExpectedClose | { code: number; reason: string } | null | undefined): string =>
  c ? `${c.code}${c.reason === undefined ? " (any reason)" : ` ${JSON.stringify(c.reason)}`}` : "none";

/** Whether the server has taken the deciding event in (so later operations come after it). */
function observed(d: Decider, session: Session): boolean {
  const state = session.state;
  if (d.by === "pingTimeout") return true;
  if (d.by === "local") return d.op.op === "terminate" ? state === "closed" : state !== "open";
  switch (d.op.op) {
    case "fin":
      return state === "draining" || state === "closed";
    case "rst":
      return state === "closed";
    default:
      return state !== "open";
  }
}

async function runScenario(s: Scenario, control: StartedApp, runNo: number): Promise<string[]> {
  const p = predict(s);
  const run = new Run(s);
  run.deciderAt = p.decider.at;
  // Ids of local operations in model order, with their positions.
  s.groups.forEach((g, gi) => {
    for (let i = 0; i < g.local.length; i++) run.positions.push({ group: gi, side: 0, index: i });
  });
  const modeOptions =
    s.mode === "echo"
      ? { pingPeriod: s.pingPeriod, timeout: ECHO_TIMEOUT }
      : s.mode === "silent"
        ? { pingPeriod: 0, timeout: SILENT_TIMEOUT }
        : DEAD_PING;
  run.started = await startApp(
    (r) => {
      r.get("/health", (call) => call.respondJson({ ok: true }));
      r.webSocket(
        "/model",
        {
          beforeUpgrade: (call) => {
            run.serverSocket = call.request.socket;
            return undefined;
          },
        },
        (session) => run.handler(session),
      );
    },
    { ...modeOptions, ...(s.deflate ? { extensions: [spiedDeflate(run.spy)] } : {}) },
  );
  const { app, port } = run.started;
  const problems: string[] = [];
  const check = (ok: boolean, message: string) => {
    if (!ok) problems.push(message);
  };
  const healthTarget = () => (run.stopped ? control.port : port);
  try {
    run.peer = await ScriptedPeer.connect(port, "/model", {
      deflate: s.deflate,
      allowHalfOpen: s.mode === "silent",
      autoPong: s.mode !== "deadPing",
      echoClose: s.mode === "echo",
    });
    const peer = run.peer;
    check(
      peer.deflateAccepted === s.deflate,
      `permessage-deflate accepted: ${peer.deflateAccepted}, offered: ${s.deflate}`,
    );
    await within(run.sessionReady, 3000, "the handler to start");
    const session = run.session!;

    let nextId = 0;
    let deciderSettled = false;
    for (let gi = 0; gi < s.groups.length; gi++) {
      const g = s.groups[gi]!;
      const isFollowUp = before(p.decider.at, { group: gi, side: 0, index: -1 });
      // A follow-up terminate(), FIN or RST comes once the peer has the server's Close (or nothing more
      // can come): otherwise it would cut that Close off and the outcome would depend on timing.
      if (
        isFollowUp &&
        (g.local.some((op) => op.op === "terminate") || g.peer.some((op) => op.op !== "text"))
      )
        await peer.waitFor(
          () => peer.closeReceived !== undefined || peer.isClosed,
          3000,
          `the server's Close before group ${gi}`,
        );

      // Local operations: one batch for the handler (same turn unless awaited), the rest by the test.
      const ops = g.local.map((op) => ({ op, id: nextId++ }));
      let ran = 0;
      if (ops.length > 0 && !run.handlerGone)
        ran = await deadline(
          run.pushBatch(ops),
          3000,
          () => `the handler to run group ${gi}'s operations (state ${session.state})`,
        );
      if (ran > 0 && run.handlerGone) {
        // The handler returned or threw: let the session take that in before the rest of the group.
        await nextTurn();
        run.handlerGoneTurn = true;
      }
      for (const { op, id } of ops.slice(ran)) {
        if (op.op === "return" || op.op === "throw") throw new Error("scenario error: the handler is gone");
        const done = run.exec(op, id);
        if (done !== undefined && "awaited" in op && op.awaited)
          await deadline(
            done.catch(() => {}),
            3000,
            () => `awaited ${op.op} #${id} (state ${session.state})`,
          );
      }

      // Peer events: frames in one write, then FIN or RST.
      const bytes: Buffer[] = [];
      let end: "fin" | "rst" | undefined;
      for (let pi = 0; pi < g.peer.length; pi++) {
        const op = g.peer[pi]!;
        if (!peer.canSend) break;
        if (op.op === "text") {
          const text = peerText(run.peerTexts.length, op.size);
          run.peerTexts.push(text);
          run.peerTextAt.push({ group: gi, side: 1, index: pi });
          bytes.push(
            op.compressed && peer.deflateAccepted
              ? peerFrame({ opcode: OPCODE.text, payload: deflateMessage(text), rsv: 4 })
              : peerFrame({ opcode: OPCODE.text, payload: text }),
          );
        } else if (op.op === "close") {
          bytes.push(peerFrame({ opcode: OPCODE.close, payload: closePayload(op.code, op.reason) }));
          peer.noteCloseSent(op.code, op.reason);
        } else if (op.op === "violation") {
          bytes.push(violationBytes(op.kind));
        } else {
          end = op.op;
        }
      }
      peer.write(Buffer.concat(bytes));
      if (end === "fin") peer.fin();
      else if (end === "rst") peer.reset();

      if (!deciderSettled && p.decider.at.group === gi) {
        deciderSettled = true;
        const d = p.decider;
        await waitUntil(
          () => observed(d, session),
          3000,
          () => `the server to take in the deciding event (state ${session.state})`,
        );
        run.settledAt = Date.now();
      }
      if (g.gap === "turn") {
        await nextTurn();
      } else if (g.gap === "http" || gi === s.groups.length - 1) {
        // The server answers HTTP during the run too (at least once, after the last group).
        await health(healthTarget(), `after group ${gi} of run ${runNo}`);
      }
    }
    if (p.decider.by === "pingTimeout") run.settledAt = Date.now();

    // The end: closeReason, then the handler (returned now if it still runs), the peer, every promise.
    const endMs = s.mode === "echo" ? ECHO_PROMPT_MS + 1000 : 3000;
    await deadline(
      session.closeReason,
      endMs,
      () => `closeReason (session state ${session.state}, peer got ${peer.describe()})`,
    );
    const gotClose = peer.closeReceived;
    if (s.mode !== "deadPing" && gotClose && p.serverClose !== null)
      check(
        gotClose.at - run.settledAt <= CLOSE_PROMPT_MS[s.mode],
        `the server's Close reached the peer ${gotClose.at - run.settledAt} ms after the deciding event: a timer had to send it (timeout ${modeOptions.timeout} ms)`,
      );
    if (gotClose && s.mode !== "deadPing") {
      const ms = gotClose.at - run.settledAt;
      count(`close latency ${s.mode} ${ms < 10 ? "<10" : ms < 50 ? "<50" : ms < 100 ? "<100" : ">=100"} ms`);
    }
    if (p.prompt)
      check(
        run.closeReasonAt - run.settledAt <= ECHO_PROMPT_MS,
        `echo mode: the session ended ${run.closeReasonAt - run.settledAt} ms after the deciding event: a timer had to end it (timeout ${ECHO_TIMEOUT} ms)`,
      );
    check(session.state === "closed", `state is ${session.state} once closeReason resolved`);
    check(!session.isOpen, "isOpen once closed");
    check(
      ![...app.sessions].some((x) => x === (session as unknown)),
      "app.sessions still holds the session after it ended",
    );
    if (!run.handlerGone && !run.handlerSettled) {
      const id = nextId++;
      run.positions.push({ group: s.groups.length, side: 0, index: 0 });
      await within(
        run.pushBatch([{ op: { op: "return" }, id }]),
        3000,
        "the handler to take its final return",
      );
    }
    await waitUntil(
      () => run.handlerSettled,
      3000,
      () => "the handler's promise to settle",
    );
    // The server ends TCP (a silent peer keeps its own side open: it gets the FIN only).
    await peer.waitFor(() => peer.gotFin || peer.isClosed, 3000, "the server to end TCP");
    for (const rec of run.records) {
      if (rec.promise)
        await within(
          rec.promise.catch(() => {}),
          3000,
          `${rec.op.op} #${rec.id} (made in state ${rec.stateBefore}) to settle`,
        );
    }
    await waitUntil(
      () => run.records.every((r) => r.promise === undefined || r.outcome !== undefined),
      1000,
      () => "every operation's outcome to be recorded",
    );
    if (!run.stopped) await health(port, `after run ${runNo}`);
    await health(control.port, `on the control app after run ${runNo}`);

    // ---- checks ----
    const reason = run.closeReason!;
    const got = peer.closeReceived;
    // 2. The Close frame the peer received, and closeReason.
    if (p.serverClose === null)
      check(got === undefined, `the peer received Close ${fmt(got)}; expected none`);
    else
      check(
        got !== undefined &&
          got.code === p.serverClose.code &&
          (p.serverClose.reason === undefined || got.reason === p.serverClose.reason),
        `the peer received Close ${fmt(got)}; expected ${fmt(p.serverClose)}`,
      );
    const reasonOk = p.closeReasons.some(
      (c) =>
        c.code === reason.code &&
        (c.reason === undefined
          ? got !== undefined && reason.reason === got.reason
          : c.reason === reason.reason),
    );
    check(
      reasonOk,
      `closeReason is ${reason.code} ${JSON.stringify(reason.reason)}; expected ${p.closeReasons.map(fmt).join(" or ")}`,
    );
    const closes = peer.frames.filter((f) => f.opcode === OPCODE.close);
    check(closes.length <= 1, `the server sent ${closes.length} Close frames`);
    if (got) {
      const later = peer.frames.slice(got.index + 1);
      check(
        later.length === 0,
        `${later.length} frame(s) after the server's Close: ${later.map((f) => `op${f.opcode}`).join(", ")}`,
      );
    }
    check(peer.parseError === undefined, `the server's output: ${peer.parseError}`);
    check(
      peer.frames.every((f) => !f.rsv2 && !f.rsv3 && (s.deflate || !f.rsv1)),
      "the server set reserved bits it has not negotiated",
    );

    // 3. Every send settles; resolved ones arrive in order, before the Close; rejected ones with a SessionError.
    const messages = await receivedMessages(peer.frames);
    const resolvedSends = run.records.filter((r) => r.op.op === "send" && r.outcome?.ok);
    const expectedTexts = resolvedSends.map((r) => r.text!);
    const gotTexts = messages.map((m) => m.text);
    const ids = (texts: string[]) => texts.map((t) => t.slice(0, t.indexOf(":"))).join(",");
    if (got || p.delivered === "all") {
      // The server's Close arrived (or the peer only half-closed): everything accepted arrived, in order.
      check(
        gotTexts.length === expectedTexts.length && gotTexts.every((t, i) => t === expectedTexts[i]),
        `the peer received [${ids(gotTexts)}]${got ? " before the Close" : ""}; resolved sends were [${ids(expectedTexts)}]`,
      );
    } else {
      // No Close (terminate, RST): what arrived is a prefix of what resolved; the rest may be lost.
      check(
        gotTexts.length <= expectedTexts.length && gotTexts.every((t, i) => t === expectedTexts[i]),
        `the peer received [${ids(gotTexts)}]; not a prefix of the resolved sends [${ids(expectedTexts)}]`,
      );
    }
    for (const m of messages) {
      const size = Buffer.byteLength(m.text);
      check(
        m.rsv1 === (s.deflate && size >= THRESHOLD),
        `a ${size}-byte message arrived with RSV1 ${m.rsv1}`,
      );
    }
    for (const rec of run.records) {
      const afterDecider = before(p.decider.at, rec.at);
      count(
        `${rec.answerTo !== undefined ? "answer" : rec.op.op}${rec.op.op === "send" && rec.op.size > 4000 ? "(huge)" : ""}${rec.answerTo !== undefined ? "" : afterDecider ? " after" : " before"}${rec.outcome ? (rec.outcome.ok ? " ok" : ` ${describeError(rec.outcome.error)}`) : ""}${rec.stateBefore !== "open" ? ` in ${rec.stateBefore}` : ""}`,
      );
      const what = `${rec.op.op} #${rec.id} (${JSON.stringify(rec.op)}, state ${rec.stateBefore})`;
      // The ping timeout has no place in the scenario: it comes when it comes (normally after every group).
      const isBefore =
        p.decider.by === "pingTimeout"
          ? rec.stateBefore === "open"
          : rec.answerTo === undefined && before(rec.at, p.decider.at);
      const outcome = rec.outcome;
      switch (rec.op.op) {
        case "send": {
          if (!outcome) break;
          if (!outcome.ok) {
            const e = outcome.error;
            check(
              e instanceof SessionError && (e.code === "SESSION_CLOSED" || e.code === "HANDLER_RETURNED"),
              `${what} rejected with ${describeError(e)}; expected SessionError SESSION_CLOSED or HANDLER_RETURNED`,
            );
            if (e instanceof SessionError && rec.handlerGoneEarlier)
              check(
                e.code === "HANDLER_RETURNED",
                `${what} after the handler returned rejected with ${e.code}`,
              );
          }
          const accepting = rec.stateBefore === "open" || rec.stateBefore === "replying";
          // The table: send rejects in closing, close-sent, draining and closed; is accepted in open and
          // replying, and then resolves (small messages, far below the high-water mark) unless the
          // connection is cut (terminate, FIN, RST).
          if (!accepting)
            check(!outcome.ok, `${what} resolved; send in state ${rec.stateBefore} must reject`);
          if (accepting && p.gracefulBefore)
            check(
              outcome.ok,
              `${what} was accepted in state ${rec.stateBefore} but rejected with ${!outcome.ok ? describeError(outcome.error) : ""}`,
            );
          if (rec.answerTo === undefined) {
            if (isBefore && p.gracefulBefore)
              check(
                outcome.ok,
                `${what} before the deciding event did not resolve: ${!outcome.ok ? describeError(outcome.error) : ""}`,
              );
            if (!isBefore && p.rejectAfter)
              check(!outcome.ok, `${what} after the deciding event resolved; expected a rejection`);
          } else if (
            p.gracefulBefore &&
            p.decider.by === "peer" &&
            (p.decider.op.op === "close" || p.decider.op.op === "violation")
          ) {
            // What the handler sends while taking in the messages before the peer's Close (or the
            // violation) goes out before the reply, unless an operation after the deciding event came first.
            const answered = run.peerTextAt[rec.answerTo]!;
            if (before(answered, p.decider.at) && !rec.followUpsStarted)
              check(
                outcome.ok,
                `${what}: the answer to message p${rec.answerTo} was refused (${!outcome.ok ? describeError(outcome.error) : ""}); it came before the peer's ${p.decider.op.op}`,
              );
          }
          break;
        }
        case "flush":
          if (!outcome) break;
          // "resolves when everything accepted so far is handed to the kernel".
          if (outcome.ok)
            check(
              rec.unsettledBefore?.length === 0,
              `${what} resolved while earlier sends [${rec.unsettledBefore}] had not settled`,
            );
          if (!outcome.ok)
            check(
              outcome.error instanceof SessionError,
              `${what} rejected with ${describeError(outcome.error)}`,
            );
          if (isBefore && p.gracefulBefore)
            check(outcome.ok, `${what} before the deciding event did not resolve`);
          break;
        case "badClose": {
          const code = rec.op.bad === "reason124" ? "CLOSE_REASON_TOO_LONG" : "INVALID_CLOSE_CODE";
          check(
            outcome !== undefined &&
              !outcome.ok &&
              outcome.error instanceof UsageError &&
              outcome.error.code === code,
            `${what}: ${outcome === undefined ? "unsettled" : outcome.ok ? "resolved" : describeError(outcome.error)}; expected UsageError ${code}`,
          );
          check(rec.stateAfter === rec.stateBefore, `${what} changed the state to ${rec.stateAfter}`);
          break;
        }
        case "close":
          // "resolves when our Close is written": after every message accepted before it.
          check(
            rec.unsettledBefore?.length === 0,
            `${what} resolved while earlier sends [${rec.unsettledBefore}] had not settled`,
          );
          check(
            outcome?.ok === true,
            `${what} did not resolve: ${outcome && !outcome.ok ? describeError(outcome.error) : "unsettled"}`,
          );
          break;
        case "stop":
          check(outcome?.ok === true, `${what}: app.stop() did not resolve`);
          check(rec.sessionsAtStop === 0, `app.stop() resolved with ${rec.sessionsAtStop} session(s) left`);
          break;
      }
    }

    // Incoming: a prefix of what the peer sent, all of it when the peer's own Close/FIN/violation ended it.
    if (s.reads !== "none") {
      check(run.readError === undefined, `reading incoming threw ${describeError(run.readError)}`);
      check(
        run.read.length <= run.peerTexts.length && run.read.every((t, i) => t === run.peerTexts[i]),
        `incoming yielded [${ids(run.read)}]; not a prefix of what the peer sent [${ids(run.peerTexts)}]`,
      );
      check(run.readEnd !== undefined, "incoming never ended (a reader waits forever)");
      // The peer's Close (or a violation) ends incoming once what came before it is delivered, and the
      // reply waits for those decodes: the reader learns the end while the session is still closing, not
      // only once the socket has closed. (A close(), stop() or terminate() after it sends the reply, or
      // ends the session, without waiting: then messages may still be decoded for the handler after.)
      if (
        p.decider.by === "peer" &&
        (p.decider.op.op === "close" || p.decider.op.op === "violation") &&
        run.readEnd !== undefined &&
        !run.readEnd.followUpsStarted
      )
        check(
          run.readEnd.state !== "closed",
          `incoming ended only once the session was closed (after the peer's ${p.decider.op.op})`,
        );
      if (p.incomingComplete && run.readEnd && !run.readEnd.handlerGone)
        check(
          run.read.length === run.peerTexts.length,
          `incoming ended after [${ids(run.read)}]; the peer sent [${ids(run.peerTexts)}] before its ${p.decider.by === "peer" ? p.decider.op.op : ""}`,
        );
    }

    // The error hook: the handler's error, and one protocol error for a violation; nothing else.
    const errors = run.started.errors;
    const handlerErrors = errors.filter((e) => e.kind === "handler");
    const protocolErrors = errors.filter((e) => e.kind === "protocol");
    check(
      handlerErrors.length === (run.thrown ? 1 : 0) &&
        (!run.thrown || handlerErrors[0]?.error === run.thrown),
      `error hook got handler errors [${handlerErrors.map((e) => describeError(e.error)).join("; ")}]; expected ${run.thrown ? "the thrown error" : "none"}`,
    );
    check(
      protocolErrors.length === p.protocolErrors,
      `error hook got ${protocolErrors.length} protocol errors; expected ${p.protocolErrors}`,
    );
    check(
      errors.length === handlerErrors.length + protocolErrors.length,
      `error hook got ${errors.map((e) => `${e.kind}: ${describeError(e.error)}`).join("; ")}`,
    );

    // 4. Nothing left behind.
    check(run.serverSocket?.destroyed === true, "the server-side socket is not destroyed");
    check(app.sessions.size === 0, `app.sessions has ${app.sessions.size} session(s) after the run`);
    check("timerList" in session, "the session has no timerList field (renamed? update this check)");
    check(Reflect.get(session, "timerList") === undefined, "a session timer is still armed after closed");
    if (s.deflate) {
      check(run.spy.created === 1, `${run.spy.created} codecs created`);
      check(run.spy.closed >= 1, "the codec was never closed");
      check(
        run.spy.usedAfterClose.length === 0,
        `the codec was used after close(): ${run.spy.usedAfterClose.join(", ")}`,
      );
    }
  } finally {
    run.peer?.destroy();
    await app.stop({ grace: 0 });
  }
  return problems;
}

// ---- a watchdog against a blocked event loop ---------------------------------------------------------

/**
 * A worker thread that notices when this thread's event loop stops turning (a synchronous busy loop or an
 * endless microtask chain: no timer, so no deadline here, can fire) and kills the process with a message
 * naming the run, instead of letting the test run hang forever.
 */
function startWatchdog(stallMs: number): { label: (text: string) => void; stop: () => Promise<number> } {
  const shared = new SharedArrayBuffer(8 + 4096);
  const beat = new Int32Array(shared, 0, 2);
  const label = new Uint8Array(shared, 8);
  const interval = setInterval(() => Atomics.add(beat, 0, 1), 100);
  interval.unref();
  const worker = new Worker(
    `
    const { workerData } = require("node:worker_threads");
    const { writeSync } = require("node:fs");
    const beat = new Int32Array(workerData, 0, 2);
    const label = new Uint8Array(workerData, 8);
    let last = Atomics.load(beat, 0);
    let since = Date.now();
    setInterval(() => {
      const now = Atomics.load(beat, 0);
      if (now !== last) { last = now; since = Date.now(); return; }
      if (Date.now() - since < ${stallMs}) return;
      const end = label.indexOf(0);
      const text = Buffer.from(label.slice(0, end < 0 ? label.length : end)).toString("utf8");
      writeSync(2, "\\nlifecycle-model watchdog: the event loop has not turned for " + (Date.now() - since) +
        " ms (a busy loop or an endless microtask chain?), during " + text + "\\n");
      process.kill(process.pid, "SIGKILL");
    }, 250);
    `,
    { eval: true, workerData: shared },
  );
  worker.unref();
  return {
    label(text) {
      const bytes = Buffer.from(text, "utf8").subarray(0, label.length - 1);
      label.fill(0);
      label.set(bytes);
    },
    stop() {
      clearInterval(interval);
      return worker.terminate();
    },
  };
}

// ---- the property ---------------------------------------------------------------------------------

/** What the runs exercised (printed with LIFECYCLE_MODEL_STATS=1). */
const coverage = new Map<string, number>();
const count = (key: string) => coverage.set(key, (coverage.get(key) ?? 0) + 1);

/** Active (ref'ed) timers and TCP sockets of the process: neither may grow from run to run. */
const resources = () => {
  const all = process.getActiveResourcesInfo();
  return {
    timeouts: all.filter((r) => r === "Timeout").length,
    sockets: all.filter((r) => r === "TCPSocketWrap").length,
  };
};

/** Runs one scenario and throws with everything that was wrong (and the prediction) if anything was. */
async function checkScenario(
  s: Scenario,
  control: StartedApp,
  runNo: number,
  key: string,
  baseline: { timeouts: number; sockets: number },
): Promise<void> {
  const p = predict(s);
  const problems = await within(runScenario(s, control, runNo), RUN_DEADLINE_MS, `run ${runNo} to end`);
  const now = resources();
  if (now.timeouts - baseline.timeouts > 5)
    problems.push(`${now.timeouts - baseline.timeouts} more active Timeouts than before the first run`);
  if (now.sockets - baseline.sockets > 5)
    problems.push(`${now.sockets - baseline.sockets} more TCP sockets than before the first run`);
  if (problems.length > 0)
    throw new Error(
      `run ${runNo} (${key}; predicted Close ${fmt(p.serverClose)}, closeReason ${p.closeReasons.map(fmt).join(" or ")}):\n  - ${problems.join("\n  - ")}`,
    );
}

const keyOf = (s: Scenario): string => {
  const d = predict(s).decider;
  return `${s.mode}/${d.by === "pingTimeout" ? "ping" : d.op.op}${d.by === "peer" ? "(peer)" : ""}`;
};

describe("session lifecycle, model-based", () => {
  it("every interleaving of local operations and peer events ends as the lifecycle table says", async () => {
    const watchdog = startWatchdog(15_000);
    const control = await startApp((r) => r.get("/health", (call) => call.respondJson({ ok: true })));
    const baseline = resources();
    let runNo = 0;
    const endings = new Map<string, number>();
    try {
      // LIFECYCLE_MODEL_SCENARIO='<a counterexample's JSON>' replays that one scenario (sanitized again).
      const replay = process.env.LIFECYCLE_MODEL_SCENARIO;
      if (replay) {
        const s = sanitize(JSON.parse(replay) as Scenario);
        watchdog.label(`the replayed scenario: ${JSON.stringify(s)}`);
        await checkScenario(s, control, 1, keyOf(s), baseline);
        return;
      }
      await fc.assert(
        fc.asyncProperty(scenario, async (s) => {
          runNo++;
          const key = keyOf(s);
          endings.set(key, (endings.get(key) ?? 0) + 1);
          watchdog.label(`run ${runNo}: ${JSON.stringify(s)}`);
          await checkScenario(s, control, runNo, key, baseline);
        }),
        { seed: SEED, numRuns: NUM_RUNS, interruptAfterTimeLimit: 150_000, markInterruptAsFailure: true },
      );
    } finally {
      await watchdog.stop();
    }
    if (process.env.LIFECYCLE_MODEL_STATS)
      console.log(
        `${runNo} runs; ${JSON.stringify(Object.fromEntries(coverage))}; endings: ${[...endings.entries()].map(([k, n]) => `${k}=${n}`).join(" ")}; active resources: ${process.getActiveResourcesInfo().join(",")}`,
      );
    // The generator must reach every kind of ending (a change to it must not silently narrow it).
    const kinds = new Set([...endings.keys()].map((k) => k.slice(k.indexOf("/") + 1)));
    for (const k of [
      "return",
      "throw",
      "close",
      "terminate",
      "stop",
      "close(peer)",
      "fin(peer)",
      "rst(peer)",
      "violation(peer)",
      "ping",
    ])
      expect(kinds, `no run ended by ${k}: ${[...endings.entries()].join(" ")}`).toContain(k);
  }, 180_000);
});
