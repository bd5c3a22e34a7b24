import type net from "node:net";
import { FRAME_HEADER_SIZE, FrameType } from "../../../../src/protocol/constants.ts";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { Stopper } from "../stopper.ts";
import { processClientKey } from "../../../../src/client/client_key.ts";
import { admittedSession } from "../insider.ts";
import { loopingAttack } from "../looping_attack.ts";

/**
 * Half-sent frames at the memory budget: sessions (strangers: no channel is
 * needed) each send the header of a maxFrame PING and half its payload, then
 * nothing more, holding the server's buffer for the frame in progress. As
 * many as fill `maxBufferedBytes` and a quarter more (at most half of
 * `maxSessions`), spread over
 * addresses 127.0.51.x so that no address passes `maxSessionsPerPeer`. The
 * budget then pauses readers; a session that owes the rest of its frame is
 * ended after `writeTimeoutMs` all the same, and newcomers are let in again.
 * A session the server ends is opened again after 200 ms.
 *
 * Counters: sessions, refused, noHello, halfFrames, closedByServer.
 */
export const halfFramesAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const sockets = new Set<net.Socket>();
  const c: Counters = { sessions: 0, refused: 0, noHello: 0, halfFrames: 0, closedByServer: 0, addresses: 0 };
  const half = target.maxFrameBytes >> 1;
  // As many as fill the budget (pi-zero-2w: maxSessions × maxFrame is under it, so half the slots instead).
  const count = Math.min(Math.ceil((target.maxBufferedBytes * 1.25) / half), Math.floor(target.maxSessions / 2), 1000);
  const perAddress = Math.max(1, Math.min(target.maxSessionsPerPeer, 4));
  const key = processClientKey(); // a stranger's
  const worker = async (source: string): Promise<void> => {
    for (let n = 0; n < 100_000 && !stopper.stopped; n++) {
      const s = await admittedSession(target, source, key, c, sockets);
      if (!s) {
        await stopper.pause(200);
        continue;
      }
      const frame = Buffer.alloc(FRAME_HEADER_SIZE + half, 0x68);
      frame.writeUInt32BE(target.maxFrameBytes, 0); // the payload length the header claims: the whole frame
      frame[4] = FrameType.Ping;
      frame.fill(0, 5, FRAME_HEADER_SIZE);
      s.send(frame);
      c.halfFrames!++;
      const closed = new Promise<void>((r) => s.socket.once("close", () => r()));
      s.socket.resume();
      await Promise.race([closed, stopper.pause(3_600_000)]);
      if (!stopper.stopped) c.closedByServer!++;
      s.socket.destroy();
      await stopper.pause(200);
    }
  };
  const addresses = Math.ceil(count / perAddress);
  c.addresses = addresses;
  return loopingAttack(stopper, sockets, count, (i) => worker(loopbackSource(51, i % addresses)), c);
};
