/**
 * ConcurrencyLimiter (src/extensions/zlib-limiter.ts), which bounds the zlib operations in flight across
 * every permessage-deflate session: validation, the limit under random job durations (property tests),
 * first-come-first-served order, and failing jobs releasing their slot.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConcurrencyLimiter } from "../../src/extensions/zlib-limiter.js";
import { delay } from "./deflate-helpers.js";

describe("ConcurrencyLimiter", () => {
  it.each([0, -1, 1.5, Number.NaN])("rejects the limit %s", (limit) => {
    expect(() => new ConcurrencyLimiter(limit)).toThrow(
      new TypeError("concurrency limit must be a positive integer"),
    );
  });

  /** Runs jobs through a limiter, tracking how many run at once. */
  function tracker() {
    const state = { running: 0, max: 0, started: [] as number[] };
    const job =
      (id: number, body: () => Promise<void>): (() => Promise<number>) =>
      async () => {
        state.started.push(id);
        state.running++;
        state.max = Math.max(state.max, state.running);
        try {
          await body();
        } finally {
          state.running--;
        }
        return id;
      };
    return { state, job };
  }

  it("never runs more than `limit` jobs at once, and uses every slot (property, random durations)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.record({ duration: fc.integer({ min: 0, max: 4 }), fails: fc.boolean() }), {
          minLength: 1,
          maxLength: 30,
        }),
        async (limit, specs) => {
          const limiter = new ConcurrencyLimiter(limit);
          const { state, job } = tracker();
          const results = specs.map((spec, id) =>
            limiter
              .run(
                job(id, async () => {
                  await delay(spec.duration);
                  if (spec.fails) throw new Error(`job ${id} failed`);
                }),
              )
              .then(
                (value) => ({ ok: true, value }),
                (error: Error) => ({ ok: false, value: error.message }),
              ),
          );
          expect(limiter.waiting).toBe(Math.max(0, specs.length - limit));
          const settled = await Promise.all(results);
          expect(settled).toEqual(
            specs.map((spec, id) =>
              spec.fails ? { ok: false, value: `job ${id} failed` } : { ok: true, value: id },
            ),
          );
          expect(state.max).toBe(Math.min(limit, specs.length));
          expect(state.started).toEqual(specs.map((_, id) => id)); // first come, first served
          expect(limiter.waiting).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("keeps the limit when jobs are submitted while others run (property, timers)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(
          fc.record({ at: fc.integer({ min: 0, max: 8 }), duration: fc.integer({ min: 0, max: 6 }) }),
          {
            minLength: 1,
            maxLength: 20,
          },
        ),
        async (limit, specs) => {
          const limiter = new ConcurrencyLimiter(limit);
          const { state, job } = tracker();
          await Promise.all(
            specs.map(async (spec, id) => {
              await delay(spec.at);
              return limiter.run(job(id, () => delay(spec.duration)));
            }),
          );
          expect(state.max).toBeLessThanOrEqual(limit);
          expect(state.max).toBeGreaterThanOrEqual(1);
        },
      ),
      { numRuns: 40 },
    );
  });

  // A finishing job hands its slot straight to the first waiter, so nobody slips in between.
  it("never runs more than `limit` jobs when one is submitted the microtask after another ends", async () => {
    const limiter = new ConcurrencyLimiter(1);
    const { state, job } = tracker();
    let release!: () => void;
    const first = limiter.run(job(0, () => new Promise<void>((resolve) => (release = resolve))));
    const second = limiter.run(job(1, () => delay(5)));
    await Promise.resolve();
    release();
    // One microtask hop later: after the first job's slot is released, before the waiter takes it.
    const third = Promise.resolve()
      .then(() => undefined)
      .then(() => limiter.run(job(2, () => delay(5))));
    await Promise.all([first, second, third]);
    expect(state.max).toBe(1);
  });

  // The same, found by a property test with microtask-granular timing.
  it("never runs more than `limit` jobs at once (property, microtask timing)", async () => {
    const hops = async (n: number) => {
      for (let i = 0; i < n; i++) await Promise.resolve();
    };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.array(
          fc.record({ at: fc.integer({ min: 0, max: 12 }), duration: fc.integer({ min: 0, max: 12 }) }),
          {
            minLength: 2,
            maxLength: 12,
          },
        ),
        async (limit, specs) => {
          const limiter = new ConcurrencyLimiter(limit);
          const { state, job } = tracker();
          await Promise.all(
            specs.map(async (spec, id) => {
              await hops(spec.at);
              return limiter.run(job(id, () => hops(spec.duration)));
            }),
          );
          expect(state.max).toBeLessThanOrEqual(limit);
        },
      ),
      { numRuns: 300, seed: 42 },
    );
  });
});
