import net from "node:net";
import { FRAME_HEADER_SIZE, FrameType } from "../../../../src/protocol/constants.ts";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { drained } from "../insider.ts";
import { Stopper } from "../stopper.ts";
import { encodeFrame, openSession } from "../raw_session.ts";

/**
 * Floods that never read: `pingConnections` sessions (default 4), each from
 * its own source address, complete the handshake, then write as fast as the
 * socket takes them, and never read a byte after the server hello. Every
 * answer the server owes stays with the server. The sessions take turns at
 * three floods (`kinds` counts each):
 *
 * - PINGs whose payload is the server's maxFrame (from its hello);
 * - 64-byte PINGs, a thousand to a write;
 * - maxFrame requests to the demo app's echo, each with its own stream id.
 *
 * A session the server closes (or refuses) is opened again after 200 ms.
 *
 * Counters: `bytesTaken` is what the kernel accepted from us (it reached the
 * server's receive buffer or the server read it); `stalls` counts waits for
 * 'drain' longer than 1 s (the server stopped reading). Bounded by the
 * deadline and by `pingMaxMiB` (default 1024) written in all, so a server
 * that buffers without limit cannot take the whole machine down: once the
 * cap is reached (`capped` 1) the sessions stay open, silent, until the end.
 */
export const pingFloodAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const sockets = new Set<net.Socket>();
  const c: Counters = { sessions: 0, refused: 0, failed: 0, frames: 0, bytesTaken: 0, stalls: 0, closedByServer: 0, maxFrame: 0, capped: 0 };
  const connections = o.pingConnections ?? 4;
  const capBytes = (o.pingMaxMiB ?? 1024) * 2 ** 20;
  let written = 0;
  const frames = new Map<string, Buffer>();
  const kinds = ["bigPing", "smallPing", "echo"] as const;
  /** The bytes of one write for flood `kind`; `n` numbers the request streams of an echo flood. */
  const chunk = (kind: (typeof kinds)[number], maxFrame: number, n: number): Buffer => {
    if (kind === "echo") {
      let body = frames.get(`echo${maxFrame}`);
      if (!body) frames.set(`echo${maxFrame}`, (body = Buffer.alloc(maxFrame, 0x65)));
      const header = Buffer.alloc(FRAME_HEADER_SIZE);
      header.writeUInt32BE(maxFrame, 0);
      header[4] = FrameType.Request;
      header.writeUInt32BE(1, 8);
      header.writeUInt32BE(n, 12);
      return Buffer.concat([header, body]);
    }
    const key = `${kind}${maxFrame}`;
    let f = frames.get(key);
    if (!f) {
      f = kind === "bigPing" ? encodeFrame(FrameType.Ping, 0, 0, Buffer.alloc(maxFrame, 0x70)) : Buffer.concat(Array.from({ length: 1000 }, () => encodeFrame(FrameType.Ping, 0, 0, Buffer.alloc(64))));
      frames.set(key, f);
    }
    return f;
  };

  const flood = async (socket: net.Socket, send: (b: Buffer) => boolean, next: (n: number) => Buffer): Promise<void> => {
    for (let n = 1; !stopper.stopped && !socket.destroyed; n++) {
      const frame = next(n);
      if (written + frame.length > capBytes) {
        c.capped = 1;
        await new Promise<void>((resolve) => {
          socket.once("close", () => resolve());
          void stopper.pause(2 ** 31 - 1).then(() => resolve());
        });
        return;
      }
      written += frame.length;
      const ok = send(frame);
      c.frames!++;
      if (!ok && !(await drained(socket, stopper, c))) break;
    }
  };

  const loop = async (i: number): Promise<void> => {
    const source = loopbackSource(20, i);
    let round = 0;
    while (!stopper.stopped) {
      let opened;
      try {
        opened = await openSession(target.host, target.port, source, 5000, sockets);
      } catch {
        c.failed!++;
        await stopper.pause(200);
        continue;
      }
      const { socket, status, maxFrame, send } = opened;
      if (status !== 0) {
        c.refused!++;
        socket.destroy();
        await stopper.pause(200);
        continue;
      }
      c.sessions!++;
      c.maxFrame = maxFrame;
      const kind = kinds[(i + round++) % kinds.length]!;
      c[kind] = (c[kind] ?? 0) + 1;
      if (kind === "echo") send(encodeFrame(FrameType.ChannelOpen, 1, 0, Buffer.from([4, ...Buffer.from("echo"), 0, 0, 0])));
      await flood(socket, send, (n) => chunk(kind, maxFrame, n));
      if (!stopper.stopped) c.closedByServer!++;
      c.bytesTaken! += Math.max(0, socket.bytesWritten - socket.writableLength);
      socket.destroy();
      await stopper.pause(200);
    }
  };
  const running = Promise.all(Array.from({ length: connections }, (_, i) => loop(i)));
  return {
    async stop() {
      stopper.stop();
      // Flooding loops notice within 100 ms and count their bytes; then close what is left (handshakes under way).
      await Promise.race([running, new Promise((r) => setTimeout(r, 1000))]);
      for (const s of sockets) s.destroy();
      await running;
      return c;
    },
  };
};
