import net from "node:net";
import { loopbackSource, type AttackStarter, type Counters } from "../attack.ts";
import { loopingAttack } from "../looping_attack.ts";
import { Stopper } from "../stopper.ts";
import { clientHello } from "../raw_session.ts";

/**
 * Slow-loris handshakes: `lorisConnections` connections (default 32) spread
 * over `lorisSources` source addresses (default 4) send the 32-byte client
 * hello one byte every `lorisIntervalMs` (default 300), so the whole hello
 * would take about 10 s. When the server closes a connection it is opened
 * again at once. `cutMsMax` is the longest a connection was kept before the
 * server closed it (the handshake timeout, if the server enforces one);
 * `helloCompleted` counts hellos that got through whole.
 */
export const slowLorisAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const sockets = new Set<net.Socket>();
  const c: Counters = { connections: 0, bytesSent: 0, cutByServer: 0, cutMsMax: 0, cutMsSum: 0, helloCompleted: 0, connectErrors: 0 };
  const count = o.lorisConnections ?? 32;
  const sources = o.lorisSources ?? 4;
  const intervalMs = o.lorisIntervalMs ?? 300;

  const once = (source: string): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ host: target.host, port: target.port, localAddress: source });
      sockets.add(socket);
      const hello = clientHello();
      let sent = 0;
      let connectedAt = 0;
      let timer: ReturnType<typeof setInterval> | undefined;
      socket.on("error", () => {});
      socket.resume(); // whatever the server answers is read and dropped
      socket.once("connect", () => {
        connectedAt = Date.now();
        c.connections!++;
        timer = setInterval(() => {
          if (stopper.stopped) return void socket.destroy();
          socket.write(hello.subarray(sent, sent + 1));
          c.bytesSent!++;
          if (++sent === hello.length) {
            clearInterval(timer);
            c.helloCompleted!++;
            socket.destroy();
          }
        }, intervalMs);
      });
      socket.once("close", () => {
        clearInterval(timer);
        sockets.delete(socket);
        if (connectedAt === 0) c.connectErrors!++;
        else if (sent < hello.length && !stopper.stopped) {
          const ms = Date.now() - connectedAt;
          c.cutByServer!++;
          c.cutMsSum! += ms;
          c.cutMsMax = Math.max(c.cutMsMax!, ms);
        }
        resolve();
      });
    });

  const loop = async (i: number): Promise<void> => {
    const source = loopbackSource(30, i % sources);
    for (let n = 0; !stopper.stopped && n < 100_000; n++) {
      await once(source);
      await stopper.pause(10);
    }
  };
  return loopingAttack(stopper, sockets, count, loop, c);
};
