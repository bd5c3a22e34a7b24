import dgram from "node:dgram";
import net from "node:net";

/** A TCP port free on 127.0.0.1 now (bound briefly, then closed). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once("error", reject);
  });
}

/**
 * A port free for both TCP and UDP on 127.0.0.1 (bound briefly, then closed),
 * for a server that answers on both. After 20 tries whose UDP side was taken,
 * the last TCP port found.
 */
export async function freeTcpUdpPort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => r()));
    const port = (srv.address() as net.AddressInfo).port;
    const udp = dgram.createSocket("udp4");
    const ok = await new Promise<boolean>((r) => {
      udp.once("error", () => r(false));
      udp.bind({ address: "127.0.0.1", port, exclusive: true }, () => r(true));
    });
    await new Promise<void>((r) => srv.close(() => r()));
    await new Promise<void>((r) => {
      try {
        udp.close(() => r());
      } catch {
        r();
      }
    });
    if (ok || attempt >= 20) return port;
  }
}
