/**
 * Runs asynchronous jobs strictly one after another, so messages that need an async step (permessage-
 * deflate) keep their order with the messages around them. Tracks how much work is queued.
 */
const SETTLED: Promise<unknown> = Promise.resolve();

export class OrderedPipeline {
  private tail: Promise<unknown> = SETTLED;
  /** Jobs queued or running. */
  pending = 0;
  /** Payload bytes of the queued jobs (for backpressure). */
  bytes = 0;

  get idle(): boolean {
    return this.pending === 0;
  }

  /** Queues `job` after every earlier one; the result settles with the job's own outcome. */
  run<T>(bytes: number, job: () => T | Promise<T>): Promise<T> {
    this.pending++;
    this.bytes += bytes;
    const result = this.tail.then(job);
    this.tail = result.then(
      () => this.done(bytes),
      () => this.done(bytes),
    );
    return result;
  }

  private done(bytes: number): void {
    this.pending--;
    this.bytes -= bytes;
  }
}
