import type { IncomingMessage, ServerResponse } from "node:http";
import type net from "node:net";
import type { Logger } from "../logger.ts";
import type { LatencyHistogram } from "../open_metrics.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import type { Refusal } from "./admission.ts";
import type { ConnectionService, WorkerStatus } from "./connection_service.ts";
import type { Endpoint, ListenerSet } from "./listener_set.ts";
import type { ServerStats } from "./server_stats.ts";

/** What raw mode knows of one accepted connection: HTTP requests running, and whether it served one. */
interface Conn {
  active: number;
  served: boolean;
  /** When its last request finished (ms), for closing keep-alive connections that stay idle. */
  idleSince: number;
}

/**
 * During drain, a keep-alive connection idle this long is closed. Closing one
 * the moment drain starts would race a request already on its way (processed,
 * but its answer lost); a request that arrives within the grace is served with
 * `Connection: close` instead.
 */
const IDLE_GRACE_MS = 1000;

/**
 * Raw mode (S6): hosts any `node:net` server (an `http.Server` qualifies) on
 * the managed listeners. Accepted sockets are handed to it as 'connection'
 * events.
 *
 * Drain never cuts a request short. For an HTTP server: every response whose
 * head is sent after drain begins carries `Connection: close` (Node then ends
 * the connection after it), whatever the handler's shape — synchronous,
 * async or streaming;
 * keep-alive connections that stay idle for a grace period are closed; a
 * connection that has not sent its first request yet is left to send it (it
 * was accepted, so its request will be served). For
 * any other server, drain waits for its connections to close. At the
 * deadline whatever remains is destroyed.
 */
export class RawHost implements ConnectionService {
  readonly pauseOnConnect = false;
  readonly dispatch = "single";
  #server: net.Server;
  #stats: ServerStats;
  #log: Logger;
  #conns = new Map<net.Socket, Conn>();
  #draining = false;

  constructor(server: net.Server, stats: ServerStats, log: Logger) {
    this.#server = server;
    this.#stats = stats;
    this.#log = log;
    enforceHttpTimeouts(server);
    // Ahead of the app's own listener: a synchronous handler (a typical Express route) writes its
    // response within its call, so a drain that has begun must be known before it runs.
    server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => {
      const conn = this.#conns.get(req.socket);
      if (!conn) return;
      conn.active++;
      conn.served = true;
      this.#stats.requests++;
      const arrived = performance.now();
      // Where the runtime ends a handed connection after each response, every response says so.
      if (this.#draining || !detectRuntime().keepsHandedHttpConnections) res.shouldKeepAlive = false;
      else this.#open.add(res);
      res.once("close", () => {
        this.#open.delete(res);
        this.#stats.latency.observe(performance.now() - arrived);
        if (!res.writableFinished || res.statusCode >= 500) this.#stats.requestErrors++;
        conn.active--;
        conn.idleSince = Date.now();
      });
    });
  }

  /** Responses under way that have not been told to close their connection (a drain tells them). */
  #open = new Set<ServerResponse>();

  get connections(): number {
    return this.#conns.size;
  }

  /** HTTP requests whose responses have not finished. */
  get inflight(): number {
    let n = 0;
    for (const c of this.#conns.values()) n += c.active;
    return n;
  }

  /** What the hosted server buffers is its own. */
  bufferedBytes(): number {
    return 0;
  }

  /** The counters, with the bytes of the connections still open added to those of the closed ones. */
  counters(own: Record<string, number>): Record<string, number> {
    let bytesIn = own.bytesIn ?? 0;
    let bytesOut = own.bytesOut ?? 0;
    for (const s of this.#conns.keys()) {
      bytesIn += s.bytesRead;
      bytesOut += s.bytesWritten;
    }
    return { ...own, bytesIn, bytesOut };
  }

  latency(own: LatencyHistogram): LatencyHistogram {
    return own;
  }

  refusedBy(own: Partial<Record<Refusal, number>>): Partial<Record<Refusal, number>> {
    return own;
  }

  workers(): WorkerStatus[] {
    return [];
  }

  /** The hosted server's connections are its own; a vanished address ends them through TCP. */
  addressRemoved(_ep: Endpoint): void {}

  async listening(_listeners: ListenerSet): Promise<void> {}

  async stopAccepting(): Promise<void> {}

  accept(socket: net.Socket): void {
    this.#conns.set(socket, { active: 0, served: false, idleSince: Date.now() });
    this.#stats.rawConnections++;
    socket.once("close", () => {
      this.#conns.delete(socket);
      this.#stats.rawConnections--;
      this.#stats.bytesIn += socket.bytesRead;
      this.#stats.bytesOut += socket.bytesWritten;
    });
    this.#server.emit("connection", socket);
  }

  /** Resolves once every connection has closed, or at the deadline after destroying the rest. */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    // A response already under way whose head is not sent yet closes its connection after it too.
    for (const res of this.#open) if (!res.headersSent) res.shouldKeepAlive = false;
    this.#open.clear();
    const deadline = Date.now() + timeoutMs;
    while (this.#conns.size > 0 && Date.now() < deadline) {
      const now = Date.now();
      for (const [socket, conn] of this.#conns) {
        if (conn.served && conn.active === 0 && now - conn.idleSince >= IDLE_GRACE_MS) socket.end();
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.#conns.size > 0) {
      this.#log.warn("drain_deadline", { mode: "raw", destroyed: this.#conns.size });
      for (const s of this.#conns.keys()) s.destroy();
    }
    if (this.#server.listening) {
      // The app made it listen itself after all (a listen() after createServer() returned): closed, or it would keep the process alive.
      this.#log.warn("raw_server_was_listening", { note: "the app's server listened on its own; perilink closed it. Return it from createServer() without calling listen()" });
      this.#server.close();
    } else this.#server.emit("close");
  }
}

/**
 * An http.Server checks `headersTimeout` and `requestTimeout` only once it
 * has listened (Node.js starts the checks on 'listening'), and a raw-mode
 * app's server never listens: perilink hands it connections. Without the
 * checks a client that sends its headers a byte at a time holds its
 * connection for ever. The check is started as listening would start it
 * (the same function of the server's, on Node.js and Deno); a server
 * without one (a plain net.Server) keeps its own deadlines.
 */
function enforceHttpTimeouts(server: net.Server): void {
  if (server.listening) return;
  const start = server.listeners("listening").find((f) => f.name === "setupConnectionsTracking");
  (start as ((this: net.Server) => void) | undefined)?.call(server);
}
