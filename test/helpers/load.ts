import http from "node:http";
import { ClientSession, type ClientChannel } from "../../src/client/client_session.ts";
import { RequestRefusedError } from "../../src/errors.ts";

export interface LoadReport {
  /** Requests answered with the right echo, by id. */
  answered: Map<string, number>;
  /** Requests sent again after the server refused them unstarted (GOAWAY). */
  resent: number;
  /** Everything else that went wrong: connection refused or reset, wrong answers, timeouts. */
  errors: string[];
}

/**
 * `clients` perilink sessions, each sending echo requests one after another
 * with unique ids until `stop()`. A request the server refused without
 * starting it (RequestRefusedError: GOAWAY) is sent again on a new session:
 * that is the protocol's promise, so it keeps "exactly once". Any other
 * failure is recorded as an error. Bounded: at most `maxMs` and `maxRequests` per client.
 */
export function perilinkLoad(host: string, port: number, clients: number, opts: { maxMs?: number; maxRequests?: number; connectMs?: number } = {}): { stop: () => Promise<LoadReport> } {
  const report: LoadReport = { answered: new Map(), resent: 0, errors: [] };
  const end = Date.now() + (opts.maxMs ?? 120_000);
  const maxRequests = opts.maxRequests ?? 1_000_000;
  let stopping = false;
  const loops = Array.from({ length: clients }, async (_, c) => {
    let session: ClientSession | null = null;
    let channel: ClientChannel | null = null;
    for (let n = 0; n < maxRequests && !stopping && Date.now() < end; n++) {
      const id = `c${c}-${n}`;
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          if (!session || session.closed || session.draining) {
            session?.close().catch(() => {});
            session = await ClientSession.connect({ host, port, timeoutMs: opts.connectMs ?? 5000 });
            channel = await session.openChannel(`load${c}`, host, port);
          }
          const reply = (await channel!.request(id, { timeoutMs: 10_000 })).toString();
          if (reply !== id) report.errors.push(`${id}: wrong answer ${reply}`);
          report.answered.set(id, (report.answered.get(id) ?? 0) + 1);
          break;
        } catch (err) {
          if (err instanceof RequestRefusedError) {
            report.resent++;
            session = null;
            continue;
          }
          report.errors.push(`${id}: ${(err as { code?: string }).code ?? ""} ${(err as Error).message}`);
          session?.destroy();
          session = null;
          break;
        }
      }
    }
    await session?.close().catch(() => {});
  });
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      return report;
    },
  };
}

export interface HttpReport {
  ok: number;
  non2xx: number;
  errors: string[];
}

/** `clients` loops of connection-per-request HTTP GETs (`Connection: close`) until `stop()`; bounded by `maxMs`. */
export function httpLoad(host: string, port: number, clients: number, opts: { maxMs?: number } = {}): { stop: () => Promise<HttpReport> } {
  const report: HttpReport = { ok: 0, non2xx: 0, errors: [] };
  const end = Date.now() + (opts.maxMs ?? 120_000);
  let stopping = false;
  const once = (path: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host, port, path, agent: false, headers: { connection: "close" }, timeout: 10_000 }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", reject);
    });
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let n = 0; !stopping && Date.now() < end; n++) {
      try {
        const status = await once(`/c${c}/${n}`);
        if (status >= 200 && status < 300) report.ok++;
        else report.non2xx++;
      } catch (err) {
        report.errors.push(`${(err as { code?: string }).code ?? ""} ${(err as Error).message}`);
      }
    }
  });
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      return report;
    },
  };
}

/** One response of a keep-alive load: when its request went out, what it said, and on which connection. */
export interface KeepAliveRecord {
  client: number;
  path: string;
  /** Date.now() when the request was sent. */
  sentAt: number;
  endedAt: number;
  headers: http.IncomingHttpHeaders;
  /** Which connection carried it (numbered in order of first use). */
  socket: number;
  body: string;
}

export interface KeepAliveRun {
  records: KeepAliveRecord[];
  errors: string[];
  /** Stops sending and waits for the loops' last responses. */
  stop(): Promise<void>;
}

/**
 * `clients` loops of GETs, each sending its next request (`path(client, n)`)
 * `pauseMs` after the last one ended, each on a keep-alive connection of its
 * own (an agent with one socket: it sends on the same connection as long as
 * the server keeps it open). Every response is recorded, and every failure or body other
 * than `expect(path)` is an error. Bounded: at most `maxMs` and
 * `maxRequests` per client.
 */
export function keepAliveLoad(
  host: string,
  port: number,
  opts: { clients: number; path: (client: number, n: number) => string; expect: (path: string) => string; pauseMs: number; maxMs: number; maxRequests: number },
): KeepAliveRun {
  const agents = Array.from({ length: opts.clients }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const sockets = new WeakMap<object, number>();
  let nextSocket = 0;
  const records: KeepAliveRecord[] = [];
  const errors: string[] = [];
  const end = Date.now() + opts.maxMs;
  let stopping = false;
  const get = (client: number, path: string): Promise<KeepAliveRecord> =>
    new Promise((resolve, reject) => {
      const sentAt = Date.now();
      let socket = -1;
      const req = http.get({ host, port, path, agent: agents[client], timeout: 10_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ client, path, sentAt, endedAt: Date.now(), headers: res.headers, socket, body }));
        res.on("error", reject);
      });
      req.on("socket", (s) => {
        if (!sockets.has(s)) sockets.set(s, nextSocket++);
        socket = sockets.get(s)!;
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", reject);
    });
  const loops = Array.from({ length: opts.clients }, async (_, c) => {
    for (let n = 0; n < opts.maxRequests && !stopping && Date.now() < end; n++) {
      const path = opts.path(c, n);
      try {
        const r = await get(c, path);
        records.push(r);
        if (r.body !== opts.expect(path)) errors.push(`${path}: wrong body ${JSON.stringify(r.body.slice(0, 80))}`);
      } catch (err) {
        errors.push(`${path}: ${(err as { code?: string }).code ?? ""} ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  });
  return {
    records,
    errors,
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      for (const a of agents) a.destroy();
    },
  };
}
