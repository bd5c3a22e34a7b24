import type net from "node:net";
import type { ClientKey } from "../../../../src/client/client_key.ts";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { insiderSession, trustedKey } from "../insider.ts";
import { Pacer } from "../pacer.ts";
import { Stopper } from "../stopper.ts";

/**
 * Slot exhaustion by a trusted host with many addresses (on a LAN, IPv6
 * link-local addresses cost nothing): as many sessions as the server has
 * slots (`maxSessions`), 2 from each address of 127.0.52.x onwards, each
 * with a channel open, then silent — they read what comes and send nothing.
 * The server must evict idle sessions with channels (oldest idle first,
 * fair across peers) so that its own clients get back in after an
 * upgrade. A session the server ends is opened again after 500 ms; opens
 * are paced at 100 a second.
 *
 * Counters: sessions, refused, noHello, evicted (ended by the server), addresses.
 */
export const channelHoldersAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const pacer = new Pacer(100);
  const sockets = new Set<net.Socket>();
  const c: Counters = { sessions: 0, refused: 0, noHello: 0, evicted: 0, addresses: 0 };
  let key: ClientKey;
  const worker = async (source: string): Promise<void> => {
    for (let n = 0; n < 100_000 && !stopper.stopped; n++) {
      if (!(await pacer.take()) || stopper.stopped) return;
      const s = await insiderSession(target, source, key, c, sockets);
      if (!s) {
        await stopper.pause(500);
        continue;
      }
      s.socket.resume();
      const closed = new Promise<void>((r) => s.socket.once("close", () => r()));
      await Promise.race([closed, stopper.pause(3_600_000)]);
      if (!stopper.stopped) c.evicted!++;
      s.socket.destroy();
      await stopper.pause(500);
    }
  };
  const count = Math.min(target.maxSessions, 1000);
  const addresses = Math.ceil(count / 2);
  c.addresses = addresses;
  let running: Promise<unknown> = Promise.resolve();
  const ready = trustedKey(target).then((k) => {
    key = k;
    running = Promise.all(Array.from({ length: count }, (_, i) => worker(loopbackSource(52, i % addresses))));
  });
  return {
    ready,
    async stop() {
      stopper.stop();
      pacer.close();
      for (const s of sockets) s.destroy();
      await running;
      return c;
    },
  };
};
