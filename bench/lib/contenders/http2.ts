import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { checkEcho, type Contender } from "./types.ts";

/** node:http2 (cleartext): one session, one stream per request, against a node:http2 echo server. */
export const h2: Contender = {
  label: "node:http2",

  async serve() {
    let handled = 0;
    const server = http2.createServer();
    server.on("stream", (stream: http2.ServerHttp2Stream) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        handled++;
        stream.respond({ ":status": 200 });
        stream.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      });
      stream.on("error", () => {});
    });
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (s) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return {
      port: (server.address() as AddressInfo).port,
      handled: () => handled,
      info: () => ({}),
      close() {
        for (const s of sessions) s.destroy();
        return new Promise<void>((r) => server.close(() => r()));
      },
    };
  },

  async connect(port, payload) {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    await once(session, "connect");
    const send = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": "/" });
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          try {
            checkEcho(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), payload);
            resolve();
          } catch (err) {
            reject(err);
          }
        });
        req.on("error", reject);
        req.end(payload);
      });
    return {
      send,
      info: () => ({ connections: 1 }),
      close: () => new Promise<void>((r) => session.close(() => r())),
    };
  },
};
