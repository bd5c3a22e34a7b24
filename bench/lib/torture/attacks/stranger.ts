import net from "node:net";
import { FrameType } from "../../../../src/protocol/constants.ts";
import { encodeChannelOpen } from "../../../../src/protocol/payloads.ts";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { Pacer } from "../pacer.ts";
import { Stopper } from "../stopper.ts";
import { encodeFrame, pacedSession } from "../raw_session.ts";

/** Channel opens a stranger sends in each record: more than the server lets one peer be refused before it ends the session. */
const OPENS_PER_RECORD = 16;

/**
 * Strangers: hosts whose keys the device does not trust (`access: "keys"`).
 * Each worker completes the sealed handshake with a key of its own (the
 * server pays an X25519 and a signature), then asks for channels to apps
 * again and again — 16 CHANNEL_OPENs a record, a record every 50 ms —
 * until the server ends the session, and starts over; all of them together
 * at most `strangerHandshakesPerSecond` (default 200) handshakes a second,
 * from 8 addresses (127.0.42.x) with 4 workers each. Counters: attempts,
 * accepted (hellos answered 0), busy (refused at admission: the peer has
 * used up its refusals), ended (sessions the server ended after refusing
 * them), opensSent, noHello.
 */
export const strangerAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const pacer = new Pacer(o.strangerHandshakesPerSecond ?? 200);
  const sockets = new Set<net.Socket>();
  const c: Counters = { workers: 0, sources: 0, attempts: 0, accepted: 0, busy: 0, otherStatus: 0, ended: 0, opensSent: 0, noHello: 0 };
  const record = (first: number): Buffer =>
    Buffer.concat(Array.from({ length: OPENS_PER_RECORD }, (_, i) => encodeFrame(FrameType.ChannelOpen, first + i, 0, encodeChannelOpen({ app: `app${i}`, requestedHost: target.host, requestedPort: target.port }))));

  const worker = async (source: string): Promise<void> => {
    for (let n = 0; n < 1_000_000 && !stopper.stopped; n++) {
      const opened = await pacedSession(pacer, stopper, c, target, source, sockets);
      if (opened === false) return;
      if (opened === null) continue;
      const { socket, status, send } = opened;
      if (status !== 0) {
        if (status === 11) c.busy!++;
        else c.otherStatus!++;
        socket.destroy();
        continue;
      }
      c.accepted!++;
      socket.resume(); // read (and drop) the refusals: a stranger that reads is the harder case for the server
      const closed = new Promise<void>((r) => socket.once("close", () => r()));
      let ended = false;
      void closed.then(() => (ended = true));
      for (let id = 1; !ended && !stopper.stopped && id < 100_000; id += OPENS_PER_RECORD) {
        send(record(id));
        c.opensSent! += OPENS_PER_RECORD;
        await Promise.race([closed, stopper.pause(50)]);
      }
      if (ended && !stopper.stopped) c.ended!++;
      socket.destroy();
    }
  };

  const all: Promise<void>[] = [];
  for (let s = 0; s < 8; s++) for (let w = 0; w < 4; w++) all.push(worker(loopbackSource(42, s)));
  c.sources = 8;
  c.workers = all.length;
  const running = Promise.all(all);
  return {
    async stop() {
      stopper.stop();
      pacer.close();
      for (const s of sockets) s.destroy();
      await running;
      return c;
    },
  };
};
