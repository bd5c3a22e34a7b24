import { randomBytes } from "node:crypto";
import net from "node:net";
import { between, loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { loopingAttack } from "../looping_attack.ts";
import { Stopper } from "../stopper.ts";
import { clientHello } from "../raw_session.ts";

/**
 * Random-byte peers: `randomWorkers` loops (default 4), each from its own
 * source address, connect, send 1..4096 random bytes and wait up to 300 ms
 * for the server to close, then close and start again after
 * `randomPauseMs` (default 10). Every other connection first sends a valid
 * client hello, so the random bytes reach the frame decoder instead of
 * failing the magic check.
 */
export const randomBytesAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const sockets = new Set<net.Socket>();
  const c: Counters = { connections: 0, afterHello: 0, bytesSent: 0, closedByServer: 0, serverSentBytes: 0, connectErrors: 0 };
  const workers = o.randomWorkers ?? 4;
  const pauseMs = o.randomPauseMs ?? 10;

  const once = (source: string, withHello: boolean): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ host: target.host, port: target.port, localAddress: source });
      sockets.add(socket);
      let connected = false;
      let byUs = false;
      const timer = setTimeout(() => {
        byUs = true;
        socket.destroy();
      }, 300);
      socket.on("error", () => {});
      socket.on("data", (b: Buffer) => (c.serverSentBytes! += b.length));
      socket.once("connect", () => {
        connected = true;
        c.connections!++;
        const junk = randomBytes(between(1, 4096));
        const bytes = withHello ? Buffer.concat([clientHello(), junk]) : junk;
        if (withHello) c.afterHello!++;
        c.bytesSent! += bytes.length;
        socket.write(bytes);
      });
      socket.once("close", () => {
        clearTimeout(timer);
        sockets.delete(socket);
        if (!connected) c.connectErrors!++;
        // Closed by the server (end or reset) before our 300 ms were up; a stop() counts as ours.
        else if (!byUs && !stopper.stopped) c.closedByServer!++;
        resolve();
      });
    });

  const loop = async (w: number): Promise<void> => {
    const source = loopbackSource(10, w);
    for (let n = 0; !stopper.stopped && n < 1_000_000; n++) {
      await once(source, n % 2 === 1);
      await stopper.pause(pauseMs);
    }
  };
  return loopingAttack(stopper, sockets, workers, loop, c);
};
