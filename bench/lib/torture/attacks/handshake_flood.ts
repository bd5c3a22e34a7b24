import net from "node:net";
import { WireError } from "../../../../src/protocol/constants.ts";
import { between, loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { Pacer } from "../pacer.ts";
import { Stopper } from "../stopper.ts";
import { pacedSession } from "../raw_session.ts";

/**
 * Handshake floods past the session limits. Workers complete the handshake,
 * hold the session (doing nothing) for `holdMinMs`..`holdMaxMs` (default
 * 200..2000 ms), close it, and start again; all of them together at most
 * `handshakesPerSecond` (default 1000) connection attempts per second.
 * - from one address (127.0.40.1): 2 × maxSessionsPerPeer workers;
 * - from several (127.0.41.x): ⌈1.25 × maxSessions / maxSessionsPerPeer⌉
 *   addresses with maxSessionsPerPeer workers each,
 * so both the per-peer and the global limit are asked for more than they allow.
 * Counters: attempts, accepted, busy (ServerBusy refusals), otherStatus,
 * noHello (closed or timed out without a server hello), openPeak (sessions
 * held at once).
 */
export const handshakeFloodAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const pacer = new Pacer(o.handshakesPerSecond ?? 1000);
  const sockets = new Set<net.Socket>();
  const c: Counters = { workers: 0, sources: 0, attempts: 0, accepted: 0, busy: 0, otherStatus: 0, noHello: 0, openNow: 0, openPeak: 0 };
  const holdMin = o.holdMinMs ?? 200;
  const holdMax = o.holdMaxMs ?? 2000;

  const worker = async (source: string): Promise<void> => {
    for (let n = 0; n < 1_000_000 && !stopper.stopped; n++) {
      const opened = await pacedSession(pacer, stopper, c, target, source, sockets);
      if (opened === false) return;
      if (opened === null) continue;
      const { socket, status } = opened;
      if (status === 0) {
        c.accepted!++;
        c.openPeak = Math.max(c.openPeak!, ++c.openNow!);
        await stopper.pause(between(holdMin, holdMax));
        c.openNow!--;
      } else if (status === WireError.ServerBusy) c.busy!++;
      else c.otherStatus!++;
      socket.destroy();
    }
  };

  const perPeer = target.maxSessionsPerPeer;
  const groups: { source: string; workers: number }[] = [{ source: loopbackSource(40, 0), workers: 2 * perPeer }];
  const multi = Math.ceil((1.25 * target.maxSessions) / perPeer);
  for (let i = 0; i < multi; i++) groups.push({ source: loopbackSource(41, i), workers: perPeer });
  c.sources = groups.length;
  const all: Promise<void>[] = [];
  for (const g of groups) for (let w = 0; w < g.workers; w++) all.push(worker(g.source));
  c.workers = all.length;
  const running = Promise.all(all);
  return {
    async stop() {
      stopper.stop();
      pacer.close();
      for (const s of sockets) s.destroy();
      await running;
      delete c.openNow;
      return c;
    },
  };
};
