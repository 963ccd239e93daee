import { Buffer } from "node:buffer";
import { type ClientRequest, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import type { Duplex } from "node:stream";
import { DEFAULT_EXPECT_TIMEOUT, ExpectationError, TestHostError } from "./test-session.js";

/** Bytes of a response body `client.request` reads by default (1 MiB); more fails the request. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

// Captured when this module loads, before a test fakes the clock: a request nobody answers fails
// after real milliseconds instead of waiting on a clock nobody advances.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

export interface TestRequestOptions {
  /** Default "GET" (`client.get`, `client.head`, `client.post` set it). */
  method?: string;
  headers?: Record<string, string | string[]>;
  /** Sent with a Content-Length. */
  body?: string | Uint8Array;
  /**
   * Milliseconds to wait for the whole response, real time even under fake timers. Default
   * `DEFAULT_EXPECT_TIMEOUT` (2000). Past it the request is aborted and fails with an
   * `ExpectationError`.
   */
  timeout?: number;
  /**
   * Bytes of response body to read. Default `DEFAULT_MAX_RESPONSE_BYTES` (1 MiB). A longer body
   * aborts the request and fails it with an `ExpectationError`.
   */
  maxResponseBytes?: number;
}

/** The answer to an HTTP request of the test client, read whole. */
export interface TestResponse {
  readonly status: number;
  /** node:http's response headers: lower-case names, repeated ones joined (set-cookie an array). */
  readonly headers: IncomingHttpHeaders;
  /** The body; empty for HEAD, 204 and 304. */
  readonly body: Buffer;
  /** The body as UTF-8. */
  text(): string;
  /** The body parsed as JSON; an `ExpectationError` if it is not JSON. */
  json<T = unknown>(): T;
}

/** The HTTP half of the test client: requests to the application's HTTP routes. */
export interface TestHttpClient {
  /**
   * Sends one HTTP/1.1 request to `path` (with its query) on its own connection, through the same
   * path as a real request (in memory: node:http on the in-memory stream). Resolves with the response
   * whatever its status (404, 405, 500 included); rejects with an `ExpectationError` when no whole
   * answer came within `timeout` or the body is over `maxResponseBytes`.
   */
  request(path: string, options?: TestRequestOptions): Promise<TestResponse>;
  get(path: string, options?: Omit<TestRequestOptions, "method">): Promise<TestResponse>;
  head(path: string, options?: Omit<TestRequestOptions, "method" | "body">): Promise<TestResponse>;
  post(path: string, options?: Omit<TestRequestOptions, "method">): Promise<TestResponse>;
}

/** @internal Where requests go: a TCP address, or a new in-memory connection to the app per request. */
export type HttpTarget = { host: string; port: number } | { connect: () => Duplex };

/** @internal The host's HTTP client: sends requests and tracks those still unanswered. */
export class TestHttp implements TestHttpClient {
  /** The requests waiting for their answer ("GET /slow"), each with an abort that fails it. */
  private readonly pending = new Set<{ what: string; abort: () => void }>();
  /** The test has ended: nothing would wait for a request's answer or report it. */
  private closed = false;

  constructor(private readonly target: HttpTarget) {}

  get(path: string, options?: Omit<TestRequestOptions, "method">): Promise<TestResponse> {
    return this.request(path, { ...options, method: "GET" });
  }
  head(path: string, options?: Omit<TestRequestOptions, "method" | "body">): Promise<TestResponse> {
    return this.request(path, { ...options, method: "HEAD" });
  }
  post(path: string, options?: Omit<TestRequestOptions, "method">): Promise<TestResponse> {
    return this.request(path, { ...options, method: "POST" });
  }

  request(path: string, options: TestRequestOptions = {}): Promise<TestResponse> {
    if (typeof path !== "string" || !path.startsWith("/"))
      return Promise.reject(new TestHostError(`testApplication: a path starts with "/": ${path}`));
    const method = (options.method ?? "GET").toUpperCase();
    const timeout = options.timeout ?? DEFAULT_EXPECT_TIMEOUT;
    const limit = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (!Number.isInteger(limit) || limit < 0)
      return Promise.reject(
        new TestHostError(`testApplication: maxResponseBytes is a byte count, not ${String(limit)}`),
      );
    if (method === "CONNECT")
      return Promise.reject(
        new TestHostError("testApplication: CONNECT is not a request client.request sends"),
      );
    const what = `${method} ${path}`;
    if (this.closed)
      return Promise.reject(
        new TestHostError(`testApplication: ${what}: the test has ended; send requests from its body`),
      );
    let req: ClientRequest;
    try {
      req = httpRequest({
        method,
        path,
        headers: options.headers,
        // One connection per request, "Connection: close": no agent (node:http then calls
        // createConnection itself) or a fresh one over TCP.
        ...("connect" in this.target
          ? { host: "sockway.test", port: 80, defaultPort: 80, createConnection: this.target.connect }
          : { ...this.target, agent: false }),
      });
    } catch (error) {
      // A method or header node:http refuses to send (not a token, CR or LF in a value).
      return Promise.reject(
        new TestHostError(
          `testApplication: ${what}: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
    }

    const answer = new Promise<TestResponse>((resolve, reject) => {
      let settled = false;
      const finish = (error: Error | undefined, response?: TestResponse) => {
        if (settled) return;
        settled = true;
        realClearTimeout(timer);
        this.pending.delete(entry);
        if (error === undefined) resolve(response as TestResponse);
        else {
          reject(error);
          req.destroy();
        }
      };
      const abort = () =>
        finish(new TestHostError(`${what}: the test ended before the answer came; the request was aborted`));
      const entry = { what, abort };
      this.pending.add(entry);
      const timer = realSetTimeout(
        () => finish(new ExpectationError(`${what}: expected an answer, got none within ${timeout} ms`)),
        timeout,
      );
      const tooLong = (size: string) =>
        finish(
          new ExpectationError(
            `${what}: the response body is over maxResponseBytes (${limit} bytes): ${size} (raise \`maxResponseBytes\` to read it)`,
          ),
        );

      req.on("error", (error) =>
        finish(new ExpectationError(`${what}: the request failed: ${error.message}`)),
      );
      req.on("upgrade", (_res, socket: Duplex) => {
        // node:http hands the socket over with the 101: it is ours to close.
        socket.destroy();
        finish(
          new TestHostError(`${what}: the server switched protocols; open WebSockets with client.webSocket`),
        );
      });
      req.on("response", (res) => {
        // After HEAD, and in a 204 or 304, Content-Length is not the length of a body: none follows.
        const status = res.statusCode ?? 0;
        const bodyless = method === "HEAD" || status === 204 || status === 304;
        const declared = Number(res.headers["content-length"]);
        if (!bodyless && declared > limit) return tooLong(`Content-Length ${declared}`);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) return tooLong(`${size} bytes or more`);
          chunks.push(chunk);
        });
        // node:http fails a response whose connection closed before its last byte with "aborted".
        res.on("error", (error) =>
          finish(
            new ExpectationError(
              res.complete
                ? `${what}: the response failed: ${error.message}`
                : `${what}: the server cut the response short`,
            ),
          ),
        );
        res.on("end", () =>
          finish(undefined, testResponse(what, status, res.headers, Buffer.concat(chunks))),
        );
      });
      req.end(options.body);
    });
    // Left unawaited, the rejection at the end of the test is reported by the host, not as unhandled.
    answer.catch(() => {});
    return answer;
  }

  /** The test has ended: refuses later requests, aborts those still waiting and returns them ("GET /slow"). */
  close(): string[] {
    this.closed = true;
    const left = [...this.pending];
    for (const { abort } of left) abort();
    return left.map((l) => l.what);
  }
}

function testResponse(
  what: string,
  status: number,
  headers: IncomingHttpHeaders,
  body: Buffer,
): TestResponse {
  return {
    status,
    headers,
    body,
    text: () => body.toString("utf8"),
    json: <T>() => {
      const text = body.toString("utf8");
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ExpectationError(
          `${what}: expected a JSON body, got ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}...` : text)}`,
        );
      }
    },
  };
}
