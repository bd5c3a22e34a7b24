import type net from "node:net";
import { FrameType } from "../../../../src/protocol/constants.ts";
import type { ClientKey } from "../../../../src/client/client_key.ts";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { drained, insiderSession, trustedKey } from "../insider.ts";
import { Stopper } from "../stopper.ts";
import { encodeFrame } from "../raw_session.ts";

/**
 * A trusted host floods one-way messages at an app whose message handler
 * awaits (bench/lib/torture/torture_app.mjs waits 50 ms, then reads the
 * payload): 4 sessions from 4 addresses (127.0.50.x), each with a channel
 * open, write MESSAGE frames of `messageBytes` (default 1,024; at most the
 * server's maxFrame), as many as fit a 16 KiB record, as fast as the socket
 * takes them — many small payloads in each read, the case where a payload
 * kept across an `await` could pin a whole read buffer. The messages count
 * against the session's in-flight and buffer budgets. A
 * session the server ends is opened again after 200 ms. Bounded by the
 * deadline and by `pingMaxMiB` (default 1024) written in all.
 *
 * Counters: sessions, refused, noHello, messages (frames written),
 * bytesWritten, stalls (waits for 'drain' over 1 s), closedByServer, capped.
 */
export const asyncMessagesAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const sockets = new Set<net.Socket>();
  const c: Counters = { sessions: 0, refused: 0, noHello: 0, messages: 0, bytesWritten: 0, stalls: 0, closedByServer: 0, capped: 0 };
  const capBytes = (o.pingMaxMiB ?? 1024) * 2 ** 20;
  let key: ClientKey;
  const worker = async (source: string): Promise<void> => {
    for (let n = 0; n < 100_000 && !stopper.stopped; n++) {
      const s = await insiderSession(target, source, key, c, sockets);
      if (!s) {
        await stopper.pause(200);
        continue;
      }
      s.socket.resume();
      const size = Math.max(1, Math.min(o.messageBytes ?? 1024, s.maxFrame));
      const perRecord = Math.max(1, Math.floor(16_384 / size));
      const record = Buffer.concat(Array.from({ length: perRecord }, () => encodeFrame(FrameType.Message, 1, 0, Buffer.alloc(size, 0x6d))));
      while (!stopper.stopped && !s.socket.destroyed) {
        if (c.bytesWritten! >= capBytes) {
          c.capped = 1;
          await stopper.pause(60_000);
          break;
        }
        const ok = s.send(record);
        c.messages! += perRecord;
        c.bytesWritten! += record.length;
        if (!ok && !(await drained(s.socket, stopper, c))) break;
      }
      if (s.socket.destroyed && !stopper.stopped) c.closedByServer!++;
      s.socket.destroy();
      await stopper.pause(200);
    }
  };
  let running: Promise<unknown> = Promise.resolve();
  const ready = trustedKey(target).then((k) => {
    key = k;
    running = Promise.all(Array.from({ length: 4 }, (_, i) => worker(loopbackSource(50, i))));
  });
  return {
    ready,
    async stop() {
      stopper.stop();
      for (const s of sockets) s.destroy();
      await running;
      return c;
    },
  };
};
