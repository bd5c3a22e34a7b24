import { once } from "node:events";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { Pool } from "undici";
import { benchTls, ensureBenchTls } from "../tls_cert.ts";
import { checkEcho, type Contender } from "./types.ts";

/** The echo handler both undici contenders' servers run; `onAnswer` once per request. */
function echoHandler(onAnswer: () => void): http.RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      onAnswer();
      res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    });
  };
}

/**
 * undici's Pool with default settings (HTTP/1.1 keep-alive) against a
 * node:http echo server, or with `secure` the same server code on node:https
 * (TLS 1.3, Node's defaults, the benchmark's certificate: bench/lib/tls_cert.ts)
 * and the Pool trusting that certificate.
 */
function undiciContender(label: string, secure: boolean): Contender {
  return {
    label,
    ...(secure ? { setup: ensureBenchTls } : {}),

    async serve() {
      let handled = 0;
      const handler = echoHandler(() => handled++);
      let server: http.Server | https.Server;
      if (secure) {
        const { key, cert } = benchTls();
        server = https.createServer({ key, cert, minVersion: "TLSv1.3" }, handler);
      } else {
        server = http.createServer(handler);
      }
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
      const pool = secure
        ? new Pool(`https://127.0.0.1:${port}`, { connect: { ca: benchTls().cert, minVersion: "TLSv1.3" } })
        : new Pool(`http://127.0.0.1:${port}`);
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
}

export const undici = undiciContender("undici HTTP/1.1", false);

/** undici over HTTPS keep-alive: the same server code on node:https. */
export const undiciHttps = undiciContender("undici HTTPS/1.1", true);
