import { randomBytes, randomFillSync } from "node:crypto";
import dgram from "node:dgram";
import { PROBE_RESPONSE_SIZE } from "../../../../src/protocol/constants.ts";
import { encodeProbeRequest } from "../../../../src/protocol/probe.ts";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { Stopper } from "../stopper.ts";

/**
 * Probe floods from many sources: `probeSources` UDP sockets (default 1000),
 * bound to 127.0.100.1, 127.0.100.2, … (250 per /24), send well-formed
 * identify probes, each with a fresh nonce, round robin, `probesPerSecond`
 * in all (default 5000; at that rate each source stays well under a
 * per-source limit, so only a server-wide limit can hold the flood back).
 * `answered` counts the signed 124-byte responses that came back.
 */
export const probeFloodAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const c: Counters = { sources: 0, sent: 0, answered: 0, sendErrors: 0 };
  const count = o.probeSources ?? 1000;
  const perTick = Math.max(1, Math.round((o.probesPerSecond ?? 5000) / 100));
  const sockets: { udp: dgram.Socket; request: Buffer }[] = [];
  let timer: ReturnType<typeof setInterval> | undefined;

  const ready = (async () => {
    for (let i = 0; i < count && !stopper.stopped; i++) {
      const udp = dgram.createSocket("udp4");
      udp.on("error", () => c.sendErrors!++);
      udp.on("message", (msg) => {
        if (msg.length === PROBE_RESPONSE_SIZE) c.answered!++;
      });
      await new Promise<void>((resolve, reject) => {
        udp.once("error", reject);
        udp.bind({ address: loopbackSource(100, i), port: 0 }, () => {
          udp.off("error", reject);
          resolve();
        });
      });
      sockets.push({ udp, request: encodeProbeRequest(randomBytes(16)) });
    }
    c.sources = sockets.length;
    let next = 0;
    timer = setInterval(() => {
      if (stopper.stopped) return clearInterval(timer);
      for (let k = 0; k < perTick; k++) {
        const s = sockets[next]!;
        next = (next + 1) % sockets.length;
        randomFillSync(s.request, 8, 16); // a fresh nonce, as a client would send
        c.sent!++;
        s.udp.send(s.request, target.port, target.host, (err) => err && c.sendErrors!++);
      }
    }, 10);
  })();

  return {
    async stop() {
      stopper.stop();
      await ready.catch(() => {});
      clearInterval(timer);
      // Late answers to the last probes still count.
      await new Promise((r) => setTimeout(r, 100));
      for (const s of sockets) s.udp.close();
      return c;
    },
    ready,
  };
};
