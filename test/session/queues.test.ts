import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import type { MessageCodec } from "../../src/extensions/index.js";
import { InboundDecoder } from "../../src/session/inbound-decoder.js";
import { compact, IncomingQueue, ITEM_OVERHEAD } from "../../src/session/incoming-queue.js";
import { ENTRY_OVERHEAD, OutboundQueue } from "../../src/session/outbound-queue.js";

type Item = { data: Buffer; name: string };
const item = (name: string, size = 0): Item => ({ data: Buffer.alloc(size), name });

function owner() {
  const calls: string[] = [];
  return {
    calls,
    incomingFull: () => calls.push("full"),
    incomingDrained: () => calls.push("drained"),
    incomingReadToEnd: () => calls.push("end"),
  };
}

/** A codec whose every decode/encode waits until the test settles it. */
function manualCodec() {
  const pending: Array<{
    kind: string;
    data: Buffer;
    resolve: (b: Buffer) => void;
    reject: (e: unknown) => void;
  }> = [];
  const codec: MessageCodec = {
    decode: (data) =>
      new Promise((resolve, reject) => pending.push({ kind: "decode", data, resolve, reject })),
    encode: (data) =>
      data.length < 4
        ? undefined
        : new Promise((resolve, reject) => pending.push({ kind: "encode", data, resolve, reject })),
    close: () => {},
  };
  return { codec, pending };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("IncomingQueue", () => {
  it("charges every item its payload plus ITEM_OVERHEAD, so empty items fill it too", () => {
    const o = owner();
    const q = new IncomingQueue<Item>(10 * ITEM_OVERHEAD, o);
    for (let i = 0; i < 10; i++) q.push(item(`${i}`));
    expect(q.cost).toBe(10 * ITEM_OVERHEAD);
    expect(o.calls).toEqual([]);
    q.push(item("11th"));
    expect(o.calls).toEqual(["full"]);
    expect(q.full).toBe(true);
  });

  it("chargeLast adds what the last item keeps alive; taking it gives all of it back", async () => {
    const q = new IncomingQueue<Item>(1 << 20, owner());
    q.push(item("a", 10));
    q.chargeLast(1000);
    expect(q.cost).toBe(ITEM_OVERHEAD + 10 + 1000);
    await q.next();
    expect(q.cost).toBe(0);
  });

  it("resumes (drained) only at half the limit, and stops being full then", async () => {
    const o = owner();
    const q = new IncomingQueue<Item>(4 * ITEM_OVERHEAD, o);
    for (let i = 0; i < 6; i++) q.push(item(`${i}`));
    expect(o.calls).toEqual(["full"]);
    await q.next();
    await q.next();
    await q.next();
    expect(o.calls).toEqual(["full"]); // 3 left: over half
    await q.next();
    expect(o.calls).toEqual(["full", "drained"]);
    expect(q.full).toBe(false);
  });

  it("hands an item straight to a waiting reader without charging it", async () => {
    const q = new IncomingQueue<Item>(1000, owner());
    const next = q.next();
    expect(q.readerWaiting).toBe(true);
    expect(q.push(item("direct", 50))).toBe(false);
    expect((await next).value?.name).toBe("direct");
    expect(q.cost).toBe(0);
  });

  it("tells its owner when the reader reaches the end, and yields queued items before it", async () => {
    const o = owner();
    const q = new IncomingQueue<Item>(1000, o);
    q.push(item("last"));
    q.end();
    expect(o.calls).toEqual([]);
    expect((await q.next()).value?.name).toBe("last");
    expect((await q.next()).done).toBe(true);
    expect(o.calls).toEqual(["end"]);
  });

  it("a reader already waiting is told of the end at once", async () => {
    const o = owner();
    const q = new IncomingQueue<Item>(1000, o);
    const next = q.next();
    q.end();
    expect((await next).done).toBe(true);
    expect(o.calls).toEqual(["end"]);
  });

  it("compact copies a small view of a large buffer and keeps a buffer that is (nearly) all its memory", () => {
    const big = Buffer.alloc(64 * 1024);
    const view = big.subarray(10, 20);
    const copy = compact(view);
    expect(copy.buffer).not.toBe(big.buffer);
    expect(copy.equals(view)).toBe(true);
    const whole = Buffer.allocUnsafeSlow(100_000);
    expect(compact(whole)).toBe(whole);
  });
});

describe("OutboundQueue", () => {
  function sink() {
    const written: string[] = [];
    const failures: unknown[] = [];
    return {
      written,
      failures,
      writeFrame: (opcode: number, payload: Buffer, _fin: boolean, rsv1: boolean) =>
        written.push(`${opcode}:${payload.toString()}${rsv1 ? ":z" : ""}`),
      encodeFailed: (e: unknown) => failures.push(e),
    };
  }

  it("frames behind a compressing one wait, and every entry leaves in order", async () => {
    const s = sink();
    const { codec, pending } = manualCodec();
    const q = new OutboundQueue(s, codec);
    const done: string[] = [];
    void q.sendFrame(1, Buffer.from("big message"), true, false, true).then(() => done.push("big"));
    void q.sendFrame(1, Buffer.from("ab"), true, false, false).then(() => done.push("small"));
    void q.runAfter(() => s.written.push("close")).then(() => done.push("close"));
    expect(pending).toHaveLength(1); // only the front is being compressed
    expect(s.written).toEqual([]);
    expect(q.cost).toBe(3 * ENTRY_OVERHEAD + 11 + 2);
    pending[0]!.resolve(Buffer.from("Z"));
    await turn();
    expect(s.written).toEqual(["1:Z:z", "1:ab", "close"]);
    expect(done).toEqual(["big", "small", "close"]);
    expect(q.idle).toBe(true);
    expect(q.cost).toBe(0);
  });

  it("compresses one entry at a time, each only when it reaches the front", async () => {
    const s = sink();
    const { codec, pending } = manualCodec();
    const q = new OutboundQueue(s, codec);
    void q.sendFrame(2, Buffer.from("first"), true, false, true);
    void q.sendFrame(2, Buffer.from("second"), true, false, true);
    expect(pending.map((p) => p.data.toString())).toEqual(["first"]);
    pending[0]!.resolve(Buffer.from("1"));
    await turn();
    expect(pending.map((p) => p.data.toString())).toEqual(["first", "second"]);
    pending[1]!.resolve(Buffer.from("2"));
    await turn();
    expect(s.written).toEqual(["2:1:z", "2:2:z"]);
  });

  it("a message under the codec's threshold goes as it is when its turn comes", async () => {
    const s = sink();
    const { codec, pending } = manualCodec();
    const q = new OutboundQueue(s, codec);
    void q.sendFrame(1, Buffer.from("long one"), true, false, true);
    void q.sendFrame(1, Buffer.from("ab"), true, false, true);
    pending[0]!.resolve(Buffer.from("L"));
    await turn();
    expect(s.written).toEqual(["1:L:z", "1:ab"]);
  });

  it("abort rejects everything waiting and drops the codec's late result", async () => {
    const s = sink();
    const { codec, pending } = manualCodec();
    const q = new OutboundQueue(s, codec);
    const results = [
      q.sendFrame(1, Buffer.from("compressing"), true, false, true),
      q.runAfter(() => s.written.push("never")),
    ].map((p) =>
      p.then(
        () => "ok",
        (e: unknown) => String(e),
      ),
    );
    const gone = new Error("gone");
    q.abort(gone);
    pending[0]!.resolve(Buffer.from("late"));
    expect(await Promise.all(results)).toEqual(["Error: gone", "Error: gone"]);
    await turn();
    expect(s.written).toEqual([]);
    expect(await q.sendFrame(1, Buffer.from("after"), true, false, false).catch(String)).toBe("Error: gone");
  });

  it("a compression failure is reported to the sink", async () => {
    const s = sink();
    const { codec, pending } = manualCodec();
    const q = new OutboundQueue(s, codec);
    const result = q.sendFrame(1, Buffer.from("will fail"), true, false, true).catch((e: unknown) => e);
    const boom = new Error("zlib");
    pending[0]!.reject(boom);
    expect(await result).toBe(boom);
    expect(s.failures).toEqual([boom]);
  });

  it("an action that queues more is not run re-entrantly: what it queued follows in order", async () => {
    const s = sink();
    const q = new OutboundQueue(s, undefined);
    void q.runAfter(() => {
      s.written.push("action");
      void q.sendFrame(1, Buffer.from("queued by it"), true, false, false);
      s.written.push("action done");
    });
    await turn();
    expect(s.written).toEqual(["action", "action done", "1:queued by it"]);
  });
});

describe("InboundDecoder", () => {
  function setup(limit: number) {
    const { codec, pending } = manualCodec();
    const o = owner();
    const incoming = new IncomingQueue<Item>(limit, o);
    const events: string[] = [];
    const decoder = new InboundDecoder<Item>(codec, incoming, () => 1 << 20, {
      decodeFailed: (e) => events.push(`failed ${String(e)}`),
      decoderSettled: () => events.push("settled"),
    });
    return { decoder, incoming, pending, events };
  }
  const make = (name: string) => (payload: Buffer) => ({ data: payload, name });

  it("keeps order: an uncompressed item and the end wait behind a decode", async () => {
    const { decoder, incoming, pending } = setup(1 << 20);
    decoder.decode(Buffer.from("c1"), true, make("compressed"));
    decoder.deliver(item("plain"));
    decoder.end();
    expect(incoming.length).toBe(0);
    pending[0]!.resolve(Buffer.from("inflated"));
    await turn();
    const names: string[] = [];
    for await (const i of incoming) names.push(i.name);
    expect(names).toEqual(["compressed", "plain"]);
  });

  it("does not start a decode while incoming is full, and resumes when it drains", async () => {
    const { decoder, incoming, pending } = setup(2 * ITEM_OVERHEAD);
    for (let i = 0; i < 3; i++) incoming.push(item(`${i}`));
    expect(incoming.full).toBe(true);
    decoder.decode(Buffer.from("x"), true, make("later"));
    expect(pending).toHaveLength(0);
    expect(decoder.cost).toBe(ITEM_OVERHEAD + 1);
    await incoming.next();
    await incoming.next();
    decoder.resume();
    expect(pending).toHaveLength(1);
  });

  it("a failed decode drops what waits behind it and reports the failure once", async () => {
    const { decoder, incoming, pending, events } = setup(1 << 20);
    decoder.decode(Buffer.from("bad"), true, make("bad"));
    decoder.deliver(item("after"));
    pending[0]!.reject(new Error("corrupt"));
    await turn();
    expect(events).toEqual(["failed Error: corrupt"]);
    expect(incoming.length).toBe(0);
    expect(decoder.cost).toBe(0);
  });
});
