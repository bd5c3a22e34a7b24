import http from "node:http";

/**
 * The node:http app every contender of the handoff benchmark serves: perilink
 * hosts it in raw mode (`perilink serve --app bench/lib/handoff/http_app.mjs`), and
 * http_server.mjs runs it standalone (naive restart, pm2 cluster mode). Each
 * response names the process that served it, so the load can tell when a
 * new process starts answering.
 */
export function createServer() {
  return http.createServer((req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`ok ${process.pid} ${req.url}\n`);
  });
}
