import type net from "node:net";
import type { Attack, Counters } from "./attack.ts";
import type { Stopper } from "./stopper.ts";

/**
 * An attack made of `count` loops run at once, `loop(0)` … `loop(count - 1)`,
 * each ending when `stopper` stops. `stop()` stops them, destroys every socket
 * still in `sockets`, waits for the loops and returns `counters`.
 */
export function loopingAttack(stopper: Stopper, sockets: Set<net.Socket>, count: number, loop: (i: number) => Promise<void>, counters: Counters): Attack {
  const running = Promise.all(Array.from({ length: count }, (_, i) => loop(i)));
  return {
    async stop() {
      stopper.stop();
      for (const s of sockets) s.destroy();
      await running;
      return counters;
    },
  };
}
