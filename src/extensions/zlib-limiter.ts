/**
 * Bounds how many zlib operations run at once in the process. zlib work runs on libuv's small thread
 * pool; thousands of connections compressing at once would otherwise queue unbounded native memory.
 */
export class ConcurrencyLimiter {
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new TypeError("concurrency limit must be a positive integer");
  }

  /** Jobs currently waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    // A waiter is handed the finishing job's slot (running stays the same), so no newcomer can slip in
    // between the release and the waiter's start.
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.running++;
    try {
      return await job();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }
}
