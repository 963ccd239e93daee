/**
 * Something with one timer at a time, linked into a `TimerLists` list by its own fields (no object per
 * timer): a session's keepalive and closing timers.
 */
export interface TimerEntry {
  /** @internal When it is due (on the `performance.now()` clock); meaningful while linked. */
  timerDue: number;
  /** @internal The list it is in, undefined when no timer is armed. */
  timerList: TimerList | undefined;
  /** @internal Neighbours in that list. */
  timerPrev: TimerEntry | undefined;
  timerNext: TimerEntry | undefined;
  /** @internal Called once when the timer is due (it is unlinked first). */
  onTimer(): void;
}

/** The entries armed with one duration, in the order they are due (each one is armed `ms` from now). */
export class TimerList {
  head: TimerEntry | undefined;
  tail: TimerEntry | undefined;
  /** The one Node timer of the list, for the head's due time (unref'd: it never keeps a process alive). */
  handle: NodeJS.Timeout | undefined;
  handleDue = 0;

  constructor(
    readonly ms: number,
    private readonly owner: TimerLists,
  ) {}

  /** @internal The Node timer fired: runs what is due, then waits for the next head. */
  readonly fire = (): void => {
    this.handle = undefined;
    // Node runs a timer when its loop clock says so, which can be a fraction of a millisecond before
    // performance.now() reaches the due time: what is due within 1 ms runs now.
    const now = clock() + 1;
    for (let e = this.head; e !== undefined && e.timerDue <= now; e = this.head) {
      this.owner.clear(e);
      e.onTimer();
    }
    this.arm();
  };

  /** Makes sure the Node timer fires by the head's due time (or is gone when the list is empty). */
  arm(): void {
    const head = this.head;
    if (head === undefined) {
      if (this.handle !== undefined) clearTimeout(this.handle);
      this.handle = undefined;
      this.owner.dropIfEmpty(this);
      return;
    }
    // A Node timer already set for that time or earlier stays (firing early only re-arms).
    if (this.handle !== undefined && this.handleDue <= head.timerDue) return;
    if (this.handle !== undefined) clearTimeout(this.handle);
    this.handleDue = head.timerDue;
    this.handle = setTimeout(this.fire, Math.max(1, Math.ceil(head.timerDue - clock())));
    this.handle.unref?.();
  }
}

/**
 * Timers of many entries (sessions) with few distinct durations, as Node's own timers do it but
 * without a `Timeout` object per timer: one list per duration, linked through the entries' fields,
 * and one Node timer per list, for its first entry. Entries of a list are due in the order they were
 * armed (the clock only goes forward), so arming appends and firing takes from the front. One per
 * application (held by its FlushScheduler), so applications share nothing, not even under a test's
 * fake clock.
 */
export class TimerLists {
  private readonly lists = new Map<number, TimerList>();

  /** Arms `entry`'s timer `ms` from now (ms > 0), replacing the one it had. */
  set(entry: TimerEntry, ms: number): void {
    if (entry.timerList !== undefined) this.clear(entry);
    let list = this.lists.get(ms);
    if (list === undefined) {
      list = new TimerList(ms, this);
      this.lists.set(ms, list);
    }
    entry.timerDue = clock() + ms;
    entry.timerList = list;
    entry.timerPrev = list.tail;
    entry.timerNext = undefined;
    if (list.tail === undefined) list.head = entry;
    else list.tail.timerNext = entry;
    list.tail = entry;
    list.arm();
  }

  /** Disarms `entry`'s timer, if any. The list's Node timer is left to fire (it re-arms or stops then). */
  clear(entry: TimerEntry): void {
    const list = entry.timerList;
    if (list === undefined) return;
    const { timerPrev: prev, timerNext: next } = entry;
    if (prev === undefined) list.head = next;
    else prev.timerNext = next;
    if (next === undefined) list.tail = prev;
    else next.timerPrev = prev;
    entry.timerList = undefined;
    entry.timerPrev = undefined;
    entry.timerNext = undefined;
    if (list.head === undefined) list.arm(); // nothing left: the Node timer goes now
  }

  /** @internal */
  dropIfEmpty(list: TimerList): void {
    if (list.head === undefined && this.lists.get(list.ms) === list) this.lists.delete(list.ms);
  }
}

/** Milliseconds, monotonic; read through the global each time so that a test's fake clock applies. */
function clock(): number {
  return globalThis.performance.now();
}
