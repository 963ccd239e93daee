import { Buffer } from "node:buffer";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import { extname } from "node:path";
import { isSafeHeaderValue, isToken, readUpgradeHead } from "../protocol/index.js";
import { contentTypeFor } from "./content-types.js";
import { AppError } from "./errors.js";
import { DirectRequest } from "./upgrade-gate.js";

/** Request information shared by HTTP calls, upgrade calls and `session.call`. */
export class ApplicationCall<P = Record<string, string | undefined>> {
  /** The URL path, without the query. */
  readonly path: string;
  private readonly rawQuery: string;
  private parsedQuery: URLSearchParams | undefined;
  private req: IncomingMessage | DirectRequest | Http2ServerRequest | undefined;
  /**
   * The headers once read through `headers` (the request's own object), and what is kept of them when
   * the request is released: that object, or, if nobody has seen it, the head text of a request read
   * by the upgrade gate, parsed again on first read (one string per idle session instead of an object
   * and a string per header).
   */
  private kept: IncomingHttpHeaders | string | undefined;
  private keptSocket: Socket | undefined;
  private keptVersion = "1.1";

  constructor(
    request: IncomingMessage | DirectRequest | Http2ServerRequest,
    /** Path parameters, typed from the route pattern. */
    readonly parameters: P,
    path: string,
    rawQuery: string,
  ) {
    this.path = path;
    this.rawQuery = rawQuery;
    this.req = request;
  }

  /**
   * node:http's request. In a WebSocket session it is released once the handshake is done, unless the
   * plugin's `keepRequest` is set: reading it then throws `AppError` `REQUEST_RELEASED`. Read what you
   * need in `beforeUpgrade` (and return it as the session's data), or use `headers` and the others.
   */
  get request(): IncomingMessage | Http2ServerRequest {
    if (!this.req)
      throw new AppError(
        "REQUEST_RELEASED",
        "call.request is released after the WebSocket handshake; use call.headers, read it in beforeUpgrade, or install WebSockets with keepRequest: true",
      );
    // A request read by sockway's own upgrade reader becomes an IncomingMessage only when asked for.
    if (this.req instanceof DirectRequest) this.req = this.req.toIncomingMessage();
    return this.req;
  }

  /** @internal Drops the IncomingMessage (raw headers, stream state), keeping the headers (see `kept`). */
  releaseRequest(): void {
    const req = this.req;
    if (!req) return;
    this.kept ??= req instanceof DirectRequest ? req.text : req.headers;
    this.keptSocket = req.socket as Socket;
    this.keptVersion = req.httpVersion;
    this.req = undefined;
  }

  /** The query string's parameters (parsed on first use). */
  get query(): URLSearchParams {
    this.parsedQuery ??= new URLSearchParams(this.rawQuery);
    return this.parsedQuery;
  }

  get headers(): IncomingHttpHeaders {
    const req = this.req;
    if (req) {
      // Whoever reads it may keep or change it: this object is then the one kept after the release.
      this.kept = req.headers;
      return req.headers;
    }
    const kept = this.kept;
    if (typeof kept !== "string") return kept!;
    // The gate accepted this head, so it reads the same again.
    const headers = readUpgradeHead(kept)?.headers ?? {};
    this.kept = headers;
    return headers;
  }

  /**
   * The HTTP version of the request: "1.1" (or "1.0"), or "2.0" for a WebSocket opened by an extended
   * CONNECT on an HTTP/2 connection (RFC 8441) and for HTTP/2 requests.
   */
  get httpVersion(): string {
    return this.req ? this.req.httpVersion : this.keptVersion;
  }

  /** The request method (always GET for a WebSocket handshake over HTTP/1.1, CONNECT over HTTP/2). */
  get method(): string {
    return this.req ? (this.req.method ?? "GET") : this.keptVersion === "2.0" ? "CONNECT" : "GET";
  }

  /**
   * The peer's IP address, asked of the socket. Once the connection has closed the socket can no longer
   * tell, so it is undefined then unless it was read while the connection was open (Node keeps it once
   * read). Read it at the start of a handler if you need it at the end. Reading it for every connection
   * up front would cost each handshake a system call (measured: 6-10% fewer handshakes per second).
   */
  get remoteAddress(): string | undefined {
    return (this.req ? this.req.socket : this.keptSocket)?.remoteAddress;
  }
}

/** An answer to an upgrade request that refuses it (from `call.reject`). */
export class Rejection {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly headers: Readonly<Record<string, string>>,
  ) {}
}

/** The call seen by a WebSocket route's `beforeUpgrade` hook, before the handshake completes. */
export class UpgradeCall<P = Record<string, string | undefined>> extends ApplicationCall<P> {
  /** The subprotocol that will be echoed, if the route has one. */
  protocol: string | undefined;

  /**
   * Refuses the upgrade with an HTTP status (300-599: 401, 403, 429, ...) and a body. Return it from the
   * hook. A status outside that range or a header that could not be written as it is (a name that is not
   * a token, a value with CR, LF or NUL) throws an `AppError` `INVALID_REJECTION`.
   */
  reject(status: number, body = "", headers: Readonly<Record<string, string>> = {}): Rejection {
    if (!Number.isInteger(status) || status < 300 || status > 599)
      throw new AppError("INVALID_REJECTION", `a refusal needs a status from 300 to 599, not ${status}`);
    for (const [name, value] of Object.entries(headers)) {
      if (!isToken(name) || typeof value !== "string" || !isSafeHeaderValue(value))
        throw new AppError("INVALID_REJECTION", `refusal header ${JSON.stringify(name)} cannot be sent`);
    }
    return new Rejection(status, body, headers);
  }
}

/** An HTTP call: the request plus ways to answer it. */
export class HttpCall<P = Record<string, string | undefined>> extends ApplicationCall<P> {
  constructor(
    request: IncomingMessage | Http2ServerRequest,
    /** node:http's response, or node:http2's compatibility response for an HTTP/2 request. */
    readonly response: ServerResponse | Http2ServerResponse,
    parameters: P,
    path: string,
    rawQuery: string,
  ) {
    super(request, parameters, path, rawQuery);
  }

  /** Answers with a status, an optional body and headers. */
  respond(
    status: number,
    body: string | Uint8Array = "",
    headers: Readonly<Record<string, string>> = {},
  ): void {
    const res = this.response;
    res.writeHead(status, { "Content-Length": String(Buffer.byteLength(body)), ...headers });
    if (this.method === "HEAD") res.end();
    else res.end(body);
  }

  respondText(text: string, status = 200, contentType = "text/plain; charset=utf-8"): void {
    this.respond(status, text, { "Content-Type": contentType });
  }

  respondJson(value: unknown, status = 200): void {
    this.respond(status, JSON.stringify(value), { "Content-Type": "application/json; charset=utf-8" });
  }

  /** Streams a file; 404 when it does not exist or is not a regular file. */
  async respondFile(path: string, status = 200): Promise<void> {
    let size: number;
    try {
      const info = await stat(path);
      if (!info.isFile()) throw new Error("not a file");
      size = info.size;
    } catch {
      this.respondText("Not Found", 404);
      return;
    }
    const res = this.response;
    res.writeHead(status, { "Content-Type": contentTypeFor(extname(path)), "Content-Length": String(size) });
    if (this.method === "HEAD") {
      res.end();
      return;
    }
    await new Promise<void>((resolve) => {
      const stream = createReadStream(path);
      stream.on("error", () => {
        res.destroy();
        resolve();
      });
      stream.on("end", resolve);
      stream.pipe(res);
    });
  }
}
