import type net from "node:net";
import type { Logger } from "../logger.ts";
import type { ServerStats } from "./server_stats.ts";

interface HttpLike extends net.Server {
  closeIdleConnections?: () => void;
}

/**
 * Raw mode (S6): hosts any `node:net` server (an `http.Server` qualifies) on
 * the managed listeners. Accepted sockets are handed to it as 'connection'
 * events. Drain stops new requests from keeping connections alive, closes idle
 * connections, and waits for the others to finish up to the deadline.
 */
export class RawHost {
  #server: HttpLike;
  #stats: ServerStats;
  #log: Logger;
  #sockets = new Set<net.Socket>();
  #draining = false;

  constructor(server: net.Server, stats: ServerStats, log: Logger) {
    this.#server = server as HttpLike;
    this.#stats = stats;
    this.#log = log;
    // An http.Server answers requests that arrive during drain with "Connection: close".
    this.#server.on("request", (_req: unknown, res: { shouldKeepAlive?: boolean }) => {
      if (this.#draining) res.shouldKeepAlive = false;
    });
  }

  get connections(): number {
    return this.#sockets.size;
  }

  accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    this.#stats.rawConnections++;
    socket.once("close", () => {
      this.#sockets.delete(socket);
      this.#stats.rawConnections--;
    });
    this.#server.emit("connection", socket);
  }

  /** Resolves once every connection has closed, or at the deadline after destroying the rest. */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    const deadline = Date.now() + timeoutMs;
    const isHttp = typeof this.#server.closeIdleConnections === "function";
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      if (isHttp) this.#server.closeIdleConnections!();
      await new Promise((r) => setTimeout(r, 50));
    }
    if (this.#sockets.size > 0) {
      this.#log.warn("drain_deadline", { mode: "raw", destroyed: this.#sockets.size });
      for (const s of this.#sockets) s.destroy();
    }
    this.#server.emit("close");
  }
}
