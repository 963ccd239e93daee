/**
 * `reconnecting(url, options)`: the backoff's exact delays under an injected random source, clock and
 * sleep (no real waiting), which failures are retried and which are final, Retry-After, stopping by
 * signal or by breaking out, and reconnecting to a real server that drops the connection.
 */
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  AppError,
  type ApplicationCall,
  type ClientSession,
  CloseReason,
  type DefaultWebSocketSession,
  HandshakeError,
  isRetryable,
  type RetryInfo,
  reconnecting,
  retryAfterMs,
} from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup, onCleanup } from "../helpers/cleanup.js";
import { within } from "../helpers/wait.js";

afterEach(cleanup);

type ServerSession = DefaultWebSocketSession<ApplicationCall, unknown>;

const textOf = (m: { type: string; text?: string }): string => (m.type === "text" ? (m.text ?? "") : "");

/** A port on 127.0.0.1 that was free a moment ago and has nothing listening now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A sleep hook that records what it is asked and returns at once; and onRetry's record. */
function recorder() {
  const sleeps: number[] = [];
  const retries: RetryInfo[] = [];
  return {
    sleeps,
    retries,
    sleep: async (ms: number) => {
      sleeps.push(ms);
    },
    onRetry: (info: RetryInfo) => {
      retries.push(info);
    },
  };
}

/** Random numbers from a list, in order (the test fails if more are drawn). */
function randoms(values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error("more random numbers drawn than expected");
    return values[i++]!;
  };
}

/** Runs the iterator to its end and returns what it threw (undefined if it ended) and the sessions it yielded. */
async function drain(
  iterator: AsyncIterable<ClientSession>,
  body?: (s: ClientSession, i: number) => unknown,
) {
  let count = 0;
  try {
    for await (const session of iterator) {
      await body?.(session, count);
      count++;
    }
  } catch (error) {
    return { error, count };
  }
  return { error: undefined, count };
}

/** An echo app; `gate(n)` is called for the n-th upgrade (0-based) and may refuse it: [status, body, headers]. */
async function echoApp(
  gate: (n: number) => [number, string, Record<string, string>?] | undefined = () => undefined,
) {
  const sessions: ServerSession[] = [];
  let upgrades = 0;
  const started = await startApp(
    (r) => {
      r.webSocket(
        "/echo",
        {
          beforeUpgrade: (call) => {
            const refusal = gate(upgrades++);
            return refusal ? call.reject(refusal[0], refusal[1], refusal[2] ?? {}) : undefined;
          },
        },
        async (s) => {
          sessions.push(s);
          for await (const m of s.incoming) await s.send(m);
        },
      );
    },
    { pingPeriod: 0 },
  );
  return { ...started, url: `${started.wsUrl}/echo`, sessions, upgrades: () => upgrades };
}

describe("reconnecting: the backoff", () => {
  it("waits exactly base × (1 − random) with full jitter, the base doubling up to maxDelay; throws the maxAttempts-th failure", async () => {
    const port = await closedPort();
    const r = recorder();
    const { error, count } = await within(
      drain(
        reconnecting(`ws://127.0.0.1:${port}/`, {
          initialDelay: 100,
          maxDelay: 1000,
          maxAttempts: 6,
          random: randoms([0.5, 0.25, 0, 0.9, 0.5]),
          sleep: r.sleep,
          onRetry: r.onRetry,
        }),
      ),
      5000,
      "six refused connections",
    );
    expect(count).toBe(0);
    expect(error).toBeInstanceOf(HandshakeError);
    expect([(error as HandshakeError).code, (error as HandshakeError).status]).toEqual(["CONNECT_FAILED", 0]);
    // Bases 100, 200, 400, 800, 1000 (1600 capped).
    expect(r.sleeps).toEqual([50, 150, 400, 80, 500]);
    expect(r.retries.map((x) => [x.attempt, x.delay, x.error?.code])).toEqual([
      [1, 50, "CONNECT_FAILED"],
      [2, 150, "CONNECT_FAILED"],
      [3, 400, "CONNECT_FAILED"],
      [4, 80, "CONNECT_FAILED"],
      [5, 500, "CONNECT_FAILED"],
    ]);
  });

  it("caps at maxDelay without jitter; a fraction of jitter takes at most that share off", async () => {
    const port = await closedPort();
    const none = recorder();
    await drain(
      reconnecting(`ws://127.0.0.1:${port}/`, {
        initialDelay: 1000,
        factor: 3,
        maxDelay: 5000,
        jitter: "none",
        maxAttempts: 5,
        random: () => 0.7,
        sleep: none.sleep,
      }),
    );
    expect(none.sleeps).toEqual([1000, 3000, 5000, 5000]);
    const fraction = recorder();
    await drain(
      reconnecting(`ws://127.0.0.1:${port}/`, {
        initialDelay: 1000,
        maxDelay: 3000,
        jitter: 0.2,
        maxAttempts: 4,
        random: randoms([0.5, 1, 0]),
        sleep: fraction.sleep,
      }),
    );
    expect(fraction.sleeps).toEqual([900, 1600, 3000]);
  });

  it("resets to the first step after a session that stayed up stableAfter ms (injected clock)", async () => {
    const { url, sessions } = await echoApp();
    const r = recorder();
    let t = 0;
    const upFor = [100, 100, 5000, 100];
    const { count } = await within(
      drain(
        reconnecting(url, {
          initialDelay: 100,
          jitter: "none",
          stableAfter: 5000,
          now: () => t,
          sleep: r.sleep,
          onRetry: r.onRetry,
        }),
        async (session, i) => {
          await session.send(`hello ${i}`);
          for await (const m of session.incoming) {
            expect(textOf(m)).toBe(`hello ${i}`);
            break;
          }
          t += upFor[i]!;
          if (i === 3) throw new Error("stop");
        },
      ),
      8000,
      "four sessions",
    );
    expect(count).toBe(3);
    expect(sessions).toHaveLength(4);
    // 100 and 200 after short sessions; the stable third resets: 100, not 400.
    expect(r.sleeps).toEqual([100, 200, 100]);
    expect(r.retries.map((x) => [x.attempt, x.error, x.closeReason?.code])).toEqual([
      [1, undefined, 1000],
      [2, undefined, 1000],
      [1, undefined, 1000],
    ]);
  });
});

describe("reconnecting: which failures are retried", () => {
  it.each([401, 403, 404, 426])(
    "%i is final: the iterator throws its HandshakeError, no retry",
    async (status) => {
      const { url, upgrades } = await echoApp(() => [status, "no"]);
      const r = recorder();
      const { error, count } = await within(
        drain(reconnecting(url, { sleep: r.sleep, onRetry: r.onRetry })),
        5000,
        "the refusal",
      );
      expect(count).toBe(0);
      expect(error).toBeInstanceOf(HandshakeError);
      expect([(error as HandshakeError).code, (error as HandshakeError).status]).toEqual([
        "UNEXPECTED_STATUS",
        status,
      ]);
      expect(r.sleeps).toEqual([]);
      expect(upgrades()).toBe(1);
    },
  );

  it("5xx is retried (with the backoff) until the server accepts; a successful handshake resets maxAttempts' count", async () => {
    const { url, sessions } = await echoApp((n) =>
      n < 2 || n === 3 ? [n === 0 ? 500 : 502, "later"] : undefined,
    );
    const r = recorder();
    const seen: string[] = [];
    await within(
      drain(
        reconnecting(url, {
          initialDelay: 10,
          jitter: "none",
          maxAttempts: 3,
          sleep: r.sleep,
          onRetry: r.onRetry,
        }),
        async (session, i) => {
          await session.send(`n${i}`);
          for await (const m of session.incoming) {
            seen.push(textOf(m));
            break;
          }
          if (i === 1) throw new Error("stop");
        },
      ),
      8000,
      "two sessions through refusals",
    );
    expect(seen).toEqual(["n0", "n1"]);
    expect(sessions).toHaveLength(2);
    expect(r.retries.map((x) => [x.attempt, x.delay, x.error?.status])).toEqual([
      [1, 10, 500],
      [2, 20, 502],
      [3, 40, undefined],
      [4, 80, 502],
    ]);
  });

  it("classifies: no response, 5xx, 408 and 429 retried; other statuses, bad URLs and non-handshake errors final", () => {
    const e = (code: ConstructorParameters<typeof HandshakeError>[0], status: number) =>
      new HandshakeError(code, status, "x");
    expect(isRetryable(e("CONNECT_FAILED", 0))).toBe(true);
    expect(isRetryable(e("HANDSHAKE_TIMEOUT", 0))).toBe(true);
    for (const s of [500, 502, 503, 599, 408, 429]) expect(isRetryable(e("UNEXPECTED_STATUS", s))).toBe(true);
    for (const s of [400, 401, 403, 404, 426, 301, 200, 600])
      expect(isRetryable(e("UNEXPECTED_STATUS", s))).toBe(false);
    expect(isRetryable(e("INVALID_URL", 0))).toBe(false);
    expect(isRetryable(e("ABORTED", 0))).toBe(false);
    expect(isRetryable(e("TOO_MANY_REDIRECTS", 302))).toBe(false);
    expect(isRetryable(e("ACCEPT_MISMATCH", 101))).toBe(false);
    expect(isRetryable(new Error("bug"))).toBe(false);
  });

  it("a bad URL or invalid connect option is thrown at once; invalid backoff options throw AppError at the call", async () => {
    const bad = await drain(reconnecting("ftp://x/", { sleep: async () => {} }));
    expect((bad.error as HandshakeError).code).toBe("INVALID_URL");
    const badConnect = await drain(reconnecting("ws://127.0.0.1:1/", { handshakeTimeout: -1 }));
    expect(badConnect.error).toBeInstanceOf(AppError);
    for (const o of [
      { initialDelay: -1 },
      { factor: 0.5 },
      { jitter: 2 },
      { maxAttempts: 0 },
      { maxDelay: Number.NaN },
    ])
      expect(() => reconnecting("ws://x/", o)).toThrow(AppError);
  });
});

describe("reconnecting: Retry-After", () => {
  it("503 with Retry-After: 7 waits 7 s instead of the shorter backoff; 429's 120 s is capped at maxDelay", async () => {
    const { url } = await echoApp((n) =>
      n === 0
        ? [503, "busy", { "Retry-After": "7" }]
        : n === 1
          ? [429, "slow down", { "Retry-After": "120" }]
          : undefined,
    );
    const r = recorder();
    await within(
      drain(
        reconnecting(url, { initialDelay: 100, jitter: "none", maxDelay: 30_000, sleep: r.sleep }),
        () => {
          throw new Error("stop");
        },
      ),
      5000,
      "two refusals and a session",
    );
    expect(r.sleeps).toEqual([7000, 30_000]);
  });

  it("a longer backoff wins over a short Retry-After; an HTTP-date counts from the injected clock; retryAfter: false ignores it", async () => {
    const when = Date.UTC(2030, 0, 1, 0, 0, 0);
    const { url } = await echoApp((n) =>
      n === 0
        ? [503, "", { "Retry-After": "1" }]
        : n === 1
          ? [503, "", { "Retry-After": new Date(when + 9000).toUTCString() }]
          : n === 2
            ? [429, "", { "Retry-After": "soon" }]
            : undefined,
    );
    const r = recorder();
    await within(
      drain(
        reconnecting(url, { initialDelay: 2000, jitter: "none", now: () => when, sleep: r.sleep }),
        () => {
          throw new Error("stop");
        },
      ),
      5000,
      "refusals",
    );
    expect(r.sleeps).toEqual([2000, 9000, 8000]);
    expect(retryAfterMs(new HandshakeError("UNEXPECTED_STATUS", 500, "", { "retry-after": "3" }), 0)).toBe(
      undefined,
    );

    const off = await echoApp((n) => (n === 0 ? [503, "", { "Retry-After": "7" }] : undefined));
    const r2 = recorder();
    await drain(
      reconnecting(off.url, { initialDelay: 100, jitter: "none", retryAfter: false, sleep: r2.sleep }),
      () => {
        throw new Error("stop");
      },
    );
    expect(r2.sleeps).toEqual([100]);
  });
});

describe("reconnecting: stopping", () => {
  it("abort during a backoff cancels the (real) timer and ends the iterator without an error", async () => {
    const port = await closedPort();
    const controller = new AbortController();
    const retries: RetryInfo[] = [];
    const started = Date.now();
    const { error, count } = await within(
      drain(
        reconnecting(`ws://127.0.0.1:${port}/`, {
          initialDelay: 60_000,
          jitter: "none",
          signal: controller.signal,
          onRetry: (info) => {
            retries.push(info);
            setImmediate(() => controller.abort());
          },
        }),
      ),
      5000,
      "the iterator to end",
    );
    expect([error, count, retries.length]).toEqual([undefined, 0, 1]);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("a sleep hook that rejects on abort ends the iterator cleanly too; one that rejects otherwise throws", async () => {
    const port = await closedPort();
    const controller = new AbortController();
    const ended = await drain(
      reconnecting(`ws://127.0.0.1:${port}/`, {
        signal: controller.signal,
        sleep: async () => {
          controller.abort();
          throw new Error("aborted");
        },
      }),
    );
    expect(ended.error).toBeUndefined();
    const boom = new Error("sleep broke");
    const thrown = await drain(
      reconnecting(`ws://127.0.0.1:${port}/`, {
        sleep: async () => {
          throw boom;
        },
      }),
    );
    expect(thrown.error).toBe(boom);
  });

  it("abort during a session closes it with 1001 and ends the iterator after the body", async () => {
    const { url, sessions } = await echoApp();
    const controller = new AbortController();
    const r = recorder();
    const { error, count } = await within(
      drain(reconnecting(url, { signal: controller.signal, sleep: r.sleep }), async (session) => {
        controller.abort();
        for await (const _ of session.incoming); // ends with the closing handshake
        expect((await session.closeReason).code).toBe(1001);
      }),
      5000,
      "the session to close",
    );
    expect([error, count, r.sleeps]).toEqual([undefined, 1, []]);
    expect(await within(sessions[0]!.closeReason, 3000, "server close")).toEqual(new CloseReason(1001, ""));
    expect(sessions).toHaveLength(1);
  });

  it("abort during a handshake (a server that never answers) ends the iterator without an error", async () => {
    const server = createServer();
    const sockets: Array<{ destroy(): void }> = [];
    server.on("connection", (socket) => sockets.push(socket));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onCleanup(() => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    server.on("connection", () => setImmediate(() => controller.abort()));
    const controller = new AbortController();
    const port = (server.address() as { port: number }).port;
    const r = recorder();
    const { error, count } = await within(
      drain(reconnecting(`ws://127.0.0.1:${port}/`, { signal: controller.signal, sleep: r.sleep })),
      5000,
      "the iterator to end",
    );
    expect([error, count, r.sleeps]).toEqual([undefined, 0, []]);
  });

  it("a throw from onRetry ends the iterator with that error", async () => {
    const port = await closedPort();
    const boom = new Error("enough");
    const { error } = await drain(
      reconnecting(`ws://127.0.0.1:${port}/`, {
        sleep: async () => {},
        onRetry: () => {
          throw boom;
        },
      }),
    );
    expect(error).toBe(boom);
  });

  it("an aborted signal before the start yields nothing", async () => {
    const { url, upgrades } = await echoApp();
    const { error, count } = await drain(reconnecting(url, { signal: AbortSignal.abort() }));
    expect([error, count, upgrades()]).toEqual([undefined, 0, 0]);
  });

  it("breaking out of the loop closes the current session (1000) and stops", async () => {
    const { url, sessions } = await echoApp();
    const r = recorder();
    let kept: ClientSession | undefined;
    for await (const session of reconnecting(url, { sleep: r.sleep })) {
      kept = session;
      break;
    }
    expect(kept!.state).toBe("closed");
    expect(await within(sessions[0]!.closeReason, 3000, "server close")).toEqual(new CloseReason(1000, ""));
    expect(sessions).toHaveLength(1);
    expect(r.sleeps).toEqual([]);
  });
});

describe("reconnecting against a server that drops the connection", () => {
  it("the session ends with 1006, the iterator reconnects after the backoff and the new session echoes", async () => {
    const { url, sessions } = await echoApp();
    const r = recorder();
    const echoed: string[] = [];
    for await (const session of reconnecting(url, {
      initialDelay: 20,
      jitter: "none",
      sleep: r.sleep,
      onRetry: r.onRetry,
    })) {
      onCleanup(() => session.terminate());
      if (sessions.length === 1 && echoed.length === 0 && r.retries.length === 0) {
        await session.send("first");
        for await (const m of session.incoming) {
          echoed.push(textOf(m));
          sessions[0]!.terminate(); // the server drops the connection without a Close frame
        }
        expect((await session.closeReason).code).toBe(1006);
        continue;
      }
      await session.send("second");
      for await (const m of session.incoming) {
        echoed.push(textOf(m));
        break;
      }
      break;
    }
    expect(echoed).toEqual(["first", "second"]);
    expect(sessions).toHaveLength(2);
    expect(r.retries.map((x) => [x.attempt, x.delay, x.closeReason?.code])).toEqual([[1, 20, 1006]]);
  });
});
