import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Pool } from "undici";
import { checkEcho, type Contender } from "./types.ts";

/** undici's Pool with default settings (HTTP/1.1 keep-alive) against a node:http echo server. */
export const undici: Contender = {
  label: "undici HTTP/1.1",

  async serve() {
    let handled = 0;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        handled++;
        res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return {
      port: (server.address() as AddressInfo).port,
      handled: () => handled,
      info: () => ({}),
      close() {
        server.closeAllConnections();
        return new Promise<void>((r) => server.close(() => r()));
      },
    };
  },

  async connect(port, payload) {
    const pool = new Pool(`http://127.0.0.1:${port}`);
    return {
      async send() {
        const res = await pool.request({ path: "/", method: "POST", body: payload });
        checkEcho(await res.body.bytes(), payload);
      },
      info: () => ({ connections: pool.stats.connected }),
      close: () => pool.close(),
    };
  },
};
