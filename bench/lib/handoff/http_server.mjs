import { createServer } from "./http_app.mjs";

/**
 * http_app.mjs as a standalone server on HOST:PORT (env; HOST defaults to
 * 127.0.0.1), as a Node user would run it: directly (the naive-restart
 * contender) or under pm2 in cluster mode. Prints "listening <pid> <port>"
 * once listening. Shuts down gracefully on SIGTERM, SIGINT (pm2's kill
 * signal) or pm2's "shutdown" message: stops accepting, lets the requests it
 * started finish, then exits (at most 5 s later).
 */
const port = Number(process.env.PORT);
const host = process.env.HOST || "127.0.0.1";
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("http_server.mjs: set PORT\n");
  process.exit(2);
}
const server = createServer();
server.listen(port, host, () => process.stdout.write(`listening ${process.pid} ${port}\n`));

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  setTimeout(() => process.exit(0), 5000).unref();
  server.close(() => process.exit(0));
  server.closeIdleConnections();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
process.on("message", (m) => {
  if (m === "shutdown") shutdown();
});
