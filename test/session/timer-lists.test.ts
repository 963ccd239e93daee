import { afterEach, describe, expect, it, vi } from "vitest";
import { type TimerEntry, TimerLists } from "../../src/session/timer-lists.js";

afterEach(() => {
  vi.useRealTimers();
});

/** An entry that records when (on the fake clock) it fired, and may re-arm from its callback. */
function entry(name: string, fired: string[], again?: (e: TimerEntry) => void): TimerEntry {
  const e: TimerEntry = {
    timerDue: 0,
    timerList: undefined,
    timerPrev: undefined,
    timerNext: undefined,
    onTimer() {
      fired.push(`${name}@${Math.round(performance.now())}`);
      again?.(e);
    },
  };
  return e;
}

describe("TimerLists: one Node timer per duration, entries linked through their own fields", () => {
  it("fires each entry once, at its own due time, in order, across durations", async () => {
    vi.useFakeTimers({ now: 0 });
    const lists = new TimerLists();
    const fired: string[] = [];
    const a = entry("a", fired);
    const b = entry("b", fired);
    const c = entry("c", fired);
    lists.set(a, 100);
    await vi.advanceTimersByTimeAsync(30);
    lists.set(b, 100); // due at 130
    lists.set(c, 50); // due at 80, another list
    await vi.advanceTimersByTimeAsync(49);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(fired).toEqual(["c@80"]);
    await vi.advanceTimersByTimeAsync(19);
    expect(fired).toEqual(["c@80"]);
    await vi.advanceTimersByTimeAsync(1);
    expect(fired).toEqual(["c@80", "a@100"]);
    await vi.advanceTimersByTimeAsync(30);
    expect(fired).toEqual(["c@80", "a@100", "b@130"]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(fired).toHaveLength(3);
    expect(vi.getTimerCount()).toBe(0); // empty lists leave no Node timer behind
    for (const e of [a, b, c]) expect(e.timerList).toBeUndefined();
  });

  it("a cleared entry does not fire; a re-armed one fires at its new time only", async () => {
    vi.useFakeTimers({ now: 0 });
    const lists = new TimerLists();
    const fired: string[] = [];
    const a = entry("a", fired);
    const b = entry("b", fired);
    const c = entry("c", fired);
    lists.set(a, 100);
    lists.set(b, 100);
    lists.set(c, 100);
    lists.clear(b); // from the middle
    lists.clear(a); // the head
    await vi.advanceTimersByTimeAsync(60);
    lists.set(c, 100); // re-armed: due at 160, not 100
    await vi.advanceTimersByTimeAsync(60);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(40);
    expect(fired).toEqual(["c@160"]);
    lists.clear(c); // not armed any more: nothing happens
    expect(vi.getTimerCount()).toBe(0);
  });

  it("an entry may arm itself again from its callback (keepalive: ping, then the next ping)", async () => {
    vi.useFakeTimers({ now: 0 });
    const lists = new TimerLists();
    const fired: string[] = [];
    let left = 3;
    const a = entry("a", fired, (e) => {
      if (--left > 0) lists.set(e, 100);
    });
    lists.set(a, 100);
    await vi.advanceTimersByTimeAsync(1000);
    expect(fired).toEqual(["a@100", "a@200", "a@300"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("many entries of one duration share one Node timer", async () => {
    vi.useFakeTimers({ now: 0 });
    const lists = new TimerLists();
    const fired: string[] = [];
    const entries = Array.from({ length: 1000 }, (_, i) => entry(String(i), fired));
    for (const e of entries) lists.set(e, 30_000);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(fired).toHaveLength(1000);
    expect(fired[0]).toBe("0@30000");
    expect(fired[999]).toBe("999@30000");
  });
});
