import { TimerLists } from "./timer-lists.js";

/** Something that writes its pending output when the scheduler runs. */
export interface Flushable {
  flushNow(): void;
}

/**
 * Writes the output of every session that produced some during one event-loop turn, once each, from
 * one `setImmediate`. Each application has its own, so applications in one process never share
 * state; one per application rather than one per session keeps a single timer handle for thousands
 * of sessions. It also holds the application's session timers (see TimerLists).
 */
export class FlushScheduler {
  private queue: Flushable[] = [];
  private readonly run = (): void => this.flushAll();
  private timerLists: TimerLists | undefined;

  /** The sessions' keepalive and closing timers (one Node timer per duration, not one per session). */
  get timers(): TimerLists {
    this.timerLists ??= new TimerLists();
    return this.timerLists;
  }

  /** Queues `item` for the end of this turn. The caller keeps its own "already scheduled" flag. */
  schedule(item: Flushable): void {
    if (this.queue.length === 0) setImmediate(this.run);
    this.queue.push(item);
  }

  /** Runs every queued flush. Exposed for tests; normally run by `setImmediate`. */
  flushAll(): void {
    const items = this.queue;
    this.queue = [];
    let i = 0;
    try {
      for (; i < items.length; i++) items[i]!.flushNow();
    } finally {
      // Should one throw (a bug), the items after it still get their turn.
      if (i + 1 < items.length) {
        if (this.queue.length === 0) setImmediate(this.run);
        for (let j = i + 1; j < items.length; j++) this.queue.push(items[j]!);
      }
    }
  }
}
