/**
 * A model-based property test of publishing under concurrency (fast-check).
 *
 * The question: for every interleaving, does each subscriber receive exactly the publications and sends
 * that were accepted for it, in the order they were accepted, and nothing after our Close; and does
 * everything end and leave nothing behind?
 *
 * Each run starts an app with PubSub (test/pubsub/pubsub-app.ts) with a small `outgoingHighWaterMark`
 * (4 KiB), a short close timeout (400 ms), no keepalive, permessage-deflate (threshold 64) with or without
 * server_no_context_takeover or none, and the "drop" or "close" slow-subscriber policy. It connects 1–3
 * scripted raw peers (test/helpers/scripted-peer.ts: they answer the server's Close at once), each offering
 * permessage-deflate or not, each subscribed to "a", "b" or both ("c" never has subscribers unless one
 * subscribes), some with their own `slowSubscriberPolicy`, some publishing a farewell from their
 * `signal`'s abort as they end (inside `finish`). It then plays groups of operations; a group's operations
 * run in one event-loop turn (unless a send is awaited, up to 50 ms), and the group is followed by
 * nothing, a turn, or 3 ms of I/O:
 * - local: send (small: never compressed; large: compressed asynchronously; big: over the high-water mark
 *   by itself; awaited or not), a 5 MiB uncompressed send (a "flood": with a peer that does not read, the
 *   session stays over its high-water mark across turns), publish (small/large/big, text or binary,
 *   compress true/false, except one session, to a topic nobody or only some subscribe to), subscribe,
 *   unsubscribe, close(), the handler returning, terminate(), app.stop();
 * - peer: Close, FIN, RST, a protocol violation (an unmasked frame, or with deflate a compressed message
 *   that cannot be inflated: found a while after it is read), stop reading, read again, and a "request":
 *   a message (compressed when it can be) asking the handler to publish, with the peer's Close or a
 *   violation in the same write, so the handler publishes while its session is replying.
 *
 * The model (`Run`) is per session: the topics it subscribes to (it leaves all of them when its state
 * leaves open/replying), and the accepted sequence: sends in call order, and each publication the model
 * predicts was queued for it. A publication's prediction is made from what is observable just before the
 * call: a session subscribed to the topic (in the model), not excepted, is QUEUED when its bufferedAmount
 * is at most the high-water mark, SLOW otherwise; PublishResult must match it exactly (delivered, dropped,
 * closed by the session's policy or the app's).
 *
 * Checked in every run:
 * - before each operation: every session's `topics`, `app.subscriberCount` of each topic and
 *   `app.pubsub.topics()` are the model's (so a session that started closing has left its topics);
 * - each PublishResult is the prediction (delivered + dropped = the subscribers considered); the "close"
 *   policy closed exactly the slow ones (the Close they get, if any, is 1008), "drop" left them alone;
 *   each publication was encoded once (one shared compression when a subscriber without server context
 *   takeover got it compressed, at most one frame);
 * - what each peer received: data frames decoded in order (inflated when RSV1 is set; RSV1 exactly when
 *   the session negotiated deflate, the message allowed it and was over the threshold), nothing after the
 *   server's Close frame, and: when the peer received that Close, exactly the accepted sequence (sends
 *   that were accepted but rejected later, when the session ended before the drain they waited for,
 *   included: they went before the Close); otherwise (terminate, RST, FIN, close timeout) a prefix of it
 *   (such sends may be missing);
 * - sends made once the session left open/replying reject; sends reject only with SessionError
 *   SESSION_CLOSED / HANDLER_RETURNED; close(), subscribe() and app.stop() resolve (stop with no session
 *   left); every promise settles within a deadline; every session and every handler ends;
 * - at the end: `app.subscriberCount` is 0 for every topic, `app.pubsub.topics()` and `app.sessions` are
 *   empty, the error hook got only ProtocolErrors (at most one per violation sent), no unhandled rejection.
 *
 * A failure prints the scenario (JSON) and everything that was wrong in that run.
 * PUBLISH_MODEL_SCENARIO='<the JSON>' replays one scenario; PUBLISH_MODEL_SEED / PUBLISH_MODEL_RUNS explore
 * further; PUBLISH_MODEL_STATS=1 prints what the runs exercised.
 */
import { Buffer } from "node:buffer";
import { setImmediate as nextTurn } from "node:timers/promises";
import { constants, createInflateRaw, type InflateRaw } from "node:zlib";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  type DefaultWebSocketSession,
  type PublishResult,
  permessageDeflate,
  SessionError,
  UsageError,
} from "../../src/index.js";
import { cleanup } from "../helpers/cleanup.js";
import {
  closePayload,
  deflateMessage,
  OPCODE,
  type PeerFrame,
  peerFrame,
  ScriptedPeer,
} from "../helpers/scripted-peer.js";
import { delay, within } from "../helpers/wait.js";
import { type PubSubApp, startPubSub } from "./pubsub-app.js";

afterEach(cleanup);

const SEED = Number(process.env.PUBLISH_MODEL_SEED ?? 0x9b5b);
const NUM_RUNS = Number(process.env.PUBLISH_MODEL_RUNS ?? 150);
/** permessage-deflate threshold: messages of at least this many bytes are compressed. */
const THRESHOLD = 64;
const HWM = 4 * 1024;
/** The close timeout: a peer that stopped reading does not answer our Close in time. */
const TIMEOUT = 400;
const STOP_GRACE = 300;
const FLOOD = 5 * 1024 * 1024;
const SLOW_CLOSE_CODE = 1008;
const TOPICS = ["a", "b", "c"] as const;
type Topic = (typeof TOPICS)[number];
/** Every wait of a run has a deadline; the whole run has this one. */
const RUN_DEADLINE_MS = 10_000;

// ---- scenarios ------------------------------------------------------------------------------------

type PeerEvent = "close" | "fin" | "rst" | "violation" | "stall" | "resume";
type PublishOp = {
  op: "publish";
  topic: Topic;
  size: number;
  binary: boolean;
  compress: boolean;
  except: number | null;
};
type Op =
  | { op: "send"; s: number; size: number; awaited: boolean }
  | { op: "flood"; s: number }
  | PublishOp
  | { op: "subscribe"; s: number; topic: Topic }
  | { op: "unsubscribe"; s: number; topic: Topic }
  | { op: "close"; s: number; code: number }
  | { op: "return"; s: number }
  | { op: "terminate"; s: number }
  | { op: "stop" }
  | { op: "peer"; s: number; event: PeerEvent }
  /**
   * The peer sends a message (compressed when it can) asking the handler to publish, and in the same
   * write its Close, a violation, or nothing: the handler publishes while its session is replying.
   */
  | { op: "request"; s: number; publish: PublishOp; followedBy: "close" | "violation" | "none" };
type Gap = "same" | "turn" | "io";
interface Group {
  ops: Op[];
  gap: Gap;
}
interface SessionSpec {
  /** The peer offers permessage-deflate (accepted when the run has it). */
  deflate: boolean;
  topics: Topic[];
  /** `session.slowSubscriberPolicy`: null leaves the app's. */
  policy: "drop" | "close" | null;
  /** Published when the session ends (from its `signal`'s abort, inside `finish`), as a chat says "left". */
  farewell: PublishOp | null;
}
interface Scenario {
  deflate: "none" | "takeover" | "noContext";
  policy: "drop" | "close";
  sessions: SessionSpec[];
  groups: Group[];
}

/** Small (never compressed), large (compressed asynchronously), big (over the high-water mark alone). */
const size = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 8, max: THRESHOLD - 1 }) },
  { weight: 4, arbitrary: fc.integer({ min: THRESHOLD, max: 3000 }) },
  { weight: 2, arbitrary: fc.integer({ min: HWM + 500, max: 30_000 }) },
);
const who = fc.integer({ min: 0, max: 2 });
const topic = fc.constantFrom<Topic>("a", "a", "a", "a", "b", "b", "c");
const publish: fc.Arbitrary<PublishOp> = fc.record({
  op: fc.constant("publish" as const),
  topic,
  size,
  binary: fc.boolean(),
  compress: fc.oneof(
    { weight: 3, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  except: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: who }),
});
const peerEvent = (weight: number, ...events: PeerEvent[]) => ({
  weight,
  arbitrary: fc.record({ op: fc.constant("peer" as const), s: who, event: fc.constantFrom(...events) }),
});
/** Ordinary operations are frequent, those that end a session (or all of them) rare. */
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({ op: fc.constant("send" as const), s: who, size, awaited: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("flood" as const), s: who }) },
  { weight: 20, arbitrary: publish },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("subscribe" as const), s: who, topic }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("unsubscribe" as const), s: who, topic }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("request" as const),
      s: who,
      publish,
      followedBy: fc.constantFrom<"close" | "violation" | "none">("close", "close", "violation", "none"),
    }),
  },
  peerEvent(4, "stall", "stall", "resume"),
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("close" as const), s: who, code: fc.constantFrom(1000, 4001) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("return" as const), s: who }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("terminate" as const), s: who }) },
  { weight: 1, arbitrary: fc.constant({ op: "stop" as const }) },
  peerEvent(2, "close", "fin", "rst", "violation"),
);
const scenario: fc.Arbitrary<Scenario> = fc.record({
  deflate: fc.constantFrom<Scenario["deflate"]>("none", "takeover", "noContext", "noContext"),
  policy: fc.constantFrom<Scenario["policy"]>("drop", "close"),
  sessions: fc.array(
    fc.record({
      deflate: fc.oneof(
        { weight: 3, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      topics: fc.constantFrom<Topic[]>(["a"], ["a", "b"], ["a", "b"], ["b"]),
      policy: fc.constantFrom<SessionSpec["policy"]>(null, null, null, "drop", "close"),
      farewell: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: publish }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  groups: fc.array(
    fc.record({
      ops: fc.array(op, { minLength: 1, maxLength: 5 }),
      gap: fc.constantFrom<Gap>("same", "turn", "turn", "io"),
    }),
    { minLength: 1, maxLength: 7 },
  ),
});

// ---- payloads -------------------------------------------------------------------------------------

/** `size` bytes of ASCII starting with `head:` (compressible under 4000 bytes, pseudo-random letters past it). */
function payloadText(head: string, size: number): string {
  const prefix = `${head}:`;
  const n = Math.max(0, size - prefix.length);
  if (size <= 4000) return prefix + "abcdefghij".repeat(Math.ceil(n / 10)).slice(0, n);
  const out = Buffer.allocUnsafe(n);
  let x = (head.length + size) * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = 97 + ((x >>> 16) % 26);
  }
  return prefix + out.toString("latin1");
}

// ---- the model and the run ------------------------------------------------------------------------

type Session = DefaultWebSocketSession;
type Outcome = { ok: true } | { ok: false; error: unknown };

/** One item of a session's accepted sequence. */
interface Item {
  id: string;
  kind: "send" | "flood" | "pub";
  bytes: Buffer;
  binary: boolean;
  /** Must arrive with RSV1 set. */
  compressed: boolean;
  /** For a send: its outcome (see the comparison in `runScenario`). */
  send?: SendRecord;
}

interface SendRecord {
  id: string;
  s: number;
  stateAtCall: string;
  outcome: Outcome | undefined;
  promise: Promise<unknown>;
}

interface PeerState {
  peer: ScriptedPeer;
  deflate: boolean;
  stalled: boolean;
  violations: number;
}

const accepting = (state: string) => state === "open" || state === "replying";

const describeError = (error: unknown): string =>
  error instanceof SessionError || error instanceof UsageError
    ? `${error.name}(${error.code})`
    : error instanceof Error
      ? `${error.name}: ${error.message}`
      : String(error);

/** What the runs exercised (printed with PUBLISH_MODEL_STATS=1; some must be reached). */
const coverage = new Map<string, number>();
const count = (key: string, n = 1) => {
  if (n > 0) coverage.set(key, (coverage.get(key) ?? 0) + n);
};

class Run {
  started!: PubSubApp;
  readonly sessions: Session[] = [];
  readonly peers: PeerState[] = [];
  /** The model: each session's topics, and what it must receive. */
  readonly subs: Array<Set<Topic>> = [];
  readonly expected: Item[][] = [];
  /** The Close code a session must send, when an operation started its close while it was open. */
  readonly expectedClose: Array<{ code: number; by: string } | undefined> = [];
  readonly sends: SendRecord[] = [];
  readonly promises: Array<{ what: string; promise: Promise<unknown>; outcome?: Outcome; isSend?: true }> =
    [];
  readonly problems: string[] = [];
  readonly returns: Array<() => void> = [];
  readonly handlerSettled: boolean[] = [];
  private readonly ready: Array<(s: Session) => void> = [];
  stopped = false;
  nextId = 0;
  readonly flooded = new Set<number>();
  /** Requests the peers sent, by their text. */
  readonly requests = new Map<string, { publish: PublishOp }>();

  constructor(readonly s: Scenario) {}

  check(ok: boolean, message: string): void {
    if (!ok) this.problems.push(message);
  }

  sessionArrived(i: number): Promise<Session> {
    return new Promise((resolve) => {
      this.ready[i] = resolve;
    });
  }

  async handler(i: number, session: Session): Promise<void> {
    this.sessions[i] = session;
    const returned = new Promise<void>((resolve) => {
      this.returns[i] = resolve;
    });
    this.ready[i]?.(session);
    // The handler reads: a request from its peer is a publication to make (see the "request" operation).
    void (async () => {
      for await (const m of session.incoming) {
        const text = m.data.toString("utf8");
        const request = m.type === "text" ? this.requests.get(text) : undefined;
        if (request === undefined) continue;
        count(`request handled in ${session.state}`);
        void this.exec(request.publish, `${text} from peer ${i}, in its handler`);
      }
    })();
    try {
      await returned;
    } finally {
      this.handlerSettled[i] = true;
    }
  }

  /** The model leaves every topic of a session whose state left open/replying; then compares. */
  sync(where: string): void {
    const app = this.started.app;
    for (let i = 0; i < this.sessions.length; i++) {
      const session = this.sessions[i]!;
      if (!accepting(session.state)) this.subs[i]!.clear();
      const want = [...this.subs[i]!].sort().join(",");
      const got = [...session.topics].sort().join(",");
      this.check(
        want === got,
        `${where}: session ${i} (${session.state}) has topics [${got}]; model [${want}]`,
      );
    }
    for (const t of TOPICS) {
      const want = this.subs.filter((x) => x.has(t)).length;
      const got = app.subscriberCount(t);
      this.check(want === got, `${where}: subscriberCount("${t}") is ${got}; model ${want}`);
    }
    const wantTopics = TOPICS.filter((t) => this.subs.some((x) => x.has(t))).join(",");
    const gotTopics = [...app.pubsub.topics()].sort().join(",");
    this.check(
      wantTopics === gotTopics,
      `${where}: pubsub.topics() is [${gotTopics}]; model [${wantTopics}]`,
    );
  }

  track(
    what: string,
    promise: Promise<unknown>,
  ): { what: string; promise: Promise<unknown>; outcome?: Outcome } {
    const rec: { what: string; promise: Promise<unknown>; outcome?: Outcome } = { what, promise };
    promise.then(
      () => {
        rec.outcome = { ok: true };
      },
      (error: unknown) => {
        rec.outcome = { ok: false, error };
      },
    );
    this.promises.push(rec);
    return rec;
  }

  private noteClose(i: number, code: number, by: string): void {
    if (this.expectedClose[i] === undefined && this.sessions[i]!.state === "open")
      this.expectedClose[i] = { code, by };
  }

  private sendItem(i: number, kind: "send" | "flood", bytes: Buffer, binary: boolean): Promise<unknown> {
    const session = this.sessions[i]!;
    const id = `${kind === "flood" ? "f" : "s"}${this.nextId++}`;
    const stateAtCall = session.state;
    const promise =
      kind === "flood" ? session.send(bytes, { compress: false }) : session.send(bytes.toString("latin1"));
    const rec: SendRecord = { id, s: i, stateAtCall, outcome: undefined, promise };
    promise.then(
      () => {
        rec.outcome = { ok: true };
      },
      (error: unknown) => {
        rec.outcome = { ok: false, error };
      },
    );
    this.sends.push(rec);
    this.promises.push({ what: `${id} to session ${i}`, promise, isSend: true });
    if (accepting(stateAtCall))
      this.expected[i]!.push({
        id,
        kind,
        bytes,
        binary,
        compressed: kind === "send" && this.peers[i]!.deflate && bytes.length >= THRESHOLD,
        send: rec,
      });
    return promise;
  }

  /**
   * A protocol violation from peer `i`: an unmasked frame (1002, found as it is read), or, every other
   * time with deflate, a compressed message that cannot be inflated (1007, found a while later).
   */
  private violation(i: number): Buffer {
    const ps = this.peers[i]!;
    ps.violations++;
    if (ps.deflate && this.nextId++ % 2 === 0) {
      count("violation: a message that cannot be inflated");
      return peerFrame({ opcode: OPCODE.text, payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]), rsv: 4 });
    }
    return peerFrame({ opcode: OPCODE.text, payload: "unmasked", mask: false });
  }

  async exec(o: Op, where: string): Promise<void> {
    const n = this.sessions.length;
    const at = (s: number) => s % n;
    this.sync(`before ${where}`);
    switch (o.op) {
      case "send": {
        const i = at(o.s);
        const id = this.nextId; // sendItem takes it
        const p = this.sendItem(i, "send", Buffer.from(payloadText(`s${id}`, o.size), "latin1"), false);
        if (o.awaited) await Promise.race([p.catch(() => {}), delay(50)]);
        break;
      }
      case "flood": {
        const i = at(o.s);
        // One per session: more would pass outgoingBufferLimit (SEND_BUFFER_FULL), and cost time.
        if (this.flooded.has(i)) break;
        this.flooded.add(i);
        const bytes = Buffer.alloc(FLOOD, 0x2e);
        bytes.write(`f${this.nextId}:`, "latin1");
        void this.sendItem(i, "flood", bytes, true);
        count("flood");
        if (this.peers[i]!.stalled) count("flood to a peer that does not read");
        break;
      }
      case "publish": {
        const id = `p${this.nextId++}`;
        const text = payloadText(id, o.size);
        const bytes = Buffer.from(text, "latin1");
        const except = o.except === null ? undefined : at(o.except);
        // The prediction, from what is observable now.
        const queued: number[] = [];
        const slow: number[] = [];
        const stateBefore: string[] = [];
        for (let i = 0; i < n; i++) {
          const session = this.sessions[i]!;
          stateBefore.push(session.state);
          if (i === except || !this.subs[i]!.has(o.topic)) continue;
          if (session.bufferedAmount > HWM) slow.push(i);
          else queued.push(i);
        }
        const stats = this.started.app.pubsub.stats;
        const result: PublishResult = this.started.app.publish(o.topic, o.binary ? bytes : text, {
          except: except === undefined ? undefined : this.sessions[except],
          compress: o.compress,
        });
        const closes = (i: number) => (this.s.sessions[i]!.policy ?? this.s.policy) === "close";
        const closing = slow.filter(closes).length;
        this.check(
          result.delivered === queued.length && result.dropped === slow.length && result.closed === closing,
          `${where}: publish ${id} to "${o.topic}" returned ${JSON.stringify(result)}; model {"delivered":${queued.length},"dropped":${slow.length},"closed":${closing}} (queued for [${queued}], slow [${slow}])`,
        );
        // Encoded once: every peer offers the same window, so one shared encoder serves them all.
        const statsAfter = this.started.app.pubsub.stats;
        const sharedCompression =
          this.s.deflate === "noContext" &&
          o.compress &&
          bytes.length >= THRESHOLD &&
          queued.some((i) => this.peers[i]!.deflate);
        const compressions = statsAfter.compressions - stats.compressions;
        const frames = statsAfter.framesEncoded - stats.framesEncoded;
        this.check(
          compressions === (sharedCompression ? 1 : 0) && frames <= 1,
          `${where}: publish ${id} made ${compressions} compression(s) and ${frames} frame(s); expected ${sharedCompression ? 1 : 0} and at most 1`,
        );
        for (const i of queued)
          this.expected[i]!.push({
            id,
            kind: "pub",
            bytes,
            binary: o.binary,
            compressed: o.compress && this.peers[i]!.deflate && bytes.length >= THRESHOLD,
          });
        count("publication queued", queued.length);
        count("publication slow", slow.length);
        if (queued.some((i) => stateBefore[i] === "replying")) count("publication queued while replying");
        if (slow.some((i) => this.peers[i]!.stalled)) count("publication slow: the peer does not read");
        if (queued.length + slow.length === 0)
          count(
            this.sessions.some((x) => accepting(x.state))
              ? `publication to nobody (some session open; topic ${o.topic}${except !== undefined ? ", except" : ""})`
              : "publication to nobody (every session closing)",
          );
        if (queued.length > 1) count("publication queued for several");
        for (const i of slow)
          if (closes(i)) {
            if (stateBefore[i] === "open") this.expectedClose[i] ??= { code: SLOW_CLOSE_CODE, by: id };
            const state = this.sessions[i]!.state;
            this.check(
              !accepting(state),
              `${where}: slow session ${i} was not closed by the policy (${state})`,
            );
            count(`slow subscriber closed${this.s.sessions[i]!.policy ? " (its own policy)" : ""}`);
          } else {
            const state = this.sessions[i]!.state;
            this.check(
              state === stateBefore[i],
              `${where}: slow session ${i} went from ${stateBefore[i]} to ${state} under the drop policy`,
            );
          }
        break;
      }
      case "subscribe": {
        const i = at(o.s);
        const session = this.sessions[i]!;
        const ok = accepting(session.state);
        const p = session.subscribe(o.topic);
        this.track(`subscribe("${o.topic}") of session ${i} at ${where}`, p);
        if (ok) this.subs[i]!.add(o.topic);
        break;
      }
      case "unsubscribe": {
        const i = at(o.s);
        const had = this.subs[i]!.delete(o.topic);
        const got = this.sessions[i]!.unsubscribe(o.topic);
        this.check(
          got === had,
          `${where}: unsubscribe(${o.topic}) on session ${i} returned ${got}; model ${had}`,
        );
        break;
      }
      case "close": {
        const i = at(o.s);
        this.noteClose(i, o.code, where);
        const rec = this.track(`close() of session ${i} at ${where}`, this.sessions[i]!.close(o.code, "bye"));
        rec.promise.then(undefined, () => {});
        break;
      }
      case "return": {
        const i = at(o.s);
        // Its 1000 comes a few microtasks later: an operation after it in this turn may close first.
        this.returns[i]?.();
        break;
      }
      case "terminate":
        this.sessions[at(o.s)]!.terminate();
        break;
      case "stop": {
        if (this.stopped) break;
        this.stopped = true;
        for (let i = 0; i < n; i++) this.noteClose(i, 1001, where);
        const app = this.started.app;
        const rec = this.track(
          `app.stop() at ${where}`,
          app.stop({ grace: STOP_GRACE }).then(() => {
            this.check(
              app.sessions.size === 0,
              `app.stop() resolved with ${app.sessions.size} session(s) left`,
            );
          }),
        );
        rec.promise.then(undefined, () => {});
        break;
      }
      case "request": {
        const i = at(o.s);
        const peer = this.peers[i]!.peer;
        if (!peer.canSend) break;
        const text = `req${this.nextId++}`;
        this.requests.set(text, { publish: o.publish });
        const bytes = [
          this.peers[i]!.deflate
            ? peerFrame({ opcode: OPCODE.text, payload: deflateMessage(text), rsv: 4 })
            : peerFrame({ opcode: OPCODE.text, payload: text }),
        ];
        if (o.followedBy === "close") {
          peer.noteCloseSent(1000, "peer");
          bytes.push(peerFrame({ opcode: OPCODE.close, payload: closePayload(1000, "peer") }));
        } else if (o.followedBy === "violation") {
          bytes.push(this.violation(i));
        }
        peer.write(Buffer.concat(bytes));
        break;
      }
      case "peer": {
        const i = at(o.s);
        const ps = this.peers[i]!;
        const peer = ps.peer;
        switch (o.event) {
          case "stall":
            ps.stalled = true;
            peer.socket.pause();
            break;
          case "resume":
            ps.stalled = false;
            peer.socket.resume();
            break;
          case "close":
            if (!peer.canSend) break;
            peer.noteCloseSent(1000, "peer");
            peer.write(peerFrame({ opcode: OPCODE.close, payload: closePayload(1000, "peer") }));
            break;
          case "violation":
            if (!peer.canSend) break;
            peer.write(this.violation(i));
            break;
          case "fin":
            if (peer.canSend) peer.fin();
            break;
          case "rst":
            // (After our own FIN node's resetAndDestroy fails with EINVAL and never emits 'close'.)
            if (!peer.socket.destroyed && !peer.finSent) peer.reset();
            break;
        }
        break;
      }
    }
    // The close policy may have closed a session; the model follows on the next operation.
  }
}

/** The data messages a peer received before the server's Close, inflated in order, and what followed it. */
async function received(frames: readonly PeerFrame[]): Promise<{
  messages: Array<{ bytes: Buffer; binary: boolean; rsv1: boolean }>;
  after: number;
  error?: string;
}> {
  const messages: Array<{ bytes: Buffer; binary: boolean; rsv1: boolean }> = [];
  let inflater: InflateRaw | undefined;
  const inflate = (payload: Buffer) =>
    new Promise<Buffer>((resolve, reject) => {
      inflater ??= createInflateRaw();
      const z = inflater;
      const chunks: Buffer[] = [];
      const onData = (chunk: Buffer) => chunks.push(chunk);
      z.on("data", onData);
      z.once("error", reject);
      z.write(Buffer.concat([payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]));
      z.flush(constants.Z_SYNC_FLUSH, () => {
        z.off("data", onData);
        z.off("error", reject);
        resolve(Buffer.concat(chunks));
      });
    });
  let after = 0;
  let closed = false;
  try {
    for (const f of frames) {
      if (closed) {
        after++;
        continue;
      }
      if (f.opcode === OPCODE.close) closed = true;
      if (f.opcode !== OPCODE.text && f.opcode !== OPCODE.binary) continue;
      if (!f.fin) return { messages, after, error: "a fragmented message (none was sent)" };
      const bytes = f.rsv1 ? await inflate(f.payload) : f.payload;
      messages.push({ bytes, binary: f.opcode === OPCODE.binary, rsv1: f.rsv1 });
    }
  } catch (error) {
    return { messages, after, error: `inflating message #${messages.length}: ${describeError(error)}` };
  } finally {
    inflater?.close();
  }
  return { messages, after };
}

const idOf = (bytes: Buffer): string => {
  const colon = bytes.indexOf(0x3a);
  return colon < 0 || colon > 12 ? `<${bytes.length} bytes>` : bytes.subarray(0, colon).toString("latin1");
};

async function runScenario(s: Scenario): Promise<string[]> {
  const run = new Run(s);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  run.started = await startPubSub(
    (r) => r.webSocket("/s/{i}", (session) => run.handler(Number(session.call.parameters.i), session)),
    { slowSubscriber: s.policy, slowCloseCode: SLOW_CLOSE_CODE },
    {
      outgoingHighWaterMark: HWM,
      pingPeriod: 0,
      timeout: TIMEOUT,
      ...(s.deflate === "none"
        ? {}
        : {
            extensions: [
              permessageDeflate({ threshold: THRESHOLD, serverNoContextTakeover: s.deflate === "noContext" }),
            ],
          }),
    },
  );
  const { app, port } = run.started;
  const before = app.pubsub.stats;
  try {
    // Connect the peers one by one; each session starts subscribed to its topics.
    for (let i = 0; i < s.sessions.length; i++) {
      const spec = s.sessions[i]!;
      const arrived = run.sessionArrived(i);
      const peer = await ScriptedPeer.connect(port, `/s/${i}`, {
        deflate: spec.deflate,
        allowHalfOpen: false,
        autoPong: true,
        echoClose: true,
      });
      const accepted = s.deflate !== "none" && spec.deflate;
      run.check(peer.deflateAccepted === accepted, `session ${i}: deflate accepted ${peer.deflateAccepted}`);
      run.peers.push({ peer, deflate: peer.deflateAccepted, stalled: false, violations: 0 });
      const session = await within(arrived, 3000, `session ${i}'s handler`);
      run.subs.push(new Set());
      run.expected.push([]);
      run.expectedClose.push(undefined);
      run.handlerSettled.push(false);
      if (spec.policy !== null) session.slowSubscriberPolicy = spec.policy;
      const farewell = spec.farewell;
      if (farewell !== null)
        session.signal.addEventListener("abort", () => {
          count("farewell published as a session ends");
          void run.exec(farewell, `the farewell of session ${i}`);
        });
      for (const t of spec.topics) {
        await session.subscribe(t);
        run.subs[i]!.add(t);
      }
    }

    for (let gi = 0; gi < s.groups.length; gi++) {
      const g = s.groups[gi]!;
      for (let oi = 0; oi < g.ops.length; oi++) await run.exec(g.ops[oi]!, `group ${gi} op ${oi}`);
      if (g.gap === "turn") await nextTurn();
      else if (g.gap === "io") await delay(3);
    }
    run.sync("after the last group");

    // The end: every peer reads again, every handler returns; every session must end.
    for (const ps of run.peers) if (ps.stalled) ps.peer.socket.resume();
    for (let i = 0; i < run.sessions.length; i++) run.returns[i]?.();
    for (let i = 0; i < run.sessions.length; i++) {
      const session = run.sessions[i]!;
      await within(session.closeReason, 3000, `session ${i} to end (state ${session.state})`);
    }
    for (let i = 0; i < run.peers.length; i++) {
      const peer = run.peers[i]!.peer;
      await peer.waitFor(() => peer.isClosed, 3000, `peer ${i}'s socket to close`);
    }
    for (const p of run.promises)
      await within(
        p.promise.catch(() => {}),
        2000,
        `${p.what} to settle`,
      );
    await nextTurn();
    run.sync("at the end");

    // ---- checks ----
    for (let i = 0; i < run.sessions.length; i++) {
      const session = run.sessions[i]!;
      const ps = run.peers[i]!;
      const peer = ps.peer;
      run.check(session.state === "closed", `session ${i} is ${session.state} after closeReason`);
      run.check(run.handlerSettled[i] === true, `session ${i}'s handler never returned`);
      run.check(peer.parseError === undefined, `peer ${i}: ${peer.parseError}`);
      const closes = peer.frames.filter((f) => f.opcode === OPCODE.close).length;
      run.check(closes <= 1, `peer ${i} got ${closes} Close frames`);
      const got = await received(peer.frames);
      if (got.error) run.check(false, `peer ${i}: ${got.error}`);
      run.check(got.after === 0, `peer ${i} got ${got.after} frame(s) after the server's Close`);
      const exact = peer.closeReceived !== undefined;
      count(exact ? "compared exactly (Close received)" : "compared as a prefix (no Close)");
      const want = run.expected[i]!;
      const wantIds = want.map((x) => `${x.id}${x.send && !x.send.outcome?.ok ? "?" : ""}`).join(",");
      const gotIds = got.messages.map((m) => idOf(m.bytes)).join(",");
      const mismatch = (why: string) =>
        run.check(
          false,
          `session ${i} (deflate ${ps.deflate}, ${exact ? `Close ${peer.closeReceived!.code} received` : "no Close"}): ${why}; received [${gotIds}], accepted [${wantIds}] (?: accepted, then rejected)`,
        );
      let j = 0;
      let bad = false;
      for (const item of want) {
        // A send accepted (open, replying) rejects later when the session ends before the drain it waits
        // for, its frame already handed on: with our Close received it must have arrived (it went before
        // the Close); without, it may be missing (nothing here says how far the connection got).
        const optional = !exact && item.send !== undefined && item.send.outcome?.ok !== true;
        const m = got.messages[j];
        if (m === undefined) {
          if (exact && !optional) {
            mismatch(`${item.id} never arrived`);
            bad = true;
          }
          if (exact) continue;
          break;
        }
        if (idOf(m.bytes) !== item.id) {
          if (optional) continue;
          mismatch(`message #${j} is ${idOf(m.bytes)}, expected ${item.id}`);
          bad = true;
          break;
        }
        j++;
        if (item.send !== undefined && item.send.outcome?.ok !== true)
          count("a send rejected after acceptance arrived");
        if (item.kind === "flood")
          run.check(
            m.bytes.length === FLOOD,
            `session ${i}: ${item.id} arrived with ${m.bytes.length} bytes`,
          );
        else run.check(m.bytes.equals(item.bytes), `session ${i}: ${item.id} arrived with other content`);
        run.check(
          m.binary === item.binary,
          `session ${i}: ${item.id} arrived as ${m.binary ? "binary" : "text"}`,
        );
        run.check(
          m.rsv1 === item.compressed,
          `session ${i}: ${item.id} (${item.bytes.length} bytes) arrived with RSV1 ${m.rsv1}; expected ${item.compressed}`,
        );
      }
      if (!bad && j < got.messages.length) mismatch(`${got.messages.length - j} message(s) nobody accepted`);
      const expectClose = run.expectedClose[i];
      // A Close of the peer's own, or a violation, before ours went out: ours answers it instead.
      if (expectClose && peer.closeReceived && ps.violations === 0 && peer.closeSent?.how !== "explicit")
        run.check(
          peer.closeReceived.code === expectClose.code,
          `session ${i}: the peer got Close ${peer.closeReceived.code}; expected ${expectClose.code} (${expectClose.by})`,
        );
    }
    for (const rec of run.sends) {
      const what = `${rec.id} to session ${rec.s} (made in state ${rec.stateAtCall})`;
      const outcome = rec.outcome;
      if (outcome === undefined) {
        run.check(false, `${what} never settled`);
        continue;
      }
      if (!accepting(rec.stateAtCall)) run.check(!outcome.ok, `${what} resolved`);
      if (!outcome.ok) {
        const e = outcome.error;
        run.check(
          e instanceof SessionError && (e.code === "SESSION_CLOSED" || e.code === "HANDLER_RETURNED"),
          `${what} rejected with ${describeError(e)}`,
        );
      }
      count(
        `send ${accepting(rec.stateAtCall) ? "accepted" : "refused"} ${outcome.ok ? "resolved" : "rejected"}`,
      );
    }
    // close(), app.stop() and subscribe() resolve (sends were checked above).
    for (const p of run.promises)
      if (!p.isSend)
        run.check(
          p.outcome?.ok === true,
          `${p.what}: ${p.outcome === undefined ? "unsettled" : !p.outcome.ok ? describeError(p.outcome.error) : ""}`,
        );

    // Nothing left behind.
    run.check(app.sessions.size === 0, `app.sessions has ${app.sessions.size} session(s) at the end`);
    for (const t of TOPICS)
      run.check(
        app.subscriberCount(t) === 0,
        `subscriberCount("${t}") is ${app.subscriberCount(t)} at the end`,
      );
    run.check(app.pubsub.topics().length === 0, `pubsub.topics() is [${app.pubsub.topics()}] at the end`);
    const violations = run.peers.reduce((n, p) => n + p.violations, 0);
    const errors = run.started.errors;
    run.check(
      errors.every((e) => e.kind === "protocol") && errors.length <= violations,
      `error hook got [${errors.map((e) => `${e.kind}: ${describeError(e.error)}`).join("; ")}]; expected at most ${violations} protocol error(s)`,
    );
    run.check(unhandled.length === 0, `unhandled rejections: ${unhandled.map(describeError).join("; ")}`);
    const after = app.pubsub.stats;
    count("shared compressions", after.compressions - before.compressions);
  } catch (error) {
    run.problems.push(describeError(error));
  } finally {
    for (const ps of run.peers) ps.peer.destroy();
    await app.stop({ grace: 0 });
    process.off("unhandledRejection", onUnhandled);
  }
  return run.problems;
}

async function checkScenario(s: Scenario, runNo: number): Promise<void> {
  const problems = await within(runScenario(s), RUN_DEADLINE_MS, `run ${runNo} to end`);
  if (problems.length > 0)
    throw new Error(
      `run ${runNo} failed:\n  - ${problems.join("\n  - ")}\nreplay: PUBLISH_MODEL_SCENARIO='${JSON.stringify(s)}'`,
    );
}

describe("publishing under concurrency, model-based", () => {
  it("every subscriber gets exactly what was accepted for it, in order, and everything ends", async () => {
    const replay = process.env.PUBLISH_MODEL_SCENARIO;
    if (replay) {
      await checkScenario(JSON.parse(replay) as Scenario, 1);
      return;
    }
    let runNo = 0;
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        runNo++;
        await checkScenario(s, runNo);
      }),
      { seed: SEED, numRuns: NUM_RUNS, interruptAfterTimeLimit: 100_000, markInterruptAsFailure: true },
    );
    if (process.env.PUBLISH_MODEL_STATS)
      console.log(
        `${runNo} runs in ${Date.now() - started} ms; ${JSON.stringify(Object.fromEntries([...coverage].sort()), null, 1)}`,
      );
    // The generator must keep reaching these (a change to it must not silently narrow it).
    for (const key of [
      "publication queued",
      "publication slow",
      "slow subscriber closed",
      "publication queued while replying",
      "publication slow: the peer does not read",
      "slow subscriber closed (its own policy)",
      "farewell published as a session ends",
      "violation: a message that cannot be inflated",
      "shared compressions",
      "compared exactly (Close received)",
      "compared as a prefix (no Close)",
    ])
      expect(coverage.get(key) ?? 0, `no run reached "${key}"`).toBeGreaterThan(0);
  }, 120_000);
});
