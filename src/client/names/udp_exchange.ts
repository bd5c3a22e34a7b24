import dgram from "node:dgram";
import type { Endpoint } from "./name_types.ts";

export interface ExchangeOptions<T> {
  family: 4 | 6;
  /** Local address to bind (default: any); for multicast and broadcast it picks the interface. */
  bind?: string | undefined;
  /** Where the query goes: one server, a multicast group, or subnet broadcasts. */
  targets: Endpoint[];
  message: Uint8Array;
  timeoutMs: number;
  /**
   * Reads one datagram: returns what it carries, or undefined to ignore it
   * (another transaction, another source, malformed). Must not throw; if it
   * does, the datagram is ignored all the same.
   */
  accept(msg: Buffer, from: { address: string; port: number }): T | undefined;
  /** After the first accepted answer, how long to wait for more (several responders); 0: stop at once. */
  gatherMs: number;
  /** Accepted answers after which the exchange ends at once (default: no limit): a flood of answers is not kept. */
  maxAnswers?: number;
  /** Datagrams sent within the timeout (first at once, the others evenly spread). */
  attempts?: number;
  broadcast?: boolean;
  /** Multicast TTL / hop limit (LLMNR wants 1, mDNS 255). */
  multicastTtl?: number;
  signal?: AbortSignal | undefined;
}

/**
 * One query over UDP from an ephemeral port, to a unicast, multicast or
 * broadcast destination, and the answers that `accept` takes within the
 * deadline. Resolves (never rejects) with those answers — an empty list when
 * the service is silent or the socket cannot be used — and always closes
 * its socket: when the deadline passes, when the gathering window after the
 * first answer ends, or when `signal` aborts.
 */
export function udpExchange<T>(o: ExchangeOptions<T>): Promise<T[]> {
  const answers: T[] = [];
  if (o.signal?.aborted || o.targets.length === 0) return Promise.resolve(answers);
  return new Promise<T[]>((resolve) => {
    let sock: dgram.Socket;
    try {
      sock = dgram.createSocket({ type: o.family === 6 ? "udp6" : "udp4" });
    } catch {
      resolve(answers);
      return;
    }
    const timers: ReturnType<typeof setTimeout>[] = [];
    let gathering = false;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      o.signal?.removeEventListener("abort", finish);
      for (const t of timers) clearTimeout(t);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(answers);
    };
    const later = (fn: () => void, ms: number): void => {
      const t = setTimeout(fn, ms);
      t.unref?.();
      timers.push(t);
    };
    const send = (): void => {
      if (done) return;
      for (const t of o.targets) {
        try {
          sock.send(o.message, t.port, t.address, () => {
            // a send error (no route, no interface) is a silent destination
          });
        } catch {
          // a destination this host cannot reach
        }
      }
    };
    o.signal?.addEventListener("abort", finish, { once: true });
    sock.on("error", finish);
    sock.on("message", (msg, rinfo) => {
      if (done) return;
      let value: T | undefined;
      try {
        value = o.accept(msg, { address: rinfo.address, port: rinfo.port });
      } catch {
        value = undefined;
      }
      if (value === undefined) return;
      answers.push(value);
      if (o.gatherMs <= 0 || answers.length >= (o.maxAnswers ?? Infinity)) return finish();
      if (!gathering) {
        gathering = true;
        later(finish, o.gatherMs);
      }
    });
    sock.bind(0, o.bind, () => {
      if (done) return;
      try {
        if (o.broadcast) sock.setBroadcast(true);
        if (o.multicastTtl !== undefined) sock.setMulticastTTL(o.multicastTtl);
      } catch {
        // not supported here: the query still goes out with the defaults
      }
      const attempts = Math.max(1, o.attempts ?? 1);
      send();
      for (let i = 1; i < attempts; i++) later(send, (o.timeoutMs * i) / attempts);
      later(finish, o.timeoutMs);
    });
  });
}
