import type { IncomingMessage, ServerResponse } from "node:http";
import type net from "node:net";
import type { Logger } from "../logger.ts";
import type { ServerStats } from "./server_stats.ts";

/** What raw mode knows of one accepted connection: HTTP requests running, and whether it served one. */
interface Conn {
  active: number;
  served: boolean;
}

/**
 * Raw mode (S6): hosts any `node:net` server (an `http.Server` qualifies) on
 * the managed listeners. Accepted sockets are handed to it as 'connection'
 * events.
 *
 * Drain never cuts a request short. For an HTTP server: responses sent during
 * drain carry `Connection: close`; keep-alive connections idle between
 * requests are closed; a connection that has not sent its first request yet
 * is left to send it (it was accepted, so its request will be served). For
 * any other server, drain waits for its connections to close. At the
 * deadline whatever remains is destroyed.
 */
export class RawHost {
  #server: net.Server;
  #stats: ServerStats;
  #log: Logger;
  #conns = new Map<net.Socket, Conn>();
  #draining = false;

  constructor(server: net.Server, stats: ServerStats, log: Logger) {
    this.#server = server;
    this.#stats = stats;
    this.#log = log;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      const conn = this.#conns.get(req.socket);
      if (!conn) return;
      conn.active++;
      conn.served = true;
      if (this.#draining) res.shouldKeepAlive = false;
      res.once("close", () => {
        conn.active--;
        if (this.#draining && conn.active === 0) req.socket.end();
      });
    });
  }

  get connections(): number {
    return this.#conns.size;
  }

  accept(socket: net.Socket): void {
    this.#conns.set(socket, { active: 0, served: false });
    this.#stats.rawConnections++;
    socket.once("close", () => {
      this.#conns.delete(socket);
      this.#stats.rawConnections--;
    });
    this.#server.emit("connection", socket);
  }

  /** Resolves once every connection has closed, or at the deadline after destroying the rest. */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    for (const [socket, conn] of this.#conns) if (conn.served && conn.active === 0) socket.end();
    const deadline = Date.now() + timeoutMs;
    while (this.#conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.#conns.size > 0) {
      this.#log.warn("drain_deadline", { mode: "raw", destroyed: this.#conns.size });
      for (const s of this.#conns.keys()) s.destroy();
    }
    this.#server.emit("close");
  }
}
