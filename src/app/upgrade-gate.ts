import { Buffer } from "node:buffer";
import { IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";
import { findHeadEnd, readUpgradeHead, trimOws, type UpgradeHead } from "../protocol/index.js";
import { closingResponse } from "./status-text.js";
import { destroySocket } from "./upgrade.js";

/**
 * A WebSocket upgrade request read by sockway's own head reader (see UpgradeGate). It has what the
 * handshake needs; node:http's IncomingMessage is built from it only if `call.request` is read.
 */
export class DirectRequest {
  readonly method = "GET";
  readonly httpVersion = "1.1";
  readonly url: string;
  readonly headers: Record<string, string>;

  constructor(
    head: UpgradeHead,
    /** The head as latin1 text, for rawHeaders (and kept by a released call instead of `headers`). */
    readonly text: string,
    readonly socket: Socket,
  ) {
    this.url = head.url;
    this.headers = head.headers;
  }

  /** The equivalent node:http request: method, url, version, headers and rawHeaders; ended, no body. */
  toIncomingMessage(): IncomingMessage {
    const req = new IncomingMessage(this.socket);
    req.method = this.method;
    req.url = this.url;
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
    req.httpVersion = this.httpVersion;
    req.headers = this.headers;
    const raw: string[] = [];
    for (const line of this.text.split("\r\n").slice(1)) {
      const colon = line.indexOf(":");
      raw.push(line.slice(0, colon), trimOws(line.slice(colon + 1)));
    }
    req.rawHeaders = raw;
    (req as { upgrade?: boolean }).upgrade = true;
    req.complete = true;
    req.push(null);
    return req;
  }
}

type NodeConnectionListener = (this: Server, socket: Socket) => void;

/**
 * The bytes of a head that arrives over several reads, in one buffer that doubles when full: a client
 * trickling a byte per read costs O(n) copying and at most about twice the head in memory, not one
 * Buffer object per read.
 */
export class HeadBytes {
  private bytes: Buffer;
  length: number;

  constructor(first: Buffer) {
    this.bytes = Buffer.allocUnsafe(Math.max(256, first.length * 2));
    first.copy(this.bytes);
    this.length = first.length;
  }

  /** Bytes held, including unused room. */
  get capacity(): number {
    return this.bytes.length;
  }

  /** Appends `piece`; returns everything so far (a view, valid until the next append). */
  append(piece: Buffer): Buffer {
    const needed = this.length + piece.length;
    if (needed > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.bytes.length * 2));
      this.bytes.copy(grown, 0, 0, this.length);
      this.bytes = grown;
    }
    piece.copy(this.bytes, this.length);
    this.length = needed;
    return this.bytes.subarray(0, needed);
  }
}

/**
 * Sits in front of node:http on a server that sockway runs (`listen` without TLS): reads the request
 * head of each connection (gathered over several reads if need be, up to `maxHeadBytes`; past that
 * node:http answers 431) and, when it is a plain WebSocket upgrade request (see readUpgradeHead),
 * answers it without node:http's parser and request objects. Everything else (other requests, anything
 * unusual) is handed to node:http with its bytes put back, exactly as if it had arrived there first;
 * a head with a bare LF is handed over as soon as the LF arrives (see findHeadEnd). A connection whose
 * head is not complete `timeout` ms after it was accepted is answered 408 and closed (checked every
 * half timeout, at most once a second: cut off between 1x and 1.5x the timeout); one whose client
 * half-closes before a whole head is answered and closed at once (see halfClosed).
 */
export class UpgradeGate {
  /** Connections whose head is not complete yet, with the time they were accepted (oldest first). */
  private readonly waiting = new Map<Socket, number>();
  /** What the connections that sent part of a head have sent so far. */
  private readonly partial = new Map<Socket, HeadBytes>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Shared by every waiting socket (`this` is the socket). */
  private readonly firstData: (this: Socket, chunk: Buffer) => void;
  /** Forgets a connection that closed with part of a head sent. */
  private readonly forget: (this: Socket) => void;
  /** Answers a connection whose client half-closed (FIN) before a whole head. */
  private readonly ended: (this: Socket) => void;

  constructor(
    private readonly server: Server,
    private readonly nodeListener: NodeConnectionListener,
    private readonly maxHeadBytes: number,
    private readonly timeout: number,
    private readonly onUpgrade: (req: DirectRequest, socket: Socket, rest: Buffer) => void,
  ) {
    const gate = this;
    this.firstData = function (this: Socket, chunk: Buffer) {
      gate.receive(this, chunk);
    };
    this.forget = function (this: Socket) {
      gate.partial.delete(this);
      gate.waiting.delete(this);
    };
    this.ended = function (this: Socket) {
      gate.halfClosed(this);
    };
  }

  /**
   * Puts a gate in front of an http.Server's connection handling. Returns undefined (and leaves the
   * server as it is) if the server does not have node:http's one 'connection' listener.
   */
  static install(
    server: Server,
    maxHeadBytes: number,
    timeout: number,
    onUpgrade: (req: DirectRequest, socket: Socket, rest: Buffer) => void,
  ): UpgradeGate | undefined {
    const listeners = server.listeners("connection");
    if (listeners.length !== 1) return undefined;
    const gate = new UpgradeGate(
      server,
      listeners[0] as NodeConnectionListener,
      maxHeadBytes,
      timeout,
      onUpgrade,
    );
    server.removeAllListeners("connection");
    server.on("connection", gate.accept);
    return gate;
  }

  private readonly accept = (socket: Socket): void => {
    this.waiting.set(socket, Date.now());
    socket.on("data", this.firstData);
    socket.on("end", this.ended);
    socket.on("error", destroySocket);
    // Checked every half timeout (at most once a second): cut off between 1x and 1.5x the timeout.
    this.sweeper ??= setInterval(this.sweep, Math.min(1000, Math.max(10, this.timeout / 2))).unref();
  };

  private receive(socket: Socket, piece: Buffer): void {
    let chunk = piece;
    let end: number;
    const before = this.partial.get(socket);
    if (before) {
      const seen = before.length;
      chunk = before.append(piece);
      end = findHeadEnd(chunk, seen);
      if (end >= 0 || chunk.length > this.maxHeadBytes) this.partial.delete(socket);
    } else {
      end = findHeadEnd(chunk);
      if (end < 0 && chunk.length <= this.maxHeadBytes) {
        this.partial.set(socket, new HeadBytes(piece));
        socket.once("close", this.forget);
      }
    }
    if (end < 0 && chunk.length <= this.maxHeadBytes) return; // more to come (or the sweep's 408)
    this.waiting.delete(socket);
    socket.removeListener("data", this.firstData);
    socket.removeListener("end", this.ended);
    socket.removeListener("error", destroySocket);
    const text = end > 0 && end - 4 <= this.maxHeadBytes ? chunk.toString("latin1", 0, end - 4) : undefined;
    const head = text === undefined ? undefined : readUpgradeHead(text, chunk);
    if (!head || text === undefined) return this.handOver(socket, chunk);
    // As node:http does before its 'upgrade' event: not flowing until the session listens for data.
    (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    this.onUpgrade(new DirectRequest(head, text, socket), socket, chunk.subarray(end));
  }

  /** Gives the connection to node:http as if nothing had read from it. */
  private handOver(socket: Socket, chunk: Buffer): void {
    socket.pause();
    socket.unshift(chunk);
    this.nodeListener.call(this.server, socket);
    socket.resume();
  }

  /**
   * The client sent FIN before a whole head: no request can follow, so the connection is answered now
   * rather than held (half-open: the server allows it) until the 408. As node:http answers: nothing
   * sent, it just ends its side; part of a head is a parse error (HPE_INVALID_EOF_STATE), which the
   * application's 'clientError' listener answers 400. Both sides ended, node:net closes the socket.
   */
  private halfClosed(socket: Socket): void {
    const sentPart = this.partial.delete(socket);
    this.waiting.delete(socket);
    socket.removeListener("data", this.firstData);
    socket.removeListener("end", this.ended);
    if (sentPart) socket.end(closingResponse(400));
    else socket.end();
  }

  private readonly sweep = (): void => {
    const now = Date.now();
    for (const [socket, since] of this.waiting) {
      if (!socket.destroyed && now - since < this.timeout) break; // the rest came later
      this.waiting.delete(socket);
      this.partial.delete(socket);
      if (socket.destroyed) continue;
      socket.removeListener("data", this.firstData);
      socket.removeListener("end", this.ended);
      socket.end(closingResponse(408));
      setTimeout(() => socket.destroy(), 1000).unref();
    }
    if (this.waiting.size === 0) this.stopSweeping();
  };

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Destroys the connections whose head is not complete yet (for `app.stop`). */
  close(): void {
    for (const socket of this.waiting.keys()) socket.destroy();
    this.waiting.clear();
    this.partial.clear();
    this.stopSweeping();
  }
}
